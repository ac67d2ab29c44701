// build_metainfo / check_metainfo: the deterministic torrent format of ARCHITECTURE §3.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/file_storage.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/torrent_info.hpp>
#include <string>
#include <vector>

#include "peer/engine/torrent_engine.h"

namespace starling::peer {
namespace {

namespace lt = libtorrent;

constexpr int64_t kMiB = int64_t{1} << 20;

int choose_piece_size(int64_t size) {
  if (size <= 512 * kMiB) return static_cast<int>(1 * kMiB);
  if (size <= 2048 * kMiB) return static_cast<int>(2 * kMiB);
  return static_cast<int>(4 * kMiB);
}

bool valid_piece_size(int piece_size) {
  return piece_size >= 16 * 1024 && piece_size <= 16 * kMiB && (piece_size & (piece_size - 1)) == 0;
}

// Closes the descriptor on every path out of build_metainfo.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads exactly buf.size() bytes at `offset`; false on error or short file.
bool read_fully(int fd, std::vector<char>& buf, int64_t offset) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done,
                        static_cast<off_t>(offset) + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<std::string> build_metainfo(const std::string& content_path, const std::string& ca_cert_pem,
                                   int piece_size) {
  if (ca_cert_pem.empty()) {
    return make_error(kErrMetainfo, "build_metainfo: the network CA certificate is empty");
  }
  FileDescriptor fd(::open(content_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return make_error(kErrMetainfo,
                      "build_metainfo: open " + content_path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return make_error(kErrMetainfo, "build_metainfo: " + content_path + " is not a regular file");
  }
  const int64_t size = static_cast<int64_t>(st.st_size);
  if (size == 0) {
    // BitTorrent cannot describe zero bytes (no pieces); the caller special-cases it.
    return make_error(kErrMetainfo, "empty content cannot be shared as a torrent");
  }
  if (piece_size == 0) piece_size = choose_piece_size(size);
  if (!valid_piece_size(piece_size)) {
    return make_error(kErrMetainfo, "build_metainfo: piece size " + std::to_string(piece_size) +
                                        " is not a power of two in 16 KiB..16 MiB");
  }

  try {
    lt::file_storage fs;
    fs.add_file("content", size);
    lt::create_torrent ct(fs, piece_size, lt::create_torrent::v1_only);
    ct.set_priv(true);
    ct.set_creation_date(0);  // 0 omits the field: same bytes, same info-hash everywhere
    ct.set_root_cert(ca_cert_pem);

    // We hash the file ourselves instead of lt::set_piece_hashes, which would need the file
    // to be named "content" inside some directory.
    std::vector<char> buf;
    for (lt::piece_index_t i{0}; i < fs.end_piece(); ++i) {
      const int64_t offset = static_cast<int64_t>(static_cast<int>(i)) * piece_size;
      buf.resize(static_cast<size_t>(fs.piece_size(i)));
      if (!read_fully(fd.get(), buf, offset)) {
        return make_error(kErrMetainfo, "build_metainfo: read " + content_path + " at offset " +
                                            std::to_string(offset) + " failed (file changed?)");
      }
      lt::hasher h(buf.data(), static_cast<int>(buf.size()));
      ct.set_hash(i, h.final());
    }
    std::string out;
    lt::bencode(std::back_inserter(out), ct.generate());
    return out;
  } catch (const std::exception& e) {
    return make_error(kErrMetainfo, std::string("build_metainfo: ") + e.what());
  }
}

Result<int64_t> check_metainfo(const std::string& metainfo) {
  try {
    lt::error_code ec;
    lt::torrent_info ti(
        lt::span<const char>(metainfo.data(), static_cast<std::ptrdiff_t>(metainfo.size())), ec,
        lt::from_span);
    if (ec) return make_error(kErrMetainfo, "metainfo does not parse: " + ec.message());
    if (!ti.is_valid()) return make_error(kErrMetainfo, "metainfo is not a valid torrent");
    if (!ti.priv()) return make_error(kErrMetainfo, "metainfo is not a private torrent");
    if (!ti.info_hashes().has_v1() || ti.info_hashes().has_v2()) {
      return make_error(kErrMetainfo, "metainfo is not a v1-only torrent");
    }
    if (ti.num_files() != 1) {
      return make_error(kErrMetainfo, "metainfo has " + std::to_string(ti.num_files()) +
                                          " files, expected exactly one");
    }
    if (ti.ssl_cert().empty()) {
      return make_error(kErrMetainfo, "metainfo has no ssl-cert: not an SSL torrent");
    }
    if (ti.total_size() <= 0) return make_error(kErrMetainfo, "metainfo describes no bytes");
    return static_cast<int64_t>(ti.total_size());
  } catch (const std::exception& e) {
    return make_error(kErrMetainfo, std::string("metainfo does not parse: ") + e.what());
  }
}

}  // namespace starling::peer

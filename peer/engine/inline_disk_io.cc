#include "peer/engine/inline_disk_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/aux_/vector.hpp>
#include <libtorrent/disk_buffer_holder.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/file_storage.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/peer_request.hpp>
#include <libtorrent/storage_defs.hpp>
#include <libtorrent/torrent_flags.hpp>
#include <string>
#include <utility>
#include <vector>

namespace starling::peer {

namespace lt = libtorrent;

namespace {

constexpr int kBlock = lt::default_block_size;  // 16 KiB, BitTorrent's request size
// Spare bytes after each block read for sending: libtorrent copies the next peer-wire message
// (the next block's 13-byte header) into them instead of a buffer of its own. Boost.Asio's TLS
// stream copies a leading small buffer and what follows into 8 KiB, so a lone header made
// every 16 KiB block two 8 KiB TLS records and sends; with the room it is 1.5 (README.md).
constexpr int kSendRoom = 256;

lt::error_code errno_code(int e) { return lt::error_code(e, lt::system_category()); }

// One torrent's files. Piece → file mapping comes from `files_`; paths from the renamed
// `paths_` (the engine renames the single file onto its content path).
class Storage {
 public:
  explicit Storage(const lt::storage_params& p)
      : files_(p.files), paths_(p.mapped_files ? *p.mapped_files : p.files), save_path_(p.path) {
    fds_.resize(static_cast<size_t>(files_.num_files()), -1);
    sized_.resize(fds_.size(), false);
  }
  ~Storage() { close_all(); }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void close_all() {
    for (int& fd : fds_) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    std::fill(sized_.begin(), sized_.end(), false);
  }

  // Writes `len` bytes of `buf` at (piece, offset).
  lt::storage_error write(lt::piece_index_t piece, int offset, const char* buf, int len) {
    for (const lt::file_slice& s : files_.map_block(piece, offset, len)) {
      if (files_.pad_file_at(s.file_index)) {
        buf += s.size;
        continue;
      }
      int fd = open(s.file_index, true);
      if (fd < 0) return error(errno, s.file_index, lt::operation_t::file_open);
      for (int64_t done = 0; done < s.size;) {
        ssize_t n = ::pwrite(fd, buf + done, static_cast<size_t>(s.size - done), s.offset + done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return error(errno, s.file_index, lt::operation_t::file_write);
        done += n;
      }
      buf += s.size;
    }
    return {};
  }

  // Reads `len` bytes at (piece, offset) into `buf`. A file that is missing or too short is an
  // error unless `zero_fill`, which reads what is missing as zeros (for hashing: a piece that
  // is not on disk yet simply fails its hash check).
  lt::storage_error read(lt::piece_index_t piece, int offset, char* buf, int len, bool zero_fill) {
    for (const lt::file_slice& s : files_.map_block(piece, offset, len)) {
      int64_t done = 0;
      if (!files_.pad_file_at(s.file_index)) {
        int fd = open(s.file_index, false);
        if (fd < 0 && !(zero_fill && errno == ENOENT)) {
          return error(errno, s.file_index, lt::operation_t::file_open);
        }
        while (fd >= 0 && done < s.size) {
          ssize_t n = ::pread(fd, buf + done, static_cast<size_t>(s.size - done), s.offset + done);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return error(errno, s.file_index, lt::operation_t::file_read);
          if (n == 0) break;
          done += n;
        }
        if (done < s.size && !zero_fill) {
          return lt::storage_error(boost::asio::error::eof, s.file_index,
                                   lt::operation_t::file_read);
        }
      }
      std::fill(buf + done, buf + s.size, char{0});
      buf += s.size;
    }
    return {};
  }

  int piece_size(lt::piece_index_t piece) const { return files_.piece_size(piece); }

  // For check_files: whether any file of the torrent has bytes on disk, and whether every
  // file has exactly its size.
  void survey(bool& any, bool& complete, lt::storage_error& missing) const {
    any = false;
    complete = true;
    for (lt::file_index_t i : files_.file_range()) {
      if (files_.pad_file_at(i)) continue;
      struct stat st {};
      if (::stat(path(i).c_str(), &st) != 0) {
        if (complete) missing = error(errno, i, lt::operation_t::file_stat);
        complete = false;
        continue;
      }
      if (st.st_size > 0) any = true;
      if (st.st_size != files_.file_size(i)) {
        if (complete) {
          missing = lt::storage_error(lt::errors::mismatching_file_size, i,
                                      lt::operation_t::check_resume);
        }
        complete = false;
      }
    }
  }

  lt::storage_error remove_files() {
    close_all();
    for (lt::file_index_t i : files_.file_range()) {
      if (files_.pad_file_at(i)) continue;
      if (::unlink(path(i).c_str()) != 0 && errno != ENOENT) {
        return error(errno, i, lt::operation_t::file_remove);
      }
    }
    return {};
  }

 private:
  static lt::storage_error error(int e, lt::file_index_t f, lt::operation_t op) {
    return lt::storage_error(errno_code(e), f, op);
  }

  std::string path(lt::file_index_t i) const { return paths_.file_path(i, save_path_); }

  // The file's descriptor, opened read-write (every file the engine serves is one it or the
  // supernode wrote) and, for writing, created at its full size on first use.
  int open(lt::file_index_t i, bool for_write) {
    const auto k = static_cast<size_t>(static_cast<int>(i));
    if (fds_[k] < 0) {
      const std::string p = path(i);
      int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT && for_write) {
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(p).parent_path(), ec);
        fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      }
      if (fd < 0) return -1;
      fds_[k] = fd;
    }
    if (for_write && !sized_[k]) {
      // Like libtorrent's own storage: a file being written has the torrent's size for it, so
      // that it is complete once every piece is, whatever order the pieces came in.
      struct stat st {};
      if (::fstat(fds_[k], &st) != 0) return -1;
      if (st.st_size != files_.file_size(i) && ::ftruncate(fds_[k], files_.file_size(i)) != 0) {
        return -1;
      }
      sized_[k] = true;
    }
    return fds_[k];
  }

  const lt::file_storage& files_;  // owned by the torrent, which outlives its storage
  const lt::file_storage& paths_;
  std::string save_path_;
  std::vector<int> fds_;
  std::vector<bool> sized_;
};

class InlineDiskIo final : public lt::disk_interface, public lt::buffer_allocator_interface {
 public:
  explicit InlineDiskIo(lt::io_context& ioc) : ioc_(ioc) {}

  lt::storage_holder new_torrent(const lt::storage_params& p,
                                 const std::shared_ptr<void>&) override {
    lt::storage_index_t idx;
    if (free_.empty()) {
      idx = storages_.end_index();
      storages_.emplace_back();
    } else {
      idx = free_.back();
      free_.pop_back();
    }
    storages_[idx] = std::make_unique<Storage>(p);
    return lt::storage_holder(idx, *this);
  }

  void remove_torrent(lt::storage_index_t idx) override {
    storages_[idx].reset();
    free_.push_back(idx);
  }

  void async_read(lt::storage_index_t idx, const lt::peer_request& r,
                  std::function<void(lt::disk_buffer_holder, const lt::storage_error&)> handler,
                  lt::disk_job_flags_t) override {
    auto* buf = static_cast<char*>(std::malloc(static_cast<size_t>(r.length + kSendRoom)));
    lt::storage_error se =
        buf ? storages_[idx]->read(r.piece, r.start, buf, r.length, false)
            : lt::storage_error(errno_code(ENOMEM), lt::operation_t::alloc_cache_piece);
    lt::disk_buffer_holder holder(*this, buf, r.length + kSendRoom);
    boost::asio::post(ioc_, [h = std::move(handler), b = std::move(holder), se]() mutable {
      h(std::move(b), se);
    });
  }

  bool async_write(lt::storage_index_t idx, const lt::peer_request& r, const char* buf,
                   std::shared_ptr<lt::disk_observer>,
                   std::function<void(const lt::storage_error&)> handler,
                   lt::disk_job_flags_t) override {
    lt::storage_error se = storages_[idx]->write(r.piece, r.start, buf, r.length);
    boost::asio::post(ioc_, [h = std::move(handler), se] { h(se); });
    return false;  // never a backlog: the caller may go on receiving
  }

  void async_hash(
      lt::storage_index_t idx, lt::piece_index_t piece, lt::span<lt::sha256_hash> v2,
      lt::disk_job_flags_t flags,
      std::function<void(lt::piece_index_t, const lt::sha1_hash&, const lt::storage_error&)>
          handler) override {
    Storage& s = *storages_[idx];
    const int size = s.piece_size(piece);
    lt::hasher v1;
    lt::sha1_hash digest;
    lt::storage_error se;
    char block[kBlock];
    for (int off = 0, i = 0; off < size && !se; off += kBlock, ++i) {
      const int len = std::min(kBlock, size - off);
      se = s.read(piece, off, block, len, true);
      if (se) break;
      if (flags & lt::disk_interface::v1_hash) v1.update(block, len);
      if (i < v2.size()) v2[i] = lt::hasher256(block, len).final();
    }
    if (!se && (flags & lt::disk_interface::v1_hash)) digest = v1.final();
    boost::asio::post(ioc_, [h = std::move(handler), piece, digest, se] { h(piece, digest, se); });
  }

  void async_hash2(
      lt::storage_index_t idx, lt::piece_index_t piece, int offset, lt::disk_job_flags_t,
      std::function<void(lt::piece_index_t, const lt::sha256_hash&, const lt::storage_error&)>
          handler) override {
    Storage& s = *storages_[idx];
    const int len = std::min(kBlock, s.piece_size(piece) - offset);
    char block[kBlock];
    lt::sha256_hash digest;
    lt::storage_error se = s.read(piece, offset, block, len, true);
    if (!se) digest = lt::hasher256(block, len).final();
    boost::asio::post(ioc_, [h = std::move(handler), piece, digest, se] { h(piece, digest, se); });
  }

  void async_move_storage(
      lt::storage_index_t, std::string p, lt::move_flags_t,
      std::function<void(lt::status_t, const std::string&, const lt::storage_error&)> handler)
      override {
    // The engine never moves content; say so rather than pretend.
    lt::storage_error se(errno_code(EOPNOTSUPP), lt::operation_t::file_rename);
    boost::asio::post(ioc_, [h = std::move(handler), p = std::move(p), se] {
      h(lt::status_t::fatal_disk_error, p, se);
    });
  }

  void async_release_files(lt::storage_index_t idx, std::function<void()> handler) override {
    storages_[idx]->close_all();
    if (handler) boost::asio::post(ioc_, std::move(handler));
  }

  void async_check_files(
      lt::storage_index_t idx, const lt::add_torrent_params* resume,
      lt::aux::vector<std::string, lt::file_index_t>,
      std::function<void(lt::status_t, const lt::storage_error&)> handler) override {
    bool any = false;
    bool complete = false;
    lt::storage_error missing;
    storages_[idx]->survey(any, complete, missing);
    lt::status_t st = lt::status_t::no_error;
    lt::storage_error se;
    const bool seed = resume && (resume->flags & lt::torrent_flags::seed_mode);
    if (seed && !complete) {
      st = lt::status_t::fatal_disk_error;  // a seed must have every byte: no silent garbage
      se = missing;
    } else if (!seed && any) {
      st = lt::status_t::need_full_check;  // bytes left by an earlier run: hash what is there
    }
    boost::asio::post(ioc_, [h = std::move(handler), st, se] { h(st, se); });
  }

  void async_stop_torrent(lt::storage_index_t idx, std::function<void()> handler) override {
    storages_[idx]->close_all();
    if (handler) boost::asio::post(ioc_, std::move(handler));
  }

  void async_rename_file(
      lt::storage_index_t, lt::file_index_t index, std::string name,
      std::function<void(const std::string&, lt::file_index_t, const lt::storage_error&)> handler)
      override {
    lt::storage_error se(errno_code(EOPNOTSUPP), index, lt::operation_t::file_rename);
    boost::asio::post(
        ioc_, [h = std::move(handler), name = std::move(name), index, se] { h(name, index, se); });
  }

  void async_delete_files(lt::storage_index_t idx, lt::remove_flags_t,
                          std::function<void(const lt::storage_error&)> handler) override {
    lt::storage_error se = storages_[idx]->remove_files();
    boost::asio::post(ioc_, [h = std::move(handler), se] { h(se); });
  }

  void async_set_file_priority(
      lt::storage_index_t, lt::aux::vector<lt::download_priority_t, lt::file_index_t> prio,
      std::function<void(const lt::storage_error&,
                         lt::aux::vector<lt::download_priority_t, lt::file_index_t>)>
          handler) override {
    // Every file is always downloaded whole; priorities only steer libtorrent's picker.
    boost::asio::post(ioc_, [h = std::move(handler), prio = std::move(prio)]() mutable {
      h(lt::storage_error(), std::move(prio));
    });
  }

  void async_clear_piece(lt::storage_index_t, lt::piece_index_t index,
                         std::function<void(lt::piece_index_t)> handler) override {
    boost::asio::post(ioc_, [h = std::move(handler), index] { h(index); });
  }

  void update_stats_counters(lt::counters&) const override {}
  std::vector<lt::open_file_state> get_status(lt::storage_index_t) const override { return {}; }
  void abort(bool) override {}  // nothing is ever pending
  void submit_jobs() override {}
  void settings_updated() override {}

  void free_disk_buffer(char* b) override { std::free(b); }

 private:
  lt::io_context& ioc_;
  lt::aux::vector<std::unique_ptr<Storage>, lt::storage_index_t> storages_;
  std::vector<lt::storage_index_t> free_;
};

}  // namespace

std::unique_ptr<lt::disk_interface> make_inline_disk_io(lt::io_context& ioc,
                                                        const lt::settings_interface&,
                                                        lt::counters&) {
  return std::make_unique<InlineDiskIo>(ioc);
}

}  // namespace starling::peer

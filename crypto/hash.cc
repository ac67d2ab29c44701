#include "crypto/hash.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/hex.h"

namespace starling::crypto {

// OpenSSL rather than libsodium: every byte a peer delivers is hashed twice (the daemon's
// end-to-end check and `get`'s copy), and OpenSSL uses the SHA extensions where the CPU has
// them (bench/hash_bench: about 5 x libsodium's portable code on this machine).
namespace {

struct EvpState {
  explicit EvpState(const EVP_MD* md) {
    if (ctx == nullptr || EVP_DigestInit_ex(ctx, md, nullptr) != 1) {
      std::abort();  // out of memory or a broken libcrypto: nothing sensible to continue with
    }
  }
  ~EvpState() { EVP_MD_CTX_free(ctx); }
  EvpState(const EvpState&) = delete;
  EvpState& operator=(const EvpState&) = delete;

  void update(const void* data, size_t size) {
    if (size != 0) EVP_DigestUpdate(ctx, data, size);
  }
  template <size_t N>
  std::array<uint8_t, N> finish() {
    std::array<uint8_t, N> out{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, out.data(), &len);
    return out;
  }

  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
};

}  // namespace

struct Sha256::State : EvpState {
  State() : EvpState(EVP_sha256()) {}
};

Sha256::Sha256() : state_(std::make_unique<State>()) {}
Sha256::~Sha256() = default;
void Sha256::update(const void* data, size_t size) { state_->update(data, size); }
std::array<uint8_t, 32> Sha256::finish() { return state_->finish<32>(); }

std::string Sha256::finish_hex() {
  std::array<uint8_t, 32> digest = finish();
  return to_hex(digest.data(), digest.size());
}

struct Md5::State : EvpState {
  State() : EvpState(EVP_md5()) {}
};

Md5::Md5() : state_(std::make_unique<State>()) {}
Md5::~Md5() = default;
void Md5::update(const void* data, size_t size) { state_->update(data, size); }
std::string Md5::finish_hex() {
  std::array<uint8_t, 16> digest = state_->finish<16>();
  return to_hex(digest.data(), digest.size());
}

Result<std::string> sha256_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(kErrHashFile, "open " + path + ": " + std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return make_error(kErrHashFile, "read " + path + ": " + std::strerror(err));
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return h.finish_hex();
}

}  // namespace starling::crypto

#include "crypto/hash.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/hex.h"

namespace starling::crypto {

struct Sha256::State {
  crypto_hash_sha256_state st;
};

Sha256::Sha256() : state_(std::make_unique<State>()) { crypto_hash_sha256_init(&state_->st); }

Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t size) {
  if (size == 0) return;  // libsodium wants a non-null pointer even for no bytes
  crypto_hash_sha256_update(&state_->st, static_cast<const unsigned char*>(data), size);
}

std::array<uint8_t, 32> Sha256::finish() {
  std::array<uint8_t, 32> out{};
  crypto_hash_sha256_final(&state_->st, out.data());
  return out;
}

std::string Sha256::finish_hex() {
  std::array<uint8_t, 32> digest = finish();
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

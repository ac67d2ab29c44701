#include "crypto/keys.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "crypto/internal.h"

namespace starling::crypto {

namespace internal {

BioPtr memory_bio(const std::string& data) {
  if (data.size() > kMaxPemSize) return nullptr;
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  if (size <= 0 || data == nullptr) return {};
  return std::string(data, static_cast<size_t>(size));
}

int no_password(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return -1; }

PkeyPtr pkey_from_keypair(const Ed25519KeyPair& kp) {
  // libsodium's secret key is seed || public key; OpenSSL wants the 32-byte seed.
  return PkeyPtr(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, kp.secret_key.data(),
                                              crypto_sign_SEEDBYTES));
}

namespace {

std::string errno_text(int err) { return std::strerror(err); }

std::string dir_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status write_all(int fd, const std::string& contents, const std::string& path) {
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error(kErrKeyFile, "write " + path + ": " + errno_text(errno));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(kErrKeyFile, "open directory " + dir + ": " + errno_text(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return make_error(kErrKeyFile, "fsync directory " + dir + ": " + errno_text(err));
  return {};
}

}  // namespace

Status write_file_atomic(const std::string& path, const std::string& contents, mode_t mode,
                         bool exclusive) {
  init();
  // A random suffix, created exclusively: never follows or reuses someone else's file.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
    uint8_t rnd[8];
    randombytes_buf(rnd, sizeof rnd);
    tmp = path + ".tmp-" + to_hex(rnd, sizeof rnd);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0 && errno != EEXIST) {
      return make_error(kErrKeyFile, "create " + tmp + ": " + errno_text(errno));
    }
  }
  if (fd < 0) return make_error(kErrKeyFile, "create a temp file next to " + path);

  auto fail = [&](Error e) -> Status {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return e;
  };
  // The umask may have removed bits from `mode` (0644); the file gets exactly `mode`.
  if (::fchmod(fd, mode) != 0) {
    return fail(make_error(kErrKeyFile, "chmod " + tmp + ": " + errno_text(errno)));
  }
  if (Status s = write_all(fd, contents, tmp); !s) return fail(s.error());
  if (::fsync(fd) != 0) {
    return fail(make_error(kErrKeyFile, "fsync " + tmp + ": " + errno_text(errno)));
  }
  int rc = ::close(fd);
  fd = -1;
  if (rc != 0) return fail(make_error(kErrKeyFile, "close " + tmp + ": " + errno_text(errno)));

  if (exclusive) {
    // link() fails if `path` exists, so two writers never replace each other's file.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      if (err == EEXIST) return fail(make_error(kErrFileExists, path + " already exists"));
      return fail(make_error(kErrKeyFile, "link " + path + ": " + errno_text(err)));
    }
    ::unlink(tmp.c_str());
  } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(
        make_error(kErrKeyFile, "rename " + tmp + " to " + path + ": " + errno_text(errno)));
  }
  return fsync_dir(dir_of(path));
}

}  // namespace internal

using internal::clear_openssl_errors;

void init() {
  if (sodium_init() < 0) {
    std::fprintf(stderr, "starling: libsodium initialisation failed\n");
    std::abort();
  }
}

Ed25519KeyPair generate_ed25519() {
  init();
  Ed25519KeyPair kp;
  crypto_sign_keypair(kp.public_key.data(), kp.secret_key.data());
  return kp;
}

X25519Key x25519_public_from_ed25519(const PublicKey& pk) {
  X25519Key out{};
  if (crypto_sign_ed25519_pk_to_curve25519(out.data(), pk.data()) != 0) {
    std::fprintf(stderr, "starling: x25519_public_from_ed25519 on an invalid Ed25519 point\n");
    std::abort();
  }
  return out;
}

X25519Key x25519_secret_from_ed25519(const Ed25519KeyPair& kp) {
  X25519Key out{};
  crypto_sign_ed25519_sk_to_curve25519(out.data(), kp.secret_key.data());
  return out;
}

Result<X25519Key> x25519(const X25519Key& our_secret, const X25519Key& their_public) {
  X25519Key out{};
  // libsodium returns -1 when the result is all zeros (a low-order public key).
  if (crypto_scalarmult(out.data(), our_secret.data(), their_public.data()) != 0) {
    return make_error(kErrKeyAgreement, "x25519: peer public key is a low-order point");
  }
  return out;
}

NodeId node_id_of(const PublicKey& pk) { return NodeId(to_hex(pk.data(), pk.size())); }

std::string ed25519_private_key_pem(const Ed25519KeyPair& kp) {
  internal::PkeyPtr pkey = internal::pkey_from_keypair(kp);
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!pkey || !bio) {
    std::fprintf(stderr, "starling: OpenSSL cannot allocate an Ed25519 key\n");
    std::abort();
  }
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") for Ed25519.
  if (PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    std::fprintf(stderr, "starling: OpenSSL cannot encode an Ed25519 key\n");
    std::abort();
  }
  return internal::bio_contents(bio.get());
}

Result<Ed25519KeyPair> ed25519_from_private_key_pem(const std::string& pem) {
  init();
  if (pem.size() > internal::kMaxPemSize) {
    return make_error(kErrKeyFormat, "private key PEM is too large");
  }
  if (pem.find("-----BEGIN") == std::string::npos) {
    return make_error(kErrKeyFormat, "not a PEM private key");
  }
  internal::BioPtr bio = internal::memory_bio(pem);
  if (!bio) return make_error(kErrKeyFormat, "cannot read the private key PEM");
  internal::PkeyPtr pkey(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, internal::no_password, nullptr));
  if (!pkey) {
    clear_openssl_errors();
    return make_error(kErrKeyFormat, "private key PEM is malformed, truncated or encrypted");
  }
  if (EVP_PKEY_get_id(pkey.get()) != EVP_PKEY_ED25519) {
    return make_error(kErrKeyFormat, "private key is not an Ed25519 key");
  }
  uint8_t seed[crypto_sign_SEEDBYTES];
  size_t seed_len = sizeof seed;
  if (EVP_PKEY_get_raw_private_key(pkey.get(), seed, &seed_len) != 1 ||
      seed_len != crypto_sign_SEEDBYTES) {
    clear_openssl_errors();
    sodium_memzero(seed, sizeof seed);
    return make_error(kErrKeyFormat, "private key has no 32-byte Ed25519 seed");
  }
  Ed25519KeyPair kp;
  crypto_sign_seed_keypair(kp.public_key.data(), kp.secret_key.data(), seed);
  sodium_memzero(seed, sizeof seed);
  return kp;
}

Status write_secret_file(const std::string& path, const std::string& contents) {
  return internal::write_file_atomic(path, contents, 0600, /*exclusive=*/false);
}

Status write_public_file(const std::string& path, const std::string& contents) {
  return internal::write_file_atomic(path, contents, 0644, /*exclusive=*/false);
}

namespace {

constexpr size_t kMaxReadFile = 16 * 1024 * 1024;

std::string octal_mode(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

Result<std::string> read_file(const std::string& path, bool secret) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(kErrKeyFile, "open " + path + ": " + std::strerror(errno));
  }
  auto fail = [fd](Error e) -> Result<std::string> {
    ::close(fd);
    return e;
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return fail(make_error(kErrKeyFile, "stat " + path + ": " + std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) return fail(make_error(kErrKeyFile, path + " is not a regular file"));
  if (secret && (st.st_mode & 077) != 0) {
    return fail(make_error(kErrKeyFile, "key file " + path + " is readable by others (mode " +
                                            octal_mode(st.st_mode) + "); chmod 600 it"));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxReadFile) {
    return fail(make_error(kErrKeyFile, path + " is too large"));
  }
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(make_error(kErrKeyFile, "read " + path + ": " + std::strerror(errno)));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxReadFile) return fail(make_error(kErrKeyFile, path + " is too large"));
  }
  ::close(fd);
  return out;
}

Result<Ed25519KeyPair> load_or_create_node_key(const std::string& path) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 || errno != ENOENT) {
      Result<std::string> pem = read_file(path, /*secret=*/true);
      if (!pem) return pem.error();
      Result<Ed25519KeyPair> kp = ed25519_from_private_key_pem(*pem);
      if (!kp) return make_error(kErrKeyFile, "node key " + path + ": " + kp.error().message);
      return kp;
    }
    Ed25519KeyPair kp = generate_ed25519();
    Status s = internal::write_file_atomic(path, ed25519_private_key_pem(kp), 0600,
                                           /*exclusive=*/true);
    if (s) return kp;
    // Another process created the key between our check and our write: use theirs.
    if (s.error().code != internal::kErrFileExists) return s.error();
  }
  return make_error(kErrKeyFile, "node key " + path + " appeared and vanished; retry");
}

NetworkSecret generate_network_secret() {
  init();
  NetworkSecret s;
  randombytes_buf(s.bytes.data(), s.bytes.size());
  return s;
}

Status save_network_secret(const std::string& path, const NetworkSecret& secret) {
  return write_secret_file(path, to_hex(secret.bytes.data(), secret.bytes.size()) + "\n");
}

Result<NetworkSecret> load_network_secret(const std::string& path) {
  Result<std::string> text = read_file(path, /*secret=*/true);
  if (!text) return text.error();
  std::string_view hex = *text;
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ')) {
    hex.remove_suffix(1);
  }
  std::optional<Bytes> bytes = from_hex(hex);
  NetworkSecret s;
  if (!bytes || bytes->size() != s.bytes.size()) {
    return make_error(kErrKeyFile,
                      "network secret " + path + " is not 64 hex characters and a newline");
  }
  std::copy(bytes->begin(), bytes->end(), s.bytes.begin());
  sodium_memzero(bytes->data(), bytes->size());
  return s;
}

std::array<uint8_t, 32> noise_psk(const NetworkSecret& secret) {
  static constexpr char kLabel[] = "starling/noise-psk/v1";
  std::array<uint8_t, 32> out{};
  crypto_generichash(out.data(), out.size(), secret.bytes.data(), secret.bytes.size(),
                     reinterpret_cast<const uint8_t*>(kLabel), sizeof kLabel - 1);
  return out;
}

}  // namespace starling::crypto

// Internal to crypto/: OpenSSL ownership helpers and the atomic file writer shared by keys.cc
// and x509.cc. Never include this outside crypto/ (it pulls in OpenSSL).
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <sys/types.h>
#include <memory>
#include <string>

#include "common/result.h"
#include "crypto/keys.h"

namespace starling::crypto::internal {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

// Largest PEM we accept from anyone; a certificate or key is a few hundred bytes.
inline constexpr size_t kMaxPemSize = 64 * 1024;

// A read-only memory BIO over `data`; null if the data is too large.
BioPtr memory_bio(const std::string& data);
// The whole contents of a memory BIO.
std::string bio_contents(BIO* bio);
// Password callback that refuses: an encrypted PEM fails instead of prompting on a terminal.
int no_password(char* buf, int size, int rwflag, void* userdata);
// The OpenSSL form of an Ed25519 private key (from the 32-byte seed); null on failure.
PkeyPtr pkey_from_keypair(const Ed25519KeyPair& kp);
// Drops OpenSSL's thread-local error queue after an expected failure, so stale errors do
// not confuse the next OpenSSL user on this thread (libtorrent's SSL code reads it).
inline void clear_openssl_errors() { ERR_clear_error(); }

// The code write_file_atomic(exclusive=true) returns when `path` is already there.
inline constexpr char kErrFileExists[] = "crypto.file_exists";

// Writes `contents` to a fresh temp file next to `path` (O_CREAT|O_EXCL, `mode`), fsyncs it,
// then moves it to `path` and fsyncs the directory. With `exclusive`, fails with
// kErrFileExists instead of replacing an existing file (link + unlink, not rename).
// The temp file never survives a failure.
Status write_file_atomic(const std::string& path, const std::string& contents, mode_t mode,
                         bool exclusive);

}  // namespace starling::crypto::internal

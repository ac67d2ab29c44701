#include "crypto/x509.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "crypto/internal.h"

namespace starling::crypto {

using internal::BioPtr;
using internal::clear_openssl_errors;
using internal::PkeyPtr;
using internal::X509Ptr;

const char* role_name(Role role) {
  switch (role) {
    case Role::kSupernode:
      return "supernode";
    case Role::kPeer:
      return "peer";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

namespace {

Error cert_error(std::string message) {
  clear_openssl_errors();
  return make_error(kErrCertificate, std::move(message));
}

// Parses one PEM certificate; null if `pem` is not one.
X509Ptr parse_pem_cert(const std::string& pem) {
  BioPtr bio = internal::memory_bio(pem);
  if (!bio) return nullptr;
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, internal::no_password, nullptr));
}

std::string pem_of(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return {};
  return internal::bio_contents(bio.get());
}

bool add_name_entry(X509_NAME* name, int nid, const std::string& value) {
  return X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
                                    reinterpret_cast<const unsigned char*>(value.data()),
                                    static_cast<int>(value.size()), -1, 0) == 1;
}

bool add_ext(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A random positive 128-bit serial, as RFC 5280 recommends (unpredictable, unique).
bool set_random_serial(X509* cert) {
  uint8_t bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  bytes[0] = static_cast<uint8_t>((bytes[0] & 0x7f) | 0x01);
  BIGNUM* bn = BN_bin2bn(bytes, sizeof bytes, nullptr);
  if (bn == nullptr) return false;
  bool ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
  BN_free(bn);
  return ok;
}

bool set_validity(X509* cert, int64_t now, int64_t validity_seconds) {
  return ASN1_TIME_set(X509_getm_notBefore(cert), static_cast<time_t>(now)) != nullptr &&
         ASN1_TIME_set(X509_getm_notAfter(cert), static_cast<time_t>(now + validity_seconds)) !=
             nullptr;
}

std::optional<int64_t> unix_time(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
}

// The single value of `nid` in `name`: nullopt if absent or repeated.
std::optional<std::string> single_entry(const X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0 || X509_NAME_get_index_by_NID(name, nid, idx) >= 0) return std::nullopt;
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  if (data == nullptr || ASN1_STRING_length(data) < 0) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                     static_cast<size_t>(ASN1_STRING_length(data)));
}

// Untrusted text shown in an error message: printable ASCII only, bounded.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 32)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (s.size() > 32) out += "...";
  return out;
}

std::optional<Role> parse_role(const std::string& s) {
  for (Role r : {Role::kSupernode, Role::kPeer, Role::kAdmin}) {
    if (s == role_name(r)) return r;
  }
  return std::nullopt;
}

Status check_validity_inputs(int64_t now, int64_t validity_seconds) {
  if (validity_seconds <= 0 || now < 0 || now > INT64_MAX - validity_seconds) {
    return make_error(kErrCertificate, "certificate validity must be a positive duration");
  }
  return {};
}

}  // namespace

Result<std::string> make_network_ca(const Ed25519KeyPair& ca_key, const std::string& name,
                                    int64_t now, int64_t validity_seconds) {
  init();
  if (Status s = check_validity_inputs(now, validity_seconds); !s) return s.error();
  PkeyPtr pkey = internal::pkey_from_keypair(ca_key);
  X509Ptr cert(X509_new());
  if (!pkey || !cert) return cert_error("cannot allocate the CA certificate");

  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || !set_random_serial(cert.get()) ||
      !set_validity(cert.get(), now, validity_seconds) ||
      !add_name_entry(subject, NID_organizationName, "Starling") ||
      !add_name_entry(subject, NID_commonName, "Starling network " + name) ||
      X509_set_issuer_name(cert.get(), subject) != 1 ||
      X509_set_pubkey(cert.get(), pkey.get()) != 1) {
    return cert_error("cannot build the CA certificate (is the network name under 48 bytes?)");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  if (!add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
      !add_ext(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash")) {
    return cert_error("cannot add the CA certificate extensions");
  }
  // Ed25519 signs the message itself: no digest.
  if (X509_sign(cert.get(), pkey.get(), nullptr) <= 0) {
    return cert_error("cannot sign the CA certificate");
  }
  std::string pem = pem_of(cert.get());
  if (pem.empty()) return cert_error("cannot encode the CA certificate");
  return pem;
}

Result<std::string> issue_leaf(const Ed25519KeyPair& ca_key, const std::string& ca_cert_pem,
                               const PublicKey& subject_key, Role role, int64_t now,
                               int64_t validity_seconds) {
  init();
  if (Status s = check_validity_inputs(now, validity_seconds); !s) return s.error();
  X509Ptr ca = parse_pem_cert(ca_cert_pem);
  if (!ca) return cert_error("network CA certificate is not a PEM certificate");
  PkeyPtr ca_pkey = internal::pkey_from_keypair(ca_key);
  if (!ca_pkey) return cert_error("cannot load the CA key");
  if (X509_check_private_key(ca.get(), ca_pkey.get()) != 1) {
    return cert_error("CA key does not match the network CA certificate");
  }
  PkeyPtr leaf_pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, subject_key.data(),
                                                subject_key.size()));
  X509Ptr cert(X509_new());
  if (!leaf_pkey || !cert) return cert_error("cannot allocate the certificate");

  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || !set_random_serial(cert.get()) ||
      !set_validity(cert.get(), now, validity_seconds) ||
      !add_name_entry(subject, NID_organizationName, "Starling") ||
      !add_name_entry(subject, NID_organizationalUnitName, role_name(role)) ||
      !add_name_entry(subject, NID_commonName, node_id_of(subject_key).get()) ||
      X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.get())) != 1 ||
      X509_set_pubkey(cert.get(), leaf_pkey.get()) != 1) {
    return cert_error("cannot build the certificate");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca.get(), cert.get(), nullptr, nullptr, 0);
  // serverAuth and clientAuth: every node is both ends of libtorrent's mutual TLS.
  if (!add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature") ||
      !add_ext(cert.get(), &ctx, NID_ext_key_usage, "serverAuth,clientAuth") ||
      !add_ext(cert.get(), &ctx, NID_subject_alt_name, "DNS:*") ||
      !add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash") ||
      !add_ext(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always")) {
    return cert_error("cannot add the certificate extensions");
  }
  if (X509_sign(cert.get(), ca_pkey.get(), nullptr) <= 0) {
    return cert_error("cannot sign the certificate");
  }
  std::string pem = pem_of(cert.get());
  if (pem.empty()) return cert_error("cannot encode the certificate");
  return pem;
}

Result<CertInfo> verify_leaf(const std::string& ca_cert_pem, const std::string& leaf_pem,
                             int64_t now) {
  init();
  X509Ptr ca = parse_pem_cert(ca_cert_pem);
  if (!ca) return cert_error("network CA certificate is not a PEM certificate");
  EVP_PKEY* ca_pkey = X509_get0_pubkey(ca.get());
  if (ca_pkey == nullptr || EVP_PKEY_get_id(ca_pkey) != EVP_PKEY_ED25519) {
    return cert_error("network CA certificate has no Ed25519 key");
  }

  if (leaf_pem.size() > internal::kMaxPemSize) return cert_error("certificate is too large");
  if (leaf_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return cert_error("not a PEM certificate");
  }
  X509Ptr leaf = parse_pem_cert(leaf_pem);
  if (!leaf) return cert_error("certificate PEM is malformed or truncated");

  // Signature first: nothing else in an unsigned certificate deserves to be believed.
  if (X509_NAME_cmp(X509_get_issuer_name(leaf.get()), X509_get_subject_name(ca.get())) != 0 ||
      X509_verify(leaf.get(), ca_pkey) != 1) {
    return cert_error("certificate not issued by the network CA");
  }
  if (X509_check_ca(leaf.get()) != 0) {
    return cert_error("certificate is a CA certificate, not a node certificate");
  }

  time_t t = static_cast<time_t>(now);
  int before = X509_cmp_time(X509_get0_notBefore(leaf.get()), &t);
  int after = X509_cmp_time(X509_get0_notAfter(leaf.get()), &t);
  if (before == 0 || after == 0) return cert_error("certificate has a malformed validity time");
  if (before > 0) return cert_error("certificate is not valid yet");
  if (after < 0) return cert_error("certificate expired");
  int ca_before = X509_cmp_time(X509_get0_notBefore(ca.get()), &t);
  int ca_after = X509_cmp_time(X509_get0_notAfter(ca.get()), &t);
  if (ca_before == 0 || ca_after == 0 || ca_before > 0 || ca_after < 0) {
    return cert_error("network CA certificate is not valid at this time");
  }

  EVP_PKEY* leaf_pkey = X509_get0_pubkey(leaf.get());
  if (leaf_pkey == nullptr || EVP_PKEY_get_id(leaf_pkey) != EVP_PKEY_ED25519) {
    return cert_error("certificate key is not Ed25519");
  }
  CertInfo info;
  size_t key_len = info.public_key.size();
  if (EVP_PKEY_get_raw_public_key(leaf_pkey, info.public_key.data(), &key_len) != 1 ||
      key_len != info.public_key.size()) {
    return cert_error("certificate key is not a 32-byte Ed25519 key");
  }
  // Callers convert this key to X25519 for Noise; an invalid point must stop here.
  X25519Key unused{};
  if (crypto_sign_ed25519_pk_to_curve25519(unused.data(), info.public_key.data()) != 0) {
    return cert_error("certificate key is not a valid Ed25519 point");
  }

  const X509_NAME* subject = X509_get_subject_name(leaf.get());
  std::optional<std::string> cn = single_entry(subject, NID_commonName);
  if (!cn) return cert_error("certificate has no single CN");
  info.node = node_id_of(info.public_key);
  if (*cn != info.node.get()) return cert_error("certificate CN does not match its key");
  std::optional<std::string> ou = single_entry(subject, NID_organizationalUnitName);
  if (!ou) return cert_error("certificate has no single role (OU)");
  std::optional<Role> role = parse_role(*ou);
  if (!role) return cert_error("certificate role (OU) '" + printable(*ou) + "' is not known");
  info.role = *role;

  std::optional<int64_t> nb = unix_time(X509_get0_notBefore(leaf.get()));
  std::optional<int64_t> na = unix_time(X509_get0_notAfter(leaf.get()));
  if (!nb || !na) return cert_error("certificate has a malformed validity time");
  info.not_before = *nb;
  info.not_after = *na;
  return info;
}

NetworkFiles network_files(const std::string& dir) {
  return NetworkFiles{dir + "/network.secret", dir + "/ca.key", dir + "/ca.pem"};
}

Result<NetworkFiles> init_network(const std::string& dir, const std::string& name, int64_t now) {
  init();
  constexpr int64_t kCaValiditySeconds = int64_t{3653} * 24 * 3600;  // 10 years
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(kErrKeyFile, "create directory " + dir + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return make_error(kErrKeyFile, dir + " is not a directory");
  }
  NetworkFiles files = network_files(dir);
  if (::lstat(files.secret_path.c_str(), &st) == 0) {
    return make_error(kErrKeyFile, "a network already exists in " + dir);
  }

  Ed25519KeyPair ca_key = generate_ed25519();
  Result<std::string> ca_pem = make_network_ca(ca_key, name, now, kCaValiditySeconds);
  if (!ca_pem) return ca_pem.error();
  std::string ca_key_pem = ed25519_private_key_pem(ca_key);
  sodium_memzero(ca_key.secret_key.data(), ca_key.secret_key.size());
  if (Status s = write_secret_file(files.ca_key_path, ca_key_pem); !s) return s.error();
  if (Status s = write_public_file(files.ca_cert_path, *ca_pem); !s) return s.error();

  // The secret goes last and exclusively: its presence means "a complete network is here",
  // and of two concurrent inits only one can claim the directory.
  NetworkSecret secret = generate_network_secret();
  std::string hex = to_hex(secret.bytes.data(), secret.bytes.size()) + "\n";
  sodium_memzero(secret.bytes.data(), secret.bytes.size());
  Status s = internal::write_file_atomic(files.secret_path, hex, 0600, /*exclusive=*/true);
  sodium_memzero(hex.data(), hex.size());
  if (!s) {
    if (s.error().code == internal::kErrFileExists) {
      return make_error(kErrKeyFile, "a network already exists in " + dir);
    }
    return s.error();
  }
  return files;
}

Result<CertInfo> verify_session_certificate(const std::string& ca_cert_pem,
                                            const std::string& leaf_pem,
                                            const X25519Key& session_static_key, int64_t now) {
  auto info = verify_leaf(ca_cert_pem, leaf_pem, now);
  if (!info) return info.error();
  // verify_leaf has checked the key is a valid Ed25519 point, so the conversion succeeds.
  X25519Key converted{};
  if (crypto_sign_ed25519_pk_to_curve25519(converted.data(), info->public_key.data()) != 0 ||
      sodium_memcmp(converted.data(), session_static_key.data(), converted.size()) != 0) {
    return make_error(kErrCertificate,
                      "the certificate is not for the key this session was made with");
  }
  return info;
}

}  // namespace starling::crypto

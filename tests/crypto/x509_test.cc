#include "crypto/x509.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

#include "tests/crypto/temp_dir.h"

namespace starling::crypto {
namespace {

using testing::file_mode;
using testing::TempDir;

constexpr int64_t kNow = 1'700'000'000;
constexpr int64_t kHour = 3600;
constexpr int64_t kYear = 365 * 24 * kHour;

// ---- OpenSSL helpers for building certificates our issuer would never produce. ----

X509* parse(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return x;
}

std::string to_pem(X509* x) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string der_of(const std::string& pem) {
  X509* x = parse(pem);
  unsigned char* der = nullptr;
  int n = i2d_X509(x, &der);
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  X509_free(x);
  return out;
}

std::string pem_of_der(const std::string& der) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio(bio, "CERTIFICATE", "", reinterpret_cast<const unsigned char*>(der.data()),
                static_cast<long>(der.size()));
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

EVP_PKEY* ossl_key(const Ed25519KeyPair& kp) {
  return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, kp.secret_key.data(), 32);
}

struct LeafSpec {
  EVP_PKEY* subject_key = nullptr;  // public part goes into the certificate
  std::string cn;
  std::string ou = "peer";
  bool ca = false;
};

// A certificate signed by `ca_kp` with arbitrary subject fields.
std::string custom_leaf(const Ed25519KeyPair& ca_kp, const std::string& ca_pem,
                        const LeafSpec& spec) {
  X509* ca = parse(ca_pem);
  X509* x = X509_new();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  ASN1_TIME_set(X509_getm_notBefore(x), kNow);
  ASN1_TIME_set(X509_getm_notAfter(x), kNow + kHour);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.ou.data()),
                             static_cast<int>(spec.ou.size()), -1, 0);
  X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.cn.data()),
                             static_cast<int>(spec.cn.size()), -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(ca));
  X509_set_pubkey(x, spec.subject_key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints,
                                            spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  EVP_PKEY* ca_key = ossl_key(ca_kp);
  EXPECT_GT(X509_sign(x, ca_key, nullptr), 0);
  std::string pem = to_pem(x);
  EVP_PKEY_free(ca_key);
  X509_free(x);
  X509_free(ca);
  return pem;
}

class X509Test : public ::testing::Test {
 protected:
  void SetUp() override {
    init();
    ca_kp_ = generate_ed25519();
    Result<std::string> ca = make_network_ca(ca_kp_, "test", kNow - kHour, 10 * kYear);
    ASSERT_TRUE(ca) << ca.error().message;
    ca_pem_ = *ca;
    node_ = generate_ed25519();
  }

  std::string leaf(Role role = Role::kPeer, int64_t now = kNow, int64_t validity = 6 * kHour) {
    Result<std::string> r = issue_leaf(ca_kp_, ca_pem_, node_.public_key, role, now, validity);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : std::string();
  }

  void expect_rejected(const std::string& pem, const std::string& message, int64_t now = kNow) {
    Result<CertInfo> r = verify_leaf(ca_pem_, pem, now);
    ASSERT_FALSE(r) << "accepted: " << message;
    EXPECT_EQ(r.error().code, kErrCertificate);
    EXPECT_EQ(r.error().message, message);
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    EXPECT_EQ(ERR_peek_error(), 0u) << "OpenSSL error queue left dirty";
  }

  Ed25519KeyPair ca_kp_;
  std::string ca_pem_;
  Ed25519KeyPair node_;
};

TEST(RoleTest, Names) {
  EXPECT_STREQ(role_name(Role::kSupernode), "supernode");
  EXPECT_STREQ(role_name(Role::kPeer), "peer");
  EXPECT_STREQ(role_name(Role::kAdmin), "admin");
}

TEST_F(X509Test, IssueAndVerifyRoundTripForEveryRole) {
  for (Role role : {Role::kSupernode, Role::kPeer, Role::kAdmin}) {
    std::string pem = leaf(role);
    Result<CertInfo> info = verify_leaf(ca_pem_, pem, kNow + kHour);
    ASSERT_TRUE(info) << info.error().message;
    EXPECT_EQ(info->role, role);
    EXPECT_EQ(info->node, node_id_of(node_.public_key));
    EXPECT_EQ(info->public_key, node_.public_key);
    EXPECT_EQ(info->not_before, kNow);
    EXPECT_EQ(info->not_after, kNow + 6 * kHour);
  }
}

TEST_F(X509Test, LeafCarriesTheFieldsLibtorrentNeeds) {
  X509* x = parse(leaf());
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(X509_check_ca(x), 0);
  // libtorrent matches the SAN itself (torrent name or "*"); OpenSSL's X509_check_host
  // would not accept a bare "*", so check the raw entry.
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  ASSERT_NE(sans, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(sans), 1);
  const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, 0);
  ASSERT_EQ(gn->type, GEN_DNS);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName))), "*");
  GENERAL_NAMES_free(sans);
  X509_free(x);

  X509* ca = parse(ca_pem_);
  ASSERT_NE(ca, nullptr);
  EXPECT_EQ(X509_check_ca(ca), 1);
  X509_free(ca);
}

TEST_F(X509Test, SerialsAreRandom) {
  X509* a = parse(leaf());
  X509* b = parse(leaf());
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
  X509_free(a);
  X509_free(b);
}

TEST_F(X509Test, LeafFromAnotherCaIsRejected) {
  // Same name, different key: only the signature tells them apart.
  Ed25519KeyPair other = generate_ed25519();
  Result<std::string> other_ca = make_network_ca(other, "test", kNow - kHour, kYear);
  ASSERT_TRUE(other_ca);
  Result<std::string> pem =
      issue_leaf(other, *other_ca, node_.public_key, Role::kPeer, kNow, kHour);
  ASSERT_TRUE(pem);
  expect_rejected(*pem, "certificate not issued by the network CA");

  Result<std::string> named = make_network_ca(other, "elsewhere", kNow - kHour, kYear);
  ASSERT_TRUE(named);
  pem = issue_leaf(other, *named, node_.public_key, Role::kPeer, kNow, kHour);
  ASSERT_TRUE(pem);
  expect_rejected(*pem, "certificate not issued by the network CA");
}

TEST_F(X509Test, IssueRefusesAKeyThatIsNotTheCas) {
  Result<std::string> r =
      issue_leaf(generate_ed25519(), ca_pem_, node_.public_key, Role::kPeer, kNow, kHour);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "CA key does not match the network CA certificate");
}

TEST_F(X509Test, ExpiredAndNotYetValidAreRejected) {
  std::string pem = leaf(Role::kPeer, kNow, kHour);
  EXPECT_TRUE(verify_leaf(ca_pem_, pem, kNow));
  EXPECT_TRUE(verify_leaf(ca_pem_, pem, kNow + kHour - 1));
  expect_rejected(pem, "certificate expired", kNow + kHour + 1);
  expect_rejected(pem, "certificate expired", kNow + 100 * kYear);
  expect_rejected(pem, "certificate is not valid yet", kNow - 1);
  expect_rejected(pem, "certificate is not valid yet", 0);
}

TEST_F(X509Test, ExpiredCaIsRejected) {
  std::string pem = leaf(Role::kPeer, kNow + 11 * kYear, kHour);
  expect_rejected(pem, "network CA certificate is not valid at this time", kNow + 11 * kYear);
}

TEST_F(X509Test, TamperedCertificateIsRejected) {
  std::string der = der_of(leaf());
  // Change one character of the node id in the CN (inside the signed part).
  std::string id = node_id_of(node_.public_key).get();
  size_t at = der.find(id);
  ASSERT_NE(at, std::string::npos);
  std::string tbs = der;
  tbs[at] = tbs[at] == 'a' ? 'b' : 'a';
  expect_rejected(pem_of_der(tbs), "certificate not issued by the network CA");
  // Flip a bit of the signature (the last bytes of the DER).
  std::string sig = der;
  sig[sig.size() - 1] = static_cast<char>(sig[sig.size() - 1] ^ 0x01);
  expect_rejected(pem_of_der(sig), "certificate not issued by the network CA");
  // Flip every byte in turn: never accepted, never a crash.
  for (size_t i = 0; i < der.size(); ++i) {
    std::string t = der;
    t[i] = static_cast<char>(t[i] ^ 0x40);
    Result<CertInfo> r = verify_leaf(ca_pem_, pem_of_der(t), kNow);
    EXPECT_FALSE(r) << "byte " << i;
  }
}

TEST_F(X509Test, GarbageEmptyAndTruncatedPemAreRejected) {
  expect_rejected("", "not a PEM certificate");
  expect_rejected("garbage", "not a PEM certificate");
  expect_rejected(std::string(100, '\0'), "not a PEM certificate");
  expect_rejected(ed25519_private_key_pem(node_), "not a PEM certificate");
  std::string pem = leaf();
  for (size_t n : {size_t{28}, size_t{40}, pem.size() / 2, pem.size() - 30}) {
    expect_rejected(pem.substr(0, n), "certificate PEM is malformed or truncated");
  }
  expect_rejected("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                  "certificate PEM is malformed or truncated");
  expect_rejected(pem_of_der("\x30\x03\x02\x01\x01"), "certificate PEM is malformed or truncated");
  expect_rejected(pem + std::string(70000, 'A'), "certificate is too large");
  // A bad CA PEM is reported as such, not as a bad leaf.
  Result<CertInfo> r = verify_leaf("nope", pem, kNow);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "network CA certificate is not a PEM certificate");
}

TEST_F(X509Test, CnThatDoesNotMatchTheKeyIsRejected) {
  EVP_PKEY* key =
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, node_.public_key.data(), 32);
  LeafSpec spec;
  spec.subject_key = key;
  spec.cn = node_id_of(generate_ed25519().public_key).get();
  expect_rejected(custom_leaf(ca_kp_, ca_pem_, spec), "certificate CN does not match its key");
  // Upper-case hex of the right key is not the node id either.
  spec.cn = node_id_of(node_.public_key).get();
  for (char& c : spec.cn) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (spec.cn != node_id_of(node_.public_key).get()) {
    expect_rejected(custom_leaf(ca_kp_, ca_pem_, spec), "certificate CN does not match its key");
  }
  // The right CN with a made-up role.
  spec.cn = node_id_of(node_.public_key).get();
  spec.ou = "wizard\n";
  expect_rejected(custom_leaf(ca_kp_, ca_pem_, spec),
                  "certificate role (OU) 'wizard?' is not known");
  spec.ou = "peer";
  EXPECT_TRUE(verify_leaf(ca_pem_, custom_leaf(ca_kp_, ca_pem_, spec), kNow));
  EVP_PKEY_free(key);
}

TEST_F(X509Test, NonEd25519LeafAndCaAsLeafAreRejected) {
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  ASSERT_NE(ec, nullptr);
  LeafSpec spec;
  spec.subject_key = ec;
  spec.cn = node_id_of(node_.public_key).get();
  expect_rejected(custom_leaf(ca_kp_, ca_pem_, spec), "certificate key is not Ed25519");
  EVP_PKEY_free(ec);

  expect_rejected(ca_pem_, "certificate is a CA certificate, not a node certificate");
  EVP_PKEY* key =
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, node_.public_key.data(), 32);
  spec.subject_key = key;
  spec.ca = true;
  expect_rejected(custom_leaf(ca_kp_, ca_pem_, spec),
                  "certificate is a CA certificate, not a node certificate");
  EVP_PKEY_free(key);
}

// libtorrent's SSL context loads exactly these PEMs; then both ends of a TLS 1.3 connection
// verify each other against the network CA.
SSL_CTX* tls_context(const std::string& ca_pem, const std::string& cert_pem,
                     const std::string& key_pem, int64_t now) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  EXPECT_NE(ctx, nullptr);
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  X509* cert = parse(cert_pem);
  EXPECT_NE(cert, nullptr);
  EXPECT_EQ(SSL_CTX_use_certificate(ctx, cert), 1);
  X509_free(cert);
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  EXPECT_NE(key, nullptr);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx, key), 1);
  EVP_PKEY_free(key);
  EXPECT_EQ(SSL_CTX_check_private_key(ctx), 1);
  X509* ca = parse(ca_pem);
  EXPECT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca), 1);
  X509_free(ca);
  X509_VERIFY_PARAM_set_time(SSL_CTX_get0_param(ctx), static_cast<time_t>(now));
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return ctx;
}

// Runs a handshake over an in-memory BIO pair; true if both sides complete it.
bool handshake(SSL_CTX* client_ctx, SSL_CTX* server_ctx) {
  SSL* client = SSL_new(client_ctx);
  SSL* server = SSL_new(server_ctx);
  BIO* cb = nullptr;
  BIO* sb = nullptr;
  BIO_new_bio_pair(&cb, 0, &sb, 0);
  SSL_set_bio(client, cb, cb);
  SSL_set_bio(server, sb, sb);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  bool client_done = false;
  bool server_done = false;
  bool failed = false;
  for (int i = 0; i < 20 && !(client_done && server_done) && !failed; ++i) {
    for (auto [ssl, done] : {std::pair{client, &client_done}, std::pair{server, &server_done}}) {
      if (*done) continue;
      int rc = SSL_do_handshake(ssl);
      if (rc == 1) {
        *done = true;
      } else {
        int err = SSL_get_error(ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) failed = true;
      }
    }
  }
  // TLS 1.3: the server verifies the client certificate only after reading its Finished,
  // so exchange one byte each way to flush any alert.
  if (client_done && server_done) {
    char c = 'x';
    if (SSL_write(client, &c, 1) != 1) failed = true;
    if (!failed && SSL_read(server, &c, 1) != 1) failed = true;
  }
  bool ok = client_done && server_done && !failed && SSL_get_verify_result(client) == X509_V_OK &&
            SSL_get_verify_result(server) == X509_V_OK &&
            SSL_get0_peer_certificate(client) != nullptr &&
            SSL_get0_peer_certificate(server) != nullptr;
  SSL_free(client);
  SSL_free(server);
  ERR_clear_error();
  return ok;
}

TEST_F(X509Test, LeafAndKeyLoadIntoAnSslContextAndCompleteMutualTls) {
  Ed25519KeyPair a = generate_ed25519();
  Ed25519KeyPair b = generate_ed25519();
  Result<std::string> a_pem = issue_leaf(ca_kp_, ca_pem_, a.public_key, Role::kPeer, kNow, kHour);
  Result<std::string> b_pem =
      issue_leaf(ca_kp_, ca_pem_, b.public_key, Role::kSupernode, kNow, kHour);
  ASSERT_TRUE(a_pem);
  ASSERT_TRUE(b_pem);
  SSL_CTX* a_ctx = tls_context(ca_pem_, *a_pem, ed25519_private_key_pem(a), kNow + 60);
  SSL_CTX* b_ctx = tls_context(ca_pem_, *b_pem, ed25519_private_key_pem(b), kNow + 60);
  EXPECT_TRUE(handshake(a_ctx, b_ctx));

  // A node certified by another CA cannot connect.
  Ed25519KeyPair other_ca = generate_ed25519();
  Result<std::string> other_ca_pem = make_network_ca(other_ca, "evil", kNow - kHour, kYear);
  ASSERT_TRUE(other_ca_pem);
  Result<std::string> c_pem =
      issue_leaf(other_ca, *other_ca_pem, b.public_key, Role::kPeer, kNow, kHour);
  ASSERT_TRUE(c_pem);
  SSL_CTX* c_ctx = tls_context(*other_ca_pem, *c_pem, ed25519_private_key_pem(b), kNow + 60);
  EXPECT_FALSE(handshake(c_ctx, a_ctx));
  EXPECT_FALSE(handshake(a_ctx, c_ctx));

  // A certificate and a key that do not belong together are refused by the context.
  SSL_CTX* mismatch = SSL_CTX_new(TLS_method());
  X509* cert = parse(*a_pem);
  ASSERT_EQ(SSL_CTX_use_certificate(mismatch, cert), 1);
  std::string b_key = ed25519_private_key_pem(b);
  BIO* bio = BIO_new_mem_buf(b_key.data(), static_cast<int>(b_key.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  SSL_CTX_use_PrivateKey(mismatch, key);
  EXPECT_NE(SSL_CTX_check_private_key(mismatch), 1);
  ERR_clear_error();
  EVP_PKEY_free(key);
  BIO_free(bio);
  X509_free(cert);
  SSL_CTX_free(mismatch);
  SSL_CTX_free(a_ctx);
  SSL_CTX_free(b_ctx);
  SSL_CTX_free(c_ctx);
}

TEST_F(X509Test, OpenSslChainVerificationAcceptsOurLeaves) {
  X509* leaf_x = parse(leaf());
  X509* ca = parse(ca_pem_);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  for (int purpose : {X509_PURPOSE_SSL_CLIENT, X509_PURPOSE_SSL_SERVER}) {
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    ASSERT_EQ(X509_STORE_CTX_init(ctx, store, leaf_x, nullptr), 1);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), kNow + 60);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
    EXPECT_EQ(X509_verify_cert(ctx), 1)
        << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    X509_STORE_CTX_free(ctx);
  }
  X509_STORE_free(store);
  X509_free(ca);
  X509_free(leaf_x);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(InitNetworkTest, CreatesFilesWithModesAndRefusesToOverwrite) {
  init();
  TempDir tmp;
  std::string dir = tmp.file("net");
  Result<NetworkFiles> files = init_network(dir, "prod", kNow);
  ASSERT_TRUE(files) << files.error().message;
  EXPECT_EQ(file_mode(dir), 0700u);
  EXPECT_EQ(files->secret_path, dir + "/network.secret");
  EXPECT_EQ(file_mode(files->secret_path), 0600u);
  EXPECT_EQ(file_mode(files->ca_key_path), 0600u);
  EXPECT_EQ(file_mode(files->ca_cert_path), 0644u);
  EXPECT_EQ(testing::TempDir::entries_of(dir),
            (std::vector<std::string>{"ca.key", "ca.pem", "network.secret"}));

  Result<NetworkSecret> secret = load_network_secret(files->secret_path);
  ASSERT_TRUE(secret) << secret.error().message;
  Result<std::string> key_pem = read_file(files->ca_key_path, true);
  ASSERT_TRUE(key_pem);
  EXPECT_EQ(key_pem->rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  Result<Ed25519KeyPair> ca_key = ed25519_from_private_key_pem(*key_pem);
  ASSERT_TRUE(ca_key);
  std::string ca_pem = slurp(files->ca_cert_path);
  X509* ca = parse(ca_pem);
  ASSERT_NE(ca, nullptr);
  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "Starling network prod");
  X509_free(ca);

  // The CA is good for ten years.
  Ed25519KeyPair node = generate_ed25519();
  int64_t later = kNow + 9 * kYear;
  Result<std::string> leaf =
      issue_leaf(*ca_key, ca_pem, node.public_key, Role::kAdmin, later, kHour);
  ASSERT_TRUE(leaf);
  EXPECT_TRUE(verify_leaf(ca_pem, *leaf, later));
  int64_t too_late = kNow + 11 * kYear;
  leaf = issue_leaf(*ca_key, ca_pem, node.public_key, Role::kAdmin, too_late, kHour);
  ASSERT_TRUE(leaf);
  EXPECT_FALSE(verify_leaf(ca_pem, *leaf, too_late));

  std::string before = slurp(files->ca_key_path);
  Result<NetworkFiles> again = init_network(dir, "prod", kNow);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, "a network already exists in " + dir);
  EXPECT_EQ(slurp(files->ca_key_path), before);
}

TEST_F(X509Test, SessionCertificateMustBeForTheSessionKey) {
  const std::string pem = leaf(Role::kSupernode);
  auto ok =
      verify_session_certificate(ca_pem_, pem, x25519_public_from_ed25519(node_.public_key), kNow);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->role, Role::kSupernode);

  const Ed25519KeyPair other = generate_ed25519();
  auto wrong =
      verify_session_certificate(ca_pem_, pem, x25519_public_from_ed25519(other.public_key), kNow);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, kErrCertificate);
  EXPECT_EQ(wrong.error().message, "the certificate is not for the key this session was made with");

  auto garbage = verify_session_certificate(ca_pem_, "junk", X25519Key{}, kNow);
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().message, "not a PEM certificate");
}

}  // namespace
}  // namespace starling::crypto

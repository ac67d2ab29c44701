#include "crypto/keys.h"

#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "tests/crypto/temp_dir.h"

namespace starling::crypto {
namespace {

using testing::file_mode;
using testing::TempDir;

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override { init(); }
  TempDir dir_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(KeysTest, SecretFileIsExactly0600EvenWithPermissiveUmask) {
  mode_t old = ::umask(0);
  Status s = write_secret_file(dir_.file("k"), "secret");
  ::umask(old);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(file_mode(dir_.file("k")), 0600u);
  EXPECT_EQ(slurp(dir_.file("k")), "secret");
}

TEST_F(KeysTest, PublicFileIsExactly0644EvenWithStrictUmask) {
  mode_t old = ::umask(077);
  Status s = write_public_file(dir_.file("p"), "public");
  ::umask(old);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(file_mode(dir_.file("p")), 0644u);
}

TEST_F(KeysTest, OverwriteReplacesContentAndLeavesNoTempFiles) {
  ASSERT_TRUE(write_secret_file(dir_.file("k"), "one"));
  ASSERT_TRUE(write_secret_file(dir_.file("k"), "two"));
  EXPECT_EQ(slurp(dir_.file("k")), "two");
  EXPECT_EQ(file_mode(dir_.file("k")), 0600u);
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{"k"});
}

TEST_F(KeysTest, FailedWriteLeavesNoTempFiles) {
  // The rename onto a directory fails after the temp file has been written and fsynced.
  ASSERT_EQ(::mkdir(dir_.file("target").c_str(), 0700), 0);
  Status s = write_secret_file(dir_.file("target"), "secret");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, kErrKeyFile);
  EXPECT_NE(s.error().message.find("target"), std::string::npos) << s.error().message;
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{"target"});
}

TEST_F(KeysTest, WriteIntoMissingDirectoryFailsCleanly) {
  Status s = write_secret_file(dir_.file("nope/k"), "secret");
  ASSERT_FALSE(s);
  EXPECT_TRUE(dir_.entries().empty());
}

TEST_F(KeysTest, GroupReadableSecretIsRefused) {
  std::string path = dir_.file("k");
  ASSERT_TRUE(write_secret_file(path, "secret"));
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  Result<std::string> r = read_file(path, /*secret=*/true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, kErrKeyFile);
  EXPECT_EQ(r.error().message,
            "key file " + path + " is readable by others (mode 0640); chmod 600 it");
  // The same bytes are fine as a non-secret file.
  Result<std::string> pub = read_file(path, /*secret=*/false);
  ASSERT_TRUE(pub);
  EXPECT_EQ(*pub, "secret");

  ASSERT_EQ(::chmod(path.c_str(), 0604), 0);
  EXPECT_FALSE(read_file(path, true));
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(read_file(path, true));
}

TEST_F(KeysTest, ReadMissingFileNamesThePath) {
  Result<std::string> r = read_file(dir_.file("missing"), true);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(dir_.file("missing")), std::string::npos);
}

TEST_F(KeysTest, NodeKeyLoadOrCreateIsStable) {
  std::string path = dir_.file("node.key");
  Result<Ed25519KeyPair> first = load_or_create_node_key(path);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(file_mode(path), 0600u);
  Result<Ed25519KeyPair> second = load_or_create_node_key(path);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(first->public_key, second->public_key);
  EXPECT_EQ(first->secret_key, second->secret_key);
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{"node.key"});
}

TEST_F(KeysTest, NodeKeyGroupReadableIsRefused) {
  std::string path = dir_.file("node.key");
  ASSERT_TRUE(load_or_create_node_key(path));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  Result<Ed25519KeyPair> r = load_or_create_node_key(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "key file " + path + " is readable by others (mode 0644); chmod 600 it");
}

TEST_F(KeysTest, NodeKeyGarbageFileIsAnErrorNotAReplacement) {
  std::string path = dir_.file("node.key");
  ASSERT_TRUE(write_secret_file(path, "not a key"));
  Result<Ed25519KeyPair> r = load_or_create_node_key(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(slurp(path), "not a key");
}

TEST_F(KeysTest, Ed25519PemRoundTrip) {
  Ed25519KeyPair kp = generate_ed25519();
  std::string pem = ed25519_private_key_pem(kp);
  EXPECT_EQ(pem.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << pem;
  Result<Ed25519KeyPair> back = ed25519_from_private_key_pem(pem);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->public_key, kp.public_key);
  EXPECT_EQ(back->secret_key, kp.secret_key);

  // OpenSSL derives the same public key from the PEM.
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  ASSERT_NE(pkey, nullptr);
  PublicKey pk{};
  size_t len = pk.size();
  ASSERT_EQ(EVP_PKEY_get_raw_public_key(pkey, pk.data(), &len), 1);
  EXPECT_EQ(pk, kp.public_key);
  EVP_PKEY_free(pkey);
  BIO_free(bio);
}

TEST_F(KeysTest, PrivateKeyPemRejectsGarbageAndOtherKeyTypes) {
  for (std::string bad :
       {std::string(), std::string("garbage"),
        std::string("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        std::string(1 << 20, 'A')}) {
    Result<Ed25519KeyPair> r = ed25519_from_private_key_pem(bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, kErrKeyFormat);
  }
  std::string good = ed25519_private_key_pem(generate_ed25519());
  EXPECT_FALSE(ed25519_from_private_key_pem(good.substr(0, good.size() / 2)));

  // A P-256 key is a valid PEM but not ours.
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  ASSERT_NE(ec, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio, ec, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  Result<Ed25519KeyPair> r =
      ed25519_from_private_key_pem(std::string(data, static_cast<size_t>(n)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "private key is not an Ed25519 key");

  // An encrypted key fails instead of prompting for a password.
  BIO* enc = BIO_new(BIO_s_mem());
  char pass[] = "pw";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(enc, ec, EVP_aes_128_cbc(), pass, 2, nullptr, nullptr),
            1);
  n = BIO_get_mem_data(enc, &data);
  EXPECT_FALSE(ed25519_from_private_key_pem(std::string(data, static_cast<size_t>(n))));
  BIO_free(enc);
  BIO_free(bio);
  EVP_PKEY_free(ec);
}

TEST_F(KeysTest, X25519ConversionMatchesLibsodium) {
  for (int i = 0; i < 16; ++i) {
    Ed25519KeyPair kp = generate_ed25519();
    X25519Key pub = x25519_public_from_ed25519(kp.public_key);
    X25519Key sec = x25519_secret_from_ed25519(kp);
    X25519Key want_pub{}, want_sec{};
    ASSERT_EQ(crypto_sign_ed25519_pk_to_curve25519(want_pub.data(), kp.public_key.data()), 0);
    ASSERT_EQ(crypto_sign_ed25519_sk_to_curve25519(want_sec.data(), kp.secret_key.data()), 0);
    EXPECT_EQ(pub, want_pub);
    EXPECT_EQ(sec, want_sec);
    // The converted secret is the scalar of the converted public key.
    X25519Key derived{};
    ASSERT_EQ(crypto_scalarmult_base(derived.data(), sec.data()), 0);
    EXPECT_EQ(derived, pub);
  }
}

TEST_F(KeysTest, X25519AgreesBetweenTwoNodesAndRejectsLowOrderPoints) {
  Ed25519KeyPair a = generate_ed25519();
  Ed25519KeyPair b = generate_ed25519();
  Result<X25519Key> ab =
      x25519(x25519_secret_from_ed25519(a), x25519_public_from_ed25519(b.public_key));
  Result<X25519Key> ba =
      x25519(x25519_secret_from_ed25519(b), x25519_public_from_ed25519(a.public_key));
  ASSERT_TRUE(ab);
  ASSERT_TRUE(ba);
  EXPECT_EQ(*ab, *ba);

  X25519Key zero{};
  Result<X25519Key> r = x25519(x25519_secret_from_ed25519(a), zero);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, kErrKeyAgreement);
  X25519Key one{};
  one[0] = 1;  // u = 1 has order 4; a clamped scalar (a multiple of 8) maps it to zero
  EXPECT_FALSE(x25519(x25519_secret_from_ed25519(a), one));
}

TEST_F(KeysTest, NodeIdIsLowercaseHexOfThePublicKey) {
  PublicKey pk{};
  for (size_t i = 0; i < pk.size(); ++i) pk[i] = static_cast<uint8_t>(0xa0 + i);
  NodeId id = node_id_of(pk);
  EXPECT_EQ(id.get().size(), 64u);
  EXPECT_EQ(id.get().substr(0, 6), "a0a1a2");
}

TEST_F(KeysTest, NetworkSecretRoundTripAndPsk) {
  std::string path = dir_.file("network.secret");
  NetworkSecret s = generate_network_secret();
  ASSERT_TRUE(save_network_secret(path, s));
  EXPECT_EQ(file_mode(path), 0600u);
  std::string text = slurp(path);
  ASSERT_EQ(text.size(), 65u);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.substr(0, 64), to_hex(s.bytes.data(), s.bytes.size()));
  Result<NetworkSecret> back = load_network_secret(path);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->bytes, s.bytes);

  EXPECT_EQ(noise_psk(s), noise_psk(*back));
  NetworkSecret other = generate_network_secret();
  EXPECT_NE(noise_psk(s), noise_psk(other));
  EXPECT_NE(noise_psk(s), s.bytes);

  // Keyed BLAKE2b-256: key = label, message = secret.
  static constexpr char kLabel[] = "starling/noise-psk/v1";
  std::array<uint8_t, 32> want{};
  crypto_generichash(want.data(), want.size(), s.bytes.data(), s.bytes.size(),
                     reinterpret_cast<const uint8_t*>(kLabel), sizeof kLabel - 1);
  EXPECT_EQ(noise_psk(s), want);
}

TEST_F(KeysTest, NetworkSecretRejectsMalformedFiles) {
  std::string path = dir_.file("network.secret");
  for (std::string bad : {std::string(""), std::string("abcd\n"), std::string(64, 'z') + "\n",
                          std::string(66, 'a') + "\n"}) {
    ASSERT_TRUE(write_secret_file(path, bad));
    Result<NetworkSecret> r = load_network_secret(path);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, kErrKeyFile);
  }
}

}  // namespace
}  // namespace starling::crypto

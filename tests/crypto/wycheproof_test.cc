// Project Wycheproof vectors against the libsodium primitives the mesh uses, and against our
// X25519 wrapper's low-order policy. Every case is counted; a file with no usable case fails.
#include <gtest/gtest.h>
#include <sodium.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/hex.h"
#include "crypto/keys.h"

namespace starling::crypto {
namespace {

using nlohmann::json;

json load(const std::string& name) {
  std::string path = std::string(STARLING_SOURCE_DIR) + "/../shared/testdata/wycheproof/" + name;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path;
  if (!in.good()) return json::object();
  return json::parse(in);
}

Bytes hex(const json& v) {
  std::optional<Bytes> b = from_hex(v.get<std::string>());
  EXPECT_TRUE(b.has_value()) << v;
  return b.value_or(Bytes{});
}

template <size_t N>
std::array<uint8_t, N> fixed(const Bytes& b) {
  std::array<uint8_t, N> out{};
  EXPECT_EQ(b.size(), N);
  std::copy_n(b.begin(), std::min(b.size(), N), out.begin());
  return out;
}

// libsodium declares its buffers non-null even when empty; an empty vector's data() may be.
uint8_t* ptr(Bytes& b) {
  static uint8_t dummy = 0;
  return b.empty() ? &dummy : b.data();
}

bool has_flag(const json& t, const std::string& flag) {
  if (!t.contains("flags")) return false;
  for (const auto& f : t["flags"]) {
    if (f == flag) return true;
  }
  return false;
}

class WycheproofTest : public ::testing::Test {
 protected:
  void SetUp() override { init(); }
};

TEST_F(WycheproofTest, X25519) {
  json doc = load("x25519_test.json");
  int valid = 0, acceptable_ok = 0, rejected_low_order = 0;
  for (const auto& group : doc["testGroups"]) {
    ASSERT_EQ(group["curve"], "curve25519");
    for (const auto& t : group["tests"]) {
      SCOPED_TRACE("tcId " + std::to_string(t["tcId"].get<int>()));
      Bytes priv = hex(t["private"]);
      Bytes pub = hex(t["public"]);
      Bytes shared = hex(t["shared"]);
      std::string result = t["result"];
      ASSERT_EQ(priv.size(), 32u);
      ASSERT_EQ(pub.size(), 32u);
      Result<X25519Key> got = x25519(fixed<32>(priv), fixed<32>(pub));
      bool zero = std::all_of(shared.begin(), shared.end(), [](uint8_t b) { return b == 0; });
      // libsodium itself: -1 exactly when the shared secret is all zeros.
      uint8_t raw[32];
      int rc = crypto_scalarmult(raw, priv.data(), pub.data());
      EXPECT_EQ(rc == 0, !zero);
      if (result == "valid") {
        ASSERT_TRUE(got) << got.error().message;
        EXPECT_EQ(Bytes(got->begin(), got->end()), shared);
        ++valid;
      } else {
        ASSERT_EQ(result, "acceptable");
        if (zero) {
          // Our policy: a low-order point never yields a key.
          ASSERT_FALSE(got);
          EXPECT_EQ(got.error().code, kErrKeyAgreement);
          EXPECT_TRUE(has_flag(t, "ZeroSharedSecret") || has_flag(t, "LowOrderPublic"));
          ++rejected_low_order;
        } else {
          // Twist points, non-canonical encodings: RFC 7748 behaviour, same bytes as expected.
          ASSERT_TRUE(got) << got.error().message;
          EXPECT_EQ(Bytes(got->begin(), got->end()), shared);
          ++acceptable_ok;
        }
      }
    }
  }
  std::cout << "x25519: " << valid << " valid, " << acceptable_ok << " acceptable computed, "
            << rejected_low_order << " low-order rejected\n";
  EXPECT_GT(valid, 0);
  EXPECT_GT(rejected_low_order, 0);
  EXPECT_EQ(valid + acceptable_ok + rejected_low_order, doc["numberOfTests"].get<int>());
}

TEST_F(WycheproofTest, Ed25519) {
  json doc = load("ed25519_test.json");
  int valid = 0, invalid = 0;
  for (const auto& group : doc["testGroups"]) {
    Bytes pk = hex(group["publicKey"]["pk"]);
    ASSERT_EQ(pk.size(), size_t{crypto_sign_PUBLICKEYBYTES});
    for (const auto& t : group["tests"]) {
      SCOPED_TRACE("tcId " + std::to_string(t["tcId"].get<int>()) + " " +
                   t["comment"].get<std::string>());
      Bytes msg = hex(t["msg"]);
      Bytes sig = hex(t["sig"]);
      bool ok = sig.size() == crypto_sign_BYTES &&
                crypto_sign_verify_detached(ptr(sig), ptr(msg), msg.size(), pk.data()) == 0;
      std::string result = t["result"];
      if (result == "valid") {
        EXPECT_TRUE(ok);
        ++valid;
      } else {
        ASSERT_EQ(result, "invalid");
        EXPECT_FALSE(ok);
        ++invalid;
      }
    }
  }
  std::cout << "ed25519: " << valid << " valid, " << invalid << " invalid\n";
  EXPECT_GT(valid, 0);
  EXPECT_GT(invalid, 0);
  EXPECT_EQ(valid + invalid, doc["numberOfTests"].get<int>());
}

TEST_F(WycheproofTest, ChaCha20Poly1305Ietf) {
  json doc = load("chacha20_poly1305_test.json");
  int valid = 0, invalid = 0, other_sizes = 0;
  for (const auto& group : doc["testGroups"]) {
    for (const auto& t : group["tests"]) {
      SCOPED_TRACE("tcId " + std::to_string(t["tcId"].get<int>()) + " " +
                   t["comment"].get<std::string>());
      Bytes key = hex(t["key"]);
      Bytes iv = hex(t["iv"]);
      Bytes aad = hex(t["aad"]);
      Bytes msg = hex(t["msg"]);
      Bytes ct = hex(t["ct"]);
      Bytes tag = hex(t["tag"]);
      std::string result = t["result"];
      if (key.size() != crypto_aead_chacha20poly1305_ietf_KEYBYTES ||
          iv.size() != crypto_aead_chacha20poly1305_ietf_NPUBBYTES ||
          tag.size() != crypto_aead_chacha20poly1305_ietf_ABYTES) {
        // The IETF construction has no other sizes; such cases must be "invalid".
        EXPECT_EQ(result, "invalid");
        ++other_sizes;
        continue;
      }
      Bytes out(ct.size());
      int rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(
          ptr(out), nullptr, ptr(ct), ct.size(), ptr(tag), ptr(aad), aad.size(), ptr(iv), ptr(key));
      if (result == "valid") {
        ASSERT_EQ(rc, 0);
        EXPECT_EQ(out, msg);
        Bytes enc(msg.size());
        Bytes enc_tag(crypto_aead_chacha20poly1305_ietf_ABYTES);
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(ptr(enc), ptr(enc_tag), nullptr,
                                                           ptr(msg), msg.size(), ptr(aad),
                                                           aad.size(), nullptr, ptr(iv), ptr(key));
        EXPECT_EQ(enc, ct);
        EXPECT_EQ(enc_tag, tag);
        ++valid;
      } else {
        ASSERT_EQ(result, "invalid");
        EXPECT_NE(rc, 0);
        ++invalid;
      }
    }
  }
  std::cout << "chacha20-poly1305: " << valid << " valid, " << invalid << " invalid, "
            << other_sizes << " with a non-IETF nonce/tag size (checked to be invalid)\n";
  EXPECT_GT(valid, 0);
  EXPECT_GT(invalid, 0);
  EXPECT_EQ(valid + invalid + other_sizes, doc["numberOfTests"].get<int>());
}

}  // namespace
}  // namespace starling::crypto

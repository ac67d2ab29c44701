// Noise core against independent implementations: every XXpsk3 / IKpsk2 BLAKE2b ChaChaPoly
// vector in cacophony.txt (Haskell) and snow.txt (Rust), byte for byte.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/hex.h"
#include "mesh/noise.h"

namespace starling::mesh::noise {
namespace {

const std::string kXX = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b";
const std::string kIK = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b";

std::string vector_path(const std::string& name) {
  return std::string(STARLING_SOURCE_DIR) + "/../shared/testdata/noise/" + name;
}

nlohmann::json load(const std::string& name) {
  std::ifstream in(vector_path(name));
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str(), nullptr, false);
}

Bytes hex(const nlohmann::json& j) {
  auto b = from_hex(j.get<std::string>());
  EXPECT_TRUE(b.has_value());
  return b.value_or(Bytes{});
}

Key key(const nlohmann::json& j) {
  Bytes b = hex(j);
  Key k{};
  EXPECT_EQ(b.size(), k.size());
  std::copy_n(b.begin(), std::min(b.size(), k.size()), k.begin());
  return k;
}

// Runs one vector; returns the number of messages checked.
void run_vector(const nlohmann::json& v) {
  const std::string name = v["protocol_name"];
  const Pattern pattern = name == kXX ? Pattern::kXXpsk3 : Pattern::kIKpsk2;
  SCOPED_TRACE(name);

  HandshakeConfig ic;
  ic.pattern = pattern;
  ic.role = Role::kInitiator;
  ic.prologue = hex(v["init_prologue"]);
  ic.local_static = key_pair_from_secret(key(v["init_static"]));
  ic.local_ephemeral = key_pair_from_secret(key(v["init_ephemeral"]));
  if (v.contains("init_remote_static")) ic.remote_static = key(v["init_remote_static"]);
  ASSERT_EQ(v["init_psks"].size(), 1u);
  ic.psk = key(v["init_psks"][0]);

  HandshakeConfig rc;
  rc.pattern = pattern;
  rc.role = Role::kResponder;
  rc.prologue = hex(v["resp_prologue"]);
  rc.local_static = key_pair_from_secret(key(v["resp_static"]));
  rc.local_ephemeral = key_pair_from_secret(key(v["resp_ephemeral"]));
  ASSERT_EQ(v["resp_psks"].size(), 1u);
  rc.psk = key(v["resp_psks"][0]);

  HandshakeState init(ic), resp(rc);
  const auto& messages = v["messages"];
  size_t i = 0;
  // Handshake phase: the initiator writes the even-numbered messages.
  for (; i < messages.size() && !init.is_complete(); ++i) {
    HandshakeState& writer = i % 2 == 0 ? init : resp;
    HandshakeState& reader = i % 2 == 0 ? resp : init;
    Bytes payload = hex(messages[i]["payload"]);
    Bytes expected = hex(messages[i]["ciphertext"]);
    ASSERT_TRUE(writer.is_my_turn());
    auto c = writer.write_message(payload);
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(to_hex(*c), to_hex(expected)) << "handshake message " << i;
    auto p = reader.read_message(*c);
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_EQ(*p, payload);
  }
  ASSERT_TRUE(init.is_complete());
  ASSERT_TRUE(resp.is_complete());
  EXPECT_EQ(to_hex(init.handshake_hash().data(), kHashLen),
            to_hex(resp.handshake_hash().data(), kHashLen));
  if (v.contains("handshake_hash")) {
    EXPECT_EQ(to_hex(init.handshake_hash().data(), kHashLen),
              v["handshake_hash"].get<std::string>());
  }
  ASSERT_EQ(init.remote_static(), rc.local_static.public_key);
  ASSERT_EQ(resp.remote_static(), ic.local_static.public_key);

  // Transport phase: messages keep alternating by index (message i is the initiator's when
  // i is even), the initiator sending with c1 and the responder with c2.
  auto [ic1, ic2] = init.split();
  auto [rc1, rc2] = resp.split();
  for (; i < messages.size(); ++i) {
    const bool from_initiator = i % 2 == 0;
    CipherState& send = from_initiator ? ic1 : rc2;
    CipherState& recv = from_initiator ? rc1 : ic2;
    Bytes payload = hex(messages[i]["payload"]);
    Bytes expected = hex(messages[i]["ciphertext"]);
    auto c = send.encrypt_with_ad({}, payload);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(to_hex(*c), to_hex(expected)) << "transport message " << i;
    auto p = recv.decrypt_with_ad({}, *c);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, payload);
  }
}

std::map<std::string, int> run_file(const std::string& file) {
  nlohmann::json doc = load(file);
  EXPECT_FALSE(doc.is_discarded()) << vector_path(file);
  std::map<std::string, int> counts;
  if (doc.is_discarded()) return counts;
  for (const auto& v : doc["vectors"]) {
    const std::string name = v.value("protocol_name", "");
    if (name != kXX && name != kIK) continue;
    SCOPED_TRACE(file + " vector " + std::to_string(counts[name]));
    run_vector(v);
    ++counts[name];
  }
  return counts;
}

TEST(NoiseVectors, Cacophony) {
  auto counts = run_file("cacophony.txt");
  EXPECT_GT(counts[kXX], 0);
  EXPECT_GT(counts[kIK], 0);
  std::cout << "cacophony: " << kXX << " x" << counts[kXX] << ", " << kIK << " x" << counts[kIK]
            << "\n";
}

TEST(NoiseVectors, SnowIfPresent) {
  // snow.txt has a different pattern set; run whatever of our two names it holds.
  auto counts = run_file("snow.txt");
  std::cout << "snow: " << kXX << " x" << counts[kXX] << ", " << kIK << " x" << counts[kIK] << "\n";
}

TEST(Noise, WrongPskFailsAtMessage3) {
  HandshakeConfig ic, rc;
  ic.role = Role::kInitiator;
  rc.role = Role::kResponder;
  ic.local_static = generate_key_pair();
  ic.local_ephemeral = generate_key_pair();
  rc.local_static = generate_key_pair();
  rc.local_ephemeral = generate_key_pair();
  ic.psk.fill(1);
  rc.psk.fill(2);
  HandshakeState init(ic), resp(rc);
  auto m1 = init.write_message({});
  ASSERT_TRUE(m1.ok());
  ASSERT_TRUE(resp.read_message(*m1).ok());
  auto m2 = resp.write_message({});
  ASSERT_TRUE(m2.ok());
  ASSERT_TRUE(init.read_message(*m2).ok());
  auto m3 = init.write_message(as_bytes("cert"));
  ASSERT_TRUE(m3.ok());
  auto r = resp.read_message(*m3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrDecrypt);
  EXPECT_TRUE(resp.failed());
  EXPECT_FALSE(resp.read_message(*m3).ok());  // stays failed
}

TEST(Noise, LowOrderEphemeralRejected) {
  HandshakeConfig ic, rc;
  ic.role = Role::kInitiator;
  rc.role = Role::kResponder;
  for (auto* c : {&ic, &rc}) {
    c->local_static = generate_key_pair();
    c->local_ephemeral = generate_key_pair();
  }
  HandshakeState init(ic), resp(rc);
  auto m1 = init.write_message({});
  ASSERT_TRUE(m1.ok());
  ASSERT_TRUE(resp.read_message(*m1).ok());
  auto m2 = resp.write_message({});
  ASSERT_TRUE(m2.ok());
  // Replace the responder's ephemeral with the all-zero point (order 1): ee must fail.
  Bytes bad = *m2;
  std::fill_n(bad.begin(), 32, 0);
  auto r = init.read_message(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrDh);
}

TEST(Noise, ShortAndOutOfTurnMessagesFail) {
  HandshakeConfig rc;
  rc.role = Role::kResponder;
  rc.local_static = generate_key_pair();
  rc.local_ephemeral = generate_key_pair();
  {
    HandshakeState resp(rc);
    EXPECT_FALSE(resp.read_message(Bytes(10, 0)).ok());
  }
  {
    HandshakeState resp(rc);
    EXPECT_FALSE(resp.write_message({}).ok());
  }
  {
    HandshakeConfig ic;  // IK initiator without the responder's key: misuse, fails cleanly
    ic.pattern = Pattern::kIKpsk2;
    HandshakeState init(ic);
    EXPECT_FALSE(init.write_message({}).ok());
  }
}

TEST(Noise, HmacBlake2bKnownAnswer) {
  // HMAC-BLAKE2b-512, RFC 2104 construction; cross-checked with Python's
  // hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", hashlib.blake2b).
  Hash h = hmac(as_bytes("key"), as_bytes("The quick brown fox jumps over the lazy dog"));
  EXPECT_EQ(to_hex(h.data(), h.size()),
            "92294f92c0dfb9b00ec9ae8bd94d7e7d8a036b885a499f149dfe2fd2199394aa"
            "af6b8894a1730cccb2cd050f9bcf5062a38b51b0dab33207f8ef35ae2c9df51b");
}

}  // namespace
}  // namespace starling::mesh::noise

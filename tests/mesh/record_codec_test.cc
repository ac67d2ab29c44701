#include "mesh/record_codec.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mesh/session.h"

namespace starling::mesh {
namespace {

const RecordTime kT0{};

noise::Key test_key(uint8_t fill) {
  noise::Key k;
  k.fill(fill);
  return k;
}

std::string pattern_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Splits a sealed stream into its records (length prefix included).
std::vector<std::string> records_of(const std::string& stream) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos + 2 <= stream.size()) {
    size_t len =
        (size_t{static_cast<uint8_t>(stream[pos])} << 8) | static_cast<uint8_t>(stream[pos + 1]);
    out.push_back(stream.substr(pos, 2 + len));
    pos += 2 + len;
  }
  return out;
}

// A correctly encrypted record with any key, counter, type and body.
std::string forge_record(const noise::Key& k, uint64_t counter, uint8_t type,
                         std::string_view body = {}) {
  std::string rec(2 + 8, '\0');
  for (int i = 0; i < 8; ++i)
    rec[2 + static_cast<size_t>(i)] = static_cast<char>(counter >> (56 - 8 * i));
  std::string plain(1, static_cast<char>(type));
  plain.append(body);
  Bytes c = noise::aead_seal(k, counter,
                             noise::ByteView(reinterpret_cast<const uint8_t*>(rec.data()) + 2, 8),
                             noise::as_bytes(plain));
  rec.append(reinterpret_cast<const char*>(c.data()), c.size());
  const size_t len = 8 + c.size();
  rec[0] = static_cast<char>(len >> 8);
  rec[1] = static_cast<char>(len);
  return rec;
}

uint64_t counter_of(const std::string& record) {
  uint64_t v = 0;
  for (size_t i = 2; i < 10; ++i) v = (v << 8) | static_cast<uint8_t>(record[i]);
  return v;
}

struct Pair {
  RecordSealer sealer{test_key(7)};
  RecordOpener opener{test_key(7)};
};

class RoundTrip : public ::testing::TestWithParam<size_t> {};

TEST_P(RoundTrip, SizesSurviveAnySplit) {
  const size_t size = GetParam();
  Pair p;
  const std::string msg = pattern_bytes(size, static_cast<uint32_t>(size));
  std::string wire;
  ASSERT_TRUE(p.sealer.seal_message(msg, kT0, wire).ok());
  ASSERT_TRUE(p.sealer.seal_message("after", kT0, wire).ok());
  ASSERT_TRUE(p.sealer.seal_close(kT0, wire).ok());
  const size_t records = size == 0 ? 1 : (size + kMaxFragment - 1) / kMaxFragment;
  EXPECT_EQ(records_of(wire).size(), records + 2);
  // Feed in uneven chunks (1, 2, 3, ... bytes, then big) to exercise partial frames.
  size_t pos = 0, chunk = 1;
  while (pos < wire.size()) {
    size_t n = std::min(chunk, wire.size() - pos);
    ASSERT_TRUE(p.opener.feed(std::string_view(wire).substr(pos, n)).ok());
    pos += n;
    chunk = chunk < 64 ? chunk + 1 : chunk * 3;
  }
  auto got = p.opener.pop_message();
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(*got == msg) << "size " << size;
  EXPECT_EQ(p.opener.pop_message(), std::optional<std::string>("after"));
  EXPECT_FALSE(p.opener.pop_message().has_value());
  EXPECT_TRUE(p.opener.close_received());
  EXPECT_TRUE(p.opener.finish().ok());
}

INSTANTIATE_TEST_SUITE_P(Sizes, RoundTrip,
                         ::testing::Values(0, 1, kMaxFragment - 1, kMaxFragment, kMaxFragment + 1,
                                           65519, 65520, 2 * kMaxFragment, 5 * 1024 * 1024));

TEST(RecordCodec, RecordLayout) {
  RecordSealer sealer(test_key(1));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("abc", kT0, wire).ok());
  ASSERT_TRUE(sealer.seal_message("", kT0, wire).ok());
  auto recs = records_of(wire);
  ASSERT_EQ(recs.size(), 2u);
  // L = 8 counter + 1 type + 3 + 16 tag = 28; counters 0 and 1, big-endian.
  EXPECT_EQ(recs[0].size(), 2u + 28u);
  EXPECT_EQ(static_cast<uint8_t>(recs[0][1]), 28);
  EXPECT_EQ(recs[0].substr(2, 8), std::string(8, '\0'));
  EXPECT_EQ(recs[1].substr(2, 8), std::string(7, '\0') + std::string(1, '\x01'));
  EXPECT_EQ(recs[1].size(), 2u + kMinRecordLength);
}

// Flips one byte in each field of a record: length, counter, type/body, tag.
TEST(RecordCodec, TamperedByteInEachFieldRejected) {
  RecordSealer sealer(test_key(2));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("hello world", kT0, wire).ok());
  const size_t len = wire.size();
  const std::vector<std::pair<const char*, size_t>> positions = {
      {"length hi", 0}, {"length lo", 1}, {"counter", 2},  {"counter lo", 9},
      {"type", 10},     {"fragment", 12}, {"tag", len - 1}};
  for (auto [field, at] : positions) {
    std::string bad = wire;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    RecordOpener opener(test_key(2));
    Status st = opener.feed(bad);
    if (std::string(field) == "length lo") {
      // A longer length leaves the record incomplete: the stream is then truncated.
      if (st.ok()) st = opener.finish();
    }
    if (std::string(field) == "length hi") {
      if (st.ok()) st = opener.finish();
    }
    ASSERT_FALSE(st.ok()) << field;
    EXPECT_EQ(st.error().code, kErrProtocol) << field;
    EXPECT_FALSE(opener.pop_message().has_value()) << field;
    EXPECT_TRUE(opener.failed());
    // Stays failed even for valid bytes afterwards.
    EXPECT_FALSE(opener.feed(wire).ok()) << field;
  }
}

TEST(RecordCodec, ReplayedRecordRejected) {
  RecordSealer sealer(test_key(3));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("one", kT0, wire).ok());
  RecordOpener opener(test_key(3));
  ASSERT_TRUE(opener.feed(wire).ok());
  Status st = opener.feed(wire);  // the same record again
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("replayed"), std::string::npos) << st.error().message;
  EXPECT_EQ(opener.pop_message(), std::optional<std::string>("one"));
}

TEST(RecordCodec, ReorderedRecordsRejected) {
  RecordSealer sealer(test_key(4));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("first", kT0, wire).ok());
  ASSERT_TRUE(sealer.seal_message("second", kT0, wire).ok());
  auto recs = records_of(wire);
  RecordOpener opener(test_key(4));
  EXPECT_FALSE(opener.feed(recs[1] + recs[0]).ok());
  EXPECT_FALSE(opener.pop_message().has_value());
}

TEST(RecordCodec, DroppedRecordOfMultiRecordMessageRejected) {
  RecordSealer sealer(test_key(4));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message(std::string(3 * kMaxFragment, 'x'), kT0, wire).ok());
  auto recs = records_of(wire);
  ASSERT_EQ(recs.size(), 3u);
  RecordOpener opener(test_key(4));
  EXPECT_FALSE(opener.feed(recs[0] + recs[2]).ok());
  EXPECT_FALSE(opener.pop_message().has_value());
}

TEST(RecordCodec, TruncatedStreamRejected) {
  RecordSealer sealer(test_key(5));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("payload", kT0, wire).ok());
  ASSERT_TRUE(sealer.seal_close(kT0, wire).ok());
  const size_t first = records_of(wire)[0].size();
  {  // EOF in the middle of a frame
    RecordOpener opener(test_key(5));
    ASSERT_TRUE(opener.feed(std::string_view(wire).substr(0, first - 3)).ok());
    auto st = opener.finish();
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("truncated"), std::string::npos);
  }
  {  // EOF after whole records but without the close record
    RecordOpener opener(test_key(5));
    ASSERT_TRUE(opener.feed(std::string_view(wire).substr(0, first)).ok());
    EXPECT_EQ(opener.pop_message(), std::optional<std::string>("payload"));
    auto st = opener.finish();
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("without a close record"), std::string::npos);
  }
  {  // EOF in the middle of a multi-record message
    RecordSealer s2(test_key(5));
    std::string w2;
    ASSERT_TRUE(s2.seal_message(std::string(kMaxFragment + 10, 'y'), kT0, w2).ok());
    RecordOpener opener(test_key(5));
    ASSERT_TRUE(opener.feed(records_of(w2)[0]).ok());
    EXPECT_FALSE(opener.finish().ok());
    EXPECT_FALSE(opener.pop_message().has_value());
  }
  {  // with the close record: clean
    RecordOpener opener(test_key(5));
    ASSERT_TRUE(opener.feed(wire).ok());
    EXPECT_TRUE(opener.finish().ok());
  }
}

TEST(RecordCodec, OversizeAndUndersizeLengthRejected) {
  RecordSealer sealer(test_key(6));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message(std::string(2000, 'z'), kT0, wire).ok());
  {  // a frame above the opener's limit is rejected from its header alone
    RecordOpener opener(test_key(6), kMaxMessageSize, /*max_record_length=*/1024);
    auto st = opener.feed(std::string_view(wire).substr(0, 2));
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("above the limit"), std::string::npos);
  }
  {  // a length too small to hold counter, type and tag
    RecordOpener opener(test_key(6));
    std::string tiny = {'\0', static_cast<char>(kMinRecordLength - 1)};
    EXPECT_FALSE(opener.feed(tiny).ok());
  }
  {  // max-size L = 65535 of garbage: tag failure, no crash
    RecordOpener opener(test_key(6));
    std::string big = "\xff\xff" + std::string(65535, '\x5a');
    EXPECT_FALSE(opener.feed(big).ok());
  }
}

TEST(RecordCodec, MessageLongerThanLimitRejected) {
  RecordSealer sealer(test_key(8));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message(std::string(3 * kMaxFragment, 'm'), kT0, wire).ok());
  RecordOpener opener(test_key(8), /*max_message=*/2 * kMaxFragment);
  auto st = opener.feed(wire);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("message exceeds"), std::string::npos);
  RecordSealer small(test_key(8), kT0, {}, 10);
  std::string out;
  EXPECT_FALSE(small.seal_message(std::string(11, 'a'), kT0, out).ok());
}

TEST(RecordCodec, DataAfterCloseRejected) {
  RecordSealer sealer(test_key(9));
  std::string wire;
  ASSERT_TRUE(sealer.seal_close(kT0, wire).ok());
  ASSERT_TRUE(sealer.seal_message("late", kT0, wire).ok());
  RecordOpener opener(test_key(9));
  EXPECT_FALSE(opener.feed(wire).ok());
  EXPECT_FALSE(opener.pop_message().has_value());
  // Also when the late bytes arrive in a separate read.
  RecordSealer s2(test_key(9));
  std::string close_only, late;
  ASSERT_TRUE(s2.seal_close(kT0, close_only).ok());
  ASSERT_TRUE(s2.seal_message("late", kT0, late).ok());
  RecordOpener o2(test_key(9));
  ASSERT_TRUE(o2.feed(close_only).ok());
  EXPECT_FALSE(o2.feed(late).ok());
}

TEST(RecordCodec, WrongKeyRejected) {
  RecordSealer sealer(test_key(10));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("secret", kT0, wire).ok());
  RecordOpener opener(test_key(11));
  auto st = opener.feed(wire);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("authentication failed"), std::string::npos);
}

TEST(RecordCodec, UnknownTypeRejected) {
  // Build a record with type 9 by hand, correctly encrypted.
  noise::Key k = test_key(12);
  std::string rec(2 + 8, '\0');
  const uint8_t plain[2] = {9, 'x'};
  Bytes c =
      noise::aead_seal(k, 0, noise::ByteView(reinterpret_cast<const uint8_t*>(rec.data()) + 2, 8),
                       noise::ByteView(plain, 2));
  rec.append(reinterpret_cast<const char*>(c.data()), c.size());
  rec[1] = static_cast<char>(8 + c.size());
  RecordOpener opener(k);
  auto st = opener.feed(rec);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("unknown record type 9"), std::string::npos);
}

// ---- rekeying ----

// REKEY(k) computed straight from the spec's definition with libsodium, independently of
// noise::rekey_in_place: ENCRYPT(k, 2^64-1, "", zeros[32])[0:32].
noise::Key spec_rekey(const noise::Key& k) {
  uint8_t nonce[12] = {0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  uint8_t zeros[32] = {};
  uint8_t out[48];
  unsigned long long len = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out, &len, zeros, 32, nullptr, 0, nullptr, nonce,
                                            k.data());
  noise::Key r;
  std::memcpy(r.data(), out, 32);
  return r;
}

// True if the 32 bytes of `key` appear anywhere in the object representation of `obj`.
template <class T>
bool object_holds(const T& obj, const noise::Key& key) {
  const auto* p = reinterpret_cast<const uint8_t*>(&obj);
  for (size_t i = 0; i + key.size() <= sizeof(T); ++i) {
    if (std::memcmp(p + i, key.data(), key.size()) == 0) return true;
  }
  return false;
}

TEST(Rekey, NoiseRekeyMatchesTheSpecDefinition) {
  for (uint8_t fill : std::initializer_list<uint8_t>{0x00, 0x01, 0x7f, 0xff}) {
    noise::Key k = test_key(fill);
    const noise::Key expected = spec_rekey(k);
    noise::rekey_in_place(k);
    EXPECT_EQ(k, expected);
    EXPECT_NE(k, test_key(fill));
    noise::CipherState cs;
    cs.initialize_key(test_key(fill));
    cs.set_nonce(5);
    cs.rekey();
    EXPECT_EQ(cs.key(), expected);
    EXPECT_EQ(cs.nonce(), 5u);  // REKEY leaves the nonce alone
  }
}

TEST(Rekey, MessagesAcrossManyRekeysDecodeByteIdentical) {
  RekeyPolicy policy;
  policy.max_records = 3;
  RecordSealer sealer(test_key(20), kT0, policy);
  RecordOpener opener(test_key(20));
  std::vector<std::string> sent;
  std::string wire;
  for (uint32_t i = 0; i < 40; ++i) {
    // Some messages span several records, so rekeys also fall inside a message.
    const size_t size = i % 7 == 0 ? 3 * kMaxFragment + 5 : (i * 977) % 5000;
    sent.push_back(pattern_bytes(size, 1000 + i));
    ASSERT_TRUE(sealer.seal_message(sent.back(), kT0, wire).ok());
  }
  ASSERT_TRUE(sealer.seal_close(kT0, wire).ok());
  // Counters run on across rekeys: 0, 1, 2, ... with no gap and no reset.
  auto recs = records_of(wire);
  for (size_t i = 0; i < recs.size(); ++i) ASSERT_EQ(counter_of(recs[i]), i);
  for (size_t pos = 0; pos < wire.size(); pos += 1000) {
    ASSERT_TRUE(opener.feed(std::string_view(wire).substr(pos, 1000)).ok());
  }
  for (const auto& m : sent) {
    auto got = opener.pop_message();
    ASSERT_TRUE(got.has_value());
    ASSERT_TRUE(*got == m);
  }
  EXPECT_TRUE(opener.finish().ok());
  // 4 records per long message, 1 otherwise: at least a dozen rekeys, seen by both sides.
  EXPECT_GE(sealer.rekeys(), 12u);
  EXPECT_EQ(opener.rekeys(), sealer.rekeys());
  EXPECT_EQ(opener.key_for_testing(), sealer.key_for_testing());
  EXPECT_EQ(recs.size(), sealer.next_counter());
}

TEST(Rekey, RekeysBeforeTheDefaultRecordCount) {
  RecordSealer sealer(test_key(21), kT0);
  std::string out;
  const uint64_t limit = RekeyPolicy{}.max_records;
  ASSERT_EQ(limit, uint64_t{1} << 20);
  for (uint64_t i = 0; i < limit; ++i) {
    out.clear();
    ASSERT_TRUE(sealer.seal_message("", kT0, out).ok());
  }
  EXPECT_EQ(sealer.rekeys(), 0u);
  out.clear();
  ASSERT_TRUE(sealer.seal_message("", kT0, out).ok());
  EXPECT_EQ(sealer.rekeys(), 1u);
  EXPECT_EQ(records_of(out).size(), 2u);  // kRekey, then the message
}

TEST(Rekey, RekeysBeforeTheByteVolume) {
  EXPECT_EQ(RekeyPolicy{}.max_bytes, uint64_t{1} << 30);
  RekeyPolicy policy;
  policy.max_bytes = 1000;
  RecordSealer sealer(test_key(22), kT0, policy);
  RecordOpener opener(test_key(22));
  std::string wire;
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(sealer.seal_message(std::string(400, 'v'), kT0, wire).ok());
  // 400 + 400 fit under one key, a third would pass 1000: rekey before messages 3, 5, 7, 9.
  EXPECT_EQ(sealer.rekeys(), 4u);
  ASSERT_TRUE(opener.feed(wire).ok());
  EXPECT_EQ(opener.rekeys(), 4u);
  // A fragment larger than the whole budget still goes out, each under a fresh key.
  std::string big;
  ASSERT_TRUE(sealer.seal_message(std::string(1500, 'w'), kT0, big).ok());
  ASSERT_TRUE(sealer.seal_message(std::string(1500, 'w'), kT0, big).ok());
  EXPECT_EQ(sealer.rekeys(), 6u);
  ASSERT_TRUE(opener.feed(big).ok());
  int n = 0;
  while (auto m = opener.pop_message()) ++n;
  EXPECT_EQ(n, 12);
}

TEST(Rekey, TimeBasedRekeyWithFakeClock) {
  using std::chrono::seconds;
  EXPECT_EQ(RekeyPolicy{}.max_age, seconds(120));
  RecordSealer sealer(test_key(23), kT0 + seconds(5));  // key installed at t = 5 s
  RecordOpener opener(test_key(23));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("a", kT0 + seconds(124), wire).ok());
  EXPECT_EQ(sealer.rekeys(), 0u);
  ASSERT_TRUE(sealer.seal_message("b", kT0 + seconds(125), wire).ok());  // 120 s old
  EXPECT_EQ(sealer.rekeys(), 1u);
  ASSERT_TRUE(sealer.seal_message("c", kT0 + seconds(244), wire).ok());  // new key is 119 s old
  EXPECT_EQ(sealer.rekeys(), 1u);
  // An idle key is replaced before the next record, however long the pause.
  ASSERT_TRUE(sealer.seal_close(kT0 + seconds(10000), wire).ok());
  EXPECT_EQ(sealer.rekeys(), 2u);
  ASSERT_TRUE(opener.feed(wire).ok());
  EXPECT_EQ(opener.pop_message(), std::optional<std::string>("a"));
  EXPECT_EQ(opener.pop_message(), std::optional<std::string>("b"));
  EXPECT_EQ(opener.pop_message(), std::optional<std::string>("c"));
  EXPECT_TRUE(opener.close_received());
  EXPECT_EQ(opener.rekeys(), 2u);
}

TEST(Rekey, ReplayedRecordFromBeforeARekeyRejected) {
  RecordSealer sealer(test_key(24), kT0);
  std::string before, rekey, after;
  ASSERT_TRUE(sealer.seal_message("before", kT0, before).ok());
  ASSERT_TRUE(sealer.seal_rekey(kT0, rekey).ok());
  ASSERT_TRUE(sealer.seal_message("after", kT0, after).ok());
  {  // the old record again, with its old counter
    RecordOpener opener(test_key(24));
    ASSERT_TRUE(opener.feed(before + rekey + after).ok());
    auto st = opener.feed(before);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, kErrProtocol);
    EXPECT_NE(st.error().message.find("replayed"), std::string::npos) << st.error().message;
  }
  {  // the old key with the counter the opener expects next: the old key is dead
    RecordOpener opener(test_key(24));
    ASSERT_TRUE(opener.feed(before + rekey).ok());
    auto st = opener.feed(forge_record(test_key(24), opener.next_counter(), 0, "forged"));
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("authentication failed"), std::string::npos);
    EXPECT_FALSE(opener.pop_message() == std::optional<std::string>("forged"));
  }
  {  // the rekey record replayed
    RecordOpener opener(test_key(24));
    ASSERT_TRUE(opener.feed(before + rekey).ok());
    EXPECT_FALSE(opener.feed(rekey).ok());
    EXPECT_EQ(opener.rekeys(), 1u);
  }
}

TEST(Rekey, ForgedRekeyRecordRejected) {
  RecordSealer sealer(test_key(25), kT0);
  std::string rekey;
  ASSERT_TRUE(sealer.seal_rekey(kT0, rekey).ok());
  {  // a genuine kRekey with one tag bit flipped
    std::string bad = rekey;
    bad.back() = static_cast<char>(bad.back() ^ 0x01);
    RecordOpener opener(test_key(25));
    auto st = opener.feed(bad);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("authentication failed"), std::string::npos);
    EXPECT_EQ(opener.rekeys(), 0u);
    EXPECT_EQ(opener.key_for_testing(), test_key(25));
  }
  {  // a kRekey sealed by someone without the key
    RecordOpener opener(test_key(25));
    EXPECT_FALSE(opener.feed(forge_record(test_key(99), 0, 3)).ok());
    EXPECT_EQ(opener.rekeys(), 0u);
  }
  {  // a kRekey carrying a body
    RecordOpener opener(test_key(25));
    auto st = opener.feed(forge_record(test_key(25), 0, 3, "x"));
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message.find("rekey record with a body"), std::string::npos);
  }
}

TEST(Rekey, OldKeyBytesAreOverwritten) {
  const noise::Key first = test_key(26);
  const noise::Key second = spec_rekey(first);
  RecordSealer sealer(first, kT0);
  RecordOpener opener(first);
  ASSERT_TRUE(object_holds(sealer, first));  // the scan finds a key that is there
  std::string wire;
  ASSERT_TRUE(sealer.seal_rekey(kT0, wire).ok());
  ASSERT_TRUE(opener.feed(wire).ok());
  EXPECT_EQ(sealer.key_for_testing(), second);
  EXPECT_EQ(opener.key_for_testing(), second);
  // Neither object keeps a copy of the old key anywhere in its storage.
  EXPECT_FALSE(object_holds(sealer, first));
  EXPECT_FALSE(object_holds(opener, first));
  EXPECT_TRUE(object_holds(opener, second));
}

}  // namespace
}  // namespace starling::mesh

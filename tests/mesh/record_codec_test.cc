#include "mesh/record_codec.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "mesh/session.h"

namespace starling::mesh {
namespace {

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
  ASSERT_TRUE(p.sealer.seal_message(msg, wire).ok());
  ASSERT_TRUE(p.sealer.seal_message("after", wire).ok());
  ASSERT_TRUE(p.sealer.seal_close(wire).ok());
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
  ASSERT_TRUE(sealer.seal_message("abc", wire).ok());
  ASSERT_TRUE(sealer.seal_message("", wire).ok());
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
  ASSERT_TRUE(sealer.seal_message("hello world", wire).ok());
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
  ASSERT_TRUE(sealer.seal_message("one", wire).ok());
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
  ASSERT_TRUE(sealer.seal_message("first", wire).ok());
  ASSERT_TRUE(sealer.seal_message("second", wire).ok());
  auto recs = records_of(wire);
  RecordOpener opener(test_key(4));
  EXPECT_FALSE(opener.feed(recs[1] + recs[0]).ok());
  EXPECT_FALSE(opener.pop_message().has_value());
}

TEST(RecordCodec, DroppedRecordOfMultiRecordMessageRejected) {
  RecordSealer sealer(test_key(4));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message(std::string(3 * kMaxFragment, 'x'), wire).ok());
  auto recs = records_of(wire);
  ASSERT_EQ(recs.size(), 3u);
  RecordOpener opener(test_key(4));
  EXPECT_FALSE(opener.feed(recs[0] + recs[2]).ok());
  EXPECT_FALSE(opener.pop_message().has_value());
}

TEST(RecordCodec, TruncatedStreamRejected) {
  RecordSealer sealer(test_key(5));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("payload", wire).ok());
  ASSERT_TRUE(sealer.seal_close(wire).ok());
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
    ASSERT_TRUE(s2.seal_message(std::string(kMaxFragment + 10, 'y'), w2).ok());
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
  ASSERT_TRUE(sealer.seal_message(std::string(2000, 'z'), wire).ok());
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
  ASSERT_TRUE(sealer.seal_message(std::string(3 * kMaxFragment, 'm'), wire).ok());
  RecordOpener opener(test_key(8), /*max_message=*/2 * kMaxFragment);
  auto st = opener.feed(wire);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("message exceeds"), std::string::npos);
  RecordSealer small(test_key(8), 10);
  std::string out;
  EXPECT_FALSE(small.seal_message(std::string(11, 'a'), out).ok());
}

TEST(RecordCodec, DataAfterCloseRejected) {
  RecordSealer sealer(test_key(9));
  std::string wire;
  ASSERT_TRUE(sealer.seal_close(wire).ok());
  ASSERT_TRUE(sealer.seal_message("late", wire).ok());
  RecordOpener opener(test_key(9));
  EXPECT_FALSE(opener.feed(wire).ok());
  EXPECT_FALSE(opener.pop_message().has_value());
  // Also when the late bytes arrive in a separate read.
  RecordSealer s2(test_key(9));
  std::string close_only, late;
  ASSERT_TRUE(s2.seal_close(close_only).ok());
  ASSERT_TRUE(s2.seal_message("late", late).ok());
  RecordOpener o2(test_key(9));
  ASSERT_TRUE(o2.feed(close_only).ok());
  EXPECT_FALSE(o2.feed(late).ok());
}

TEST(RecordCodec, WrongKeyRejected) {
  RecordSealer sealer(test_key(10));
  std::string wire;
  ASSERT_TRUE(sealer.seal_message("secret", wire).ok());
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

}  // namespace
}  // namespace starling::mesh

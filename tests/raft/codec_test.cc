// The Raft wire codec (supernode/raft/codec.h): exact round trips of every message type, and
// a strict, total decoder — every truncation, trailing bytes, unknown types and flags, and
// huge length fields fail cleanly without allocating what the length claims.
#include "supernode/raft/codec.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "tests/raft/network.h"

#if defined(__GNUC__) && !defined(__clang__)
// The replacement operator new below allocates with malloc, so its delete frees with free.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

// Records the largest single allocation made while `g_tracking` is set on this thread, to
// prove the decoder never reserves what a forged length field claims.
namespace {
thread_local bool g_tracking = false;
std::atomic<size_t> g_largest_alloc{0};
}  // namespace

void* operator new(size_t n) {
  if (g_tracking && n > g_largest_alloc.load()) g_largest_alloc.store(n);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace starling::raft::testing {
namespace {

using namespace std::string_literals;

constexpr MessageType kAllTypes[] = {MessageType::kApp,           MessageType::kAppResp,
                                     MessageType::kVote,          MessageType::kVoteResp,
                                     MessageType::kPreVote,       MessageType::kPreVoteResp,
                                     MessageType::kSnap,          MessageType::kHeartbeat,
                                     MessageType::kHeartbeatResp, MessageType::kTimeoutNow};

// A message with every field set to something distinctive, binary data included.
Message full_message(MessageType type, uint64_t salt) {
  Message m;
  m.type = type;
  m.from = nid(1 + salt);
  m.to = nid(0xfedcba9876543210ULL - salt);
  m.term = tm(7 + salt);
  m.log_term = tm(6 + salt);
  m.index = li(0x0102030405060708ULL + salt);
  m.commit = li(41 + salt);
  m.reject = salt % 2 == 1;
  m.reject_hint = li(40 + salt);
  m.entries.push_back(Entry{tm(6), li(100 + salt), EntryType::kNormal, "set\0k=v\xff\x00"s});
  m.entries.push_back(Entry{tm(7), li(101 + salt), EntryType::kNormal, ""});
  m.entries.push_back(Entry{tm(7), li(102 + salt), EntryType::kConfChange,
                            encode_conf_change(ConfChange{ConfChangeType::kAddLearner, nid(9)})});
  m.context = "ctx\0\x01\x80"s + std::to_string(salt);
  return m;
}

Snapshot full_snapshot() {
  Snapshot s;
  s.meta.index = li(99);
  s.meta.term = tm(5);
  s.meta.conf.voters = {nid(1), nid(2), nid(5)};
  s.meta.conf.learners = {nid(6)};
  s.meta.conf.removed = {nid(3), nid(4)};
  s.meta.conf.addresses = {{nid(2), "10.0.0.2:8002"}, {nid(6), "host-6.example:9"}};
  s.data = "state\0with\0nuls\xfe"s + std::string(300, '\x00');
  return s;
}

std::vector<Message> sample_batch() {
  std::vector<Message> batch;
  uint64_t salt = 0;
  for (MessageType t : kAllTypes) {
    Message m = full_message(t, salt++);
    if (t == MessageType::kSnap) m.snapshot = full_snapshot();
    batch.push_back(std::move(m));
  }
  Message bare;  // every field at its default
  bare.type = MessageType::kHeartbeat;
  batch.push_back(bare);
  Message empty_snap;
  empty_snap.type = MessageType::kSnap;
  empty_snap.snapshot = Snapshot{};
  batch.push_back(empty_snap);
  return batch;
}

TEST(RaftCodec, RoundTripsEveryMessageType) {
  std::vector<Message> batch = sample_batch();
  std::string bytes = encode_messages(batch);
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(bytes[0], '\x02');  // version
  auto decoded = decode_messages(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  ASSERT_EQ(decoded->size(), batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_EQ((*decoded)[i], batch[i])
        << "message " << i << " (" << message_type_name(batch[i].type) << ")";
  }
  // Canonical: re-encoding gives the same bytes.
  EXPECT_EQ(encode_messages(*decoded), bytes);
}

TEST(RaftCodec, RoundTripsOneTypeAtATime) {
  for (MessageType t : kAllTypes) {
    std::vector<Message> one{full_message(t, 3)};
    one[0].snapshot = full_snapshot();
    auto decoded = decode_messages(encode_messages(one));
    ASSERT_TRUE(decoded.ok()) << message_type_name(t) << ": " << decoded.error().message;
    EXPECT_EQ(*decoded, one) << message_type_name(t);
  }
}

TEST(RaftCodec, EmptyBatchRoundTrips) {
  std::string bytes = encode_messages({});
  EXPECT_EQ(bytes, "\x02\x00\x00\x00\x00"s);
  auto decoded = decode_messages(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->empty());
}

TEST(RaftCodec, TruncationAtEveryOffsetFails) {
  std::string bytes = encode_messages(sample_batch());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode_messages(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " of " << bytes.size() << " bytes decoded";
    EXPECT_EQ(r.error().code, kErrBadMessage);
    EXPECT_EQ(r.error().message.rfind("raft message", 0), 0u) << r.error().message;
  }
}

TEST(RaftCodec, TruncationErrorNamesTheMessageAndField) {
  Message app;
  app.type = MessageType::kApp;
  app.entries.push_back(Entry{tm(1), li(1), EntryType::kNormal, std::string(100, '\0')});
  std::vector<Message> batch{full_message(MessageType::kHeartbeat, 0), app};
  std::string bytes = encode_messages(batch);
  // Cut the second message in the middle of its entry's data.
  const size_t second = encode_messages({batch[0]}).size();  // where a 1-batch would end
  const size_t data_at = second + 1 + 6 * 8 + 1 + 8 + 4 + 8 + 8 + 1 + 4;
  auto r = decode_messages(std::string_view(bytes).substr(0, data_at + 50));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "raft message 1 entry 0: truncated entry data (length 100, 50 bytes left)");
}

TEST(RaftCodec, TrailingBytesFail) {
  std::string bytes = encode_messages(sample_batch());
  for (std::string tail : {"\x00"s, "x"s, std::string(100, '\x00')}) {
    auto r = decode_messages(bytes + tail);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, kErrBadMessage);
    EXPECT_EQ(r.error().message,
              "raft messages: " + std::to_string(tail.size()) + " trailing bytes");
  }
}

TEST(RaftCodec, UnknownVersionTypesAndFlagsFail) {
  std::vector<Message> one{full_message(MessageType::kApp, 0)};
  const std::string good = encode_messages(one);
  const size_t type_at = 5;
  const size_t reject_at = type_at + 1 + 6 * 8;
  const size_t entry_type_at = reject_at + 1 + 8 + 4 + 8 + 8;
  struct Case {
    size_t offset;
    char value;
    std::string message;
  };
  const Case cases[] = {
      {0, '\x01', "raft messages: unsupported version 1"},
      {0, '\x03', "raft messages: unsupported version 3"},
      {0, '\x00', "raft messages: unsupported version 0"},
      {type_at, '\x0a', "raft message 0: unknown type 10"},
      {type_at, '\xff', "raft message 0: unknown type 255"},
      {reject_at, '\x02', "raft message 0: bad reject flag 2"},
      {entry_type_at, '\x02', "raft message 0 entry 0: unknown entry type 2"},
  };
  for (const Case& c : cases) {
    std::string bad = good;
    bad[c.offset] = c.value;
    auto r = decode_messages(bad);
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_EQ(r.error().code, kErrBadMessage);
    EXPECT_EQ(r.error().message, c.message);
  }
  // The snapshot flag is the byte before the context length at the end.
  std::string bad = good;
  const size_t snap_flag_at = good.size() - 4 - one[0].context.size() - 1;
  ASSERT_EQ(bad[snap_flag_at], '\x00');
  bad[snap_flag_at] = '\x02';
  auto r = decode_messages(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "raft message 0: bad snapshot flag 2");
}

TEST(RaftCodec, MembershipListsMustBeSortedAndDisjoint) {
  auto with_conf = [](ConfState conf) {
    Message m;
    m.type = MessageType::kSnap;
    m.snapshot = Snapshot{SnapshotMeta{li(5), tm(1), std::move(conf)}, "d"};
    return encode_messages({m});
  };
  auto unsorted = decode_messages(with_conf(ConfState{{nid(2), nid(1)}, {}, {}}));
  ASSERT_FALSE(unsorted.ok());
  EXPECT_EQ(unsorted.error().message,
            "raft message 0 snapshot: snapshot voters not strictly increasing");
  auto duplicate = decode_messages(with_conf(ConfState{{nid(1), nid(1)}, {}, {}}));
  ASSERT_FALSE(duplicate.ok());
  auto overlap = decode_messages(with_conf(ConfState{{nid(1), nid(2)}, {nid(2)}, {}}));
  ASSERT_FALSE(overlap.ok());
  EXPECT_EQ(overlap.error().message, "raft message 0 snapshot: snapshot membership lists overlap");
  auto removed_voter = decode_messages(with_conf(ConfState{{nid(1)}, {}, {nid(1)}}));
  ASSERT_FALSE(removed_voter.ok());
  EXPECT_TRUE(decode_messages(with_conf(ConfState{{nid(1), nid(3)}, {nid(2)}, {nid(4)}})).ok());
}

TEST(RaftCodec, MemberAddressesMustBeSortedAndOfMembers) {
  auto decode = [](std::vector<MemberAddress> addresses) {
    Message m;
    m.type = MessageType::kSnap;
    ConfState conf{{nid(1), nid(3)}, {nid(2)}, {nid(4)}, std::move(addresses)};
    m.snapshot = Snapshot{SnapshotMeta{li(5), tm(1), conf}, "d"};
    return decode_messages(encode_messages({m}));
  };
  auto ok = decode({{nid(1), "a:1"}, {nid(2), "b:2"}, {nid(3), "c:3"}});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->at(0).snapshot->meta.conf.addresses.size(), 3u);
  auto unsorted = decode({{nid(2), "b:2"}, {nid(1), "a:1"}});
  ASSERT_FALSE(unsorted.ok());
  EXPECT_EQ(unsorted.error().message,
            "raft message 0 snapshot: snapshot addresses not strictly increasing");
  auto removed = decode({{nid(4), "d:4"}});
  ASSERT_FALSE(removed.ok());
  EXPECT_EQ(removed.error().message, "raft message 0 snapshot: snapshot address for a non-member");
  auto too_long = decode({{nid(1), std::string(kMaxConfContext + 1, 'x')}});
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().message, "raft message 0 snapshot: snapshot address too long");
}

// Writes little-endian integers into a hand-made buffer.
void put(std::string& s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A message header up to and including the entry count.
std::string header(uint32_t messages, uint32_t entries) {
  std::string s;
  put(s, kWireVersion, 1);
  put(s, messages, 4);
  put(s, static_cast<uint64_t>(MessageType::kApp), 1);
  for (int i = 0; i < 6; ++i) put(s, 1, 8);
  put(s, 0, 1);
  put(s, 0, 8);
  put(s, entries, 4);
  return s;
}

TEST(RaftCodec, HugeLengthFieldsFailWithoutAllocating) {
  std::vector<std::pair<std::string, std::string>> cases;
  {
    std::string s;
    put(s, kWireVersion, 1);
    put(s, 0xffffffff, 4);  // 4 billion messages in a few bytes
    s += std::string(64, '\x00');
    cases.emplace_back(s, "raft messages: message count 4294967295 exceeds the remaining 64 bytes");
  }
  {
    std::string s = header(1, 0xffffffff);  // 4 billion entries
    s += std::string(40, '\x00');
    cases.emplace_back(s, "raft message 0: entry count 4294967295 exceeds the remaining 40 bytes");
  }
  {
    std::string s = header(1, 1);
    put(s, 1, 8);
    put(s, 1, 8);
    put(s, 0, 1);
    put(s, 0xffffffff, 4);  // a 4 GiB entry
    s += "abc";
    cases.emplace_back(
        s, "raft message 0 entry 0: truncated entry data (length 4294967295, 3 bytes left)");
  }
  {
    std::string s = header(1, 0);
    put(s, 1, 1);  // snapshot follows
    put(s, 9, 8);
    put(s, 1, 8);
    put(s, 0xffffffff, 4);  // voters
    cases.emplace_back(s,
                       "raft message 0 snapshot: snapshot voters 4294967295 exceeds the "
                       "remaining 0 bytes");
  }
  {
    std::string s = header(1, 0);
    put(s, 1, 1);
    put(s, 9, 8);
    put(s, 1, 8);
    put(s, 0, 4);
    put(s, 0, 4);
    put(s, 0, 4);
    put(s, 0, 4);                      // no addresses
    put(s, 0x7fffffffffffffffULL, 8);  // an 8 EiB snapshot
    put(s, 0, 4);
    cases.emplace_back(s,
                       "raft message 0 snapshot: truncated snapshot data (length "
                       "9223372036854775807, 4 bytes left)");
  }
  {
    std::string s = header(1, 0);
    put(s, 1, 1);
    put(s, 9, 8);
    put(s, 1, 8);
    put(s, 0, 4);
    put(s, 0, 4);
    put(s, 0, 4);
    put(s, 0xffffffff, 4);  // addresses
    cases.emplace_back(s,
                       "raft message 0 snapshot: snapshot addresses 4294967295 exceeds the "
                       "remaining 0 bytes");
  }
  {
    std::string s = header(1, 0);
    put(s, 1, 1);
    put(s, 9, 8);
    put(s, 1, 8);
    put(s, 1, 4);
    put(s, 1, 8);  // voter 1
    put(s, 0, 4);
    put(s, 0, 4);
    put(s, 1, 4);  // one address
    put(s, 1, 8);
    put(s, 0xfffffff0, 4);  // of 4 GiB
    put(s, 0, 8);
    cases.emplace_back(s,
                       "raft message 0 snapshot: truncated snapshot address (length 4294967280, "
                       "8 bytes left)");
  }
  {
    std::string s = header(1, 0);
    put(s, 0, 1);
    put(s, 0xfffffff0, 4);  // context
    cases.emplace_back(s, "raft message 0: truncated context (length 4294967280, 0 bytes left)");
  }
  for (auto& [bytes, message] : cases) {
    g_largest_alloc = 0;
    g_tracking = true;
    auto r = decode_messages(bytes);
    g_tracking = false;
    ASSERT_FALSE(r.ok()) << message;
    EXPECT_EQ(r.error().code, kErrBadMessage);
    EXPECT_EQ(r.error().message, message);
    // Nothing near what the length claims: at most a few error strings and one message.
    EXPECT_LT(g_largest_alloc.load(), 4096u) << message;
  }
}

}  // namespace
}  // namespace starling::raft::testing

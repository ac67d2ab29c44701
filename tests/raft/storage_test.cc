// MemoryStorage and RaftLog: the log the core reads.
#include <gtest/gtest.h>

#include "supernode/raft/raft_log.h"
#include "supernode/raft/storage.h"
#include "tests/raft/network.h"

namespace starling::raft::testing {
namespace {

std::vector<Entry> ents(uint64_t first, std::vector<uint64_t> terms) {
  std::vector<Entry> out;
  for (uint64_t t : terms) out.push_back(Entry{tm(t), li(first++), EntryType::kNormal, "d"});
  return out;
}

TEST(MemoryStorage, AppendTruncatesConflictingTail) {
  MemoryStorage s;
  s.append(ents(1, {1, 1, 2, 2}));
  EXPECT_EQ(s.last_index(), li(4));
  s.append(ents(3, {3}));
  EXPECT_EQ(s.last_index(), li(3));
  EXPECT_EQ(*s.term(li(3)), tm(3));
  EXPECT_EQ(s.term(li(4)).error().code, kErrUnavailable);
}

TEST(MemoryStorage, CompactAndSnapshot) {
  MemoryStorage s;
  s.append(ents(1, {1, 1, 2, 2, 3}));
  ASSERT_TRUE(s.create_snapshot(li(3), ConfState{{nid(1)}, {}, {}}, "state").ok());
  EXPECT_EQ(s.first_index(), li(4));
  EXPECT_EQ(*s.term(li(3)), tm(2));  // the snapshot's term
  EXPECT_EQ(s.term(li(2)).error().code, kErrCompacted);
  EXPECT_EQ(s.entries(li(2), li(5), kNoLimit).error().code, kErrCompacted);
  EXPECT_EQ(s.entries(li(4), li(6), kNoLimit)->size(), 2u);
  EXPECT_EQ(s.snapshot()->data, "state");
  EXPECT_EQ(s.create_snapshot(li(2), {}, "old").error().code, kErrSnapshotOutOfDate);
  Snapshot newer{SnapshotMeta{li(10), tm(5), ConfState{{nid(1), nid(2)}, {}, {}}}, "new"};
  ASSERT_TRUE(s.apply_snapshot(newer).ok());
  EXPECT_EQ(s.first_index(), li(11));
  EXPECT_EQ(s.last_index(), li(10));
  EXPECT_EQ(s.initial_state().second.voters.size(), 2u);
}

TEST(MemoryStorage, EntriesRespectSizeLimitButReturnOne) {
  MemoryStorage s;
  s.append(ents(1, {1, 1, 1, 1}));
  EXPECT_EQ(s.entries(li(1), li(5), 0)->size(), 1u);
  EXPECT_EQ(s.entries(li(1), li(5), 40)->size(), 2u);  // 17 bytes accounted per entry
}

TEST(RaftLog, UnstableTailOverStorage) {
  MemoryStorage s;
  s.append(ents(1, {1, 1}));
  RaftLog log(s);
  EXPECT_EQ(log.last_index(), li(2));
  log.append(ents(3, {2, 2}));
  EXPECT_EQ(log.last_index(), li(4));
  EXPECT_EQ(log.unstable_entries().size(), 2u);
  EXPECT_EQ(log.entries(li(1), kNoLimit)->size(), 4u);
  // Replace from 2: the unstable tail now starts below the stored last index.
  log.append(ents(2, {3}));
  EXPECT_EQ(log.last_index(), li(2));
  EXPECT_EQ(log.term_or_zero(li(2)), tm(3));
  // Acknowledging a stale (index, term) does nothing.
  log.stable_to(li(2), tm(1));
  EXPECT_EQ(log.unstable_entries().size(), 1u);
  s.append(log.unstable_entries());
  log.stable_to(li(2), tm(3));
  EXPECT_TRUE(log.unstable_entries().empty());
  EXPECT_EQ(log.term_or_zero(li(2)), tm(3));
}

TEST(RaftLog, FindConflictByTerm) {
  MemoryStorage s;
  s.append(ents(1, {1, 1, 2, 2, 4, 4}));
  RaftLog log(s);
  EXPECT_EQ(log.find_conflict_by_term(li(6), tm(3)), li(4));
  EXPECT_EQ(log.find_conflict_by_term(li(6), tm(4)), li(6));
  EXPECT_EQ(log.find_conflict_by_term(li(6), tm(1)), li(2));
  EXPECT_EQ(log.find_conflict_by_term(li(6), tm(0)), li(0));
}

TEST(RaftLog, CommittedEntriesWaitForSnapshot) {
  MemoryStorage s;
  s.append(ents(1, {1, 1, 1}));
  RaftLog log(s);
  log.commit_to(li(2));
  EXPECT_EQ(log.next_committed_entries().size(), 2u);
  log.restore(Snapshot{SnapshotMeta{li(10), tm(2), {}}, "x"});
  EXPECT_EQ(log.committed(), li(10));
  EXPECT_FALSE(log.has_next_committed_entries());
  EXPECT_EQ(log.last_index(), li(10));
  EXPECT_EQ(log.term(li(5)).error().code, kErrCompacted);
}

TEST(ConfChangeCodec, RoundTripAndTotal) {
  ConfChange cc{ConfChangeType::kPromote, nid(0x0102030405060708)};
  EXPECT_EQ(decode_conf_change(encode_conf_change(cc)), cc);
  EXPECT_FALSE(decode_conf_change(""));
  EXPECT_FALSE(decode_conf_change("put a b"));
  std::string bad = encode_conf_change(cc);
  bad[1] = 9;
  EXPECT_FALSE(decode_conf_change(bad));
}

TEST(ConfChangeCodec, ContextRoundTripsOnAddLearnerOnly) {
  ConfChange add{ConfChangeType::kAddLearner, nid(4), "10.0.0.4:8002"};
  const std::string bytes = encode_conf_change(add);
  EXPECT_EQ(bytes.size(), 10u + add.context.size());
  EXPECT_EQ(decode_conf_change(bytes), add);
  // An entry written before contexts existed (10 bytes) decodes with an empty one.
  ConfChange plain{ConfChangeType::kAddLearner, nid(4)};
  EXPECT_EQ(encode_conf_change(plain).size(), 10u);
  EXPECT_EQ(decode_conf_change(encode_conf_change(plain)), plain);
  // A context on another change, or longer than kMaxConfContext, is not a ConfChange.
  std::string on_remove = encode_conf_change({ConfChangeType::kRemove, nid(4)}) + "x";
  EXPECT_FALSE(decode_conf_change(on_remove));
  ConfChange longest{ConfChangeType::kAddLearner, nid(4), std::string(kMaxConfContext, 'a')};
  EXPECT_EQ(decode_conf_change(encode_conf_change(longest)), longest);
  EXPECT_FALSE(decode_conf_change(encode_conf_change(longest) + "a"));
}

}  // namespace
}  // namespace starling::raft::testing

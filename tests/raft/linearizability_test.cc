// The checker must accept what is linearizable and reject what is not; otherwise the
// simulation's verdicts mean nothing.
#include "tests/raft/linearizability.h"

#include <gtest/gtest.h>

namespace starling::raft::testing {
namespace {

KvOp put(int c, std::string v, uint64_t call, uint64_t ret, std::string key = "k") {
  return KvOp{KvOp::Kind::kPut, c, std::move(key), std::move(v), call, ret, std::nullopt, false};
}
KvOp get(int c, std::optional<std::string> v, uint64_t call, uint64_t ret, std::string key = "k") {
  return KvOp{KvOp::Kind::kGet, c, std::move(key), std::move(v), call, ret, std::nullopt, false};
}
// ret = kNever: unknown outcome; `failed`: refused because the key was not `expected`.
KvOp cas(int c, std::optional<std::string> expected, std::string v, uint64_t call, uint64_t ret,
         bool failed = false, std::string key = "k") {
  return KvOp{KvOp::Kind::kCas,    c,     std::move(key), std::move(v), call, ret,
              std::move(expected), failed};
}

TEST(Linearizability, SequentialHistory) {
  EXPECT_TRUE(check_linearizable({get(0, std::nullopt, 0, 1), put(0, "1", 2, 3), get(1, "1", 4, 5),
                                  put(1, "2", 6, 7), get(0, "2", 8, 9)})
                  .ok);
}

TEST(Linearizability, ConcurrentReadMaySeeOldOrNew) {
  EXPECT_TRUE(check_linearizable({put(0, "1", 0, 1), put(0, "2", 2, 10), get(1, "1", 3, 4),
                                  get(2, "2", 5, 6), get(1, "2", 11, 12)})
                  .ok);
}

TEST(Linearizability, RejectsStaleRead) {
  auto r = check_linearizable({put(0, "1", 0, 1), get(1, std::nullopt, 2, 3)});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.key, "k");
  EXPECT_NE(r.explanation.find("get(k) -> <absent>"), std::string::npos);
}

// Known non-linearizable: put(2) finished before anyone read 1, so once 1 was read (put(1)
// linearized after put(2)) nothing can make a later read return 2.
TEST(Linearizability, RejectsValueComingBack) {
  auto r = check_linearizable(
      {put(0, "1", 0, 10), put(1, "2", 1, 2), get(2, "1", 3, 4), get(2, "2", 5, 6)});
  EXPECT_FALSE(r.ok);
}

// Two readers that disagree on the order of two concurrent writes.
TEST(Linearizability, RejectsReadersDisagreeingOnOrder) {
  auto r = check_linearizable({put(0, "1", 0, 20), put(1, "2", 1, 21), get(2, "1", 2, 3),
                               get(2, "2", 4, 5), get(3, "2", 6, 7), get(3, "1", 8, 9)});
  EXPECT_FALSE(r.ok);
}

TEST(Linearizability, UnknownWriteMayOrMayNotHappen) {
  EXPECT_TRUE(check_linearizable({put(0, "1", 0, kNever), get(1, "1", 5, 6)}).ok);
  EXPECT_TRUE(check_linearizable({put(0, "1", 0, kNever), get(1, std::nullopt, 5, 6)}).ok);
  // ...but not before it was called.
  EXPECT_FALSE(check_linearizable({get(1, "1", 0, 1), put(0, "1", 2, kNever)}).ok);
  // ...and not undone once observed.
  EXPECT_FALSE(
      check_linearizable({put(0, "1", 0, kNever), get(1, "1", 5, 6), get(1, std::nullopt, 7, 8)})
          .ok);
}

TEST(Linearizability, KeysAreIndependent) {
  EXPECT_TRUE(check_linearizable(
                  {put(0, "1", 0, 1, "a"), get(1, std::nullopt, 2, 3, "b"), get(1, "1", 4, 5, "a")})
                  .ok);
  EXPECT_FALSE(check_linearizable({put(0, "1", 0, 1, "a"), get(1, std::nullopt, 2, 3, "a"),
                                   get(1, std::nullopt, 4, 5, "b")})
                   .ok);
}

// Many concurrent ops: the memoized search stays fast.
TEST(Linearizability, ManyConcurrentWritesAreCheap) {
  std::vector<KvOp> h;
  for (int i = 0; i < 12; ++i)
    h.push_back(put(i, std::to_string(i), uint64_t(i), 1000 + uint64_t(i)));
  h.push_back(get(99, "7", 2000, 2001));
  h.push_back(get(99, "7", 2002, 2003));
  EXPECT_TRUE(check_linearizable(h).ok);
  h.push_back(get(99, "8", 2004, 2005));
  EXPECT_FALSE(check_linearizable(h).ok);
}

TEST(Linearizability, CasSucceedsOnTheExpectedValue) {
  EXPECT_TRUE(check_linearizable({cas(0, std::nullopt, "1", 0, 1), cas(1, "1", "2", 2, 3),
                                  get(2, "2", 4, 5), cas(0, "1", "3", 6, 7, /*failed=*/true),
                                  get(1, "2", 8, 9)})
                  .ok);
}

TEST(Linearizability, RejectsCasThatSucceededOnAnotherValue) {
  auto r = check_linearizable({put(0, "1", 0, 1), put(1, "2", 2, 3), cas(2, "1", "3", 4, 5)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.explanation.find("cas(k, 1 -> 3) ok"), std::string::npos) << r.explanation;
  // "only if absent" on a key that exists.
  EXPECT_FALSE(check_linearizable({put(0, "1", 0, 1), cas(1, std::nullopt, "2", 2, 3)}).ok);
}

// A refused cas read "not the expected value".
TEST(Linearizability, FailedCasIsAReadOfAnythingButExpected) {
  EXPECT_FALSE(check_linearizable({put(0, "1", 0, 1), cas(1, "1", "2", 2, 3, true)}).ok);
  // ...unless a concurrent write may have come first.
  EXPECT_TRUE(
      check_linearizable({put(0, "1", 0, 1), put(2, "9", 2, 10), cas(1, "1", "2", 3, 4, true)}).ok);
  // A refused cas changes nothing.
  EXPECT_FALSE(
      check_linearizable({put(0, "1", 0, 1), cas(1, "9", "2", 2, 3, true), get(2, "2", 4, 5)}).ok);
}

// Two clients read the same value and both cas from it: only one may win (a lost update).
TEST(Linearizability, RejectsTwoCasWinnersFromOneValue) {
  EXPECT_FALSE(check_linearizable({put(0, "1", 0, 1), cas(1, "1", "a", 2, 10),
                                   cas(2, "1", "b", 3, 11), get(0, "b", 12, 13)})
                   .ok);
  EXPECT_TRUE(check_linearizable({put(0, "1", 0, 1), cas(1, "1", "a", 2, 10),
                                  cas(2, "1", "b", 3, 11, true), get(0, "a", 12, 13)})
                  .ok);
}

TEST(Linearizability, UnknownCasTakesEffectOnlyWhereItMatches) {
  EXPECT_TRUE(
      check_linearizable({put(0, "1", 0, 1), cas(1, "1", "2", 2, kNever), get(2, "2", 5, 6)}).ok);
  EXPECT_TRUE(
      check_linearizable({put(0, "1", 0, 1), cas(1, "1", "2", 2, kNever), get(2, "1", 5, 6)}).ok);
  // Its value can appear only if the key was `expected` when it took effect.
  EXPECT_FALSE(
      check_linearizable({put(0, "1", 0, 1), cas(1, "9", "2", 2, kNever), get(2, "2", 5, 6)}).ok);
  // ...and not before it was called.
  EXPECT_FALSE(
      check_linearizable({put(0, "1", 0, 1), get(2, "2", 2, 3), cas(1, "1", "2", 4, kNever)}).ok);
}

// A write of unknown outcome that nobody read may still have taken effect: a refused cas can
// be the only trace of it (a found regression: such writes used to be dropped).
TEST(Linearizability, AnUnreadUnknownWriteCanExplainARefusedCas) {
  EXPECT_FALSE(check_linearizable({put(0, "1", 0, 1), cas(0, "1", "2", 2, 3, true)}).ok);
  EXPECT_TRUE(
      check_linearizable({put(1, "x", 0, kNever), put(0, "1", 1, 2), cas(0, "1", "2", 3, 4, true)})
          .ok);
  // ...but not a read: nobody read its value.
  EXPECT_FALSE(check_linearizable({put(1, "x", 0, kNever), put(0, "1", 1, 2),
                                   cas(0, "1", "2", 3, 4, true), get(0, "1", 5, 6)})
                   .ok);
  // ...and an unknown cas only where it would have succeeded.
  EXPECT_TRUE(check_linearizable(
                  {put(0, "1", 0, 1), cas(1, "1", "y", 2, kNever), cas(0, "1", "2", 3, 4, true)})
                  .ok);
  EXPECT_FALSE(check_linearizable(
                   {put(0, "1", 0, 1), cas(1, "9", "y", 2, kNever), cas(0, "1", "2", 3, 4, true)})
                   .ok);
}

// Each unread unknown write takes effect at most once: two refused cas separated by a write
// need two of them.
TEST(Linearizability, EachUnreadUnknownWriteExplainsOneRefusalAtMost) {
  const std::vector<KvOp> base = {put(0, "1", 0, 1), cas(0, "1", "a", 4, 5, true),
                                  put(0, "2", 10, 11), cas(0, "2", "b", 14, 15, true)};
  auto with = [&](std::vector<KvOp> extra) {
    extra.insert(extra.end(), base.begin(), base.end());
    return check_linearizable(extra).ok;
  };
  EXPECT_FALSE(with({}));
  EXPECT_FALSE(with({put(1, "x", 2, kNever)}));
  EXPECT_TRUE(with({put(1, "x", 2, kNever), put(2, "y", 3, kNever)}));
  EXPECT_TRUE(with({put(1, "x", 2, kNever), put(2, "y", 12, kNever)}));
  // Called after the first refusal returned, neither can explain it.
  EXPECT_FALSE(with({put(1, "x", 6, kNever), put(2, "y", 7, kNever)}));
}

// A long history of several clients with overlapping ops (the size of a Jepsen run's key)
// is checked quickly, and one wrong read deep inside it is found and named.
TEST(Linearizability, LongHistoriesAreCheckedAndTheStuckOpIsNamed) {
  std::vector<KvOp> h;
  uint64_t t = 0;
  std::optional<std::string> current;
  for (int round = 0; round < 600; ++round) {
    // Client 0 writes; clients 1 and 2 read concurrently (before or after it took effect);
    // client 3 tries a cas from the value before the write (it fails when the write won).
    const uint64_t base = t;
    const std::string v = "v" + std::to_string(round);
    h.push_back(put(0, v, base + 1, base + 6));
    h.push_back(get(1, current, base + 2, base + 3));
    h.push_back(get(2, v, base + 4, base + 8));
    h.push_back(cas(3, current, "lost" + std::to_string(round), base + 5, base + 7, true));
    current = v;
    t = base + 9;
  }
  EXPECT_TRUE(check_linearizable(h).ok);
  h[4 * 500 + 2].value = "v3";  // a read of a value long overwritten
  auto r = check_linearizable(h);
  ASSERT_FALSE(r.ok);
  EXPECT_FALSE(r.inconclusive);
  EXPECT_NE(r.explanation.find("this op cannot take effect: client 2 get(k) -> v3"),
            std::string::npos)
      << r.explanation.substr(0, 2000);
  EXPECT_NE(r.explanation.find("earlier ops"), std::string::npos);
}

TEST(Linearizability, ABudgetTooSmallIsInconclusiveNotAVerdict) {
  std::vector<KvOp> h;
  for (int i = 0; i < 12; ++i)
    h.push_back(put(i, std::to_string(i), uint64_t(i), 1000 + uint64_t(i)));
  h.push_back(get(99, "7", 2000, 2001));
  auto r = check_linearizable(h, /*budget=*/3);
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.inconclusive);
  EXPECT_NE(r.explanation.find("search budget exhausted"), std::string::npos);
}

}  // namespace
}  // namespace starling::raft::testing

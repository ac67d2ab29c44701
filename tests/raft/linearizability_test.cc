// The checker must accept what is linearizable and reject what is not; otherwise the
// simulation's verdicts mean nothing.
#include "tests/raft/linearizability.h"

#include <gtest/gtest.h>

namespace starling::raft::testing {
namespace {

KvOp put(int c, std::string v, uint64_t call, uint64_t ret, std::string key = "k") {
  return KvOp{KvOp::Kind::kPut, c, std::move(key), std::move(v), call, ret};
}
KvOp get(int c, std::optional<std::string> v, uint64_t call, uint64_t ret, std::string key = "k") {
  return KvOp{KvOp::Kind::kGet, c, std::move(key), std::move(v), call, ret};
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

}  // namespace
}  // namespace starling::raft::testing

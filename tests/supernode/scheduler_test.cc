#include "supernode/scheduler.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace starling::supernode {
namespace {

NodeId node(char c) { return NodeId(std::string(64, c)); }

Candidate cand(char c, int64_t done, int64_t uploaded) {
  return Candidate{node(c), "10.0.0.1", 65002, done, uploaded, false, {}};
}

std::string order(const std::vector<Candidate>& ranked) {
  std::string s;
  for (const auto& c : ranked) s.push_back(c.node.get()[0]);
  return s;
}

TEST(Scheduler, Ranks) {
  struct Case {
    const char* name;
    char requester;
    std::vector<Candidate> candidates;
    size_t limit;
    std::string expected;
  };
  const Case cases[] = {
      {"empty", 'r', {}, 10, ""},
      {"only the requester", 'r', {cand('r', 100, 0)}, 10, ""},
      {"never the requester", 'r', {cand('a', 1, 0), cand('r', 100, 0), cand('b', 2, 0)}, 10, "ba"},
      {"more done bytes first",
       'r',
       {cand('a', 10, 0), cand('b', 30, 0), cand('c', 20, 0)},
       10,
       "bca"},
      {"then less uploaded",
       'r',
       {cand('a', 10, 500), cand('b', 10, 100), cand('c', 10, 300)},
       10,
       "bca"},
      {"done beats load", 'r', {cand('a', 11, 1000000), cand('b', 10, 0)}, 10, "ab"},
      {"ties by node id", 'r', {cand('c', 5, 5), cand('a', 5, 5), cand('b', 5, 5)}, 10, "abc"},
      {"limit", 'r', {cand('a', 1, 0), cand('b', 2, 0), cand('c', 3, 0)}, 2, "cb"},
      {"limit zero", 'r', {cand('a', 1, 0)}, 0, ""},
      {"duplicate node keeps first",
       'r',
       {cand('a', 1, 0), cand('a', 100, 0), cand('b', 50, 0)},
       10,
       "ba"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(order(rank(node(c.requester), c.candidates, c.limit)), c.expected) << c.name;
  }
}

TEST(Scheduler, OrderDoesNotDependOnInputOrder) {
  std::vector<Candidate> cs = {cand('a', 5, 1), cand('b', 5, 1), cand('c', 7, 9), cand('d', 0, 0)};
  std::string first = order(rank(node('r'), cs, 10));
  std::reverse(cs.begin(), cs.end());
  EXPECT_EQ(order(rank(node('r'), cs, 10)), first);
  EXPECT_EQ(first, "cabd");
}

TEST(Scheduler, KeepsEndpointAndSeedFlag) {
  Candidate c{node('a'), "198.18.0.7", 65002, 9, 1, true, {}};
  auto ranked = rank(node('r'), {c}, 5);
  ASSERT_EQ(ranked.size(), 1u);
  EXPECT_EQ(ranked[0], c);
}

// Each candidate's segment list reaches the requester unchanged, with its rank decided by the
// same rules as before segments existed (more done bytes first).
TEST(Scheduler, CarriesEachCandidatesSegments) {
  Candidate a{node('a'), "198.18.0.7", 65002, 8 << 20, 0, false, {0, 1}};
  Candidate b{node('b'), "198.18.0.8", 65002, 4 << 20, 0, false, {0}};
  Candidate r{node('r'), "198.18.0.9", 65002, 12 << 20, 0, false, {0, 1, 2}};
  auto ranked = rank(node('r'), {b, r, a}, 5);
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0], a);
  EXPECT_EQ(ranked[1], b);
  EXPECT_EQ(ranked[0].segments, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(ranked[1].segments, (std::vector<int64_t>{0}));
}

}  // namespace
}  // namespace starling::supernode

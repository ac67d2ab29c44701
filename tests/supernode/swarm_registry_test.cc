#include "supernode/swarm_registry.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace starling::supernode {
namespace {

using namespace std::chrono_literals;

const SwarmClock::time_point t0{};

TaskId task(char c) { return TaskId(std::string(64, c)); }
NodeId node(char c) { return NodeId(std::string(64, c)); }

Announcement ann(char t, char n, int64_t done, int64_t total = 100, int64_t up = 0) {
  return Announcement{task(t), node(n), "198.18.0.1", 65002, done, total, up, {}};
}

std::string nodes(const std::vector<SwarmMember>& ms) {
  std::string s;
  for (const auto& m : ms) s.push_back(m.node.get()[0]);
  return s;
}

TEST(SwarmRegistry, Scenarios) {
  struct Step {
    enum { kAnnounce, kExpire } op;
    SwarmClock::duration at;
    Announcement a;
  };
  struct Case {
    const char* name;
    std::vector<Step> steps;
    SwarmClock::duration query_at;
    char query_task;
    std::string expected;
  };
  const Case cases[] = {
      {"empty", {}, 0s, 'x', ""},
      {"one member", {{Step::kAnnounce, 0s, ann('x', 'a', 1)}}, 1s, 'x', "a"},
      {"other task is separate", {{Step::kAnnounce, 0s, ann('y', 'a', 1)}}, 1s, 'x', ""},
      {"sorted by node id",
       {{Step::kAnnounce, 0s, ann('x', 'c', 1)},
        {Step::kAnnounce, 0s, ann('x', 'a', 1)},
        {Step::kAnnounce, 0s, ann('x', 'b', 1)}},
       1s,
       'x',
       "abc"},
      {"alive just before the ttl", {{Step::kAnnounce, 0s, ann('x', 'a', 1)}}, 29s, 'x', "a"},
      {"expired at the ttl", {{Step::kAnnounce, 0s, ann('x', 'a', 1)}}, 30s, 'x', ""},
      {"refresh extends life",
       {{Step::kAnnounce, 0s, ann('x', 'a', 1)}, {Step::kAnnounce, 20s, ann('x', 'a', 2)}},
       45s,
       'x',
       "a"},
      {"only the stale one expires",
       {{Step::kAnnounce, 0s, ann('x', 'a', 1)}, {Step::kAnnounce, 20s, ann('x', 'b', 1)}},
       35s,
       'x',
       "b"},
      {"expire drops entries",
       {{Step::kAnnounce, 0s, ann('x', 'a', 1)},
        {Step::kExpire, 40s, {}},
        {Step::kAnnounce, 40s, ann('x', 'b', 1)}},
       41s,
       'x',
       "b"},
  };
  for (const Case& c : cases) {
    SwarmRegistry reg;
    for (const Step& s : c.steps) {
      if (s.op == Step::kAnnounce) {
        reg.announce(s.a, t0 + s.at);
      } else {
        reg.expire(t0 + s.at);
      }
    }
    EXPECT_EQ(nodes(reg.members(task(c.query_task), t0 + c.query_at)), c.expected) << c.name;
  }
}

TEST(SwarmRegistry, KeepsTheLatestProgressAndEndpoint) {
  SwarmRegistry reg;
  reg.announce(ann('x', 'a', 10, 100, 5), t0);
  Announcement later = ann('x', 'a', 100, 100, 70);
  later.ip = "198.18.0.9";
  later.port = 7000;
  reg.announce(later, t0 + 1s);
  auto ms = reg.members(task('x'), t0 + 2s);
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].ip, "198.18.0.9");
  EXPECT_EQ(ms[0].port, 7000);
  EXPECT_EQ(ms[0].done_bytes, 100);
  EXPECT_EQ(ms[0].uploaded_bytes, 70);
  EXPECT_EQ(ms[0].last_seen, t0 + 1s);
  EXPECT_TRUE(ms[0].complete());
}

TEST(SwarmRegistry, CountsDistinctLiveNodes) {
  SwarmRegistry reg(10s);
  reg.announce(ann('x', 'a', 1), t0);
  reg.announce(ann('y', 'a', 1), t0);
  reg.announce(ann('y', 'b', 1), t0 + 5s);
  EXPECT_EQ(reg.live_nodes(t0 + 1s), 2u);
  EXPECT_EQ(reg.live_nodes(t0 + 12s), 1u);
  EXPECT_EQ(reg.live_nodes(t0 + 20s), 0u);
}

TEST(SwarmRegistry, CompleteNeedsAKnownTotal) {
  EXPECT_FALSE((SwarmMember{node('a'), "", 0, 0, 0, 0, {}, t0}).complete());
  EXPECT_FALSE((SwarmMember{node('a'), "", 0, 5, 10, 0, {}, t0}).complete());
  EXPECT_TRUE((SwarmMember{node('a'), "", 0, 10, 10, 0, {}, t0}).complete());
}

// Which segments each node has added: the latest announce replaces the list (a peer adds
// segments as the seeder publishes them), sorted and without duplicates; nodes and tasks
// keep their own lists.
TEST(SwarmRegistry, RecordsTheSegmentsEachNodeAnnounced) {
  SwarmRegistry reg;
  Announcement a = ann('x', 'a', 0, 0);
  a.segments = {0};
  reg.announce(a, t0);
  Announcement b = ann('x', 'b', 0, 0);
  b.segments = {2, 0, 1, 1};
  reg.announce(b, t0);
  Announcement other = ann('y', 'a', 0, 0);
  other.segments = {5};
  reg.announce(other, t0);
  auto ms = reg.members(task('x'), t0 + 1s);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[0].segments, (std::vector<int64_t>{0}));
  EXPECT_EQ(ms[1].segments, (std::vector<int64_t>{0, 1, 2}));

  a.segments = {0, 1};
  reg.announce(a, t0 + 2s);
  ms = reg.members(task('x'), t0 + 3s);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[0].segments, (std::vector<int64_t>{0, 1}));
  auto y = reg.members(task('y'), t0 + 3s);
  ASSERT_EQ(y.size(), 1u);
  EXPECT_EQ(y[0].segments, (std::vector<int64_t>{5}));
  // A node that has added nothing yet (it only registered) is a member with no segments.
  reg.announce(ann('x', 'c', 0, 0), t0 + 3s);
  EXPECT_TRUE(reg.members(task('x'), t0 + 4s)[2].segments.empty());
}

}  // namespace
}  // namespace starling::supernode

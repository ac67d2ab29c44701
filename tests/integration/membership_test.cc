// Runtime membership with real processes (issue 4 item 1): three `starling supernode` members
// on 127.0.0.3-5, a fourth started with --join on 127.0.0.6 and added with `starling member
// add`, member 1 removed with `starling member remove`, then every remaining member killed and
// restarted: the membership (with member 4's address) and the data persist.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/cluster.h"

namespace starling::testing {
namespace {

using nlohmann::json;

class MembershipTest : public ::testing::Test {
 protected:
  // `starling ARGS... --network NET --supernode SUPERNODES`.
  static RunResult admin(Cluster& c, std::vector<std::string> args, const std::string& supernodes) {
    args.insert(args.end(), {"--network", c.dir() / "net", "--supernode", supernodes});
    return run_starling(args, c.dir() / "admin.log", 60s);
  }

  // `starling status --json` over `supernodes`; null when it failed.
  static json status(Cluster& c, const std::string& supernodes) {
    auto r = admin(c, {"status", "--json"}, supernodes);
    auto j = json::parse(r.output, nullptr, false);
    return j.is_discarded() ? json() : j;
  }

  // The voters and learners each answering member reports, as "id" / "id(learner)" strings,
  // and the ids of the answering members. True when every answering member (at least
  // `answering` of them) reports exactly `want` as voters, one of them is leader, and all
  // applied the same index.
  static bool converged(const json& s, const std::set<uint64_t>& want, size_t answering) {
    if (!s.is_object()) return false;
    std::set<uint64_t> ids;
    std::set<uint64_t> applied;
    int leaders = 0;
    for (const auto& m : s.value("members", json::array())) {
      if (!m.contains("raft")) return false;
      const json& r = m["raft"];
      ids.insert(r.value("id", uint64_t{0}));
      applied.insert(r.value("applied", uint64_t{0}));
      if (r.value("state", "") == "leader") ++leaders;
      std::set<uint64_t> voters;
      for (const auto& member : r.value("members", json::array())) {
        if (!member.value("voter", false)) return false;
        voters.insert(member.value("id", uint64_t{0}));
      }
      if (voters != want) return false;
    }
    return ids == want && ids.size() == answering && leaders == 1 && applied.size() == 1;
  }
};

TEST_F(MembershipTest, AddJoiningMemberRemoveAVoterRestartEverything) {
  Cluster c(/*peers=*/0, /*supernodes=*/3);
  const std::string first_three = c.supernode_addresses();
  const std::string members_123 = "1=" + c.supernode_address(0) + ",2=" + c.supernode_address(1) +
                                  ",3=" + c.supernode_address(2);
  ASSERT_TRUE(eventually([&] { return c.leader() >= 0; }, 30s)) << c.cluster_status().dump(2);

  for (int i = 0; i < 10; ++i) {
    auto put =
        admin(c, {"kv", "put", "app/k" + std::to_string(i), "v" + std::to_string(i)}, first_three);
    ASSERT_EQ(put.code, 0) << put.output;
  }

  // Member 4: started with --join, before it is added.
  const std::string ip4 = Cluster::supernode_ip(3);
  const uint16_t port4 = free_port(ip4);
  const uint16_t data_port4 = free_port(ip4);
  const std::string address4 = ip4 + ":" + std::to_string(port4);
  const std::vector<std::string> args4 = {"supernode",
                                          "--network",
                                          c.dir() / "net",
                                          "--data",
                                          c.dir() / "supernode4",
                                          "--listen",
                                          ip4,
                                          "--port",
                                          std::to_string(port4),
                                          "--data-port",
                                          std::to_string(data_port4),
                                          "--id",
                                          "4",
                                          "--join",
                                          members_123};
  auto member4 = std::make_unique<Process>(args4, c.dir() / "supernode4.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready(ip4, port4); }, 20s)) << member4->output();
  {
    // Not a member yet: it knows no membership and has applied nothing.
    json s = status(c, address4);
    ASSERT_TRUE(s.is_object()) << member4->output();
    ASSERT_EQ(s["members"].size(), 1u) << s.dump(2);  // it names no other member yet
    const json& r = s["members"].at(0)["raft"];
    EXPECT_EQ(r.value("applied", uint64_t{99}), 0u) << s.dump(2);
    EXPECT_NE(r.value("state", ""), "leader");
  }

  // Refusals: an id in use, a malformed argument.
  auto in_use = admin(c, {"member", "add", "2=" + address4}, first_three);
  EXPECT_NE(in_use.code, 0);
  EXPECT_NE(in_use.output.find("id 2 is already in use"), std::string::npos) << in_use.output;
  auto malformed = admin(c, {"member", "add", "4-" + address4}, first_three);
  EXPECT_NE(malformed.code, 0);
  EXPECT_NE(malformed.output.find("is not ID=HOST:PORT"), std::string::npos) << malformed.output;

  auto add = admin(c, {"member", "add", "4=" + address4}, first_three);
  ASSERT_EQ(add.code, 0) << add.output << member4->output();
  EXPECT_NE(add.output.find("added member 4 at " + address4), std::string::npos) << add.output;

  // It catches up (from the leader's snapshot) and serves the data from its own copy.
  EXPECT_TRUE(eventually(
      [&] {
        auto get = admin(c, {"kv", "get", "--stale", "app/k9"}, address4);
        return get.code == 0 && get.output.find("v9") != std::string::npos;
      },
      30s))
      << member4->output();
  const std::string all_four = first_three + "," + address4;
  json last;
  EXPECT_TRUE(eventually(
      [&] {
        last = status(c, all_four);
        return converged(last, {1, 2, 3, 4}, 4);
      },
      30s))
      << last.dump(2);
  // Every member learned member 4's address through the log.
  for (const auto& m : last.value("members", json::array())) {
    bool found = false;
    for (const auto& member : m["raft"].value("members", json::array())) {
      if (member.value("id", 0) == 4) found = member.value("address", "") == address4;
    }
    EXPECT_TRUE(found) << m.dump(2);
  }
  auto again = admin(c, {"member", "add", "4=" + address4}, all_four);
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.output.find("id 4 is already in use"), std::string::npos) << again.output;

  // Remove member 1 (possibly the leader: it then steps down and the others elect one).
  const int leader_before = c.leader();
  std::printf("leader before removing member 1: %d\n", leader_before + 1);
  const std::string others = c.supernode_address(1) + "," + c.supernode_address(2) + "," + address4;
  auto remove = admin(c, {"member", "remove", "1"}, others);
  ASSERT_EQ(remove.code, 0) << remove.output;
  EXPECT_NE(remove.output.find("removed member 1"), std::string::npos) << remove.output;
  c.kill_supernode(0);

  auto put = admin(c, {"kv", "put", "app/after", "removed"}, others);
  ASSERT_EQ(put.code, 0) << put.output;
  EXPECT_TRUE(eventually(
      [&] {
        last = status(c, others);
        return converged(last, {2, 3, 4}, 3);
      },
      30s))
      << last.dump(2);
  auto reuse = admin(c, {"member", "add", "1=" + c.supernode_address(0)}, others);
  EXPECT_NE(reuse.code, 0);
  EXPECT_NE(reuse.output.find("id 1 belonged to a removed member"), std::string::npos)
      << reuse.output;
  auto missing = admin(c, {"member", "remove", "9"}, others);
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.output.find("cannot remove member 9: it is not a member"), std::string::npos)
      << missing.output;

  // Restart every remaining member (kill -9): the membership and the data are on disk. The
  // initial members get their original --members line; the stored membership wins.
  c.kill_supernode(1);
  c.kill_supernode(2);
  member4->signal(SIGKILL);
  member4->wait(10s);
  c.start_supernode(1);
  c.start_supernode(2);
  member4 = std::make_unique<Process>(args4, c.dir() / "supernode4.log");
  EXPECT_TRUE(eventually(
      [&] {
        last = status(c, others);
        return converged(last, {2, 3, 4}, 3);
      },
      60s))
      << last.dump(2) << c.supernode(1).output();
  for (const std::string key : {"app/k0", "app/k9", "app/after"}) {
    auto get = admin(c, {"kv", "get", key}, others);
    EXPECT_EQ(get.code, 0) << get.output;
    EXPECT_NE(get.output.find(key == "app/after" ? "removed" : "v" + key.substr(5)),
              std::string::npos)
        << key << ": " << get.output;
  }
  auto put2 = admin(c, {"kv", "put", "app/restarted", "yes"}, others);
  EXPECT_EQ(put2.code, 0) << put2.output;

  // Remove the leader itself: it steps down, the other two elect a leader and keep writing.
  uint64_t leader = 0;
  for (const auto& m : last.value("members", json::array())) {
    if (m["raft"].value("state", "") == "leader") leader = m["raft"].value("id", uint64_t{0});
  }
  ASSERT_NE(leader, 0u) << last.dump(2);
  std::set<uint64_t> rest = {2, 3, 4};
  rest.erase(leader);
  std::string rest_addresses;
  for (uint64_t id : rest) {
    if (!rest_addresses.empty()) rest_addresses += ",";
    rest_addresses += id == 4 ? address4 : c.supernode_address(static_cast<int>(id) - 1);
  }
  auto remove_leader = admin(c, {"member", "remove", std::to_string(leader)}, others);
  ASSERT_EQ(remove_leader.code, 0) << remove_leader.output;
  auto put3 = admin(c, {"kv", "put", "app/two", "left"}, rest_addresses);
  EXPECT_EQ(put3.code, 0) << put3.output;
  EXPECT_TRUE(eventually(
      [&] {
        last = status(c, rest_addresses);
        return converged(last, rest, 2);
      },
      30s))
      << last.dump(2);
  {
    // The removed leader is no longer leading and no longer counts itself a voter.
    // (status also asks the members it names, so pick the removed one's own answer.)
    json s = status(c, leader == 4 ? address4 : c.supernode_address(static_cast<int>(leader) - 1));
    ASSERT_TRUE(s.is_object());
    bool seen = false;
    for (const auto& m : s.value("members", json::array())) {
      if (!m.contains("raft") || m["raft"].value("id", uint64_t{0}) != leader) continue;
      seen = true;
      const json& r = m["raft"];
      EXPECT_NE(r.value("state", ""), "leader") << s.dump(2);
      for (const auto& member : r.value("members", json::array())) {
        EXPECT_NE(member.value("id", uint64_t{0}), leader) << s.dump(2);
      }
    }
    EXPECT_TRUE(seen) << s.dump(2);
  }
}

}  // namespace
}  // namespace starling::testing

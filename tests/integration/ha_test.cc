// The supernode cluster with real processes (issue 4 item 7): three `starling supernode`
// members on 127.0.0.3-5, killed with SIGKILL and restarted, while the CLI and peer daemons
// keep working through whichever members are alive.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <thread>

#include "tests/integration/cluster.h"
#include "tests/integration/slow_origin.h"

namespace starling::testing {
namespace {

using nlohmann::json;

class HaTest : public ::testing::Test {
 protected:
  // `starling kv ...` against every supernode of `c`.
  static RunResult kv(Cluster& c, std::vector<std::string> args) {
    std::vector<std::string> full = {"kv"};
    full.insert(full.end(), args.begin(), args.end());
    full.insert(full.end(), {"--network", c.dir() / "net", "--supernode", c.supernode_addresses()});
    return run_starling(full, c.dir() / "kv.log", 60s);
  }

  // Waits until some member is leader; returns its index.
  static int wait_leader(Cluster& c, int not_this = -1) {
    int leader = -1;
    EXPECT_TRUE(eventually(
        [&] {
          leader = c.leader();
          return leader >= 0 && leader != not_this;
        },
        30s))
        << c.cluster_status().dump(2);
    return leader;
  }

  // Waits until every member answers and all applied the same index.
  static void wait_converged(Cluster& c) {
    json last;
    EXPECT_TRUE(eventually(
        [&] {
          last = c.cluster_status();
          if (!last.is_object()) return false;
          std::set<uint64_t> applied;
          int answering = 0;
          for (const auto& m : last.value("members", json::array())) {
            if (!m.contains("raft")) return false;
            ++answering;
            applied.insert(m["raft"].value("applied", uint64_t{0}));
          }
          return answering == c.supernode_count() && applied.size() == 1;
        },
        30s))
        << last.dump(2);
  }
};

TEST_F(HaTest, KvIsLinearizableAcrossLeaderKillAndFullRestart) {
  Cluster c(0, 3);
  const int leader = wait_leader(c);
  ASSERT_GE(leader, 0);

  auto put = kv(c, {"put", "color", "blue"});
  ASSERT_EQ(put.code, 0) << put.output;
  EXPECT_NE(put.output.find("wrote color at index "), std::string::npos) << put.output;
  auto got = kv(c, {"get", "color", "--json"});
  ASSERT_EQ(got.code, 0) << got.output;
  const json record = json::parse(got.output, nullptr, false);
  ASSERT_TRUE(record.is_object()) << got.output;
  EXPECT_EQ(record.value("value", ""), "blue");
  const uint64_t index = record.value("modify_index", uint64_t{0});
  ASSERT_GT(index, 0u);

  // Compare-and-set: a stale index is refused with the current one named; the right one wins.
  auto stale = kv(c, {"cas", "color", "red", "--index", std::to_string(index + 100)});
  EXPECT_EQ(stale.code, 1) << stale.output;
  EXPECT_NE(stale.output.find("is at index " + std::to_string(index)), std::string::npos)
      << stale.output;
  auto cas = kv(c, {"cas", "color", "green", "--index", std::to_string(index)});
  EXPECT_EQ(cas.code, 0) << cas.output;

  // kill -9 the leader: another member takes over, writes and consistent reads continue.
  c.kill_supernode(leader);
  const int next = wait_leader(c, leader);
  ASSERT_GE(next, 0);
  EXPECT_NE(next, leader);
  auto after = kv(c, {"put", "shape", "circle"});
  EXPECT_EQ(after.code, 0) << after.output;
  got = kv(c, {"get", "color"});
  EXPECT_EQ(got.code, 0) << got.output;
  EXPECT_EQ(got.output, "green\n");

  // The killed member comes back from its own disk and catches up.
  c.start_supernode(leader);
  wait_converged(c);
  auto stale_read = run_starling({"kv", "get", "shape", "--stale", "--network", c.dir() / "net",
                                  "--supernode", c.supernode_address(leader)},
                                 c.dir() / "kv.log", 30s);
  EXPECT_EQ(stale_read.code, 0) << stale_read.output;
  EXPECT_EQ(stale_read.output, "circle\n");

  // Stop and restart every member: everything acknowledged is still there.
  for (int i = 0; i < 3; ++i) c.kill_supernode(i);
  for (int i = 0; i < 3; ++i) c.start_supernode(i);
  wait_leader(c);
  auto list = kv(c, {"list"});
  EXPECT_EQ(list.code, 0) << list.output;
  EXPECT_NE(list.output.find("color\t"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("\tgreen\n"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("shape\t"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("\tcircle\n"), std::string::npos) << list.output;
}

TEST_F(HaTest, AMinorityRefusesWritesAndConsistentReadsButServesStaleOnes) {
  Cluster c(0, 3);
  ASSERT_GE(wait_leader(c), 0);
  ASSERT_EQ(kv(c, {"put", "k", "v1"}).code, 0);
  wait_converged(c);

  // Members 1 and 2 die: member 0 alone is a minority.
  c.kill_supernode(1);
  c.kill_supernode(2);
  const std::vector<std::string> only0 = {"--network", c.dir() / "net", "--supernode",
                                          c.supernode_address(0)};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), only0.begin(), only0.end());
    return run_starling(args, c.dir() / "kv.log", 60s);
  };
  auto put = with({"kv", "put", "k", "v2"});
  EXPECT_EQ(put.code, 1) << put.output;
  EXPECT_NE(put.output.find("no quorum"), std::string::npos) << put.output;
  auto read = with({"kv", "get", "k"});
  EXPECT_EQ(read.code, 1) << read.output;
  EXPECT_NE(read.output.find("no quorum"), std::string::npos) << read.output;
  auto stale = with({"kv", "get", "k", "--stale"});
  EXPECT_EQ(stale.code, 0) << stale.output;
  EXPECT_EQ(stale.output, "v1\n");

  // Healing: the majority is back, writes work and every member converges.
  c.start_supernode(1);
  c.start_supernode(2);
  ASSERT_GE(wait_leader(c), 0);
  auto healed = kv(c, {"put", "k", "v3"});
  EXPECT_EQ(healed.code, 0) << healed.output;
  wait_converged(c);
  auto final_read = with({"kv", "get", "k", "--stale"});
  EXPECT_EQ(final_read.output, "v3\n");
}

// The acceptance run: four peers download 256 MiB while the Raft leader is killed. The seed
// is a follower (the peers ask it first), so the data plane never depends on the leader.
TEST_F(HaTest, LeaderKillDuringADownloadIsInvisibleToFourPeers) {
  constexpr size_t kSize = 256u << 20;
  Cluster c(0, 3);
  const int leader = wait_leader(c);
  ASSERT_GE(leader, 0);
  const int seeder = (leader + 1) % 3;
  c.start_peers(4, seeder);
  {
    std::mt19937_64 rng(7);
    std::string blob(kSize, '\0');
    for (size_t i = 0; i + 8 <= blob.size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(blob.data() + i, &v, 8);
    }
    std::ofstream(c.www("big.bin"), std::ios::binary) << blob;
  }
  const std::string want = sha256_of(c.www("big.bin"));

  std::vector<Process*> gets;
  for (int i = 0; i < 4; ++i) {
    gets.push_back(&c.start_get(i,
                                {c.url("big.bin"), "-o", c.out("big" + std::to_string(i) + ".bin")},
                                "get" + std::to_string(i) + ".log"));
  }
  // Once the seed is fetching or serving, kill the leader.
  EXPECT_TRUE(eventually([&] { return c.origin_stat("requests") >= 1; }, 60s));
  std::this_thread::sleep_for(1s);
  c.kill_supernode(leader);

  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(gets[static_cast<size_t>(i)]->wait(240s), 0)
        << gets[static_cast<size_t>(i)]->output();
    EXPECT_EQ(sha256_of(c.out("big" + std::to_string(i) + ".bin")), want) << "peer " << i;
  }
  // One trip to the origin for the whole cluster: no back-to-source, no second fetch.
  EXPECT_EQ(c.origin_stat("requests"), 1);
  EXPECT_EQ(c.origin_stat("bytes_sent"), static_cast<int64_t>(kSize));
  const int next = wait_leader(c, leader);
  EXPECT_NE(next, leader);
}

// The cluster loses its majority while a peer downloads: the seeder alone can publish nothing
// and answer no consistent GetTask (each call waits out the peer's 30 s pool deadline), yet the
// peer daemon's task stays live: it keeps its state, and a DELETE takes effect at once instead
// of after the call (the worker does not wait on GetTask).
TEST_F(HaTest, APeerWithoutAMajorityKeepsItsTaskLiveAndRemovesItAtOnce) {
  constexpr size_t kSize = 16u << 20;
  Cluster c(0, 3, {"--segment-size", "1MiB"});
  const int leader = wait_leader(c);
  ASSERT_GE(leader, 0);
  const int seeder = (leader + 1) % 3;
  c.start_peers(1, seeder);
  std::string body(kSize, '\0');
  {
    write_random_file(c.dir() / "blob", kSize, 5);
    std::ifstream in(c.dir() / "blob", std::ios::binary);
    in.read(body.data(), static_cast<std::streamsize>(kSize));
  }
  SlowOrigin origin("127.0.0.9", body, 1 << 20);  // ~16 s of fetch: 1 MiB segments, 1 a second
  const std::string url = "http://127.0.0.9:" + std::to_string(origin.port()) + "/blob";
  Process& get = c.start_get(0, {url, "-o", c.out("blob")}, "get.log");

  // Two segments down at the peer, then the other two members die.
  std::string id;
  ASSERT_TRUE(eventually(
      [&] {
        const json list = peer_api(c.socket(0), "GET", "/v1/tasks");
        if (!list.is_object() || list.value("tasks", json::array()).empty()) return false;
        const json t = list["tasks"][0];
        id = t.value("task_id", "");
        int complete = 0;
        for (const auto& seg : t.value("segments", json::array())) {
          complete += seg.value("complete", false) ? 1 : 0;
        }
        return complete >= 2;
      },
      60s))
      << get.output();
  for (int i = 0; i < 3; ++i) {
    if (i != seeder) c.kill_supernode(i);
  }
  const auto lost = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(3s);  // the worker's poll is now a GetTask that cannot be answered
  const json during = peer_api(c.socket(0), "GET", "/v1/tasks/" + id);
  EXPECT_EQ(during.value("state", ""), "downloading") << during.dump();

  const json removed = peer_api(c.socket(0), "DELETE", "/v1/tasks/" + id);
  EXPECT_EQ(removed.value("removed", false), true) << removed.dump();
  json after;
  EXPECT_TRUE(eventually(
      [&] {
        after = peer_api(c.socket(0), "GET", "/v1/tasks/" + id);
        return after.value("http_status", 0) == 404;
      },
      5s))
      << "still listed "
      << std::chrono::duration<double>(std::chrono::steady_clock::now() - lost).count()
      << " s after the majority was lost: " << after.dump();
  EXPECT_FALSE(std::filesystem::exists(c.dir() / ("peer0/tasks/" + id)));
  EXPECT_NE(get.wait(60s), 0);  // its task is gone: the get fails, writing nothing
  EXPECT_FALSE(std::filesystem::exists(c.out("blob")));
}

}  // namespace
}  // namespace starling::testing

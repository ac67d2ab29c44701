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

  // `size` pseudo-random bytes from `seed`, to be served by a SlowOrigin.
  static std::string random_body(Cluster& c, size_t size, uint64_t seed) {
    std::string body(size, '\0');
    write_random_file(c.dir() / "blob", size, seed);
    std::ifstream in(c.dir() / "blob", std::ios::binary);
    in.read(body.data(), static_cast<std::streamsize>(size));
    return body;
  }

  // How many segments of peer `i`'s first task are complete (its id into `id`); -1 without one.
  static int complete_segments(Cluster& c, int i, std::string& id) {
    const json list = peer_api(c.socket(i), "GET", "/v1/tasks");
    if (!list.is_object() || list.value("tasks", json::array()).empty()) return -1;
    const json t = list["tasks"][0];
    id = t.value("task_id", "");
    int complete = 0;
    for (const auto& seg : t.value("segments", json::array())) {
      complete += seg.value("complete", false) ? 1 : 0;
    }
    return complete;
  }

  // DELETEs peer `i`'s task `id`; true once the daemon no longer lists it (within `limit`).
  static bool removed_within(Cluster& c, int i, const std::string& id,
                             std::chrono::milliseconds limit) {
    const json removed = peer_api(c.socket(i), "DELETE", "/v1/tasks/" + id);
    EXPECT_EQ(removed.value("removed", false), true) << removed.dump();
    const auto asked = std::chrono::steady_clock::now();
    json after;
    const bool gone = eventually(
        [&] {
          after = peer_api(c.socket(i), "GET", "/v1/tasks/" + id);
          return after.value("http_status", 0) == 404;
        },
        limit);
    if (!gone) {
      ADD_FAILURE()
          << "still listed "
          << std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count()
          << " s after the DELETE: " << after.dump();
    }
    return gone &&
           !std::filesystem::exists(c.dir() / ("peer" + std::to_string(i) + "/tasks/" + id));
  }

  // Peer 0 of `c` gets `mib` MiB from an origin that sends 1 MiB a second (with 1 MiB segments,
  // a segment a second); returns once the peer has two segments complete, the task's id in
  // `id`.
  Process& start_slow_get(Cluster& c, size_t mib, uint64_t seed, std::string& id) {
    origin_ = std::make_unique<SlowOrigin>("127.0.0.9", random_body(c, mib << 20, seed), 1 << 20);
    const std::string url = "http://127.0.0.9:" + std::to_string(origin_->port()) + "/blob";
    Process& get = c.start_get(0, {url, "-o", c.out("blob")}, "get.log");
    EXPECT_TRUE(eventually([&] { return complete_segments(c, 0, id) >= 2; }, 60s)) << get.output();
    return get;
  }
  std::unique_ptr<SlowOrigin> origin_;

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
  Cluster c(0, 3, {"--segment-size", "1MiB"});
  const int leader = wait_leader(c);
  ASSERT_GE(leader, 0);
  const int seeder = (leader + 1) % 3;
  c.start_peers(1, seeder);
  // Two segments down at the peer, then the other two members die.
  std::string id;
  Process& get = start_slow_get(c, 16, 5, id);
  ASSERT_FALSE(HasFailure());
  for (int i = 0; i < 3; ++i) {
    if (i != seeder) c.kill_supernode(i);
  }
  std::this_thread::sleep_for(3s);  // the worker's poll is now a GetTask that cannot be answered
  const json during = peer_api(c.socket(0), "GET", "/v1/tasks/" + id);
  EXPECT_EQ(during.value("state", ""), "downloading") << during.dump();

  EXPECT_TRUE(removed_within(c, 0, id, 5s));
  EXPECT_NE(get.wait(60s), 0);  // its task is gone: the get fails, writing nothing
  EXPECT_FALSE(std::filesystem::exists(c.out("blob")));
}

// A member that hangs instead of dying (SIGSTOP: its connections stay open, nothing answers).
// Before, every Announce waited the pool's call timeout (10 s) for it, on the peer daemon's
// worker. Now an Announce waits at most call_all_timeout (2 s) per member and runs beside the
// worker: the peer learns and finishes new segments through the other members, and a DELETE
// takes effect at once.
TEST_F(HaTest, AHungMemberDoesNotHoldUpAPeerDaemon) {
  Cluster c(0, 3, {"--segment-size", "1MiB"});
  const int leader = wait_leader(c);
  ASSERT_GE(leader, 0);
  const int seeder = (leader + 1) % 3;
  const int hung = (leader + 2) % 3;
  c.start_peers(1, seeder);
  std::string id;
  Process& get = start_slow_get(c, 24, 6, id);
  ASSERT_FALSE(HasFailure());
  c.supernode(hung).signal(SIGSTOP);
  const int before = complete_segments(c, 0, id);
  int now = before;
  EXPECT_TRUE(eventually(
      [&] {
        now = complete_segments(c, 0, id);
        return now >= before + 3;
      },
      8s))
      << before << " segments complete when the member hung, " << now << " after 8 s";
  EXPECT_TRUE(removed_within(c, 0, id, 2s));
  c.supernode(hung).signal(SIGCONT);
  EXPECT_NE(get.wait(60s), 0);
}

}  // namespace
}  // namespace starling::testing

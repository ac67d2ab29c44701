// Seeder failover and full restart (issue 4 items 5 and 7) with real processes: three supernodes,
// four peer daemons downloading a 64 MiB file from a throttled origin, and kill -9 of the supernode
// that fetches and seeds it after it has published a segment. Another member takes the seed lease
// when it expires and resumes the fetch (with Range after the published segments, or from zero
// when the origin has no Range support); every user gets identical bytes.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "crypto/keys.h"
#include "tests/integration/cluster.h"
#include "tests/integration/process.h"
#include "tests/integration/slow_origin.h"

namespace starling::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr int kSupernodes = 3;
constexpr int kPeers = 4;
// A seeder's death costs at most about two segments of origin bytes: the one it was fetching
// and a published one no peer had completed yet (the successor fetches it again by Range).
// 16 segments keep that under the 1.25 x the issue allows, whatever the moment of the kill.
constexpr int64_t kSegment = 4 << 20;
constexpr size_t kSize = 64 << 20;  // 16 segments

// A random file of `size` bytes at `path` (seeded by `seed`), returned as the origin's body.
std::string random_body(const std::string& path, size_t size, uint64_t seed) {
  write_random_file(path, size, seed);
  std::string body(size, '\0');
  std::ifstream in(path, std::ios::binary);
  in.read(body.data(), static_cast<std::streamsize>(size));
  return body;
}

// The index of the supernode whose log says `needle`, or -1 (several: the first).
int supernode_logging(Cluster& c, const std::string& needle) {
  for (int i = 0; i < c.supernode_count(); ++i) {
    if (c.supernode(i).output().find(needle) != std::string::npos) return i;
  }
  return -1;
}

int supernodes_logging(Cluster& c, const std::string& needle) {
  int n = 0;
  for (int i = 0; i < c.supernode_count(); ++i) {
    n += c.supernode(i).output().find(needle) != std::string::npos ? 1 : 0;
  }
  return n;
}

// The number of segments the first task listed by any peer has published (0 if none yet).
size_t published_segments(Cluster& c) {
  size_t best = 0;
  for (int i = 0; i < kPeers; ++i) {
    const json list = peer_api(c.socket(i), "GET", "/v1/tasks");
    if (!list.is_object() || !list.contains("tasks") || list["tasks"].empty()) continue;
    best = std::max(best, list["tasks"][0].value("segments", json::array()).size());
  }
  return best;
}

class SeederFailoverTest : public ::testing::TestWithParam<bool> {};

TEST_P(SeederFailoverTest, KillingTheSeederMidFetchIsInvisibleToFourPeers) {
  const bool ranges = GetParam();
  Cluster c(kPeers, kSupernodes,
            {"--segment-size", std::to_string(kSegment), "--seed-lease", "2000"});
  const std::string body = random_body(c.www("blob"), kSize, ranges ? 21 : 22);
  const std::string want = sha256_of(c.www("blob"));
  // 8 MiB/s: the whole fetch takes about 8 s, a segment about 0.5 s.
  SlowOrigin origin(Cluster::kOriginIp, body, 8 << 20, ranges);
  const std::string url =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(origin.port()) + "/blob";

  std::vector<Process*> gets;
  for (int i = 0; i < kPeers; ++i) {
    gets.push_back(&c.start_get(i, {url, "-o", c.out("out" + std::to_string(i))},
                                "get" + std::to_string(i) + ".log"));
  }
  // The member that registered the task fetches and seeds it.
  int seeder = -1;
  ASSERT_TRUE(
      eventually([&] { return (seeder = supernode_logging(c, "registered url=")) >= 0; }, 60s));
  ASSERT_TRUE(eventually([&] { return published_segments(c) >= 1; }, 60s))
      << c.supernode(seeder).output();
  // Exactly one member fetches, and the registering member does (it applied its own CreateTask
  // before starting, even as a follower).
  EXPECT_EQ(supernodes_logging(c, "fetching from origin"), 1);
  EXPECT_EQ(supernodes_logging(c, "taking over"), 0) << c.supernode(seeder).output();
  const int64_t sent_at_kill = origin.bytes_sent();
  ASSERT_LT(sent_at_kill, static_cast<int64_t>(kSize)) << "the fetch ended before the kill";
  c.kill_supernode(seeder);
  std::cout << "killed seeder supernode " << seeder << " after " << sent_at_kill
            << " origin bytes and " << published_segments(c) << " published segments\n";

  for (int i = 0; i < kPeers; ++i) {
    Process& g = *gets[static_cast<size_t>(i)];
    ASSERT_EQ(g.wait(240s), 0) << "peer " << i << ": " << g.output() << c.peer(i).output()
                               << peer_api(c.socket(i), "GET", "/v1/tasks").dump();
    EXPECT_EQ(sha256_of(c.out("out" + std::to_string(i))), want) << "peer " << i;
  }

  // Exactly one survivor took the lease over, and the task is ready everywhere.
  EXPECT_EQ(supernodes_logging(c, "expired; taking over with epoch"), 1);
  const int successor = supernode_logging(c, "expired; taking over with epoch");
  EXPECT_NE(successor, seeder);
  for (int i = 0; i < kPeers; ++i) {
    const json list = peer_api(c.socket(i), "GET", "/v1/tasks");
    ASSERT_TRUE(list.is_object() && !list["tasks"].empty()) << list.dump();
    EXPECT_EQ(list["tasks"][0].value("state", ""), "done") << list.dump();
    EXPECT_EQ(list["tasks"][0].value("source_state", ""), "ready") << list.dump();
  }
  // The origin served the file once plus what the dead seeder had fetched but not published
  // (with Range), or once plus the dead seeder's whole partial fetch (without).
  EXPECT_GE(origin.requests(), 2);
  std::cout << "origin: " << origin.requests() << " requests, " << origin.bytes_sent()
            << " bytes for a " << kSize << "-byte file (" << (ranges ? "with" : "without")
            << " Range)\n";
  if (ranges) {
    EXPECT_LE(origin.bytes_sent(), static_cast<int64_t>(kSize) * 5 / 4);
  } else {
    EXPECT_LE(origin.bytes_sent(), static_cast<int64_t>(kSize) * 2);
  }
  if (HasFailure()) {
    for (int i = 0; i < kSupernodes; ++i) {
      std::cout << "--- supernode " << i << "\n" << c.supernode(i).output();
    }
  }
}

// The starling binary's output for `args` (admin commands against every supernode).
json admin_json(Cluster& c, std::vector<std::string> args) {
  args.insert(args.end(),
              {"--network", c.dir() / "net", "--supernode", c.supernode_addresses(), "--json"});
  auto r = run_starling(args, c.dir() / "admin.log", 60s);
  auto j = json::parse(r.output, nullptr, false);
  return j.is_discarded() ? json() : j;
}

// Issue 4 item 7: stop (kill -9) and restart every supernode while a task is mid-fetch. The
// tasks, the seed lease (a member takes the fetch over and resumes after the published
// segments), the certificate records (issued and revoked) and the kv data all survive, and the
// download finishes with identical bytes.
TEST(FullRestartTest, EveryMemberKilledMidFetchComesBackWithTasksLeasesCertificatesAndKv) {
  Cluster c(2, kSupernodes, {"--segment-size", std::to_string(kSegment), "--seed-lease", "2000"});
  const std::string body = random_body(c.www("blob"), kSize, 23);
  const std::string want = sha256_of(c.www("blob"));
  SlowOrigin origin(Cluster::kOriginIp, body, 8 << 20);
  const std::string url =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(origin.port()) + "/blob";

  // Records of every kind before the restart: kv, a revocation, issued certificates.
  auto put = run_starling({"kv", "put", "color", "blue", "--network", c.dir() / "net",
                           "--supernode", c.supernode_addresses()},
                          c.dir() / "kv.log", 60s);
  ASSERT_EQ(put.code, 0) << put.output;
  auto key = crypto::load_or_create_node_key(c.dir() / "peer1/node.key");
  ASSERT_TRUE(key.ok());
  const std::string peer1 = crypto::node_id_of(key->public_key).get();
  auto revoke = run_starling({"mesh", "revoke", peer1, "--reason", "decommissioned", "--network",
                              c.dir() / "net", "--supernode", c.supernode_addresses()},
                             c.dir() / "revoke.log", 60s);
  ASSERT_EQ(revoke.code, 0) << revoke.output;

  Process& get = c.start_get(0, {url, "-o", c.out("blob")}, "get.log");
  ASSERT_TRUE(eventually([&] { return published_segments(c) >= 2; }, 60s))
      << c.supernode(0).output();
  const json certificates = admin_json(c, {"mesh", "certificates"});
  ASSERT_TRUE(certificates.is_object()) << certificates.dump();
  ASSERT_LT(origin.bytes_sent(), static_cast<int64_t>(kSize)) << "the fetch ended first";

  for (int i = 0; i < kSupernodes; ++i) c.kill_supernode(i);
  std::cout << "killed every supernode after " << origin.bytes_sent() << " origin bytes\n";
  for (int i = 0; i < kSupernodes; ++i) c.start_supernode(i);

  ASSERT_EQ(get.wait(240s), 0) << get.output() << c.peer(0).output();
  EXPECT_EQ(sha256_of(c.out("blob")), want);
  // The fetch resumed after the segments published before the restart.
  std::cout << "origin: " << origin.requests() << " requests, " << origin.bytes_sent()
            << " bytes for a " << kSize << "-byte file\n";
  EXPECT_LE(origin.bytes_sent(), static_cast<int64_t>(kSize) * 5 / 4);
  EXPECT_EQ(supernodes_logging(c, "expired; taking over with epoch"), 1);

  // Tasks, certificates and kv as before.
  const json status = c.cluster_status();
  bool ready = false;
  for (const auto& m : status.value("members", json::array())) {
    for (const auto& t : m.value("tasks", json::array())) {
      ready = ready || (t.value("url", "") == url && t.value("state", "") == "ready");
    }
  }
  EXPECT_TRUE(ready) << status.dump(2);
  const json after = admin_json(c, {"mesh", "certificates"});
  EXPECT_EQ(after, certificates);
  EXPECT_NE(after.dump().find(peer1), std::string::npos) << after.dump(2);
  auto color = run_starling(
      {"kv", "get", "color", "--network", c.dir() / "net", "--supernode", c.supernode_addresses()},
      c.dir() / "kv.log", 60s);
  EXPECT_EQ(color.code, 0) << color.output;
  EXPECT_EQ(color.output, "blue\n");
  // The revoked peer is still refused.
  auto refused = c.get(1, {url, "-o", c.out("refused")});
  EXPECT_EQ(refused.code, 1) << refused.output;
  EXPECT_NE(refused.output.find("decommissioned"), std::string::npos) << refused.output;
  if (HasFailure()) {
    for (int i = 0; i < kSupernodes; ++i) {
      std::cout << "--- supernode " << i << "\n" << c.supernode(i).output();
    }
  }
}

// How many times `needle` appears in the logs of every supernode (restarts included).
int occurrences(Cluster& c, const std::string& needle) {
  int n = 0;
  for (int i = 0; i < c.supernode_count(); ++i) {
    const std::string out = c.supernode(i).output();
    for (size_t at = out.find(needle); at != std::string::npos; at = out.find(needle, at + 1)) ++n;
  }
  return n;
}

// A ready task whose seeder dies before any peer holds its content: without a new seed the
// next downloads would wait forever. The leader stops hearing from the seeder, re-seeds the
// task itself (from the origin by Range: nobody else has it) and the download completes. Then
// the re-seeder, which leads, dies too: the next leader re-seeds from the peer that downloaded
// it, without asking the origin again.
TEST(ReadySeederTest, TheSeederOfAReadyTaskDyingStallsNoDownload) {
  constexpr int64_t kSmallSegment = 1 << 20;
  constexpr size_t kSmallSize = 6 << 20;  // 6 segments
  Cluster c(3, kSupernodes,
            {"--segment-size", std::to_string(kSmallSegment), "--seed-lease", "2000"});
  const std::string body = random_body(c.www("blob"), kSmallSize, 24);
  const std::string want = sha256_of(c.www("blob"));
  SlowOrigin origin(Cluster::kOriginIp, body, 64 << 20);
  const std::string url =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(origin.port()) + "/blob";
  auto dump = [&] {
    std::string out;
    for (int i = 0; i < kSupernodes; ++i) {
      out += "--- supernode " + std::to_string(i) + "\n" + c.supernode(i).output();
    }
    return out;
  };

  // 1. Peer 0 downloads it (the task is ready), then drops it: no peer holds the content.
  Process& first = c.start_get(0, {url, "-o", c.out("out0")}, "get0.log");
  ASSERT_EQ(first.wait(120s), 0) << first.output() << c.peer(0).output();
  ASSERT_EQ(sha256_of(c.out("out0")), want);
  const json tasks = peer_api(c.socket(0), "GET", "/v1/tasks");
  ASSERT_TRUE(tasks.is_object() && tasks["tasks"].size() == 1) << tasks.dump();
  const std::string task_id = tasks["tasks"][0].value("task_id", "");
  EXPECT_EQ(peer_api(c.socket(0), "DELETE", "/v1/tasks/" + task_id).value("removed", false), true);
  const int seeder = supernode_logging(c, "registered url=");
  ASSERT_GE(seeder, 0) << dump();
  ASSERT_EQ(origin.requests(), 1);

  // 2. kill -9 the seeder (a follower or the leader, whichever registered it).
  const bool seeder_led = c.leader() == seeder;
  c.kill_supernode(seeder);
  std::cout << "killed the seeder, supernode " << seeder << (seeder_led ? " (leader)" : "")
            << ", after the task was ready\n";

  // 3. Peer 1 downloads it: a surviving member re-seeds it from the origin.
  Process& second = c.start_get(1, {url, "-o", c.out("out1")}, "get1.log");
  ASSERT_EQ(second.wait(120s), 0) << second.output() << c.peer(1).output() << dump();
  EXPECT_EQ(sha256_of(c.out("out1")), want);
  const std::string reseeding = "of the ready task went silent; re-seeding it with epoch";
  EXPECT_EQ(occurrences(c, reseeding), 1) << dump();
  const int reseeder = supernode_logging(c, reseeding);
  ASSERT_GE(reseeder, 0) << dump();
  EXPECT_NE(reseeder, seeder);
  EXPECT_NE(c.supernode(reseeder).output().find("re-seeded, " + std::to_string(kSmallSize) +
                                                " bytes in 6 segments"),
            std::string::npos)
      << dump();
  // Once for the first fetch, once per segment by Range. (This origin ignores a Range's end and
  // sends until the client closes: a little more than each segment is counted.)
  EXPECT_EQ(origin.requests(), 7);
  EXPECT_GE(origin.bytes_sent(), static_cast<int64_t>(2 * kSmallSize));
  EXPECT_LE(origin.bytes_sent(), static_cast<int64_t>(2 * kSmallSize + 6 * kSmallSegment));
  const int64_t requests_before = origin.requests();

  // 4. The re-seeder (the leader: it re-seeds only while it leads) dies too; the first seeder
  //    comes back, with its disk lost, so a majority remains (it must not fail the task it no
  //    longer seeds). Peer 1 holds the content: the next leader re-seeds it from peer 1, and
  //    peer 2's download needs nothing from the origin.
  fs::remove_all(fs::path(c.dir() / ("supernode" + (seeder ? std::to_string(seeder) : ""))) /
                 "tasks");
  c.start_supernode(seeder);
  ASSERT_TRUE(eventually([&] { return c.leader() >= 0; }, 60s)) << dump();
  // Peer 1 announces what it seeds every 5 s: let the restarted member hear it before it may
  // lead (a re-seeder that never hears of a holder fetches from the origin after 4 s).
  std::this_thread::sleep_for(6s);
  c.kill_supernode(reseeder);
  ASSERT_TRUE(eventually([&] { return occurrences(c, reseeding) >= 2; }, 60s)) << dump();
  Process& third = c.start_get(2, {url, "-o", c.out("out2")}, "get2.log");
  ASSERT_EQ(third.wait(120s), 0) << third.output() << c.peer(2).output() << dump();
  EXPECT_EQ(sha256_of(c.out("out2")), want);
  ASSERT_TRUE(eventually([&] { return occurrences(c, "re-seeded, ") >= 2; }, 60s)) << dump();
  EXPECT_EQ(occurrences(c, "obtained from the swarm"), 6) << dump();
  EXPECT_EQ(occurrences(c, "marking failed"), 0) << dump();
  // The restarted first seeder found its files gone but, caught up with the log, saw that
  // another member seeds the task now.
  EXPECT_EQ(occurrences(c, "another member seeds it now; not failing it"), 1) << dump();
  EXPECT_EQ(origin.requests(), requests_before);
  const json done = peer_api(c.socket(2), "GET", "/v1/tasks");
  ASSERT_TRUE(done.is_object() && done["tasks"].size() == 1) << done.dump();
  EXPECT_EQ(done["tasks"][0].value("source_state", ""), "ready") << done.dump();
  if (HasFailure()) std::cout << dump();
}

// A supernode restarted with the content of its ready task gone (and no other member to take
// it) marks the task failed with the reason; the next download registers it again and it is
// fetched anew.
TEST(ReadySeederTest, ASeederThatLostItsContentFailsTheTaskAndTheNextGetFetchesItAgain) {
  constexpr size_t kSmallSize = 3 << 20;
  Cluster c(1, 1, {"--segment-size", std::to_string(1 << 20)});
  const std::string body = random_body(c.www("blob"), kSmallSize, 25);
  const std::string want = sha256_of(c.www("blob"));
  SlowOrigin origin(Cluster::kOriginIp, body, 64 << 20);
  const std::string url =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(origin.port()) + "/blob";
  Process& first = c.start_get(0, {url, "-o", c.out("first")}, "get0.log");
  ASSERT_EQ(first.wait(120s), 0) << first.output() << c.peer(0).output();
  const json tasks = peer_api(c.socket(0), "GET", "/v1/tasks");
  ASSERT_TRUE(tasks.is_object() && tasks["tasks"].size() == 1) << tasks.dump();
  const std::string task_id = tasks["tasks"][0].value("task_id", "");
  EXPECT_EQ(peer_api(c.socket(0), "DELETE", "/v1/tasks/" + task_id).value("removed", false), true);

  c.kill_supernode(0);
  fs::remove_all(fs::path(c.dir() / "supernode") / "tasks");
  c.start_supernode(0);
  ASSERT_TRUE(
      eventually([&] { return occurrences(c, "its content is gone; marking failed") == 1; }, 60s))
      << c.supernode(0).output();

  Process& second = c.start_get(0, {url, "-o", c.out("second")}, "get1.log");
  ASSERT_EQ(second.wait(120s), 0) << second.output() << c.peer(0).output()
                                  << c.supernode(0).output();
  EXPECT_EQ(sha256_of(c.out("second")), want);
  EXPECT_EQ(origin.requests(), 2);  // fetched again, from the start
}

INSTANTIATE_TEST_SUITE_P(Origin, SeederFailoverTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "Range" : "NoRange"; });

}  // namespace
}  // namespace starling::testing

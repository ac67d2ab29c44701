// Seeder failover (issue 4 items 5 and 7) with real processes: three supernodes, four peer
// daemons downloading a 64 MiB file from a throttled origin, and kill -9 of the supernode that
// fetches and seeds it after it has published a segment. Another member takes the seed lease
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
constexpr int64_t kSegment = 8 << 20;
constexpr size_t kSize = 64 << 20;  // 8 segments

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
  write_random_file(c.www("blob"), kSize, ranges ? 21 : 22);
  const std::string want = sha256_of(c.www("blob"));
  std::string body(kSize, '\0');
  {
    std::ifstream in(c.www("blob"), std::ios::binary);
    in.read(body.data(), static_cast<std::streamsize>(kSize));
  }
  // 8 MiB/s: the whole fetch takes about 8 s, a segment about 1 s.
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

INSTANTIATE_TEST_SUITE_P(Origin, SeederFailoverTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "Range" : "NoRange"; });

}  // namespace
}  // namespace starling::testing

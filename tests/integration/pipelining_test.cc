// Segment pipelining (issue 4 item 4) with real processes: a supernode with small segments
// fetches from a deliberately slow origin while three peer daemons download; the peers start
// on the first segments before the origin fetch ends, `get` writes the complete ones into its
// output meanwhile, and every user gets identical bytes with one origin request for the whole
// swarm.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "tests/integration/process.h"
#include "tests/integration/slow_origin.h"

namespace starling::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST(PipeliningTest, PeersStartOnEarlySegmentsWhileTheOriginFetchRuns) {
  constexpr int64_t kSegment = 4 << 20;
  constexpr size_t kSize = 6 * kSegment + 12345;  // 7 segments, the last one short
  constexpr int kPeers = 3;
  TempDir d;
  std::string body(kSize, '\0');
  {
    write_random_file(d / "blob", kSize, 11);
    std::ifstream in(d / "blob", std::ios::binary);
    in.read(body.data(), static_cast<std::streamsize>(kSize));
  }
  const std::string want = *crypto::sha256_file(d / "blob");
  // About 7 s of origin fetch at 4 MiB/s: segment 0 is published after about 1 s.
  SlowOrigin origin("127.0.0.2", body, 4 << 20);
  const std::string url = "http://127.0.0.2:" + std::to_string(origin.port()) + "/blob";

  ASSERT_EQ(run_starling({"mesh", "init", d / "net"}, d / "init.log").code, 0);
  const uint16_t mesh_port = free_port("127.0.0.3");
  Process supernode({"supernode", "--network", d / "net", "--data", d / "supernode", "--listen",
                     "127.0.0.3", "--port", std::to_string(mesh_port), "--data-port",
                     std::to_string(free_port("127.0.0.3")), "--segment-size", "4MiB"},
                    d / "supernode.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready("127.0.0.3", mesh_port); }, 20s))
      << supernode.output();
  std::vector<std::unique_ptr<Process>> peers;
  for (int i = 0; i < kPeers; ++i) {
    const std::string ip = "127.0.0." + std::to_string(60 + i);
    const std::string name = "peer" + std::to_string(i);
    peers.push_back(std::make_unique<Process>(
        std::vector<std::string>{"peer", "--network", d / "net", "--data", d / name, "--supernode",
                                 "127.0.0.3:" + std::to_string(mesh_port), "--listen", ip,
                                 "--data-port", std::to_string(free_port(ip)), "--socket",
                                 d / (name + ".sock")},
        d / (name + ".log")));
  }
  for (int i = 0; i < kPeers; ++i) {
    ASSERT_TRUE(
        eventually([&] { return fs::exists(d / ("peer" + std::to_string(i) + ".sock")); }, 60s))
        << peers[static_cast<size_t>(i)]->output();
  }

  const auto started = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<Process>> gets;
  for (int i = 0; i < kPeers; ++i) {
    gets.push_back(std::make_unique<Process>(
        std::vector<std::string>{"get", url, "-o", d / ("out" + std::to_string(i)), "--socket",
                                 d / ("peer" + std::to_string(i) + ".sock"), "--quiet"},
        d / ("get" + std::to_string(i) + ".log")));
  }

  // Watch every peer's local API: a snapshot in which segment 0 is complete while the
  // supernode still says "fetching" and the origin has not sent the whole file yet (read
  // after the snapshot, so the fetch was running when the snapshot was taken).
  // Also: a get's temp output (next to its -o file) holds at least segment 0 while the origin
  // is still sending, so the copy into the output is not all left for the end.
  bool pipelined = false;
  bool written_early = false;
  std::string task_id;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (!(pipelined && written_early) && origin.bytes_sent() < static_cast<int64_t>(kSize) &&
         std::chrono::steady_clock::now() < deadline) {
    for (const auto& e : fs::directory_iterator(d.path())) {
      const std::string name = e.path().filename().string();
      std::error_code ec;
      const auto size = fs::file_size(e.path(), ec);
      if (name.rfind(".out", 0) == 0 && name.find(".starling-") != std::string::npos && !ec &&
          size >= static_cast<uintmax_t>(kSegment) &&
          origin.bytes_sent() < static_cast<int64_t>(kSize)) {
        written_early = true;
      }
    }
    for (int i = 0; i < kPeers && !pipelined; ++i) {
      const json list = peer_api(d / ("peer" + std::to_string(i) + ".sock"), "GET", "/v1/tasks");
      if (!list.is_object() || !list.contains("tasks") || list["tasks"].empty()) continue;
      const json t = list["tasks"][0];
      task_id = t.value("task_id", "");
      const json segs = t.value("segments", json::array());
      const bool first_done =
          !segs.empty() && segs[0].value("index", -1) == 0 && segs[0].value("complete", false);
      if (first_done && t.value("source_state", "") == "fetching" &&
          origin.bytes_sent() < static_cast<int64_t>(kSize)) {
        pipelined = true;
      }
    }
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(pipelined) << "no peer had segment 0 complete while the origin fetch ran\n"
                         << supernode.output();
  EXPECT_TRUE(written_early) << "no get had written segment 0 to its output while the origin "
                                "fetch ran";

  for (int i = 0; i < kPeers; ++i) {
    auto& g = *gets[static_cast<size_t>(i)];
    ASSERT_EQ(g.wait(180s), 0) << g.output() << peers[static_cast<size_t>(i)]->output();
    EXPECT_EQ(*crypto::sha256_file(d / ("out" + std::to_string(i))), want) << "peer " << i;
    EXPECT_EQ(fs::file_size(d / ("out" + std::to_string(i))), kSize);
  }
  EXPECT_EQ(origin.requests(), 1);
  EXPECT_EQ(origin.bytes_sent(), static_cast<int64_t>(kSize));
  // For the record, not asserted (timing belongs in benchmarks).
  const auto secs = [](auto span) { return std::chrono::duration<double>(span).count(); };
  std::cout << "pipelining: origin fetch took " << secs(origin.finished_at() - started)
            << " s; all " << kPeers << " gets done "
            << secs(std::chrono::steady_clock::now() - started) << " s after start\n";

  // The finished task shows all 7 segments complete; DELETE drops it and its files.
  ASSERT_FALSE(task_id.empty());
  const std::string sock0 = d / "peer0.sock";
  const json done = peer_api(sock0, "GET", "/v1/tasks/" + task_id);
  EXPECT_EQ(done.value("state", ""), "done") << done.dump();
  EXPECT_EQ(done.value("source_state", ""), "ready") << done.dump();
  EXPECT_EQ(done.value("total_bytes", int64_t{0}), static_cast<int64_t>(kSize));
  const json segs = done.value("segments", json::array());
  ASSERT_EQ(segs.size(), 7u) << done.dump();
  int64_t parts_bytes = 0;  // a complete segment names its file: get reads it from there
  for (const auto& s : segs) {
    EXPECT_TRUE(s.value("complete", false)) << s.dump();
    std::error_code ec;
    parts_bytes += static_cast<int64_t>(fs::file_size(s.value("path", ""), ec));
    EXPECT_FALSE(ec) << s.dump();
  }
  EXPECT_EQ(parts_bytes, static_cast<int64_t>(kSize));
  EXPECT_EQ(segs[6].value("size", int64_t{0}), 12345);
  EXPECT_EQ(peer_api(sock0, "DELETE", "/v1/tasks/" + task_id).value("removed", false), true);
  EXPECT_TRUE(eventually(
      [&] { return peer_api(sock0, "GET", "/v1/tasks/" + task_id).value("http_status", 0) == 404; },
      10s));
  EXPECT_FALSE(fs::exists(d / ("peer0/tasks/" + task_id)));
  // Registering it again downloads it again from the swarm (peers 1 and 2 still seed).
  auto again =
      run_starling({"get", url, "-o", d / "again", "--socket", sock0, "--quiet"}, d / "again.log");
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_EQ(*crypto::sha256_file(d / "again"), want);
  EXPECT_EQ(origin.requests(), 1);
}

}  // namespace
}  // namespace starling::testing

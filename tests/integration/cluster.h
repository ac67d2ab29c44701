// A small Starling installation for tests: one origin, one supernode (or a Raft cluster of
// several) and N peer daemons, each a separate `starling` process on 127.0.0.x with free
// ports; torn down (SIGKILL) and its directory removed when the Cluster is destroyed.
#pragma once

#include <csignal>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/local_net.h"
#include "crypto/hash.h"
#include "tests/integration/process.h"

namespace starling::testing {

using namespace std::chrono_literals;

// The body of a GET, or "" when it failed (the caller's assertion then says what it missed).
inline std::string http_get(const std::string& url) {
  auto body = cli::http_get(url);
  return body.ok() ? *body : std::string();
}

inline std::string sha256_of(const std::string& path) {
  auto sum = crypto::sha256_file(path);
  return sum.ok() ? *sum : "unreadable: " + sum.error().message;
}

// One origin, `supernodes` supernodes (members 1..n of one Raft cluster, on 127.0.0.3+i) and
// `peers` peer daemons (on 127.0.0.20+i, given every supernode), each its own process.
// `supernode_flags` are added to every supernode's command line.
class Cluster {
 public:
  explicit Cluster(int peers, int supernodes = 1, std::vector<std::string> supernode_flags = {})
      : supernode_flags_(std::move(supernode_flags)) {
    std::filesystem::create_directories(dir_ / "www");
    std::filesystem::create_directories(dir_ / "out");
    auto init = run_starling({"mesh", "init", dir_ / "net"}, dir_ / "init.log");
    EXPECT_EQ(init.code, 0) << init.output;

    origin_port_ = free_port(kOriginIp);
    origin_ = std::make_unique<Process>(
        std::vector<std::string>{"origin", "--root", dir_ / "www", "--listen", kOriginIp, "--port",
                                 std::to_string(origin_port_)},
        dir_ / "origin.log");
    EXPECT_TRUE(eventually([&] { return tcp_ready(kOriginIp, origin_port_); }, 10s));

    for (int i = 0; i < supernodes; ++i) {
      const std::string ip = supernode_ip(i);
      mesh_ports_.push_back(free_port(ip));
      data_ports_.push_back(free_port(ip));
      if (i > 0) members_ += ",";
      members_ += std::to_string(i + 1) + "=" + ip + ":" + std::to_string(mesh_ports_.back());
    }
    supernodes_.resize(static_cast<size_t>(supernodes));
    for (int i = 0; i < supernodes; ++i) start_supernode(i);
    for (int i = 0; i < supernodes; ++i) {
      EXPECT_TRUE(eventually(
          [&] { return tcp_ready(supernode_ip(i), mesh_ports_[static_cast<size_t>(i)]); }, 20s))
          << supernodes_[static_cast<size_t>(i)]->output();
    }

    start_peers(peers, 0);
  }

  // Starts `n` peer daemons, each given every supernode, beginning with supernode `first`
  // (the member a peer asks first registers its tasks and so becomes their seeder).
  void start_peers(int n, int first) {
    std::string order;
    for (int k = 0; k < supernode_count(); ++k) {
      if (k > 0) order += ",";
      order += supernode_address((first + k) % supernode_count());
    }
    const int base = static_cast<int>(peers_.size());
    for (int j = 0; j < n; ++j) {
      const int i = base + j;
      const std::string ip = "127.0.0." + std::to_string(20 + i);
      const std::string name = "peer" + std::to_string(i);
      peers_.push_back(std::make_unique<Process>(
          std::vector<std::string>{"peer", "--network", dir_ / "net", "--data", dir_ / name,
                                   "--supernode", order, "--listen", ip, "--data-port",
                                   std::to_string(free_port(ip)), "--socket", socket(i)},
          dir_ / (name + ".log")));
    }
    for (int i = base; i < base + n; ++i) {
      EXPECT_TRUE(eventually([&] { return std::filesystem::exists(socket(i)); }, 60s))
          << peers_[static_cast<size_t>(i)]->output();
    }
  }

  // The first supernode's mesh address, and every supernode's, comma-separated.
  std::string supernode_address(int i = 0) const {
    return supernode_ip(i) + ":" + std::to_string(mesh_ports_[static_cast<size_t>(i)]);
  }
  std::string supernode_addresses() const {
    std::string out;
    for (size_t i = 0; i < mesh_ports_.size(); ++i) {
      if (i > 0) out += ",";
      out += supernode_address(static_cast<int>(i));
    }
    return out;
  }
  static std::string supernode_ip(int i) { return "127.0.0." + std::to_string(3 + i); }
  int supernode_count() const { return static_cast<int>(supernodes_.size()); }

  // Starts (or restarts, with the same id, ports and data directory) supernode i. Its log
  // keeps growing across restarts.
  void start_supernode(int i) {
    const size_t k = static_cast<size_t>(i);
    std::vector<std::string> args = {"supernode",
                                     "--network",
                                     dir_ / "net",
                                     "--data",
                                     dir_ / ("supernode" + (i ? std::to_string(i) : "")),
                                     "--listen",
                                     supernode_ip(i),
                                     "--port",
                                     std::to_string(mesh_ports_[k]),
                                     "--data-port",
                                     std::to_string(data_ports_[k])};
    if (supernodes_.size() > 1) {
      args.insert(args.end(), {"--id", std::to_string(i + 1), "--members", members_});
    }
    args.insert(args.end(), supernode_flags_.begin(), supernode_flags_.end());
    supernodes_[k].reset();
    supernodes_[k] = std::make_unique<Process>(
        args, dir_ / ("supernode" + (i ? std::to_string(i) : "") + ".log"));
  }
  // kill -9, and wait until it is gone.
  void kill_supernode(int i) {
    Process& p = *supernodes_[static_cast<size_t>(i)];
    p.signal(SIGKILL);
    p.wait(10s);
  }

  // `starling status --json` over every supernode; null when it failed.
  nlohmann::json cluster_status() {
    auto r = run_starling(
        {"status", "--network", dir_ / "net", "--supernode", supernode_addresses(), "--json"},
        dir_ / "status.log", 30s);
    auto j = nlohmann::json::parse(r.output, nullptr, false);
    return j.is_discarded() ? nlohmann::json() : j;
  }
  // The index (0-based) of the supernode that is leader according to a majority-backed view,
  // or -1.
  int leader() {
    auto s = cluster_status();
    if (!s.is_object()) return -1;
    for (const auto& m : s.value("members", nlohmann::json::array())) {
      if (!m.contains("raft")) continue;
      if (m["raft"].value("state", "") == "leader") {
        return static_cast<int>(m["raft"].value("id", uint64_t{0})) - 1;
      }
    }
    return -1;
  }
  std::string socket(int i) const { return dir_ / ("peer" + std::to_string(i) + ".sock"); }
  std::string url(const std::string& file) const {
    return "http://" + std::string(kOriginIp) + ":" + std::to_string(origin_port_) + "/" + file;
  }
  uint16_t origin_port() const { return origin_port_; }
  std::string www(const std::string& file) const { return dir_ / ("www/" + file); }
  std::string out(const std::string& file) const { return dir_ / ("out/" + file); }
  const TempDir& dir() const { return dir_; }
  Process& supernode(int i = 0) { return *supernodes_[static_cast<size_t>(i)]; }
  Process& peer(int i) { return *peers_[static_cast<size_t>(i)]; }

  // The origin's own counters (GET /_stats): "requests" and "bytes_sent".
  int64_t origin_stat(const std::string& field) const {
    auto body = http_get("http://" + std::string(kOriginIp) + ":" + std::to_string(origin_port_) +
                         "/_stats");
    auto j = nlohmann::json::parse(body, nullptr, false);
    return j.is_object() ? j.value(field, int64_t{-1}) : -1;
  }

  Process& start_get(int peer, const std::vector<std::string>& extra, const std::string& log) {
    std::vector<std::string> args = {"get"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--socket", socket(peer), "--quiet"});
    gets_.push_back(std::make_unique<Process>(args, dir_ / log));
    return *gets_.back();
  }

  RunResult get(int peer, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"get"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--socket", socket(peer), "--quiet"});
    return run_starling(args, dir_ / "get.log");
  }

  static constexpr char kOriginIp[] = "127.0.0.2";

 private:
  TempDir dir_;
  std::vector<std::string> supernode_flags_;
  uint16_t origin_port_ = 0;
  std::vector<uint16_t> mesh_ports_;
  std::vector<uint16_t> data_ports_;
  std::string members_;
  std::unique_ptr<Process> origin_;
  std::vector<std::unique_ptr<Process>> supernodes_;
  std::vector<std::unique_ptr<Process>> peers_;
  std::vector<std::unique_ptr<Process>> gets_;
};

}  // namespace starling::testing

// A small Starling installation for tests: one origin, one supernode and N peer daemons,
// each a separate `starling` process on 127.0.0.x with free ports; torn down (SIGKILL) and
// its directory removed when the Cluster is destroyed.
#pragma once

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

// One origin, one supernode and `n` peer daemons, each its own process, on 127.0.0.x.
class Cluster {
 public:
  explicit Cluster(int peers) {
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

    mesh_port_ = free_port(kSupernodeIp);
    supernode_ = std::make_unique<Process>(
        std::vector<std::string>{"supernode", "--network", dir_ / "net", "--data",
                                 dir_ / "supernode", "--listen", kSupernodeIp, "--port",
                                 std::to_string(mesh_port_), "--data-port",
                                 std::to_string(free_port(kSupernodeIp))},
        dir_ / "supernode.log");
    EXPECT_TRUE(eventually([&] { return tcp_ready(kSupernodeIp, mesh_port_); }, 20s))
        << supernode_->output();

    for (int i = 0; i < peers; ++i) {
      const std::string ip = "127.0.0." + std::to_string(20 + i);
      const std::string name = "peer" + std::to_string(i);
      peers_.push_back(std::make_unique<Process>(
          std::vector<std::string>{"peer", "--network", dir_ / "net", "--data", dir_ / name,
                                   "--supernode", supernode_address(), "--listen", ip,
                                   "--data-port", std::to_string(free_port(ip)), "--socket",
                                   socket(i)},
          dir_ / (name + ".log")));
    }
    for (int i = 0; i < peers; ++i) {
      EXPECT_TRUE(eventually([&] { return std::filesystem::exists(socket(i)); }, 20s))
          << peers_[static_cast<size_t>(i)]->output();
    }
  }

  std::string supernode_address() const {
    return std::string(kSupernodeIp) + ":" + std::to_string(mesh_port_);
  }
  std::string socket(int i) const { return dir_ / ("peer" + std::to_string(i) + ".sock"); }
  std::string url(const std::string& file) const {
    return "http://" + std::string(kOriginIp) + ":" + std::to_string(origin_port_) + "/" + file;
  }
  uint16_t origin_port() const { return origin_port_; }
  std::string www(const std::string& file) const { return dir_ / ("www/" + file); }
  std::string out(const std::string& file) const { return dir_ / ("out/" + file); }
  const TempDir& dir() const { return dir_; }
  Process& supernode() { return *supernode_; }

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
  static constexpr char kSupernodeIp[] = "127.0.0.3";

 private:
  TempDir dir_;
  uint16_t origin_port_ = 0;
  uint16_t mesh_port_ = 0;
  std::unique_ptr<Process> origin_;
  std::unique_ptr<Process> supernode_;
  std::vector<std::unique_ptr<Process>> peers_;
  std::vector<std::unique_ptr<Process>> gets_;
};

}  // namespace starling::testing

// Certificate renewal and revocation over time (issue 5 items 1 and 7), with real processes:
// three `starling supernode` members started with a short --cert-lifetime, three `starling peer`
// daemons and an origin, running for more than 2.5 certificate lifetimes. Every certificate
// issued at the start has expired by the end, so everything that still works there works on
// renewed leaves: mesh RPC (peer → supernode and the Raft traffic between members) and
// libtorrent's TLS (torrents added before and after the renewals). A revoked peer's renewal is
// refused; once its leaf has expired it can neither call a supernode nor fetch data from a peer
// whose data endpoint it knows.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "cli/local_net.h"
#include "common/hex.h"
#include "crypto/base64.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "mesh/rpc.h"
#include "peer/engine/torrent_engine.h"
#include "tests/integration/process.h"
#include "tests/integration/test_node.h"

namespace starling::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kLifetimeSeconds = 24;
constexpr int kSupernodes = 3;
constexpr int kPeers = 3;  // peer2 is revoked
constexpr char kOriginIp[] = "127.0.0.2";
constexpr char kReason[] = "lost badge";

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string sha256_of(const std::string& path) {
  auto sum = crypto::sha256_file(path);
  return sum.ok() ? *sum : "unreadable: " + sum.error().message;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The installation: origin on 127.0.0.2, supernodes on 127.0.0.50+i, peers on 127.0.0.60+i.
class Installation {
 public:
  Installation() {
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

    std::string members;
    for (int i = 0; i < kSupernodes; ++i) {
      mesh_ports_.push_back(free_port(supernode_ip(i)));
      members += (i ? "," : "") + std::to_string(i + 1) + "=" + supernode_address(i);
    }
    for (int i = 0; i < kSupernodes; ++i) {
      const std::string name = "supernode" + std::to_string(i);
      supernodes_.push_back(std::make_unique<Process>(
          std::vector<std::string>{"supernode", "--network", dir_ / "net", "--data", dir_ / name,
                                   "--listen", supernode_ip(i), "--port",
                                   std::to_string(mesh_ports_[static_cast<size_t>(i)]),
                                   "--data-port", std::to_string(free_port(supernode_ip(i))),
                                   "--id", std::to_string(i + 1), "--members", members,
                                   "--cert-lifetime", std::to_string(kLifetimeSeconds) + "s"},
          dir_ / (name + ".log")));
    }
    for (int i = 0; i < kSupernodes; ++i) {
      EXPECT_TRUE(eventually(
          [&] { return tcp_ready(supernode_ip(i), mesh_ports_[static_cast<size_t>(i)]); }, 20s))
          << supernode_log(i);
    }
    std::string all;
    for (int i = 0; i < kSupernodes; ++i) all += (i ? "," : "") + supernode_address(i);
    for (int i = 0; i < kPeers; ++i) {
      const std::string ip = peer_ip(i);
      peers_.push_back(std::make_unique<Process>(
          std::vector<std::string>{"peer", "--network", dir_ / "net", "--data",
                                   dir_ / ("peer" + std::to_string(i)), "--supernode", all,
                                   "--listen", ip, "--data-port", std::to_string(free_port(ip)),
                                   "--socket", socket(i)},
          dir_ / ("peer" + std::to_string(i) + ".log")));
    }
    for (int i = 0; i < kPeers; ++i) {
      EXPECT_TRUE(eventually([&] { return std::filesystem::exists(socket(i)); }, 60s))
          << peer_log(i);
    }
  }

  static std::string supernode_ip(int i) { return "127.0.0." + std::to_string(50 + i); }
  static std::string peer_ip(int i) { return "127.0.0." + std::to_string(60 + i); }
  std::string supernode_address(int i) const {
    return supernode_ip(i) + ":" + std::to_string(mesh_ports_[static_cast<size_t>(i)]);
  }
  std::string socket(int i) const { return dir_ / ("peer" + std::to_string(i) + ".sock"); }
  std::string url(const std::string& file) const {
    return "http://" + std::string(kOriginIp) + ":" + std::to_string(origin_port_) + "/" + file;
  }
  std::string www(const std::string& file) const { return dir_ / ("www/" + file); }
  std::string out(const std::string& file) const { return dir_ / ("out/" + file); }
  std::string supernode_log(int i) const {
    return read_text(dir_ / ("supernode" + std::to_string(i) + ".log"));
  }
  std::string peer_log(int i) const {
    return read_text(dir_ / ("peer" + std::to_string(i) + ".log"));
  }
  std::string node_of_peer(int i) const {
    auto key = crypto::load_or_create_node_key(dir_ / ("peer" + std::to_string(i) + "/node.key"));
    return key.ok() ? crypto::node_id_of(key->public_key).get() : "";
  }
  const TempDir& dir() const { return dir_; }

  RunResult get(int peer, const std::string& file) {
    return run_starling({"get", url(file), "-o", out(file + "." + std::to_string(peer)), "--socket",
                         socket(peer), "--quiet"},
                        dir_ / "get.log", 60s);
  }

  RunResult revoke(const std::string& node) {
    return run_starling({"mesh", "revoke", node, "--reason", kReason, "--network", dir_ / "net",
                         "--supernode", supernode_address(0)},
                        dir_ / "revoke.log", 60s);
  }

  // `starling status --json` over every member.
  json status() {
    std::string all;
    for (int i = 0; i < kSupernodes; ++i) all += (i ? "," : "") + supernode_address(i);
    auto r = run_starling({"status", "--network", dir_ / "net", "--supernode", all, "--json"},
                          dir_ / "status.log", 30s);
    auto j = json::parse(r.output, nullptr, false);
    return j.is_discarded() ? json() : j;
  }

 private:
  TempDir dir_;
  uint16_t origin_port_ = 0;
  std::vector<uint16_t> mesh_ports_;
  std::unique_ptr<Process> origin_;
  std::vector<std::unique_ptr<Process>> supernodes_;
  std::vector<std::unique_ptr<Process>> peers_;
};

TEST(RenewalTest, EverythingRunsOnRenewedLeavesAndARevokedNodeIsShutOut) {
  crypto::init();
  Installation c;
  const auto started = Clock::now();  // every leaf in use was issued before this
  const std::string peer2 = c.node_of_peer(2);
  ASSERT_EQ(peer2.size(), 64u);
  // Revoke peer2 at once, before its first renewal is due (two thirds of its first leaf).
  auto revoked2 = c.revoke(peer2);
  ASSERT_EQ(revoked2.code, 0) << revoked2.output;
  const int64_t peer2_revoked_at = unix_now();

  // Content fetched before any renewal: torrents that exist through the renewals.
  write_random_file(c.www("early.bin"), 3 * 1024 * 1024 + 123, 7);
  auto early = c.get(0, "early.bin");
  ASSERT_EQ(early.code, 0) << early.output << c.peer_log(0);
  ASSERT_EQ(sha256_of(c.out("early.bin.0")), sha256_of(c.www("early.bin")));

  // Mallory enrols, learns the task, its metainfo and peer0's data endpoint, and (control)
  // downloads it from peer0 alone while her leaf is valid.
  TestNode mallory(c.dir() / "net", "127.0.0.70");
  const std::string sn = c.supernode_address(1);
  auto enrolled = mallory.call(sn, "Enroll", {{"public_key", mallory.node()}, {"role", "peer"}});
  ASSERT_TRUE(enrolled.ok()) << enrolled.error().message;
  mallory.cert = enrolled->value("cert_pem", "");
  auto leaf = crypto::verify_leaf(read_text(c.dir() / "net/ca.pem"), mallory.cert, unix_now());
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  EXPECT_EQ(leaf->not_after - leaf->not_before, kLifetimeSeconds);  // --cert-lifetime applies
  auto registered = mallory.call(sn, "RegisterTask", {{"url", c.url("early.bin")}});
  ASSERT_TRUE(registered.ok()) << registered.error().message;
  const TaskId task(registered->value("task_id", ""));
  auto info = mallory.call(sn, "GetTask", {{"task_id", task.get()}});
  ASSERT_TRUE(info.ok()) << info.error().message;
  // One torrent per task ("metainfo"), or one per segment ("segments"): take the first.
  json torrent = {{"metainfo", info->value("metainfo", "")}, {"offset", 0}, {"size", -1}};
  if (info->contains("segments") && (*info)["segments"].is_array() &&
      !(*info)["segments"].empty()) {
    torrent = (*info)["segments"][0];
  }
  auto metainfo = crypto::base64_decode(torrent.value("metainfo", ""));
  ASSERT_TRUE(metainfo.has_value() && !metainfo->empty()) << info->dump();
  const std::string early_bytes = read_text(c.www("early.bin"));
  const auto offset = torrent.value("offset", size_t{0});
  const auto size = torrent.value("size", int64_t{-1});
  const std::string expected =
      early_bytes.substr(offset, size < 0 ? std::string::npos : static_cast<size_t>(size));
  const std::string peer0 = c.node_of_peer(0);
  peer::Endpoint peer0_data;
  ASSERT_TRUE(eventually(
      [&] {
        auto peers = mallory.call(sn, "Announce",
                                  {{"task_id", task.get()},
                                   {"node_id", mallory.node()},
                                   {"ip", "127.0.0.70"},
                                   {"port", 1},
                                   {"done_bytes", 0},
                                   {"total_bytes", 0},
                                   {"uploaded_bytes", 0}});
        if (!peers) return false;
        for (const auto& p : peers->value("peers", json::array())) {
          if (p.value("node_id", "") == peer0) {
            peer0_data = {p.value("ip", ""), p.value("port", uint16_t{0})};
            return true;
          }
        }
        return false;
      },
      20s));
  std::string control_error;
  auto control =
      mallory.download(*metainfo, task, peer0_data, c.out("mallory-control"), 30s, &control_error);
  ASSERT_EQ(control.state, peer::TorrentState::kSeeding) << control_error;
  EXPECT_TRUE(read_text(c.out("mallory-control")) == expected);

  auto revoked_mallory = c.revoke(mallory.node());
  ASSERT_EQ(revoked_mallory.code, 0) << revoked_mallory.output;

  // Run for more than 2.5 lifetimes (every leaf issued before `started` is long expired), and
  // until the last leaves of peer2 (issued before its revocation) and of mallory have expired.
  std::this_thread::sleep_until(started + std::chrono::seconds(kLifetimeSeconds * 26 / 10));
  const int64_t expired_by = std::max(peer2_revoked_at + kLifetimeSeconds, leaf->not_after) + 1;
  while (unix_now() <= expired_by) std::this_thread::sleep_for(200ms);

  // Renewal happened everywhere, at least twice.
  for (int i = 0; i < kSupernodes; ++i) {
    EXPECT_GE(count_of(c.supernode_log(i), "supernode: renewed its own certificate"), 2u)
        << "supernode " << i << ":\n"
        << c.supernode_log(i);
  }
  for (int i = 0; i < 2; ++i) {
    EXPECT_GE(count_of(c.peer_log(i), "peer: certificate renewed"), 2u) << c.peer_log(i);
  }

  // A fresh file end to end on renewed leaves, and the early one through the other peer (the
  // torrents seeding it were added before the renewals).
  write_random_file(c.www("late.bin"), 2 * 1024 * 1024 + 77, 11);
  auto late = c.get(1, "late.bin");
  ASSERT_EQ(late.code, 0) << late.output << c.peer_log(1);
  EXPECT_EQ(sha256_of(c.out("late.bin.1")), sha256_of(c.www("late.bin")));
  auto late0 = c.get(0, "late.bin");
  ASSERT_EQ(late0.code, 0) << late0.output << c.peer_log(0);
  EXPECT_EQ(sha256_of(c.out("late.bin.0")), sha256_of(c.www("late.bin")));
  auto again = c.get(1, "early.bin");
  ASSERT_EQ(again.code, 0) << again.output << c.peer_log(1);
  EXPECT_EQ(sha256_of(c.out("early.bin.1")), sha256_of(c.www("early.bin")));

  // Every member answers status, and they agree on a leader (Raft runs on renewed leaves).
  json status = c.status();
  ASSERT_TRUE(status.is_object()) << status.dump();
  int answering = 0, leaders = 0;
  for (const auto& m : status.value("members", json::array())) {
    if (!m.contains("raft")) continue;
    ++answering;
    if (m["raft"].value("state", "") == "leader") ++leaders;
  }
  EXPECT_EQ(answering, kSupernodes) << status.dump(2);
  EXPECT_EQ(leaders, 1) << status.dump(2);

  // The revoked peer: its renewal was refused, said once; `starling get` fails with why.
  const std::string log2 = c.peer_log(2);
  const std::string refusal =
      "peer: certificate renewal refused: node " + peer2 + " was revoked: " + kReason;
  EXPECT_EQ(count_of(log2, refusal), 1u) << log2;
  const size_t refused_at = log2.find(refusal);
  if (refused_at != std::string::npos) {
    EXPECT_EQ(log2.find("peer: certificate renewed", refused_at), std::string::npos) << log2;
  }
  auto refused = c.get(2, "late.bin");
  EXPECT_EQ(refused.code, 1) << refused.output;
  EXPECT_EQ(refused.output.rfind("starling get: ", 0), 0u) << refused.output;
  EXPECT_NE(refused.output.find("(certificate expired); certificate renewal refused: node " +
                                peer2 + " was revoked: " + kReason),
            std::string::npos)
      << refused.output;
  EXPECT_FALSE(std::filesystem::exists(c.out("late.bin.2")));

  // Mallory, with her last (expired) leaf: no RPC, and no data from peer0 even though she
  // knows its endpoint and the torrent.
  ASSERT_LT(leaf->not_after, unix_now());
  auto rpc = mallory.call(sn, "GetTask", {{"task_id", task.get()}});
  ASSERT_FALSE(rpc.ok());
  EXPECT_EQ(rpc.error().code, "rpc.unauthenticated");
  EXPECT_NE(rpc.error().message.find("(certificate expired)"), std::string::npos)
      << rpc.error().message;
  std::string tls_error;
  auto shut_out =
      mallory.download(*metainfo, task, peer0_data, c.out("mallory-late"), 8s, &tls_error);
  EXPECT_NE(shut_out.state, peer::TorrentState::kSeeding);
  EXPECT_EQ(shut_out.done_bytes, 0);
  EXPECT_EQ(shut_out.downloaded_bytes, 0);
  // peer0 refuses the TLS handshake: "... [asio.ssl]: sslv3 alert certificate expired".
  EXPECT_NE(tls_error.find("certificate expired"), std::string::npos) << tls_error;
}

TEST(RenewalCliTest, CertLifetimeIsValidated) {
  TempDir d;
  auto help = run_starling({"supernode", "--help"}, d / "log", 10s);
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.output.find("--cert-lifetime DURATION"), std::string::npos) << help.output;
  for (const std::string bad : {"12x", "5s", "400d"}) {
    auto r = run_starling(
        {"supernode", "--network", d / "net", "--data", d / "data", "--cert-lifetime", bad},
        d / "log", 10s);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_EQ(r.output.rfind("starling: supernode: --cert-lifetime: ", 0), 0u) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
}

}  // namespace
}  // namespace starling::testing

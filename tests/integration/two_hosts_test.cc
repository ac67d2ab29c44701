// Two hosts (issue 5 item 7): a network namespace of its own holds the installation (a
// supernode and a peer daemon, with the origin there or here), and this process's namespace is
// the other host, on the far end of a veth pair.
//
// Revocation and expiry: the supernode has a 12 s --cert-lifetime; the test plays "mallory", a
// node that holds the network key. With a valid leaf she calls RPCs and
// downloads a segment from the peer (the control). Once revoked, her RPCs and her re-enrolment
// are refused at once; once her leaf has expired, the peer's TLS refuses her data connection
// (0 bytes, "certificate expired"), so she can neither call the supernode nor join a swarm.
//
// Capture: a peer daemon on this host downloads a file from the swarm while tcpdump records
// the veth pair. The mesh (Noise) and data (TLS) traffic between the hosts holds no 64-byte
// block of the file; the origin's plain HTTP on the same link (the supernode fetching from an
// origin on this host) is the control that proves the search would find a leak.
//
// Needs root and `ip`; without them the test FAILS (never skips). The namespace is named
// strk<pid> and removed at the end; leftovers of a killed run are removed by the next run.
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "crypto/base64.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "peer/engine/torrent_engine.h"
#include "tests/integration/pcap.h"
#include "tests/integration/process.h"
#include "tests/integration/test_node.h"

namespace starling::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr int kLifetimeSeconds = 12;
constexpr char kPrefix[] = "strk";
constexpr char kReason[] = "lost badge";

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Shell {
  int code = -1;
  std::string output;
};

// Runs `command` with /bin/sh, stdout and stderr together.
Shell sh(const std::string& command) {
  Shell r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void remove_namespace(const std::string& ns) {
  sh("for p in $(ip netns pids " + ns + "); do kill -9 $p; done");
  eventually([&] { return sh("ip netns pids " + ns).output.empty(); }, 5s);
  sh("ip netns del " + ns);  // takes the veth pair with it
}

// One network namespace joined to this one by a veth pair: 198.18.SUBNET.1 here (host_ip()),
// 198.18.SUBNET.2 there (ns_ip()). Tests that may run at the same time use different subnets.
class OtherHost {
 public:
  // nullptr with `*why` set when the namespace cannot be made (not root, no `ip`).
  static std::unique_ptr<OtherHost> create(int subnet, std::string* why) {
    remove_leftovers();
    auto host = std::unique_ptr<OtherHost>(new OtherHost(subnet));
    const std::string& ns = host->ns_;
    auto made =
        sh("ip netns add " + ns + " && ip link add " + ns + "h type veth peer name eth0" +
           " netns " + ns + " && ip addr add " + host->host_ip() + "/24 dev " + ns + "h" +
           " && ip link set " + ns + "h up && ip -n " + ns + " link set lo up && ip -n " + ns +
           " addr add " + host->ns_ip() + "/24 dev eth0 && ip -n " + ns + " link set eth0 up");
    if (made.code != 0) {
      *why = "cannot create network namespace " + ns + ": " + made.output;
      return nullptr;
    }
    return host;
  }
  ~OtherHost() { remove_namespace(ns_); }
  std::string host_ip() const { return net_ + "1"; }
  std::string ns_ip() const { return net_ + "2"; }
  // This host's end of the veth pair.
  std::string interface() const { return ns_ + "h"; }
  OtherHost(const OtherHost&) = delete;
  OtherHost& operator=(const OtherHost&) = delete;

  // `starling ARGS...` inside the namespace (`ip netns exec` execs, so the pid is starling's).
  std::unique_ptr<Process> start(const std::vector<std::string>& args, const std::string& log) {
    std::vector<std::string> all = {"netns", "exec", ns_, starling_binary()};
    all.insert(all.end(), args.begin(), args.end());
    return std::make_unique<Process>("/usr/sbin/ip", all, log);
  }

 private:
  explicit OtherHost(int subnet)
      : ns_(kPrefix + std::to_string(::getpid())), net_("198.18." + std::to_string(subnet) + ".") {}

  // Namespaces strk<pid> whose test process is gone.
  static void remove_leftovers() {
    std::istringstream names(sh("ip netns list").output);
    std::string line;
    while (std::getline(names, line)) {
      const std::string name = line.substr(0, line.find(' '));
      if (name.rfind(kPrefix, 0) != 0) continue;
      const std::string pid = name.substr(std::strlen(kPrefix));
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      if (::kill(std::stoi(pid), 0) == 0) continue;  // a run in progress
      remove_namespace(name);
    }
  }

  std::string ns_;
  std::string net_;
};

TEST(RevokeNetnsTest, ARevokedNodeOnAnotherHostCanNeitherCallNorJoinOnceItsLeafExpires) {
  crypto::init();
  std::string why;
  auto host = OtherHost::create(203, &why);
  ASSERT_NE(host, nullptr) << why;
  TempDir d;
  std::filesystem::create_directories(d / "www");
  ASSERT_EQ(run_starling({"mesh", "init", d / "net"}, d / "init.log").code, 0);
  write_random_file(d / "www/blob", 3 * 1024 * 1024 + 321, 5);
  const std::string url = "http://" + host->ns_ip() + ":8080/blob";
  const std::string supernode = host->ns_ip() + ":8002";

  auto origin =
      host->start({"origin", "--root", d / "www", "--listen", host->ns_ip(), "--port", "8080"},
                  d / "origin.log");
  auto sn = host->start({"supernode", "--network", d / "net", "--data", d / "supernode", "--listen",
                         host->ns_ip(), "--port", "8002", "--data-port", "8003", "--cert-lifetime",
                         std::to_string(kLifetimeSeconds) + "s"},
                        d / "supernode.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready(host->ns_ip(), 8002); }, 20s)) << sn->output();
  auto peer =
      host->start({"peer", "--network", d / "net", "--data", d / "peer", "--supernode", supernode,
                   "--listen", host->ns_ip(), "--data-port", "8004", "--socket", d / "peer.sock"},
                  d / "peer.log");
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(d / "peer.sock"); }, 60s))
      << peer->output();
  // The peer downloads the file (through the socket file, which both hosts see) and seeds it.
  auto got = run_starling({"get", url, "-o", d / "out", "--socket", d / "peer.sock", "--quiet"},
                          d / "get.log", 60s);
  ASSERT_EQ(got.code, 0) << got.output << peer->output();
  ASSERT_EQ(*crypto::sha256_file(d / "out"), *crypto::sha256_file(d / "www/blob"));

  // Mallory, on this host: enrols, learns the task and its first segment.
  TestNode mallory(d / "net", host->host_ip());
  auto enrolled =
      mallory.call(supernode, "Enroll", {{"public_key", mallory.node()}, {"role", "peer"}});
  ASSERT_TRUE(enrolled.ok()) << enrolled.error().message;
  mallory.cert = enrolled->value("cert_pem", "");
  auto leaf = crypto::verify_leaf(read_text(d / "net/ca.pem"), mallory.cert, unix_now());
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  EXPECT_EQ(leaf->not_after - leaf->not_before, kLifetimeSeconds);
  auto registered = mallory.call(supernode, "RegisterTask", {{"url", url}});
  ASSERT_TRUE(registered.ok()) << registered.error().message;
  const TaskId task(registered->value("task_id", ""));
  auto info = mallory.call(supernode, "GetTask", {{"task_id", task.get()}});
  ASSERT_TRUE(info.ok()) << info.error().message;
  ASSERT_FALSE(info->value("segments", json::array()).empty()) << info->dump();
  const json segment = (*info)["segments"][0];
  auto metainfo = crypto::base64_decode(segment.value("metainfo", ""));
  ASSERT_TRUE(metainfo.has_value() && !metainfo->empty()) << info->dump();
  const TaskId torrent = segment_torrent_id(task, 0);
  const std::string expected =
      read_text(d / "www/blob")
          .substr(segment.value("offset", size_t{0}), segment.value("size", size_t{0}));
  const peer::Endpoint peer_data{host->ns_ip(), 8004};

  // Control: with her valid leaf she gets the segment from the peer across the veth pair.
  std::string control_error;
  auto control =
      mallory.download(*metainfo, torrent, peer_data, d / "control", 30s, &control_error);
  ASSERT_EQ(control.state, peer::TorrentState::kSeeding) << control_error;
  EXPECT_TRUE(read_text(d / "control") == expected);

  // Revoked (by an admin on this host): refused at once, and no new leaf.
  auto revoked = run_starling({"mesh", "revoke", mallory.node(), "--reason", kReason, "--network",
                               d / "net", "--supernode", supernode},
                              d / "revoke.log", 60s);
  ASSERT_EQ(revoked.code, 0) << revoked.output;
  auto rpc = mallory.call(supernode, "GetTask", {{"task_id", task.get()}});
  ASSERT_FALSE(rpc.ok());
  EXPECT_EQ(rpc.error().code, "rpc.unauthenticated");
  EXPECT_NE(rpc.error().message.find("node revoked: lost badge"), std::string::npos)
      << rpc.error().message;
  TestNode bare = mallory;
  bare.cert.clear();
  auto again = bare.call(supernode, "Enroll", {{"public_key", mallory.node()}, {"role", "peer"}});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, "enroll.revoked");
  EXPECT_EQ(again.error().message, "node " + mallory.node() + " was revoked: lost badge");

  // Once her leaf has expired the peer's TLS refuses her: she cannot join the swarm.
  while (unix_now() <= leaf->not_after) std::this_thread::sleep_for(200ms);
  std::string tls_error;
  auto shut_out = mallory.download(*metainfo, torrent, peer_data, d / "late", 8s, &tls_error);
  EXPECT_NE(shut_out.state, peer::TorrentState::kSeeding);
  EXPECT_EQ(shut_out.done_bytes, 0);
  EXPECT_EQ(shut_out.downloaded_bytes, 0);
  EXPECT_NE(tls_error.find("certificate expired"), std::string::npos) << tls_error;
  auto expired = mallory.call(supernode, "GetTask", {{"task_id", task.get()}});
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.error().code, "rpc.unauthenticated");

  // The peer itself kept working on renewed leaves meanwhile (12 s lifetime, renewed at 8 s).
  EXPECT_NE(peer->output().find("peer: certificate renewed"), std::string::npos) << peer->output();
}

TEST(CaptureNetnsTest, NoPlaintextOfTheFileCrossesBetweenTheHosts) {
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/tcpdump")) << "scripts/deps.sh installs tcpdump";
  std::string why;
  auto host = OtherHost::create(204, &why);
  ASSERT_NE(host, nullptr) << why;
  TempDir d;
  std::filesystem::create_directories(d / "www");
  ASSERT_EQ(run_starling({"mesh", "init", d / "net"}, d / "init.log").code, 0);
  constexpr size_t kSize = 6 * 1024 * 1024;
  write_random_file(d / "www/secret.bin", kSize, 99);
  const std::string supernode = host->ns_ip() + ":8002";

  // The origin on this host; the supernode and peer A there; peer B here.
  const uint16_t origin_port = free_port(host->host_ip());
  Process origin({"origin", "--root", d / "www", "--listen", host->host_ip(), "--port",
                  std::to_string(origin_port)},
                 d / "origin.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready(host->host_ip(), origin_port); }, 10s));
  auto sn = host->start({"supernode", "--network", d / "net", "--data", d / "supernode", "--listen",
                         host->ns_ip(), "--port", "8002", "--data-port", "8003"},
                        d / "supernode.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready(host->ns_ip(), 8002); }, 20s)) << sn->output();
  auto a = host->start({"peer", "--network", d / "net", "--data", d / "a", "--supernode", supernode,
                        "--listen", host->ns_ip(), "--data-port", "8004", "--socket", d / "a.sock"},
                       d / "a.log");
  Process b({"peer", "--network", d / "net", "--data", d / "b", "--supernode", supernode,
             "--listen", host->host_ip(), "--data-port", std::to_string(free_port(host->host_ip())),
             "--socket", d / "b.sock"},
            d / "b.log");
  ASSERT_TRUE(eventually(
      [&] {
        return std::filesystem::exists(d / "a.sock") && std::filesystem::exists(d / "b.sock");
      },
      60s))
      << a->output() << b.output();

  const std::string pcap = d / "transfer.pcap";
  Process dump("/usr/bin/tcpdump", {"-i", host->interface(), "-U", "-s", "0", "-w", pcap, "tcp"},
               d / "tcpdump.log");
  ASSERT_TRUE(eventually(
      [&] { return dump.output().find("listening on " + host->interface()) != std::string::npos; },
      10s))
      << dump.output();
  const std::string url =
      "http://" + host->host_ip() + ":" + std::to_string(origin_port) + "/secret.bin";
  // A first, so the file is in the swarm; then B, across the veth pair.
  auto got_a = run_starling({"get", url, "-o", d / "out-a", "--socket", d / "a.sock", "--quiet"},
                            d / "get-a.log", 120s);
  ASSERT_EQ(got_a.code, 0) << got_a.output << a->output();
  auto got_b = run_starling({"get", url, "-o", d / "out-b", "--socket", d / "b.sock", "--quiet"},
                            d / "get-b.log", 120s);
  ASSERT_EQ(got_b.code, 0) << got_b.output << b.output();
  std::this_thread::sleep_for(500ms);
  dump.signal(SIGINT);
  ASSERT_EQ(dump.wait(10s), 0) << dump.output();

  const std::string file = read_text(d / "www/secret.bin");
  ASSERT_EQ(read_text(d / "out-a"), file);
  ASSERT_EQ(read_text(d / "out-b"), file);
  const Payloads p = read_pcap(pcap, origin_port);
  // B received the file over the link (encrypted), and the origin's plain HTTP on the same link
  // is found by the search (the control). The kernel drops packets from a capture under load
  // (tcpdump's log says how many), so these ask for half the traffic and a tenth of the blocks.
  EXPECT_GE(p.other.size(), kSize / 2) << dump.output();
  EXPECT_GT(blocks_found(file, p.origin), kSize / kWindow / 10) << dump.output();
  EXPECT_EQ(blocks_found(file, p.other), 0u);
}

}  // namespace
}  // namespace starling::testing

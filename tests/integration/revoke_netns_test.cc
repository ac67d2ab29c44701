// Revocation and expiry between two hosts (issue 5 item 7). The installation — an origin, one
// supernode with a 12 s --cert-lifetime and a peer daemon seeding a file — runs in a network
// namespace of its own; the test process is the other host, on the far end of a veth pair,
// and plays "mallory", a node that holds the network key. With a valid leaf she calls RPCs and
// downloads a segment from the peer (the control). Once revoked, her RPCs and her re-enrolment
// are refused at once; once her leaf has expired, the peer's TLS refuses her data connection
// (0 bytes, "certificate expired"), so she can neither call the supernode nor join a swarm.
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
#include "tests/integration/process.h"
#include "tests/integration/test_node.h"

namespace starling::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr int kLifetimeSeconds = 12;
constexpr char kPrefix[] = "strk";
constexpr char kHostIp[] = "198.18.203.1";  // this process's end of the veth pair
constexpr char kNsIp[] = "198.18.203.2";    // every service of the installation
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

// One network namespace joined to this one by a veth pair: kHostIp here, kNsIp there.
class OtherHost {
 public:
  // nullptr with `*why` set when the namespace cannot be made (not root, no `ip`).
  static std::unique_ptr<OtherHost> create(std::string* why) {
    remove_leftovers();
    auto host = std::unique_ptr<OtherHost>(new OtherHost());
    const std::string& ns = host->ns_;
    auto made = sh("ip netns add " + ns + " && ip link add " + ns + "h type veth peer name eth0" +
                   " netns " + ns + " && ip addr add " + kHostIp + "/24 dev " + ns + "h" +
                   " && ip link set " + ns + "h up && ip -n " + ns + " link set lo up && ip -n " +
                   ns + " addr add " + kNsIp + "/24 dev eth0 && ip -n " + ns + " link set eth0 up");
    if (made.code != 0) {
      *why = "cannot create network namespace " + ns + ": " + made.output;
      return nullptr;
    }
    return host;
  }
  ~OtherHost() { remove_namespace(ns_); }
  OtherHost(const OtherHost&) = delete;
  OtherHost& operator=(const OtherHost&) = delete;

  // `starling ARGS...` inside the namespace (`ip netns exec` execs, so the pid is starling's).
  std::unique_ptr<Process> start(const std::vector<std::string>& args, const std::string& log) {
    std::vector<std::string> all = {"netns", "exec", ns_, starling_binary()};
    all.insert(all.end(), args.begin(), args.end());
    return std::make_unique<Process>("/usr/sbin/ip", all, log);
  }

 private:
  OtherHost() : ns_(kPrefix + std::to_string(::getpid())) {}

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
};

TEST(RevokeNetnsTest, ARevokedNodeOnAnotherHostCanNeitherCallNorJoinOnceItsLeafExpires) {
  crypto::init();
  std::string why;
  auto host = OtherHost::create(&why);
  ASSERT_NE(host, nullptr) << why;
  TempDir d;
  std::filesystem::create_directories(d / "www");
  ASSERT_EQ(run_starling({"mesh", "init", d / "net"}, d / "init.log").code, 0);
  write_random_file(d / "www/blob", 3 * 1024 * 1024 + 321, 5);
  const std::string url = std::string("http://") + kNsIp + ":8080/blob";
  const std::string supernode = std::string(kNsIp) + ":8002";

  auto origin = host->start({"origin", "--root", d / "www", "--listen", kNsIp, "--port", "8080"},
                            d / "origin.log");
  auto sn = host->start(
      {"supernode", "--network", d / "net", "--data", d / "supernode", "--listen", kNsIp, "--port",
       "8002", "--data-port", "8003", "--cert-lifetime", std::to_string(kLifetimeSeconds) + "s"},
      d / "supernode.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready(kNsIp, 8002); }, 20s)) << sn->output();
  auto peer =
      host->start({"peer", "--network", d / "net", "--data", d / "peer", "--supernode", supernode,
                   "--listen", kNsIp, "--data-port", "8004", "--socket", d / "peer.sock"},
                  d / "peer.log");
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(d / "peer.sock"); }, 60s))
      << peer->output();
  // The peer downloads the file (through the socket file, which both hosts see) and seeds it.
  auto got = run_starling({"get", url, "-o", d / "out", "--socket", d / "peer.sock", "--quiet"},
                          d / "get.log", 60s);
  ASSERT_EQ(got.code, 0) << got.output << peer->output();
  ASSERT_EQ(*crypto::sha256_file(d / "out"), *crypto::sha256_file(d / "www/blob"));

  // Mallory, on this host: enrols, learns the task and its first segment.
  TestNode mallory(d / "net", kHostIp);
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
  const peer::Endpoint peer_data{kNsIp, 8004};

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

}  // namespace
}  // namespace starling::testing

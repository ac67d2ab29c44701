// The supernode cluster's hardest correctness tests (issue 4 item 7), with real `starling
// supernode` processes:
//  - JepsenTest: five members under random partitions, leader isolation and kill -9/restart
//    for 60 s (STARLING_JEPSEN_SECONDS) while five clients run put/cas/get on a few keys;
//    the recorded history must be linearizable (tests/raft/linearizability.h) and no
//    acknowledged write may be lost. The nemesis is driven by a printed seed
//    (STARLING_JEPSEN_SEED replays its choices; the clients' timing is never replayable).
//  - PartitionTest: one member of three (a follower, or the leader) cut off from the other
//    two: it refuses writes and consistent reads with "no quorum" but serves stale reads, the
//    majority carries on, and after healing every member converges.
//
// Partitions: every member runs in a network namespace of its own (`ip netns exec`, which
// execs, so the pid stays the member's) with one veth to a bridge of this test, member i at
// 198.19.N.(10+i)/24 (N: a /24 no other interface uses; the bridge holds .1). Cutting A from B
// installs, in A's namespace, iptables rules dropping everything from and to B's address (INPUT
// and OUTPUT), and the same in B's: both connections between them die, the one A dialled and
// the one B dialled. The test process itself (the clients, status polls) stays in the root
// namespace and reaches every member over the bridge, like clients on both sides of a real
// partition; rules never touch other tests' processes. Namespaces are named
// starling-<test>-<pid>-<i>, the bridge stbr<pid>; those of a crashed run (dead pid) are
// removed at start, with any members still running in them.
//
// Needs root, iproute2 and iptables; without them the tests fail with a message saying so
// (they are never skipped).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cli/admin.h"
#include "mesh/rpc.h"
#include "tests/integration/process.h"
#include "tests/raft/linearizability.h"

namespace starling::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using raft::testing::check_linearizable;
using raft::testing::kNever;
using raft::testing::KvOp;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Shell commands (iptables).

struct ShellResult {
  int code = -1;
  std::string output;
};

// Runs `command` with /bin/sh, feeding it `input` on stdin when given; output is stdout and
// stderr together.
ShellResult shell(const std::string& command, const std::string& input = "") {
  TempDir tmp;
  const std::string in = tmp / "in";
  const std::string out = tmp / "out";
  std::ofstream(in) << input;
  const std::string full = "(" + command + ") <" + in + " >" + out + " 2>&1";
  const int status = std::system(full.c_str());
  ShellResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.output = read_text(out);
  return r;
}

// Whether the run that named something after `pid` may still be using it. This process's own
// pid counts as gone: the only earlier user of it is a dead process that had the same pid.
bool pid_alive(long pid) {
  if (pid == static_cast<long>(::getpid())) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// ---------------------------------------------------------------------------------------------
// NetworkCuts: the network namespaces of one test's members (see the file comment). Used from
// the test's thread only. The destructor kills whatever still runs in the namespaces and removes
// them, their veths, the bridge and its FORWARD rule, whatever happened (declare it before the
// processes it confines).

class NetworkCuts {
 public:
  // `tag` names the namespaces (starling-<tag>-<pid>-<i>). On error returns null and says why
  // in `why`.
  static std::unique_ptr<NetworkCuts> open(const std::string& tag, int members, std::string* why) {
    if (::geteuid() != 0) {
      *why = "this test puts supernodes in network namespaces and must run as root";
      return nullptr;
    }
    for (const char* tool : {"ip -V", "iptables -w -V", "iptables-restore --version"}) {
      auto check = shell(tool);
      if (check.code != 0) {
        *why =
            std::string("`") + tool + "` failed (install iproute2 and iptables): " + check.output;
        return nullptr;
      }
    }
    remove_stale();
    auto cuts = std::unique_ptr<NetworkCuts>(new NetworkCuts());
    cuts->pid_ = std::to_string(::getpid());
    std::string lower = tag;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    cuts->tag_ = lower;
    cuts->bridge_ = "stbr" + cuts->pid_;
    // A /24 of 198.19.0.0/16 no other interface of this machine uses (another test's bridge).
    const std::string addrs = shell("ip -4 -o addr show").output;
    int net = static_cast<int>(::getpid() % 250) + 1;
    for (int tries = 0; tries < 250; ++tries, net = net % 250 + 1) {
      if (addrs.find(" 198.19." + std::to_string(net) + ".") == std::string::npos) break;
    }
    cuts->net_ = "198.19." + std::to_string(net) + ".";
    auto bridge =
        shell("ip link add " + cuts->bridge_ + " type bridge && ip addr add " + cuts->net_ +
              "1/24 dev " + cuts->bridge_ + " && ip link set " + cuts->bridge_ + " up");
    cuts->bridge_made_ = true;
    if (bridge.code != 0) {
      *why = "cannot create bridge " + cuts->bridge_ + ": " + bridge.output;
      return nullptr;
    }
    // With br_netfilter loaded (Docker loads it) bridged frames traverse the host's FORWARD
    // chain, whose policy may be DROP.
    if (std::filesystem::exists("/proc/sys/net/bridge/bridge-nf-call-iptables")) {
      cuts->forward_rule_ = shell("iptables -w -I FORWARD " + cuts->forward_spec()).code == 0;
    }
    for (int i = 0; i < members; ++i) {
      cuts->members_ = i + 1;
      const std::string ns = cuts->ns(i);
      const std::string veth = cuts->veth(i);
      auto made =
          shell("ip netns add " + ns + " && ip link add " + veth +
                " type veth peer name eth0 netns " + ns + " && ip link set " + veth + " master " +
                cuts->bridge_ + " up && ip -n " + ns + " link set lo up && ip -n " + ns +
                " addr add " + cuts->ip(i) + "/24 dev eth0 && ip -n " + ns + " link set eth0 up");
      if (made.code != 0) {
        *why = "cannot create network namespace " + ns + ": " + made.output;
        return nullptr;
      }
    }
    return cuts;
  }

  ~NetworkCuts() {
    for (int i = 0; i < members_; ++i) remove_namespace(ns(i));
    if (forward_rule_) shell("iptables -w -D FORWARD " + forward_spec());
    if (bridge_made_) shell("ip link del " + bridge_);
  }
  NetworkCuts(const NetworkCuts&) = delete;
  NetworkCuts& operator=(const NetworkCuts&) = delete;

  // Member i's address (on eth0 of its namespace).
  std::string ip(int i) const { return net_ + std::to_string(10 + i); }

  // The arguments for Process("ip", ...) that run `program args...` inside member i's
  // namespace: `ip netns exec` enters it and execs, so the pid stays the member's.
  std::vector<std::string> wrap(int i, const std::string& program,
                                const std::vector<std::string>& args) const {
    std::vector<std::string> out = {"netns", "exec", ns(i), program};
    out.insert(out.end(), args.begin(), args.end());
    return out;
  }

  // Replaces the current cuts: nothing flows between any member of `a` and any of `b`
  // (member indices). Each member's own iptables (INPUT and OUTPUT, in its namespace) drops
  // the other side's address; one iptables-restore per namespace. The test process, outside
  // every namespace, still reaches every member, like clients on both sides of a real
  // partition.
  bool partition(const std::vector<int>& a, const std::vector<int>& b) {
    std::vector<std::vector<int>> drops(static_cast<size_t>(members_));
    for (int x : a) {
      for (int y : b) {
        drops[static_cast<size_t>(x)].push_back(y);
        drops[static_cast<size_t>(y)].push_back(x);
      }
    }
    bool ok = true;
    for (int m = 0; m < members_; ++m) {
      std::string rules = "*filter\n-F INPUT\n-F OUTPUT\n";
      for (int other : drops[static_cast<size_t>(m)]) {
        rules += "-A INPUT -s " + ip(other) + " -j DROP\n";
        rules += "-A OUTPUT -d " + ip(other) + " -j DROP\n";
      }
      rules += "COMMIT\n";
      auto r = shell("ip netns exec " + ns(m) + " iptables-restore -w --noflush", rules);
      EXPECT_EQ(r.code, 0) << r.output << rules;
      ok = ok && r.code == 0;
    }
    return ok;
  }
  bool heal() { return partition({}, {}); }
  // The rules in force, for failure messages.
  std::string rules() const {
    std::string out;
    for (int m = 0; m < members_; ++m) {
      out += ns(m) + ":\n" + shell("ip netns exec " + ns(m) + " iptables -w -S").output;
    }
    return out;
  }

 private:
  NetworkCuts() = default;

  std::string ns(int i) const { return "starling-" + tag_ + "-" + pid_ + "-" + std::to_string(i); }
  std::string veth(int i) const { return "stv" + pid_ + "x" + std::to_string(i); }
  std::string forward_spec() const {
    return "-i " + bridge_ + " -o " + bridge_ + " -j ACCEPT -m comment --comment " + bridge_;
  }

  // Kills what runs in namespace `ns` (a dead test's orphans too) and deletes it; its veth
  // goes with it.
  static void remove_namespace(const std::string& ns) {
    shell("for p in $(ip netns pids " + ns + " 2>/dev/null); do kill -9 $p; done");
    eventually([&] { return shell("ip netns pids " + ns + " 2>/dev/null").output.empty(); }, 5s);
    shell("ip netns del " + ns + " 2>/dev/null");
  }

  // Namespaces, bridges and FORWARD rules of earlier runs whose process is gone (a crash, a
  // CTest timeout).
  static void remove_stale() {
    const std::regex ns_re("^(starling-(jepsen|partition)-([0-9]+)-[0-9]+)( .*)?$");
    std::istringstream names(shell("ip netns list").output);
    for (std::string line; std::getline(names, line);) {
      std::smatch m;
      if (!std::regex_match(line, m, ns_re) || pid_alive(std::stol(m[3]))) continue;
      remove_namespace(m[1]);
      std::cerr << "removed the stale network namespace " << m[1] << " and what ran in it\n";
    }
    const std::regex br_re("^[0-9]+: (stbr([0-9]+)):.*$");
    std::istringstream links(shell("ip -o link show type bridge").output);
    for (std::string line; std::getline(links, line);) {
      std::smatch m;
      if (!std::regex_match(line, m, br_re) || pid_alive(std::stol(m[2]))) continue;
      const std::string bridge = m[1];
      while (shell("iptables -w -D FORWARD -i " + bridge + " -o " + bridge +
                   " -j ACCEPT -m comment --comment " + bridge)
                 .code == 0) {
      }
      shell("ip link del " + bridge);
      std::cerr << "removed the stale bridge " << bridge << "\n";
    }
  }

  std::string pid_;
  std::string tag_;
  std::string bridge_;
  std::string net_;
  int members_ = 0;
  bool bridge_made_ = false;
  bool forward_rule_ = false;
};

// ---------------------------------------------------------------------------------------------
// KvCluster: `members` supernodes of one Raft cluster (member i = id i+1 at cuts.ip(i)),
// each started inside its NetworkCuts namespace. Like tests/integration/cluster.h, without the
// origin and peers. start()/kill() from one thread at a time; status() from any thread.

class KvCluster {
 public:
  KvCluster(int members, const NetworkCuts& cuts) : cuts_(cuts) {
    auto init = run_starling({"mesh", "init", dir_ / "net"}, dir_ / "init.log");
    EXPECT_EQ(init.code, 0) << init.output;
    auto mesh = cli::admin_mesh_config(dir_ / "net");
    EXPECT_TRUE(mesh.ok()) << (mesh.ok() ? "" : mesh.error().message);
    if (mesh.ok()) admin_ = *mesh;
    for (int i = 0; i < members; ++i) {
      ips_.push_back(ip(i));
      // Every member has a namespace and an address of its own: fixed ports cannot collide.
      mesh_ports_.push_back(8002);
      data_ports_.push_back(8003);
      if (i > 0) members_ += ",";
      members_ += std::to_string(i + 1) + "=" + ip(i) + ":" + std::to_string(mesh_ports_.back());
    }
    processes_.resize(static_cast<size_t>(members));
    status_clients_.resize(static_cast<size_t>(members));
    for (int i = 0; i < members; ++i) start(i);
    for (int i = 0; i < members; ++i) {
      EXPECT_TRUE(eventually([&] { return tcp_ready(ip(i), port(i)); }, 20s)) << log(i);
    }
  }

  std::string ip(int i) const { return cuts_.ip(i); }
  uint16_t port(int i) const { return mesh_ports_[static_cast<size_t>(i)]; }
  std::string address(int i) const { return ip(i) + ":" + std::to_string(port(i)); }
  int size() const { return static_cast<int>(processes_.size()); }
  const std::vector<std::string>& ips() const { return ips_; }
  const mesh::MeshConfig& admin() const { return admin_; }
  const TempDir& dir() const { return dir_; }
  std::string log(int i) const { return read_text(log_path(i)); }
  std::string log_path(int i) const {
    return dir_ / ("supernode" + std::to_string(i + 1) + ".log");
  }

  // Starts (or restarts, same id, ports and data) member i; its log keeps growing.
  void start(int i) {
    const size_t k = static_cast<size_t>(i);
    const std::vector<std::string> args = {"supernode",
                                           "--network",
                                           dir_ / "net",
                                           "--data",
                                           dir_ / ("data" + std::to_string(i + 1)),
                                           "--listen",
                                           ip(i),
                                           "--port",
                                           std::to_string(mesh_ports_[k]),
                                           "--data-port",
                                           std::to_string(data_ports_[k]),
                                           "--id",
                                           std::to_string(i + 1),
                                           "--members",
                                           members_};
    processes_[k].reset();
    processes_[k] =
        std::make_unique<Process>("/bin/ip", cuts_.wrap(i, starling_binary(), args), log_path(i));
  }
  // kill -9, and wait until it is gone.
  void kill(int i) {
    Process& p = *processes_[static_cast<size_t>(i)];
    p.signal(SIGKILL);
    p.wait(10s);
  }
  bool running(int i) { return processes_[static_cast<size_t>(i)]->running(); }

  // Member i's own Raft view ("raft" of Status), or null when it does not answer in 2 s.
  json status(int i) {
    std::lock_guard lock(status_mu_);
    auto& client = status_clients_[static_cast<size_t>(i)];
    if (!client) {
      auto c = cli::admin_connect(admin_, ip(i), port(i), 1s);
      if (!c.ok()) return json();
      client = std::move(*c);
    }
    auto r = client->call("Status", json::object(), 2s);
    if (!r.ok()) {
      client.reset();
      return json();
    }
    return r->is_object() && r->contains("raft") ? (*r)["raft"] : json();
  }
  std::vector<json> statuses() {
    std::vector<json> out;
    for (int i = 0; i < size(); ++i) out.push_back(status(i));
    return out;
  }
  static std::string show(const std::vector<json>& statuses) {
    std::string out;
    for (size_t i = 0; i < statuses.size(); ++i) {
      out += "member " + std::to_string(i + 1) + ": " +
             (statuses[i].is_null() ? std::string("no answer") : statuses[i].dump()) + "\n";
    }
    return out;
  }
  // The member that is leader in the highest term among `among` (all when empty), or -1.
  int leader(const std::vector<int>& among = {}) {
    int best = -1;
    uint64_t best_term = 0;
    for (int i = 0; i < size(); ++i) {
      if (!among.empty() && std::find(among.begin(), among.end(), i) == among.end()) continue;
      json s = status(i);
      if (!s.is_object() || s.value("state", "") != "leader") continue;
      if (best < 0 || s.value("term", uint64_t{0}) > best_term) {
        best = i;
        best_term = s.value("term", uint64_t{0});
      }
    }
    return best;
  }
  int wait_leader(const std::vector<int>& among = {}, std::chrono::milliseconds limit = 30s) {
    int l = -1;
    eventually(
        [&] {
          l = leader(among);
          if (l < 0) std::this_thread::sleep_for(200ms);
          return l >= 0;
        },
        limit);
    return l;
  }
  // Waits until every member answers with the same commit and applied index; false (with the
  // last statuses in `last`) if that does not happen within `limit`.
  bool wait_converged(std::chrono::milliseconds limit, std::string* last) {
    return eventually(
        [&] {
          auto all = statuses();
          *last = show(all);
          std::set<std::pair<uint64_t, uint64_t>> seen;
          for (const json& s : all) {
            if (!s.is_object()) return false;
            seen.insert({s.value("commit", uint64_t{0}), s.value("applied", uint64_t{0})});
          }
          if (seen.size() == 1) return true;
          std::this_thread::sleep_for(200ms);
          return false;
        },
        limit);
  }

 private:
  const NetworkCuts& cuts_;
  TempDir dir_;
  mesh::MeshConfig admin_;
  std::vector<std::string> ips_;
  std::vector<uint16_t> mesh_ports_;
  std::vector<uint16_t> data_ports_;
  std::string members_;
  std::vector<std::unique_ptr<Process>> processes_;
  std::mutex status_mu_;
  std::vector<std::unique_ptr<mesh::RpcClient>> status_clients_;
};

// ---------------------------------------------------------------------------------------------
// Talking to members from the test process.

// An error that means "no answer, try another member": the outcome of a write is unknown.
bool no_answer(const Error& e) {
  return e.code.rfind("mesh.", 0) == 0 || e.code.rfind("raft.", 0) == 0 ||
         e.code == "cluster.unavailable";
}

// `j[name]` when j is an object with a string there.
std::optional<std::string> string_field(const json& j, const char* name) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// One admin session per member for one client thread; reconnects after a transport error.
class MemberSessions {
 public:
  MemberSessions(KvCluster& cluster, std::chrono::milliseconds timeout)
      : cluster_(cluster), timeout_(timeout), clients_(static_cast<size_t>(cluster.size())) {}

  // `sent` says whether the request left this process (a connect failure sends nothing).
  Result<json> call(int member, const std::string& method, const json& params, bool* sent) {
    *sent = false;
    auto& client = clients_[static_cast<size_t>(member)];
    if (!client) {
      auto c = cli::admin_connect(cluster_.admin(), cluster_.ip(member), cluster_.port(member), 1s);
      if (!c.ok()) return c.error();
      client = std::move(*c);
    }
    *sent = true;
    auto r = client->call(method, params, timeout_);
    if (!r.ok() && r.error().code.rfind("mesh.", 0) == 0) client.reset();
    return r;
  }

 private:
  KvCluster& cluster_;
  std::chrono::milliseconds timeout_;
  std::vector<std::unique_ptr<mesh::RpcClient>> clients_;
};

// ---------------------------------------------------------------------------------------------
// The history: every op with logical call/return times from one counter, so that "returned
// before the other was called" in real time is "ret < call" here.

class History {
 public:
  uint64_t tick() { return ++clock_; }
  void add(KvOp op) {
    std::lock_guard lock(mu_);
    ops_.push_back(std::move(op));
  }
  std::vector<KvOp> ops() {
    std::lock_guard lock(mu_);
    return ops_;
  }

 private:
  std::atomic<uint64_t> clock_{0};
  std::mutex mu_;
  std::vector<KvOp> ops_;
};

// Counts per kind of op: acknowledged, refused (cas only), outcome unknown / read unanswered.
struct OpCounts {
  std::atomic<int> ok{0}, failed{0}, unknown{0}, not_sent{0};
};
struct Counts {
  OpCounts get, put, cas;
  std::mutex mu;
  std::vector<std::string> unexpected;  // errors no client should ever see
  void unexpected_error(const std::string& what) {
    std::lock_guard lock(mu);
    unexpected.push_back(what);
  }
};

const std::vector<std::string> kKeys = {"a", "b", "c", "d"};

// One client: random ops on random keys through random members until `stop`. Every put or
// cas writes a value no other write uses ("c<client>-<n>"), so cas by modify index N is cas
// by "the value written at N", which the checker models.
void run_client(int id, uint64_t seed, KvCluster& cluster, History& history, Counts& counts,
                const std::atomic<bool>& stop) {
  std::mt19937_64 rng(seed);
  MemberSessions sessions(cluster, 3s);
  // What this client last learned of each key: value (nullopt = absent) and modify index.
  std::map<std::string, std::pair<std::optional<std::string>, uint64_t>> known;
  int written = 0;
  while (!stop) {
    const std::string key = kKeys[rng() % kKeys.size()];
    const int member = static_cast<int>(rng() % static_cast<uint64_t>(cluster.size()));
    const int dice = static_cast<int>(rng() % 100);
    KvOp op;
    op.client = id;
    op.key = key;
    bool sent = false;
    if (dice < 40 || (dice >= 70 && !known.count(key))) {
      op.kind = KvOp::Kind::kGet;
      op.call = history.tick();
      auto r = sessions.call(member, "KvGet", {{"key", key}}, &sent);
      op.ret = history.tick();
      if (r.ok() && r->is_object() && r->value("key", "") == key && string_field(*r, "value")) {
        op.value = string_field(*r, "value");
        known[key] = {op.value, r->value("modify_index", uint64_t{0})};
      } else if (!r.ok() && r.error().code == "kv.not_found") {
        known[key] = {std::nullopt, 0};
      } else if (!r.ok() && no_answer(r.error())) {
        ++(sent ? counts.get.unknown : counts.get.not_sent);
        continue;  // a read without an answer has no effect
      } else {
        counts.unexpected_error("client " + std::to_string(id) + " KvGet(" + key + ") on member " +
                                std::to_string(member + 1) + ": " +
                                (r.ok() ? r->dump() : r.error().code + ": " + r.error().message));
        continue;
      }
      ++counts.get.ok;
      history.add(std::move(op));
      continue;
    }
    const bool is_cas = dice >= 70;
    op.kind = is_cas ? KvOp::Kind::kCas : KvOp::Kind::kPut;
    op.value = "c" + std::to_string(id) + "-" + std::to_string(++written);
    json params = {{"key", key}, {"value", *op.value}};
    if (is_cas) {
      op.expected = known[key].first;
      params["cas"] = known[key].second;
    }
    OpCounts& c = is_cas ? counts.cas : counts.put;
    op.call = history.tick();
    auto r = sessions.call(member, "KvPut", params, &sent);
    const uint64_t ret = history.tick();
    if (!sent) {
      ++c.not_sent;  // never left this process: it cannot have happened
      continue;
    }
    if (r.ok() && r->contains("index")) {
      op.ret = ret;
      known[key] = {op.value, r->value("index", uint64_t{0})};
      ++c.ok;
    } else if (is_cas && !r.ok() &&
               (r.error().code == "kv.cas_failed" || r.error().code == "kv.not_found")) {
      op.ret = ret;
      op.failed = true;
      known.erase(key);  // at some other index, whose value this client does not know
      ++c.failed;
    } else {
      // No answer, or no quorum: the write may still be committed later. Unknown outcome.
      op.ret = kNever;
      known.erase(key);
      ++c.unknown;
      if (r.ok() || !no_answer(r.error())) {
        counts.unexpected_error("client " + std::to_string(id) + " KvPut(" + key + ") on member " +
                                std::to_string(member + 1) + ": " +
                                (r.ok() ? r->dump() : r.error().code + ": " + r.error().message));
      }
    }
    history.add(std::move(op));
  }
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

// ---------------------------------------------------------------------------------------------

TEST(JepsenTest, KvHistoryUnderPartitionsKillsAndRestartsIsLinearizable) {
  constexpr int kMembers = 5;
  constexpr int kClients = 5;
  const uint64_t seed =
      std::stoull(env_or("STARLING_JEPSEN_SEED", std::to_string(std::random_device{}())));
  const int seconds = std::stoi(env_or("STARLING_JEPSEN_SECONDS", "60"));
  std::cout << "jepsen: seed " << seed << " (STARLING_JEPSEN_SEED=" << seed
            << " replays the nemesis), " << seconds << " s of faults\n";

  std::string why;
  auto cuts = NetworkCuts::open("JEPSEN", kMembers, &why);
  ASSERT_TRUE(cuts) << why;
  KvCluster cluster(kMembers, *cuts);
  ASSERT_GE(cluster.wait_leader(), 0) << KvCluster::show(cluster.statuses());

  History history;
  Counts counts;
  std::atomic<bool> stop_clients{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(run_client, i, seed * 1000 + static_cast<uint64_t>(i), std::ref(cluster),
                         std::ref(history), std::ref(counts), std::cref(stop_clients));
  }

  // The nemesis, on this thread: every 3-6 s one fault, replacing the previous partition.
  std::mt19937_64 rng(seed);
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  std::vector<std::string> events;
  auto event = [&](const std::string& what) {
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "%6.1fs ", t);
    events.push_back(stamp + what);
    std::cout << "nemesis " << events.back() << std::endl;
  };
  std::map<int, Clock::time_point> down;  // killed member -> when to restart it
  auto names = [](const std::vector<int>& side) {
    std::string s = "{";
    for (size_t k = 0; k < side.size(); ++k) s += (k ? "," : "") + std::to_string(side[k] + 1);
    return s + "}";
  };
  auto restart_due = [&](bool all) {
    for (auto it = down.begin(); it != down.end();) {
      if (all || Clock::now() >= it->second) {
        cluster.start(it->first);
        event("restart member " + std::to_string(it->first + 1));
        it = down.erase(it);
      } else {
        ++it;
      }
    }
  };
  std::vector<int> bag;  // 0 split, 1 isolate the leader, 2 kill -9, 3 heal
  while (Clock::now() < end) {
    const auto next = Clock::now() + std::chrono::milliseconds(3000 + rng() % 3000);
    while (Clock::now() < std::min(next, end)) {
      restart_due(false);
      std::this_thread::sleep_for(100ms);
    }
    if (Clock::now() >= end) break;
    // Faults come from a shuffled bag, refilled when empty, so every run sees every kind.
    if (bag.empty()) {
      bag = {0, 0, 1, 1, 2, 2, 3};
      std::shuffle(bag.begin(), bag.end(), rng);
    }
    const int action = bag.back();
    bag.pop_back();
    if (action == 0) {  // a random minority/majority split
      std::vector<int> order(kMembers);
      for (int i = 0; i < kMembers; ++i) order[static_cast<size_t>(i)] = i;
      std::shuffle(order.begin(), order.end(), rng);
      const size_t minority = 1 + rng() % 2;
      std::vector<int> a(order.begin(), order.begin() + static_cast<long>(minority));
      std::vector<int> b(order.begin() + static_cast<long>(minority), order.end());
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      cuts->partition(a, b);
      event("partition " + names(a) + " | " + names(b));
    } else if (action == 1) {  // isolate the leader
      const int l = cluster.leader();
      if (l < 0) {
        event("isolate the leader: no leader now, nothing done");
        continue;
      }
      std::vector<int> rest;
      for (int i = 0; i < kMembers; ++i) {
        if (i != l) rest.push_back(i);
      }
      cuts->partition({l}, rest);
      event("isolate the leader, member " + std::to_string(l + 1));
    } else if (action == 2 && down.size() < 2) {  // kill -9; a majority always comes back
      std::vector<int> up;
      for (int i = 0; i < kMembers; ++i) {
        if (!down.count(i)) up.push_back(i);
      }
      const int victim = up[rng() % up.size()];
      cluster.kill(victim);
      down[victim] = Clock::now() + std::chrono::milliseconds(2000 + rng() % 6000);
      event("kill -9 member " + std::to_string(victim + 1));
    } else {
      cuts->heal();
      event(action == 2 ? "two members down already; heal the network instead"
                        : "heal the network");
    }
  }
  cuts->heal();
  event("end of faults: heal the network");
  restart_due(/*all=*/true);

  // A few seconds of a healthy cluster, then the clients stop. Writes they gave up on may still
  // be retried by the member that took them (ClusterLog::propose: up to 10 s, plus 6 s for a
  // forwarded attempt); after that nothing is in flight and every member must agree.
  std::this_thread::sleep_for(3s);
  stop_clients = true;
  for (auto& t : clients) t.join();
  const auto quiet = Clock::now() + 17s;
  std::string last;
  ASSERT_GE(cluster.wait_leader({}, 60s), 0) << KvCluster::show(cluster.statuses());
  std::this_thread::sleep_until(quiet);
  EXPECT_TRUE(cluster.wait_converged(60s, &last)) << last;

  // The final reads: a consistent read of every key on every member (in the history), and a
  // stale one that must show the same value (every member applied everything).
  MemberSessions final_sessions(cluster, 10s);
  std::map<std::string, std::optional<std::string>> final_value;
  for (const std::string& key : kKeys) {
    for (int m = 0; m < kMembers; ++m) {
      bool answered = false;
      eventually(
          [&] {
            KvOp op;
            op.kind = KvOp::Kind::kGet;
            op.client = 100 + m;
            op.key = key;
            bool sent = false;
            op.call = history.tick();
            auto r = final_sessions.call(m, "KvGet", {{"key", key}}, &sent);
            op.ret = history.tick();
            if (r.ok() && string_field(*r, "value")) {
              op.value = string_field(*r, "value");
            } else if (r.ok() || r.error().code != "kv.not_found") {
              return false;
            }
            if (m == 0) final_value[key] = op.value;
            EXPECT_EQ(op.value, final_value[key])
                << "member " << m + 1 << " reads " << key << " differently";
            history.add(std::move(op));
            answered = true;
            return true;
          },
          30s);
      EXPECT_TRUE(answered) << "no consistent read of " << key << " from member " << m + 1;
      bool sent = false;
      auto stale = final_sessions.call(m, "KvGet", {{"key", key}, {"stale", true}}, &sent);
      const std::optional<std::string> seen =
          stale.ok() ? string_field(*stale, "value") : std::nullopt;
      EXPECT_TRUE(stale.ok() || stale.error().code == "kv.not_found")
          << stale.error().code << ": " << stale.error().message;
      EXPECT_EQ(seen, final_value[key]) << "member " << m + 1 << "'s stale read of " << key;
    }
  }

  // The verdict.
  const std::vector<KvOp> ops = history.ops();
  const auto checked = Clock::now();
  const auto verdict = check_linearizable(ops);
  const double check_s = std::chrono::duration<double>(Clock::now() - checked).count();

  // No acknowledged write lost, the simple way: each key's final value was written by a put or
  // cas that was not refused, and a key some write was acknowledged on is not absent.
  for (const std::string& key : kKeys) {
    bool acknowledged = false;
    bool written_by_someone = !final_value[key].has_value();
    for (const KvOp& op : ops) {
      if (op.key != key || op.kind == KvOp::Kind::kGet) continue;
      acknowledged = acknowledged || (op.ret != kNever && !op.failed);
      written_by_someone = written_by_someone || (op.value == final_value[key] && !op.failed);
    }
    EXPECT_TRUE(written_by_someone)
        << key << " ends as " << final_value[key].value_or("<absent>") << ", which no write wrote";
    if (acknowledged) {
      EXPECT_TRUE(final_value[key].has_value()) << key << " lost every write";
    }
  }

  std::cout << "jepsen summary (seed " << seed << "): " << ops.size() << " ops in the history\n";
  auto line = [](const char* kind, const OpCounts& c) {
    std::cout << "  " << kind << ": " << c.ok << " ok, " << c.failed << " refused (cas mismatch), "
              << c.unknown << " unknown outcome / no answer, " << c.not_sent
              << " not sent (no connection)\n";
  };
  line("get", counts.get);
  line("put", counts.put);
  line("cas", counts.cas);
  std::cout << "  nemesis: " << events.size() << " events\n";
  for (const auto& e : events) std::cout << "    " << e << "\n";
  std::cout << "  final values:";
  for (const auto& [k, v] : final_value) std::cout << " " << k << "=" << v.value_or("<absent>");
  std::cout << "\n  checker: "
            << (!verdict.ok            ? "NOT linearizable"
                : verdict.inconclusive ? "inconclusive"
                                       : "linearizable")
            << " (" << check_s << " s)\n";

  EXPECT_TRUE(counts.unexpected.empty())
      << counts.unexpected.size() << " unexpected errors, first: " << counts.unexpected.front();
  // The run must have exercised something: acknowledged writes and successful cas.
  EXPECT_GT(counts.put.ok + counts.cas.ok, 20);
  EXPECT_GT(counts.cas.ok, 0);
  EXPECT_FALSE(verdict.inconclusive) << verdict.explanation;
  EXPECT_TRUE(verdict.ok) << "seed " << seed << ": history not linearizable on key " << verdict.key
                          << ":\n"
                          << verdict.explanation;
  if (::testing::Test::HasFailure()) {
    // Keep the evidence: the whole history and every member's log.
    const std::string keep = "/tmp/starling-jepsen-" + std::to_string(seed);
    std::filesystem::create_directories(keep);
    std::ofstream h(keep + "/history.txt");
    for (const KvOp& op : ops) h << raft::testing::describe(op) << "\n";
    std::ofstream(keep + "/nemesis.txt") << [&] {
      std::string s;
      for (const auto& e : events) s += e + "\n";
      return s;
    }();
    for (int i = 0; i < kMembers; ++i) {
      std::filesystem::copy_file(cluster.log_path(i),
                                 keep + "/supernode" + std::to_string(i + 1) + ".log",
                                 std::filesystem::copy_options::overwrite_existing);
    }
    std::cout << "history, nemesis events and member logs kept in " << keep << "\n";
  }
}

// ---------------------------------------------------------------------------------------------
// PartitionTest

class PartitionTest : public ::testing::Test {
 protected:
  // `starling kv ...` against member i only, as a user would run it.
  static std::vector<std::string> kv_args(KvCluster& c, int i, std::vector<std::string> args) {
    std::vector<std::string> full = {"kv"};
    full.insert(full.end(), args.begin(), args.end());
    full.insert(full.end(), {"--network", c.dir() / "net", "--supernode", c.address(i)});
    return full;
  }

  // A write through member i that must succeed (retried only on "no answer", with the same
  // value, which is harmless here: nothing else writes the key).
  static void must_put(KvCluster& c, int i, const std::string& key, const std::string& value) {
    MemberSessions s(c, 15s);
    Result<json> r = make_error("none", "not tried");
    eventually(
        [&] {
          bool sent = false;
          r = s.call(i, "KvPut", {{"key", key}, {"value", value}}, &sent);
          return r.ok() || !no_answer(r.error());
        },
        30s);
    EXPECT_TRUE(r.ok()) << "put " << key << "=" << value << " through member " << i + 1 << ": "
                        << r.error().code << ": " << r.error().message;
  }
  static Result<json> get(KvCluster& c, int i, const std::string& key, bool stale,
                          std::chrono::milliseconds timeout = 15s) {
    MemberSessions s(c, timeout);
    bool sent = false;
    return s.call(i, "KvGet", {{"key", key}, {"stale", stale}}, &sent);
  }
  static std::string value_of(const Result<json>& r) {
    if (!r.ok()) return r.error().code + ": " + r.error().message;
    return r->value("value", "<no value>");
  }

  void run(bool cut_the_leader) {
    std::string why;
    auto cuts = NetworkCuts::open("PARTITION", 3, &why);
    ASSERT_TRUE(cuts) << why;
    KvCluster c(3, *cuts);
    const int leader = c.wait_leader();
    ASSERT_GE(leader, 0) << KvCluster::show(c.statuses());
    must_put(c, leader, "k", "before");
    std::string last;
    ASSERT_TRUE(c.wait_converged(30s, &last)) << last;

    const int cut = cut_the_leader ? leader : (leader + 1) % 3;
    std::vector<int> majority;
    for (int i = 0; i < 3; ++i) {
      if (i != cut) majority.push_back(i);
    }
    ASSERT_TRUE(cuts->partition({cut}, majority));

    // The majority elects (or keeps) a leader of its own and takes writes through both members.
    const int new_leader = c.wait_leader(majority);
    ASSERT_GE(new_leader, 0) << KvCluster::show(c.statuses()) << cuts->rules();
    must_put(c, majority[0], "k", "majority-1");
    must_put(c, majority[1], "k", "majority-2");
    must_put(c, majority[1], "other", "x");
    EXPECT_EQ(value_of(get(c, majority[0], "k", false)), "majority-2");

    // The minority: writes and consistent reads refused with "no quorum", stale reads served.
    // The CLI runs (as a user sees it) and the RPC (for the error code) go in parallel: each
    // refusal takes the member's whole write (10 s) or read (5 s) deadline.
    Process put(kv_args(c, cut, {"put", "k2", "minority"}), c.dir() / "put.log");
    Process read(kv_args(c, cut, {"get", "k"}), c.dir() / "read.log");
    auto rpc_read = get(c, cut, "k", false);
    ASSERT_FALSE(rpc_read.ok()) << "a cut-off member answered a consistent read: "
                                << rpc_read->dump();
    EXPECT_EQ(rpc_read.error().code, "cluster.unavailable") << rpc_read.error().message;
    EXPECT_NE(rpc_read.error().message.find("no quorum"), std::string::npos)
        << rpc_read.error().message;
    EXPECT_EQ(put.wait(60s), 1) << put.output();
    EXPECT_NE(put.output().find("no quorum"), std::string::npos) << put.output();
    EXPECT_EQ(read.wait(60s), 1) << read.output();
    EXPECT_NE(read.output().find("no quorum"), std::string::npos) << read.output();
    auto stale = run_starling(kv_args(c, cut, {"get", "k", "--stale"}), c.dir() / "stale.log", 30s);
    EXPECT_EQ(stale.code, 0) << stale.output;
    EXPECT_EQ(stale.output, "before\n");  // what it had before the cut
    auto other = get(c, cut, "other", true);
    EXPECT_FALSE(other.ok());
    if (!other.ok()) {
      EXPECT_EQ(other.error().code, "kv.not_found") << other.error().message;
    }

    // Healing: every member converges on the majority's history; the refused write is not in it
    // (a cut follower never forwarded it; a cut leader's uncommitted entry is overwritten by
    // the new leader's log).
    ASSERT_TRUE(cuts->heal());
    EXPECT_TRUE(c.wait_converged(60s, &last)) << last;
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(value_of(get(c, i, "k", true)), "majority-2") << "member " << i + 1;
      EXPECT_EQ(value_of(get(c, i, "other", true)), "x") << "member " << i + 1;
      auto refused = get(c, i, "k2", true);
      EXPECT_FALSE(refused.ok()) << "member " << i + 1 << " has the refused write";
      if (!refused.ok()) {
        EXPECT_EQ(refused.error().code, "kv.not_found");
      }
    }
    // The member that was cut off is a full member again.
    must_put(c, cut, "k", "after");
    EXPECT_EQ(value_of(get(c, cut, "k", false)), "after");
    EXPECT_TRUE(c.wait_converged(30s, &last)) << last;
  }
};

TEST_F(PartitionTest, AFollowerCutOffRefusesWritesAndConsistentReadsButServesStaleOnes) {
  run(/*cut_the_leader=*/false);
}

TEST_F(PartitionTest, ALeaderCutOffLosesItsWritesToTheMajorityWhichCarriesOn) { run(true); }

}  // namespace
}  // namespace starling::testing

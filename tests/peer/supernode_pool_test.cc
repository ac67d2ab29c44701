// SupernodePool's failover against real mesh RPC servers on 127.0.0.1: stub handlers play
// cluster members that are down, not the leader, without quorum, refusing us or answering.
#include "peer/supernode_pool.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mesh/rpc.h"
#include "tests/mesh/mesh_test_util.h"

namespace starling::peer {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using mesh::testing::node_config;

constexpr uint8_t kNetworkKey = 0x42;

// Answers call number `n` (from 1, counted per member) of `method`.
using Behaviour = std::function<Result<json>(const std::string& method, const json& params, int n)>;

// One cluster member: a real mesh RPC server whose answers come from a Behaviour. By default
// it answers {"member": name, "params": params, "payload": the caller's handshake payload}.
class StubMember {
 public:
  explicit StubMember(std::string name, Behaviour behaviour = nullptr,
                      mesh::MeshConfig config = node_config("supernode-cert", kNetworkKey),
                      uint16_t port = 0)
      : name_(std::move(name)), behaviour_(std::move(behaviour)) {
    auto listener = mesh::listen("127.0.0.1", port, config);
    EXPECT_TRUE(listener.ok()) << listener.error().message;
    server_ =
        mesh::serve(std::move(*listener),
                    [this](const mesh::RemotePeer& from, const std::string& method,
                           const json& params) -> Result<json> {
                      int n = 0;
                      {
                        std::lock_guard lock(mu_);
                        n = ++calls_[method];
                      }
                      if (behaviour_) return behaviour_(method, params, n);
                      return json{{"member", name_}, {"params", params}, {"payload", from.payload}};
                    });
  }

  SupernodeEndpoint endpoint() const { return {"127.0.0.1", server_->port()}; }
  int calls(const std::string& method) const {
    std::lock_guard lock(mu_);
    auto it = calls_.find(method);
    return it == calls_.end() ? 0 : it->second;
  }
  void stop() { server_->stop(); }  // as kill -9 would: listener and sessions closed

 private:
  const std::string name_;
  const Behaviour behaviour_;
  mutable std::mutex mu_;
  std::map<std::string, int> calls_;  // guarded by mu_
  std::unique_ptr<mesh::RpcServer> server_;
};

// A member whose host is up but nothing listens on its port: a bound, non-listening socket
// (so no one else can take the port while the test runs), which refuses connections.
class DeadMember {
 public:
  DeadMember() { open(); }
  ~DeadMember() {
    if (fd_ >= 0) ::close(fd_);
  }
  DeadMember(const DeadMember&) = delete;
  DeadMember& operator=(const DeadMember&) = delete;
  SupernodeEndpoint endpoint() const { return {"127.0.0.1", port_}; }
  // Frees the port for a member that comes back on it.
  void release() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  void open() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }

  int fd_ = -1;
  uint16_t port_ = 0;
};

// A member that is up at the TCP level but never answers (a stopped process, a black-holed
// link on the far side): it accepts connections, counts them and keeps them silent.
class HungMember {
 public:
  HungMember() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::listen(fd_, 64), 0);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;  // shut down
        std::lock_guard lock(mu_);
        accepted_.push_back(c);
      }
    });
  }
  ~HungMember() {
    ::shutdown(fd_, SHUT_RDWR);  // unblocks accept()
    thread_.join();
    ::close(fd_);
    for (int c : accepted_) ::close(c);
  }
  HungMember(const HungMember&) = delete;
  HungMember& operator=(const HungMember&) = delete;
  SupernodeEndpoint endpoint() const { return {"127.0.0.1", port_}; }
  size_t connections() const {
    std::lock_guard lock(mu_);
    return accepted_.size();
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<int> accepted_;  // guarded by mu_
};

SupernodePoolOptions fast_options(std::chrono::milliseconds deadline = 10s) {
  SupernodePoolOptions o;
  o.deadline = deadline;
  o.connect_timeout = 2s;
  o.call_timeout = 5s;
  o.first_backoff = 20ms;
  o.max_backoff = 100ms;
  return o;
}

SupernodePool pool_of(std::vector<SupernodeEndpoint> members,
                      SupernodePoolOptions options = fast_options()) {
  return SupernodePool(std::move(members), node_config("", kNetworkKey), options);
}

Behaviour fail_with(std::string code) {
  return [code](const std::string&, const json&, int) -> Result<json> {
    return make_error(code, "cannot serve this now");
  };
}

std::string member_of(const Result<json>& r) {
  if (!r.ok()) return "error " + r.error().code + ": " + r.error().message;
  return r->value("member", "?");
}

TEST(SupernodePool, FirstMemberDownSecondAnswers) {
  DeadMember a;
  StubMember b("b");
  auto pool = pool_of({a.endpoint(), b.endpoint()});
  auto r = pool.call("GetTask", {{"task_id", "t1"}});
  EXPECT_EQ(member_of(r), "b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["params"]["task_id"], "t1");
  EXPECT_EQ(pool.current(), b.endpoint());
}

TEST(SupernodePool, NotLeaderAndNoQuorumMoveToTheNextMemberWhichStaysCurrent) {
  StubMember a("a", fail_with("raft.not_leader"));
  StubMember b("b", fail_with("cluster.no_quorum"));
  StubMember c("c");
  auto pool = pool_of({a.endpoint(), b.endpoint(), c.endpoint()});
  EXPECT_EQ(member_of(pool.call("RegisterTask", {{"url", "http://o/f"}})), "c");
  EXPECT_EQ(member_of(pool.call("RegisterTask", {{"url", "http://o/g"}})), "c");
  // The second call went straight to the member that answered the first.
  EXPECT_EQ(a.calls("RegisterTask"), 1);
  EXPECT_EQ(b.calls("RegisterTask"), 1);
  EXPECT_EQ(c.calls("RegisterTask"), 2);
}

TEST(SupernodePool, AMembersOwnAnswerIsTheAnswer) {
  StubMember a("a", fail_with("task.unknown"));
  StubMember b("b");
  auto pool = pool_of({a.endpoint(), b.endpoint()});
  auto r = pool.call("GetTask", {{"task_id", "nope"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "task.unknown");
  EXPECT_EQ(r.error().message, "cannot serve this now");
  EXPECT_EQ(b.calls("GetTask"), 0);
}

TEST(SupernodePool, RefusedHandshakeIsFinalAndReportedUnchanged) {
  StubMember other_network("x", nullptr, node_config("supernode-cert", 0x99));
  StubMember b("b");
  auto pool = pool_of({other_network.endpoint(), b.endpoint()});
  auto r = pool.call("Enroll", json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, mesh::kErrHandshake);
  EXPECT_EQ(r.error().message, "handshake with " + other_network.endpoint().str() +
                                   " refused (wrong network key, or not a Starling node)");
  EXPECT_FALSE(is_retryable(r.error()));
  EXPECT_EQ(b.calls("Enroll"), 0);
}

TEST(SupernodePool, AllMembersDownIsOneErrorNamingEveryMember) {
  DeadMember a, b, c;
  auto pool = pool_of({a.endpoint(), b.endpoint(), c.endpoint()}, fast_options(300ms));
  auto r = pool.call("RegisterTask", {{"url", "http://o/f"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrNoSupernode);
  EXPECT_TRUE(is_retryable(r.error()));
  EXPECT_NE(r.error().message.find("no supernode answered RegisterTask within 0.3 s"),
            std::string::npos)
      << r.error().message;
  for (const auto& m : {a.endpoint(), b.endpoint(), c.endpoint()}) {
    EXPECT_NE(r.error().message.find(m.str() + ": connect to " + m.str() + ": Connection refused"),
              std::string::npos)
        << r.error().message;
  }
}

TEST(SupernodePool, OneRoundTriesEachMemberOnce) {
  StubMember a("a", fail_with("raft.not_leader"));
  DeadMember b;
  auto pool = pool_of({a.endpoint(), b.endpoint()});
  auto r = pool.call("Enroll", json::object(), 0ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrNoSupernode);
  EXPECT_NE(
      r.error().message.find(a.endpoint().str() + ": cannot serve this now [raft.not_leader]"),
      std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find(b.endpoint().str() + ": connect to"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(a.calls("Enroll"), 1);
}

// A leader election: the only member answers "no leader" three times, then serves.
TEST(SupernodePool, AnElectionIsWaitedOutWithinTheDeadline) {
  StubMember a("a", [](const std::string&, const json&, int n) -> Result<json> {
    if (n <= 3) return make_error("raft.no_leader", "no leader yet");
    return json{{"member", "a"}};
  });
  auto pool = pool_of({a.endpoint()});
  EXPECT_EQ(member_of(pool.call("GetTask", {{"task_id", "t"}})), "a");
  EXPECT_EQ(a.calls("GetTask"), 4);
}

TEST(SupernodePool, KillingTheMemberInUseIsInvisible) {
  StubMember a("a");
  StubMember b("b");
  auto pool = pool_of({a.endpoint(), b.endpoint()});
  EXPECT_EQ(member_of(pool.call("GetTask", {{"task_id", "t"}})), "a");
  a.stop();  // its open session is closed under the pool
  EXPECT_EQ(member_of(pool.call("GetTask", {{"task_id", "t"}})), "b");
  EXPECT_EQ(member_of(pool.call("GetTask", {{"task_id", "t"}})), "b");
}

TEST(SupernodePool, AMemberThatRejectsUsIsSkipped) {
  auto picky = node_config("supernode-cert", kNetworkKey);
  picky.verify_remote = [](const mesh::RemotePeer&) -> Status {
    return make_error(mesh::kErrPeerRejected, "not one of ours");
  };
  StubMember a("a", nullptr, picky);
  StubMember b("b");
  auto pool = pool_of({a.endpoint(), b.endpoint()});
  EXPECT_EQ(member_of(pool.call("GetTask", {{"task_id", "t"}})), "b");

  // When every member refuses, waiting would not help: the refusal comes back at once.
  StubMember c("c", nullptr, picky);
  auto refused = pool_of({a.endpoint(), c.endpoint()}, fast_options(10min));
  auto r = refused.call("GetTask", {{"task_id", "t"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, mesh::kErrPeerRejected);
  EXPECT_NE(r.error().message.find(a.endpoint().str() + " rejected this node's certificate"),
            std::string::npos)
      << r.error().message;
}

TEST(SupernodePool, SetPayloadRedialsEveryMemberWithTheCertificate) {
  StubMember a("a");
  StubMember b("b");
  auto pool = pool_of({a.endpoint(), b.endpoint()});
  auto before = pool.call_all("Status", json::object());
  ASSERT_TRUE(before.ok()) << before.error().message;
  pool.set_payload("peer-cert");
  auto r = pool.call("GetTask", json::object());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["payload"], "peer-cert");
  a.stop();
  r = pool.call("GetTask", json::object());
  EXPECT_EQ(member_of(r), "b");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["payload"], "peer-cert");
}

Behaviour peers(std::vector<std::string> ids) {
  return [ids](const std::string&, const json&, int) -> Result<json> {
    json list = json::array();
    for (const auto& id : ids) list.push_back({{"node_id", id}, {"ip", "10.0.0.1"}, {"port", 1}});
    return json{{"peers", list}};
  };
}

std::vector<std::string> node_ids(const json& answer) {
  std::vector<std::string> ids;
  for (const auto& p : answer.value("peers", json::array())) ids.push_back(p.value("node_id", ""));
  return ids;
}

TEST(SupernodePool, CallAllMergesPeerListsAndToleratesADeadMember) {
  StubMember a("a", peers({"p1", "p2", "seed-a"}));
  DeadMember b;
  StubMember c("c", peers({"p2", "p3", "seed-c"}));
  auto pool = pool_of({a.endpoint(), b.endpoint(), c.endpoint()});
  auto r = pool.call_all("Announce", {{"task_id", "t"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(node_ids(*r), (std::vector<std::string>{"p1", "p2", "seed-a", "p3", "seed-c"}));
  EXPECT_EQ(a.calls("Announce"), 1);
  EXPECT_EQ(c.calls("Announce"), 1);
}

// A member that hangs, whether with its session open (the call is never answered) or on a
// new connection (the handshake never completes), holds call_all() for call_all_timeout, not
// for the call and connect timeouts: the others' answers come back without it.
TEST(SupernodePool, CallAllWaitsForAHungMemberOnlyItsOwnBound) {
  StubMember a("a", peers({"p1"}));
  std::atomic<bool> hang{false};
  StubMember b("b", [&](const std::string& method, const json& params, int n) -> Result<json> {
    if (hang) std::this_thread::sleep_for(3s);
    return peers({"p2"})(method, params, n);
  });
  HungMember c;
  auto options = fast_options();
  options.connect_timeout = 5s;
  options.call_timeout = 5s;
  options.call_all_timeout = 400ms;
  auto pool = pool_of({a.endpoint(), b.endpoint(), c.endpoint()}, options);
  auto start = std::chrono::steady_clock::now();
  auto r = pool.call_all("Announce", {{"task_id", "t"}});  // c's handshake never completes
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(node_ids(*r), (std::vector<std::string>{"p1", "p2"}));
  EXPECT_LT(took, 2s) << std::chrono::duration<double>(took).count() << " s";

  hang = true;  // b's session stays open and its next answer takes 3 s
  start = std::chrono::steady_clock::now();
  r = pool.call_all("Announce", {{"task_id", "t"}});
  took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(node_ids(*r), (std::vector<std::string>{"p1"}));
  EXPECT_LT(took, 2s) << std::chrono::duration<double>(took).count() << " s";
  EXPECT_EQ(a.calls("Announce"), 2);
}

// A supernode restarted after a crash gets announces again once its cooldown has passed.
TEST(SupernodePool, AMemberThatComesBackIsAnnouncedToAgain) {
  DeadMember a;
  StubMember b("b", peers({"p1"}));
  auto options = fast_options();
  options.member_cooldown = 20ms;
  auto pool = pool_of({a.endpoint(), b.endpoint()}, options);
  auto r = pool.call_all("Announce", {{"task_id", "t"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(node_ids(*r), std::vector<std::string>{"p1"});

  const uint16_t port = a.endpoint().port;
  a.release();
  StubMember back("a", peers({"p2"}), node_config("supernode-cert", kNetworkKey), port);
  std::vector<std::string> ids;
  for (int i = 0; i < 200 && ids.size() < 2; ++i) {
    std::this_thread::sleep_for(10ms);
    r = pool.call_all("Announce", {{"task_id", "t"}});
    ASSERT_TRUE(r.ok()) << r.error().message;
    ids = node_ids(*r);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"p2", "p1"}));
  EXPECT_GE(back.calls("Announce"), 1);
}

TEST(SupernodePool, CallAllFailsOnlyWhenEveryMemberFails) {
  DeadMember a, b;
  auto dead = pool_of({a.endpoint(), b.endpoint()});
  auto r = dead.call_all("Announce", {{"task_id", "t"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrNoSupernode);
  EXPECT_NE(r.error().message.find(a.endpoint().str()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(b.endpoint().str()), std::string::npos) << r.error().message;

  // A member's own refusal is worth more than "unreachable": it is what the user must fix.
  StubMember c("c", fail_with("rpc.forbidden"));
  auto forbidden = pool_of({a.endpoint(), c.endpoint()});
  r = forbidden.call_all("Announce", {{"task_id", "t"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "rpc.forbidden");

  // One member answering is enough, even when the other answers with an error.
  StubMember d("d", peers({"p1"}));
  auto partly = pool_of({c.endpoint(), d.endpoint()});
  r = partly.call_all("Announce", {{"task_id", "t"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(node_ids(*r), std::vector<std::string>{"p1"});
}

TEST(SupernodePool, EightThreadsCallConcurrentlyThroughAMemberKill) {
  StubMember a("a");
  StubMember b("b");
  StubMember c("c", peers({"p1"}));
  auto pool = pool_of({a.endpoint(), b.endpoint(), c.endpoint()});
  constexpr int kThreads = 8;
  constexpr int kCalls = 40;
  std::atomic<int> done{0};
  std::vector<std::string> failures[kThreads];
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        const json params = {{"thread", t}, {"i", i}};
        auto r = pool.call("GetTask", params);
        if (!r.ok()) {
          failures[t].push_back(r.error().message);
        } else if ((*r)["params"] != params) {
          failures[t].push_back("answer to another call: " + r->dump());
        }
        auto all = pool.call_all("Announce", params);
        if (!all.ok()) failures[t].push_back("announce: " + all.error().message);
        ++done;
      }
    });
  }
  while (done < kThreads * kCalls / 4) std::this_thread::yield();
  a.stop();  // the member everyone was using goes away mid-run
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(failures[t].empty()) << "thread " << t << ": " << failures[t].front();
  }
  EXPECT_GT(b.calls("GetTask") + c.calls("GetTask"), 0);
  // Every call was served (a call whose answer was lost in the kill is served twice).
  EXPECT_GE(a.calls("GetTask") + b.calls("GetTask") + c.calls("GetTask"), kThreads * kCalls);
}

// Callers queued behind a member that hangs do not each wait it out: after one attempt
// times out, the member fails at once until its cooldown ends (here: longer than the test).
TEST(SupernodePool, AHungMemberIsWaitedOutOnceNotOncePerCall) {
  HungMember a;
  StubMember b("b", peers({"p1"}));
  auto options = fast_options();
  options.connect_timeout = 300ms;
  options.call_timeout = 300ms;
  options.member_cooldown = 10min;
  auto pool = pool_of({a.endpoint(), b.endpoint()}, options);
  constexpr int kThreads = 8;
  constexpr int kCalls = 10;
  std::vector<std::string> failures[kThreads];
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        auto r = pool.call("GetTask", {{"i", i}});
        if (!r.ok()) failures[t].push_back(r.error().message);
        auto all = pool.call_all("Announce", {{"i", i}});
        if (!all.ok()) failures[t].push_back("announce: " + all.error().message);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(failures[t].empty()) << "thread " << t << ": " << failures[t].front();
  }
  EXPECT_EQ(b.calls("GetTask"), kThreads * kCalls);
  EXPECT_EQ(b.calls("Announce"), kThreads * kCalls);
  EXPECT_EQ(a.connections(), 1u);
}

TEST(SupernodePool, StopEndsARetryLoop) {
  DeadMember a;
  auto pool = pool_of({a.endpoint()}, fast_options(10min));
  Result<json> r = json::object();
  std::thread caller([&] { r = pool.call("GetTask", {{"task_id", "t"}}); });
  std::this_thread::sleep_for(200ms);  // let it go round a few times (not required)
  pool.stop();
  caller.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrPoolStopped);
  auto after = pool.call("GetTask", {{"task_id", "t"}});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, kErrPoolStopped);
}

TEST(SupernodePool, DuplicateMembersAreOne) {
  StubMember a("a", peers({"p1"}));
  auto pool = pool_of({a.endpoint(), a.endpoint()});
  EXPECT_EQ(pool.members().size(), 1u);
  ASSERT_TRUE(pool.call_all("Announce", json::object()).ok());
  EXPECT_EQ(a.calls("Announce"), 1);
}

TEST(MergePeerAnswers, FirstAnswersOrderThenNewPeersEachOnce) {
  const json first = {{"peers",
                       {{{"node_id", "b"}, {"seed", false}},
                        {{"node_id", "a"}, {"seed", true}},
                        {{"ip", "no id"}},
                        42}},
                      {"extra", 1}};
  const json second = {{"peers", {{{"node_id", "a"}, {"seed", false}}, {{"node_id", "c"}}}}};
  const json broken = {{"peers", "not a list"}};
  const json merged = merge_peer_answers({first, broken, json::array(), second});
  EXPECT_EQ(node_ids(merged), (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_EQ(merged["peers"][1]["seed"], true);  // the first answer's entry wins
  EXPECT_EQ(merged["extra"], 1);
  EXPECT_EQ(node_ids(merge_peer_answers({})), std::vector<std::string>{});
}

TEST(IsRetryable, TransportAndClusterFailuresButNotWrongKeyOrAnswers) {
  for (const char* code :
       {mesh::kErrConnect, mesh::kErrClosed, mesh::kErrProtocol, mesh::kErrTimeout,
        "raft.not_leader", "cluster.no_quorum", kErrNoSupernode}) {
    EXPECT_TRUE(is_retryable(make_error(code, "x"))) << code;
  }
  for (const char* code : {mesh::kErrHandshake, mesh::kErrPeerRejected, "task.unknown",
                           "rpc.forbidden", "origin.http_status", kErrPoolStopped, "raftx"}) {
    EXPECT_FALSE(is_retryable(make_error(code, "x"))) << code;
  }
}

}  // namespace
}  // namespace starling::peer

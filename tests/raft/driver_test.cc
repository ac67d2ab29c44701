// The Raft Driver (supernode/raft/driver.h): three (or four) real Drivers, each on its own
// thread over a real SQLite store in a temp dir, connected by an in-process transport that
// passes every batch through the wire codec and can cut a node off or drop messages. The
// application is a small key-value store whose history (index, command) is its state, so
// "every node applied the same sequence" is a direct comparison.
//
// Liveness waits use generous deadlines (a stuck cluster fails instead of hanging); nothing
// asserts on how fast anything happened. Message loss is random: the seed is printed and
// STARLING_RAFT_SEED=S replays it (thread scheduling still varies).
#include "supernode/raft/driver.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "supernode/raft/codec.h"
#include "supernode/raft/sqlite_storage.h"
#include "tests/raft/network.h"
#include "tests/temp_dir.h"

namespace starling::raft::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using History = std::vector<std::pair<uint64_t, std::string>>;

constexpr auto kLong = 15s;
const std::vector<uint64_t> kThree{
    1, 2, 3};  // liveness bound for a healthy cluster; never reached when passing

uint64_t test_seed() {
  static const uint64_t seed = [] {
    uint64_t s = std::random_device{}();
    if (const char* env = std::getenv("STARLING_RAFT_SEED")) s = std::strtoull(env, nullptr, 10);
    std::printf("driver_test seed %llu (STARLING_RAFT_SEED=%llu replays the message loss)\n",
                static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

using starling::testing::TempDir;

// "set k=v" commands. The history of applied commands is the state (so a snapshot carries it
// and restoring rebuilds it); apply returns the index as a string.
class KvApp final : public Application {
 public:
  Result<std::string> apply(LogIndex index, const std::string& data) override {
    std::lock_guard lk(mu_);
    if (index <= applied_) return std::string("duplicate");
    if (data.rfind("set ", 0) != 0 || data.find('=') == std::string::npos ||
        data.find('\n') != std::string::npos) {
      applied_ = index;
      return make_error("kv.bad_command", "not a set command");  // deterministic rejection
    }
    std::string kv = data.substr(4);
    size_t eq = kv.find('=');
    values_[kv.substr(0, eq)] = kv.substr(eq + 1);
    history_.emplace_back(index.get(), data);
    applied_ = index;
    ++applies_;
    return std::to_string(index.get());
  }
  // The driver hands a Ready's entries over in one call; counted to show it does.
  Result<std::vector<Result<std::string>>> apply_batch(
      const std::vector<const Entry*>& entries) override {
    {
      std::lock_guard lk(mu_);
      ++batches_;
      batched_entries_ += entries.size();
    }
    return Application::apply_batch(entries);
  }
  std::pair<size_t, size_t> batches() const {  // (apply_batch calls, entries in them)
    std::lock_guard lk(mu_);
    return {batches_, batched_entries_};
  }
  LogIndex applied_index() const override {
    std::lock_guard lk(mu_);
    return applied_;
  }
  Result<std::string> snapshot() override {
    std::lock_guard lk(mu_);
    std::string out;
    for (auto& [i, cmd] : history_) out += std::to_string(i) + " " + cmd + "\n";
    return out;
  }
  // With `concurrent`, the driver reads snapshots through this, on a thread of its own.
  std::function<Result<IndexedSnapshot>()> concurrent_snapshot() override {
    if (!concurrent) return nullptr;
    return [this]() -> Result<IndexedSnapshot> {
      std::lock_guard lk(mu_);
      ++side_snapshots_;
      std::string out;
      for (auto& [i, cmd] : history_) out += std::to_string(i) + " " + cmd + "\n";
      return IndexedSnapshot{applied_, std::move(out)};
    };
  }
  int side_snapshots() const {
    std::lock_guard lk(mu_);
    return side_snapshots_;
  }
  bool concurrent = false;

  Status restore(LogIndex index, const std::string& data) override {
    std::lock_guard lk(mu_);
    history_.clear();
    values_.clear();
    std::istringstream in(data);
    std::string line;
    while (std::getline(in, line)) {
      size_t sp = line.find(' ');
      std::string cmd = line.substr(sp + 1);
      history_.emplace_back(std::stoull(line.substr(0, sp)), cmd);
      std::string kv = cmd.substr(4);
      size_t eq = kv.find('=');
      values_[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    applied_ = index;
    ++restores_;
    return {};
  }

  History history() const {
    std::lock_guard lk(mu_);
    return history_;
  }
  std::string get(const std::string& k) const {
    std::lock_guard lk(mu_);
    auto it = values_.find(k);
    return it == values_.end() ? "" : it->second;
  }
  int restores() const {
    std::lock_guard lk(mu_);
    return restores_;
  }

 private:
  mutable std::mutex mu_;
  LogIndex applied_;
  std::map<std::string, std::string> values_;
  History history_;
  int restores_ = 0;
  int side_snapshots_ = 0;
  uint64_t applies_ = 0;
  size_t batches_ = 0;
  size_t batched_entries_ = 0;
};

// Routes batches between Drivers through the wire codec. cut(id) isolates a node both ways;
// set_loss(p) drops each message with probability p.
class Net {
 public:
  Net() : rng_(test_seed()) {}

  void attach(uint64_t id, Driver* d) {
    std::lock_guard lk(mu_);
    nodes_[id] = d;
  }
  void detach(uint64_t id) {
    std::lock_guard lk(mu_);
    nodes_.erase(id);
  }
  void cut(uint64_t id, bool off) {
    std::lock_guard lk(mu_);
    if (off) {
      cut_.insert(id);
    } else {
      cut_.erase(id);
    }
  }
  void set_loss(double p) {
    std::lock_guard lk(mu_);
    loss_ = p;
  }
  uint64_t delivered() const {
    std::lock_guard lk(mu_);
    return delivered_;
  }

  void deliver(uint64_t from, std::vector<Message> batch) {
    std::lock_guard lk(mu_);
    if (batch.empty()) return;
    const uint64_t to = batch[0].to.get();
    for (const Message& m : batch) EXPECT_EQ(m.to.get(), to) << "one destination per batch";
    auto it = nodes_.find(to);
    if (it == nodes_.end() || cut_.count(from) || cut_.count(to)) return;
    std::vector<Message> kept;
    bool snap = false;
    for (Message& m : batch) {
      if (loss_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < loss_) continue;
      snap = snap || m.type == MessageType::kSnap;
      kept.push_back(std::move(m));
    }
    if (kept.empty()) return;
    // What a remote supernode would see: bytes, decoded strictly.
    auto decoded = decode_messages(encode_messages(kept));
    EXPECT_TRUE(decoded.ok());
    if (!decoded.ok()) return;
    EXPECT_EQ(*decoded, kept);
    it->second->receive(std::move(*decoded));
    delivered_ += kept.size();
    if (snap) {
      if (auto f = nodes_.find(from); f != nodes_.end()) f->second->report_snapshot(nid(to), true);
    }
  }

 private:
  mutable std::mutex mu_;
  std::map<uint64_t, Driver*> nodes_;
  std::set<uint64_t> cut_;
  double loss_ = 0;
  std::mt19937_64 rng_;
  uint64_t delivered_ = 0;
};

class NetTransport final : public Transport {
 public:
  NetTransport(Net& net, uint64_t id) : net_(net), id_(id) {}
  void send(std::vector<Message> batch) override { net_.deliver(id_, std::move(batch)); }

 private:
  Net& net_;
  uint64_t id_;
};

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = kLong) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

ConfState voters(std::vector<uint64_t> ids) {
  ConfState c;
  for (uint64_t i : ids) c.voters.push_back(nid(i));
  return c;
}

class Cluster {
 public:
  explicit Cluster(std::vector<uint64_t> ids, uint64_t snapshot_entries = 10000,
                   std::function<void(DriverConfig&)> tweak = nullptr,
                   bool concurrent_snapshots = false)
      : bootstrap_(voters(ids)),
        snapshot_entries_(snapshot_entries),
        tweak_(std::move(tweak)),
        concurrent_snapshots_(concurrent_snapshots) {
    for (uint64_t id : ids) start(id);
  }
  ~Cluster() {
    for (auto& [id, n] : nodes_) stop(id);
  }

  DriverConfig config(uint64_t id, const ConfState& bootstrap) const {
    DriverConfig c;
    c.raft.id = nid(id);
    c.raft.election_tick = 10;
    c.raft.heartbeat_tick = 1;
    c.raft.seed = test_seed() * 31 + id;
    c.storage_path = dir_.file("node" + std::to_string(id) + ".db");
    c.bootstrap = bootstrap;
    c.tick = 10ms;
    c.snapshot_entries = snapshot_entries_;
    if (tweak_) tweak_(c);
    return c;
  }

  // Starts (or restarts, from its SQLite file) node `id`. `fresh_app`: the application lost
  // its state too and must be rebuilt from the stored snapshot and log.
  void start(uint64_t id, bool fresh_app = false, std::optional<ConfState> bootstrap = {}) {
    Slot& s = nodes_[id];
    if (!s.app || fresh_app) {
      s.app = std::make_unique<KvApp>();
      s.app->concurrent = concurrent_snapshots_;
    }
    if (!s.transport) s.transport = std::make_unique<NetTransport>(net_, id);
    auto d = Driver::start(config(id, bootstrap.value_or(bootstrap_)), *s.transport, *s.app);
    ASSERT_TRUE(d.ok()) << d.error().code << ": " << d.error().message;
    s.driver = std::move(*d);
    net_.attach(id, s.driver.get());
  }
  // Crash: the node stops and is disconnected; its SQLite file stays.
  void stop(uint64_t id) {
    Slot& s = nodes_.at(id);
    net_.detach(id);
    if (s.driver) s.driver->stop();
    s.driver.reset();
  }

  Driver& driver(uint64_t id) { return *nodes_.at(id).driver; }
  KvApp& app(uint64_t id) { return *nodes_.at(id).app; }
  Net& net() { return net_; }
  bool running(uint64_t id) const {
    auto it = nodes_.find(id);
    return it != nodes_.end() && it->second.driver;
  }

  // Waits until exactly one running node among `among` leads and every other one follows it
  // in the same term. Returns its id (0 if none within the limit).
  uint64_t wait_leader(std::vector<uint64_t> among) {
    uint64_t leader = 0;
    bool ok = eventually([&] {
      std::vector<DriverInfo> infos;
      for (uint64_t id : among) {
        if (running(id)) infos.push_back(driver(id).info());
      }
      int leaders = 0;
      for (auto& i : infos) {
        if (i.role == Role::kLeader) {
          ++leaders;
          leader = i.id.get();
        }
      }
      if (leaders != 1) return false;
      Term t = driver(leader).info().term;
      for (auto& i : infos) {
        if (i.lead.get() != leader || i.term != t) return false;
      }
      return true;
    });
    return ok ? leader : 0;
  }

 private:
  struct Slot {
    std::unique_ptr<KvApp> app;
    std::unique_ptr<NetTransport> transport;
    std::unique_ptr<Driver> driver;
  };
  TempDir dir_;
  Net net_;
  ConfState bootstrap_;
  uint64_t snapshot_entries_;
  std::function<void(DriverConfig&)> tweak_;
  bool concurrent_snapshots_;
  std::map<uint64_t, Slot> nodes_;
};

// Proposes on whoever leads among `among`, retrying while there is no leader or the entry
// was provably not applied (not leader, lost). Returns the applied index.
uint64_t propose_somewhere(Cluster& c, std::vector<uint64_t> among, const std::string& cmd) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    uint64_t leader = c.wait_leader(among);
    if (leader == 0) continue;
    auto r = c.driver(leader).propose(cmd, 5s);
    if (r.ok()) return std::stoull(*r);
    if (r.error().code != kErrNotLeader && r.error().code != kErrProposalLost &&
        r.error().code != kErrProposalDropped) {
      ADD_FAILURE() << cmd << ": " << r.error().code << ": " << r.error().message;
      return 0;
    }
    std::this_thread::sleep_for(10ms);
  }
  ADD_FAILURE() << cmd << ": no leader accepted it";
  return 0;
}

Result<LogIndex> read_on(Driver& d) {
  for (;;) {
    auto r = d.read_index(5s);
    if (r.ok() || r.error().code != kErrNotReady) return r;
    std::this_thread::sleep_for(10ms);  // a new leader's no-op is not committed yet
  }
}

bool histories_equal(Cluster& c, std::vector<uint64_t> ids, size_t expected_size) {
  History first = c.app(ids[0]).history();
  if (first.size() != expected_size) return false;
  for (uint64_t id : ids) {
    if (c.app(id).history() != first) return false;
  }
  return true;
}

TEST(RaftDriver, ElectsOneLeaderAndReplicatesInOrder) {
  Cluster c({1, 2, 3});
  uint64_t leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(leader, 0u);
  std::vector<uint64_t> indexes;
  for (int i = 0; i < 20; ++i) {
    auto r = c.driver(leader).propose("set k" + std::to_string(i) + "=v" + std::to_string(i), 5s);
    ASSERT_TRUE(r.ok()) << r.error().code << ": " << r.error().message;
    // Returned after apply on the leader: the leader's state already holds it.
    EXPECT_EQ(c.app(leader).get("k" + std::to_string(i)), "v" + std::to_string(i));
    indexes.push_back(std::stoull(*r));
  }
  EXPECT_TRUE(std::is_sorted(indexes.begin(), indexes.end()));
  ASSERT_TRUE(eventually([&] { return histories_equal(c, {1, 2, 3}, 20); }));
  EXPECT_EQ(c.app(1).history()[19].second, "set k19=v19");

  // A deterministic rejection is handed back to the proposer, and still replicated.
  auto bad = c.driver(leader).propose("delete k1", 5s);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, "kv.bad_command");
  EXPECT_EQ(c.driver(leader).propose("", 1s).error().code, kErrProposalDropped);

  for (uint64_t id : kThree) {
    if (id == leader) continue;
    auto r = c.driver(id).propose("set x=1", 5s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, kErrNotLeader);
    EXPECT_NE(r.error().message.find("leader is " + std::to_string(leader)), std::string::npos)
        << r.error().message;
    DriverInfo info = c.driver(id).info();
    EXPECT_EQ(info.role, Role::kFollower);
    EXPECT_EQ(info.lead.get(), leader);
  }
  DriverInfo li = c.driver(leader).info();
  EXPECT_EQ(li.role, Role::kLeader);
  EXPECT_EQ(li.conf.voters, voters({1, 2, 3}).voters);
  EXPECT_GE(li.applied.get(), indexes.back());
  EXPECT_GE(li.commit, li.applied);
}

TEST(RaftDriver, ConcurrentProposersAllCommitExactlyOnceInOneOrder) {
  // A longer election timeout than the other tests (300-600 ms): 64 threads, three fsyncing
  // nodes and a sanitizer on a shared machine must not cost the leader its leadership, or the
  // proposals in flight would (correctly) fail.
  Cluster c({1, 2, 3}, 10000, [](DriverConfig& d) { d.raft.election_tick = 30; });
  uint64_t leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(leader, 0u);
  constexpr size_t kThreads = 64;
  constexpr int kEach = 50;
  std::vector<std::vector<std::string>> errors(kThreads);
  std::vector<std::vector<uint64_t>> indexes(kThreads);
  const uint64_t persists_before = c.driver(leader).info().persists;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = c.driver(leader).propose(
            "set t" + std::to_string(t) + "_" + std::to_string(i) + "=" + std::to_string(i), 10s);
        if (r.ok()) {
          indexes[t].push_back(std::stoull(*r));
        } else {
          errors[t].push_back(r.error().code + ": " + r.error().message);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  // Group commit, reported (not asserted: it depends on scheduling).
  std::printf("64x50 proposals: %llu Readys persisted on the leader\n",
              static_cast<unsigned long long>(c.driver(leader).info().persists - persists_before));
  for (uint64_t id : kThree) {
    auto [calls, entries] = c.app(id).batches();
    std::printf("node %llu: %zu entries applied in %zu apply_batch calls\n",
                static_cast<unsigned long long>(id), entries, calls);
  }
  std::map<std::string, int> by_code;
  for (auto& errs : errors) {
    for (auto& e : errs) by_code[e.substr(0, e.find(':'))]++;
  }
  for (auto& [code, n] : by_code) ADD_FAILURE() << n << " proposals failed with " << code;
  if (!by_code.empty()) {
    for (uint64_t id : kThree) {
      DriverInfo i = c.driver(id).info();
      ADD_FAILURE() << "node " << id << ": " << role_name(i.role) << " term " << i.term.get()
                    << " lead " << i.lead.get() << " applied " << i.applied.get();
    }
  }
  std::set<uint64_t> all;
  for (size_t t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(errors[t].empty())
        << "thread " << t << ": " << errors[t].size() << " failed, first: " << errors[t].front();
    // One thread's proposals apply in the order it made them.
    EXPECT_TRUE(std::is_sorted(indexes[t].begin(), indexes[t].end()));
    all.insert(indexes[t].begin(), indexes[t].end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * static_cast<size_t>(kEach)))
      << "distinct applied indexes";
  ASSERT_TRUE(eventually([&] {
    return histories_equal(c, {1, 2, 3}, kThreads * static_cast<size_t>(kEach));
  })) << c.app(1).history().size()
      << " " << c.app(2).history().size() << " " << c.app(3).history().size();
  std::multiset<std::string> cmds;
  for (auto& [i, cmd] : c.app(1).history()) cmds.insert(cmd);
  for (size_t t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; ++i) {
      std::string cmd =
          "set t" + std::to_string(t) + "_" + std::to_string(i) + "=" + std::to_string(i);
      EXPECT_EQ(cmds.count(cmd), 1u) << cmd;
    }
  }
  // Group commit: far fewer log entries than one Ready per proposal would need is not
  // asserted (timing); the applied indexes are what the proposers were told.
  History h = c.app(leader).history();
  std::set<uint64_t> applied;
  for (auto& [i, cmd] : h) applied.insert(i);
  EXPECT_EQ(applied, all);
  // Every entry reached the application through apply_batch (each proposer got its own
  // entry's result, checked above through the indexes).
  EXPECT_GE(c.app(leader).batches().second, all.size());
}

TEST(RaftDriver, LeaderCrashNewLeaderAndTheOldOneCatchesUpFromItsFile) {
  Cluster c({1, 2, 3});
  uint64_t old_leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(old_leader, 0u);
  for (int i = 0; i < 15; ++i) {
    ASSERT_TRUE(c.driver(old_leader).propose("set a" + std::to_string(i) + "=1", 5s).ok());
  }
  c.stop(old_leader);
  std::vector<uint64_t> rest;
  for (uint64_t id : kThree) {
    if (id != old_leader) rest.push_back(id);
  }
  uint64_t new_leader = c.wait_leader(rest);
  ASSERT_NE(new_leader, 0u);
  EXPECT_NE(new_leader, old_leader);
  for (int i = 0; i < 15; ++i) {
    EXPECT_NE(propose_somewhere(c, rest, "set b" + std::to_string(i) + "=2"), 0u);
  }
  // The old leader restarts from its SQLite file with an application that lost its state: it
  // is rebuilt from the log, then the node catches up with what it missed.
  c.start(old_leader, /*fresh_app=*/true);
  ASSERT_TRUE(eventually([&] {
    return histories_equal(c, {1, 2, 3}, 30);
  })) << c.app(old_leader).history().size();
  EXPECT_EQ(c.app(old_leader).history()[14].second, "set a14=1");
  EXPECT_EQ(c.app(old_leader).history()[29].second, "set b14=2");
  // It rejoined as a follower of the current leadership; proposals go on.
  EXPECT_NE(propose_somewhere(c, {1, 2, 3}, "set c=3"), 0u);
  ASSERT_TRUE(eventually([&] { return histories_equal(c, {1, 2, 3}, 31); }));
}

TEST(RaftDriver, ProposalOverwrittenByANewLeaderIsReportedLost) {
  // Without check-quorum the cut-off leader keeps leading (and accepting proposals) until it
  // hears of the newer term: its entry can never commit and is overwritten.
  Cluster c({1, 2, 3}, 10000, [](DriverConfig& d) { d.raft.check_quorum = false; });
  uint64_t old_leader = c.wait_leader(kThree);
  ASSERT_NE(old_leader, 0u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.driver(old_leader).propose("set a=1", 5s).ok());
  const LogIndex before = c.driver(old_leader).info().last_index;
  c.net().cut(old_leader, true);
  Result<std::string> lost = std::string();
  std::thread proposer([&] { lost = c.driver(old_leader).propose("set lost=1", 20s); });
  ASSERT_TRUE(eventually([&] { return c.driver(old_leader).info().last_index > before; }))
      << "the cut-off leader appended the proposal";
  std::vector<uint64_t> rest;
  for (uint64_t id : kThree) {
    if (id != old_leader) rest.push_back(id);
  }
  for (int i = 0; i < 3; ++i) ASSERT_NE(propose_somewhere(c, rest, "set b=2"), 0u);
  c.net().cut(old_leader, false);
  proposer.join();
  ASSERT_FALSE(lost.ok()) << "applied at " << *lost;
  EXPECT_EQ(lost.error().code, kErrProposalLost) << lost.error().message;
  ASSERT_TRUE(eventually([&] { return histories_equal(c, kThree, 6); }));
  for (auto& [i, cmd] : c.app(old_leader).history()) EXPECT_NE(cmd, "set lost=1");
}

TEST(RaftDriver, ProposalsCommitDespiteMessageLoss) {
  Cluster c({1, 2, 3});
  ASSERT_NE(c.wait_leader({1, 2, 3}), 0u);
  c.net().set_loss(0.2);
  std::set<std::string> acked;
  for (int i = 0; i < 30; ++i) {
    std::string cmd = "set l" + std::to_string(i) + "=x";
    if (propose_somewhere(c, {1, 2, 3}, cmd) != 0) acked.insert(cmd);
  }
  c.net().set_loss(0);
  uint64_t leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(c.driver(leader).propose("set end=1", 5s).ok());
  LogIndex last = c.driver(leader).info().applied;
  for (uint64_t id : kThree) ASSERT_TRUE(c.driver(id).wait_applied(last, kLong).ok());
  History h = c.app(1).history();
  EXPECT_EQ(h, c.app(2).history());
  EXPECT_EQ(h, c.app(3).history());
  std::multiset<std::string> cmds;
  for (auto& [i, cmd] : h) cmds.insert(cmd);
  for (const std::string& cmd : acked) EXPECT_EQ(cmds.count(cmd), 1u) << cmd;
}

TEST(RaftDriver, ReadIndexCoversAcknowledgedWritesAndNeedsAQuorum) {
  Cluster c({1, 2, 3});
  uint64_t leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(leader, 0u);
  for (int i = 0; i < 10; ++i) {
    auto w = c.driver(leader).propose("set r=" + std::to_string(i), 5s);
    ASSERT_TRUE(w.ok());
    auto r = read_on(c.driver(leader));
    ASSERT_TRUE(r.ok()) << r.error().code << ": " << r.error().message;
    EXPECT_GE(r->get(), std::stoull(*w));
    // Applied up to the read index: the application shows the write.
    EXPECT_GE(c.app(leader).applied_index(), *r);
    EXPECT_EQ(c.app(leader).get("r"), std::to_string(i));
  }
  // A follower waits for the leader's read index (what the supernode does after forwarding).
  auto ri = read_on(c.driver(leader));
  ASSERT_TRUE(ri.ok());
  for (uint64_t id : kThree) {
    if (id == leader) continue;
    auto r = c.driver(id).read_index(1s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, kErrNotLeader);
    EXPECT_NE(r.error().message.find("leader is " + std::to_string(leader)), std::string::npos);
    ASSERT_TRUE(c.driver(id).wait_applied(*ri, kLong).ok());
    EXPECT_EQ(c.app(id).get("r"), "9");
  }
  // Cut off from the others, the leader never confirms a read.
  c.net().cut(leader, true);
  for (int i = 0; i < 3; ++i) {
    auto r = c.driver(leader).read_index(400ms);
    ASSERT_FALSE(r.ok()) << "an isolated leader answered a read at " << r->get();
    EXPECT_TRUE(r.error().code == kErrTimeout || r.error().code == kErrNotLeader ||
                r.error().code == kErrNotReady)
        << r.error().code;
  }
  // check-quorum: it stepped down; the others elected a leader among themselves.
  EXPECT_TRUE(eventually([&] { return c.driver(leader).info().role != Role::kLeader; }));
  c.net().cut(leader, false);
  ASSERT_NE(c.wait_leader({1, 2, 3}), 0u);
}

// `concurrent`: the application's state is read on a thread of its own and the log compacted
// through a snapshot file (what the supernode does); otherwise on the driver's thread.
void lagging_node_catches_up_through_a_snapshot(bool concurrent) {
  Cluster c({1, 2, 3}, /*snapshot_entries=*/20, nullptr, concurrent);
  uint64_t leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(leader, 0u);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(c.driver(leader).propose("set s=" + std::to_string(i), 5s).ok());
  uint64_t lagging = leader == 1 ? 2 : 1;
  ASSERT_TRUE(eventually([&] { return c.app(lagging).history().size() == 5; }));
  c.stop(lagging);  // its application keeps its state (durable), as does its SQLite file
  std::vector<uint64_t> rest;
  for (uint64_t id : kThree) {
    if (id != lagging) rest.push_back(id);
  }
  // 200 entries from 8 writers (fewer fsync rounds than one at a time).
  std::vector<std::thread> writers;
  std::atomic<int> failed{0};
  for (int t = 0; t < 8; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string k = "w" + std::to_string(t) + "_" + std::to_string(i);
        if (propose_somewhere(c, rest, "set " + k + "=1") == 0) ++failed;
      }
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_EQ(failed.load(), 0);
  ASSERT_NE(propose_somewhere(c, rest, "set s=204"), 0u);
  uint64_t now_leader = c.wait_leader(rest);
  ASSERT_NE(now_leader, 0u);
  // The proposer is answered before the round's compaction (info() is published in between),
  // so look once the round ended.
  DriverInfo li;
  EXPECT_TRUE(eventually([&] {
    li = c.driver(now_leader).info();
    return li.applied - li.snapshot_index < 20u;
  })) << "compacts every 20 applied entries: applied "
      << li.applied.get() << ", snapshot " << li.snapshot_index.get();
  EXPECT_GT(li.snapshot_index.get(), 150u) << "the leader compacted its log";
  const int restores_before = c.app(lagging).restores();
  c.start(lagging);
  ASSERT_TRUE(eventually([&] {
    return histories_equal(c, {1, 2, 3}, 206);
  })) << c.app(lagging).history().size();
  EXPECT_GT(c.app(lagging).restores(), restores_before) << "installed the leader's snapshot";
  EXPECT_EQ(c.app(lagging).get("s"), "204");
  EXPECT_GT(c.driver(lagging).info().snapshot_index.get(), 5u);
  // It is a full member again: a write commits with it.
  EXPECT_NE(propose_somewhere(c, {1, 2, 3}, "set s=after"), 0u);
  ASSERT_TRUE(eventually([&] { return c.app(lagging).get("s") == "after"; }));
  if (concurrent) {
    EXPECT_GT(c.app(now_leader).side_snapshots(), 0);
  }
}

TEST(RaftDriver, LaggingNodeCatchesUpThroughASnapshot) {
  lagging_node_catches_up_through_a_snapshot(false);
}

TEST(RaftDriver, LaggingNodeCatchesUpThroughASnapshotReadOnTheSide) {
  lagging_node_catches_up_through_a_snapshot(true);
}

// Every node restarts at once with applications that lost their state: each rebuilds from
// its own snapshot plus the committed entries after it.
void restart_reapplies_from_snapshot_and_log(bool concurrent) {
  Cluster c({1, 2, 3}, /*snapshot_entries=*/20, nullptr, concurrent);
  for (int i = 0; i < 50; ++i) {
    ASSERT_NE(propose_somewhere(c, {1, 2, 3}, "set p=" + std::to_string(i)), 0u);
  }
  uint64_t leader = c.wait_leader({1, 2, 3});
  LogIndex last = c.driver(leader).info().applied;
  for (uint64_t id : kThree) ASSERT_TRUE(c.driver(id).wait_applied(last, kLong).ok());
  History before = c.app(1).history();
  ASSERT_EQ(before.size(), 50u);
  if (concurrent) {
    for (uint64_t id : kThree) EXPECT_GT(c.app(id).side_snapshots(), 0) << "node " << id;
  }
  for (uint64_t id : kThree) c.stop(id);
  for (uint64_t id : kThree) {
    c.start(id, /*fresh_app=*/true);
    DriverInfo info = c.driver(id).info();
    EXPECT_GT(info.snapshot_index.get(), 0u);
    // start() returned with the application caught up to the stored commit index.
    EXPECT_EQ(c.app(id).restores(), 1);
    EXPECT_EQ(info.applied, info.commit);
  }
  ASSERT_TRUE(eventually([&] { return histories_equal(c, {1, 2, 3}, 50); }));
  EXPECT_EQ(c.app(2).history(), before);
  EXPECT_NE(propose_somewhere(c, {1, 2, 3}, "set p=new"), 0u);
}

TEST(RaftDriver, RestartReappliesFromSnapshotAndLog) {
  restart_reapplies_from_snapshot_and_log(false);
}

TEST(RaftDriver, RestartReappliesFromSnapshotFileAndLog) {
  restart_reapplies_from_snapshot_and_log(true);
}

TEST(RaftDriver, LearnerJoinsIsPromotedAndANodeIsRemoved) {
  Cluster c({1, 2, 3});
  uint64_t leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(leader, 0u);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(c.driver(leader).propose("set m=" + std::to_string(i), 5s).ok());
  Status add = c.driver(leader).change_membership({ConfChangeType::kAddLearner, nid(4)}, 5s);
  ASSERT_TRUE(add.ok()) << add.error().code << ": " << add.error().message;
  ConfState told = c.driver(leader).info().conf;
  EXPECT_EQ(told.learners, std::vector<NodeId>{nid(4)});
  // The new node starts with the membership it was told.
  c.start(4, false, told);
  ASSERT_TRUE(eventually([&] {
    auto v = c.driver(leader).info().conf.voters;
    return std::find(v.begin(), v.end(), nid(4)) != v.end();
  })) << "learner 4 promoted once caught up";
  EXPECT_TRUE(eventually([&] { return c.driver(4).info().conf.voters.size() == 4; }));
  ASSERT_TRUE(eventually([&] { return histories_equal(c, {1, 2, 3, 4}, 10); }));
  ASSERT_NE(propose_somewhere(c, {1, 2, 3, 4}, "set m=four"), 0u);
  ASSERT_TRUE(eventually([&] { return histories_equal(c, {1, 2, 3, 4}, 11); }));

  // Remove a follower (retrying while the promotion is still in flight).
  leader = c.wait_leader({1, 2, 3, 4});
  ASSERT_NE(leader, 0u);
  const uint64_t victim = leader == 3 ? 2 : 3;
  Status rm = make_error(kErrConfChangeInFlight, "");
  for (int i = 0; i < 100 && !rm.ok() && rm.error().code == kErrConfChangeInFlight; ++i) {
    rm = c.driver(leader).change_membership({ConfChangeType::kRemove, nid(victim)}, 5s);
    if (!rm.ok()) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(rm.ok()) << rm.error().code << ": " << rm.error().message;
  ConfState after = c.driver(leader).info().conf;
  EXPECT_EQ(after.removed, std::vector<NodeId>{nid(victim)});
  EXPECT_EQ(after.voters.size(), 3u);
  EXPECT_EQ(std::count(after.voters.begin(), after.voters.end(), nid(victim)), 0);
  // Ids are never reused.
  Status again = c.driver(leader).change_membership({ConfChangeType::kAddLearner, nid(victim)}, 5s);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, kErrBadConfChange);
  // The three remaining voters go on without it.
  std::vector<uint64_t> members;
  for (NodeId n : after.voters) members.push_back(n.get());
  c.stop(victim);
  ASSERT_NE(propose_somewhere(c, members, "set m=three"), 0u);
  ASSERT_TRUE(eventually([&] { return histories_equal(c, members, 12); }));
  // The membership survives a restart of a member (set_conf_state / replay of the log).
  const uint64_t other = members[0] == leader ? members[1] : members[0];
  c.stop(other);
  c.start(other);
  EXPECT_EQ(c.driver(other).info().conf, after);
}

// Runtime membership as the supernode uses it: the new node starts with NO membership (it
// does not know the bootstrap one, which lives outside the log), the change carries its
// address, and it is initialized by the leader's snapshot (the driver compacts after every
// membership change), from which it learns the membership and every address.
TEST(RaftDriver, NodeWithoutMembershipJoinsThroughASnapshotAndLearnsAddresses) {
  std::mutex mu;
  std::map<uint64_t, std::vector<ConfState>> seen;  // on_conf_change calls, per node
  Cluster c({1, 2, 3}, 10000, [&](DriverConfig& dc) {
    const uint64_t id = dc.raft.id.get();
    dc.on_conf_change = [&mu, &seen, id](const ConfState& conf) {
      std::lock_guard lock(mu);
      seen[id].push_back(conf);
    };
  });
  uint64_t leader = c.wait_leader({1, 2, 3});
  ASSERT_NE(leader, 0u);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(c.driver(leader).propose("set j=" + std::to_string(i), 5s).ok());
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(seen[leader].size(), 1u);  // once at start, with the bootstrap membership
    EXPECT_EQ(seen[leader][0].voters.size(), 3u);
  }
  // Node 4 runs first, without a membership: it never campaigns and refuses entries.
  c.start(4, false, ConfState{});
  std::this_thread::sleep_for(300ms);  // 30 ticks: more than an election timeout
  EXPECT_EQ(c.driver(4).info().role, Role::kFollower);
  EXPECT_EQ(c.driver(4).info().term, Term{0});

  ConfChange add{ConfChangeType::kAddLearner, nid(4), "10.0.0.4:8002"};
  Status st = c.driver(leader).change_membership(add, 5s);
  ASSERT_TRUE(st.ok()) << st.error().code << ": " << st.error().message;
  // Compacted at the change, so the new node cannot be fed the log from index 1.
  EXPECT_TRUE(eventually([&] { return c.driver(leader).info().snapshot_index > LogIndex{10}; }));
  ASSERT_TRUE(eventually([&] { return c.driver(4).info().conf.voters.size() == 4; }))
      << "node 4 promoted once caught up";
  ASSERT_TRUE(eventually([&] { return histories_equal(c, {1, 2, 3, 4}, 10); }));
  // Node 4's promotion needs only a majority, so a follower that lost messages may apply the
  // change after node 4 does: wait for each.
  for (uint64_t id : {1u, 2u, 3u, 4u}) {
    auto knows_node_4 = [&] { return find_address(c.driver(id).info().conf, nid(4)) != nullptr; };
    ASSERT_TRUE(eventually(knows_node_4)) << "node " << id;
    ConfState conf = c.driver(id).info().conf;
    EXPECT_EQ(find_address(conf, nid(4))->address, "10.0.0.4:8002") << "node " << id;
  }
  {
    std::lock_guard lock(mu);
    ASSERT_FALSE(seen[4].empty());
    EXPECT_TRUE(seen[4].front().voters.empty());  // at start: nothing
    EXPECT_NE(find_address(seen[4].back(), nid(4)), nullptr);
  }
  ASSERT_NE(propose_somewhere(c, {1, 2, 3, 4}, "set j=four"), 0u);
  ASSERT_TRUE(eventually([&] { return histories_equal(c, {1, 2, 3, 4}, 11); }));

  // Removal forgets the address; both survive a restart of the new node.
  leader = c.wait_leader({1, 2, 3, 4});
  ASSERT_NE(leader, 0u);
  const uint64_t victim = leader == 1 ? 2 : 1;
  Status rm = make_error(kErrConfChangeInFlight, "");
  for (int i = 0; i < 100 && !rm.ok() && rm.error().code == kErrConfChangeInFlight; ++i) {
    rm = c.driver(leader).change_membership({ConfChangeType::kRemove, nid(victim)}, 5s);
    if (!rm.ok()) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(rm.ok()) << rm.error().code << ": " << rm.error().message;
  ConfState after = c.driver(leader).info().conf;
  EXPECT_EQ(after.removed, std::vector<NodeId>{nid(victim)});
  ASSERT_TRUE(eventually([&] { return c.driver(4).info().conf == after; }));
  c.stop(4);
  c.start(4, false, ConfState{});
  EXPECT_EQ(c.driver(4).info().conf, after);
  EXPECT_NE(find_address(c.driver(4).info().conf, nid(4)), nullptr);
}

TEST(RaftDriver, CorruptStorageRefusesToStart) {
  TempDir dir;
  Net net;
  NetTransport transport(net, 1);
  KvApp app;
  DriverConfig config;
  config.raft.id = nid(1);
  config.raft.seed = test_seed();
  config.storage_path = dir.file("node1.db");
  config.bootstrap = voters({1});
  config.tick = 10ms;
  {
    auto d = Driver::start(config, transport, app);
    ASSERT_TRUE(d.ok()) << d.error().message;
    // A single voter elects itself and commits alone.
    ASSERT_TRUE(eventually([&] { return (*d)->info().role == Role::kLeader; }));
    for (int i = 0; i < 5; ++i) {
      auto r = (*d)->propose("set k=" + std::to_string(i), 5s);
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    (*d)->stop();
    EXPECT_EQ((*d)->propose("set k=late", 1s).error().code, kErrStopped);
    EXPECT_EQ((*d)->read_index(1s).error().code, kErrStopped);
  }
  // Flip a bit of entry 3's data behind the store's back.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(config.storage_path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, "UPDATE entries SET data = CAST('set k=X' AS BLOB) WHERE idx = 3",
                        nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;

  KvApp fresh;
  auto d = Driver::start(config, transport, fresh);
  ASSERT_FALSE(d.ok()) << "started over a corrupt log";
  EXPECT_EQ(d.error().code, kErrCorruptLog);
  EXPECT_NE(d.error().message.find("raft log idx=3: checksum mismatch"), std::string::npos)
      << d.error().message;
  EXPECT_NE(d.error().message.find("raft node 1: cannot start"), std::string::npos)
      << d.error().message;
  EXPECT_TRUE(fresh.history().empty()) << "nothing applied from a corrupt store";
}

TEST(RaftDriver, RejectsABadConfig) {
  TempDir dir;
  Net net;
  NetTransport transport(net, 1);
  KvApp app;
  DriverConfig config;
  config.raft.id = nid(1);
  config.storage_path = dir.file("node1.db");
  config.bootstrap = voters({1});
  config.raft.heartbeat_tick = config.raft.election_tick;
  auto d = Driver::start(config, transport, app);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, kErrBadConfig);
  config.raft.heartbeat_tick = 1;
  config.raft.id = kNoNode;
  EXPECT_EQ(Driver::start(config, transport, app).error().code, kErrBadConfig);
  EXPECT_FALSE(fs::exists(config.storage_path)) << "nothing opened";
}

TEST(RaftDriver, FailedApplyStopsTheDriver) {
  // The application reports a storage failure: the driver stops, waiters get kErrStopped.
  class FailingApp final : public Application {
   public:
    Result<std::string> apply(LogIndex index, const std::string& data) override {
      if (data == "set boom=1") return make_error(kErrApplyFailed, "disk full");
      applied_ = index;
      return std::string("ok");
    }
    LogIndex applied_index() const override { return applied_; }
    Result<std::string> snapshot() override { return std::string(); }
    Status restore(LogIndex index, const std::string&) override {
      applied_ = index;
      return {};
    }
    LogIndex applied_;
  };
  TempDir dir;
  Net net;
  NetTransport transport(net, 1);
  FailingApp app;
  DriverConfig config;
  config.raft.id = nid(1);
  config.raft.seed = test_seed();
  config.storage_path = dir.file("node1.db");
  config.bootstrap = voters({1});
  config.tick = 10ms;
  auto d = Driver::start(config, transport, app);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(eventually([&] { return (*d)->info().role == Role::kLeader; }));
  ASSERT_TRUE((*d)->propose("set a=1", 5s).ok());
  auto r = (*d)->propose("set boom=1", 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrStopped);
  EXPECT_NE(r.error().message.find("disk full"), std::string::npos) << r.error().message;
  ASSERT_TRUE((*d)->fatal_error().has_value());
  EXPECT_EQ((*d)->fatal_error()->code, kErrApplyFailed);
  EXPECT_EQ((*d)->propose("set b=1", 1s).error().code, kErrStopped);
  EXPECT_EQ((*d)->wait_applied(LogIndex{1000}, 1s).error().code, kErrStopped);
}

}  // namespace
}  // namespace starling::raft::testing

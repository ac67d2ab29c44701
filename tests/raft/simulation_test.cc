// Randomized deterministic simulation of a Raft group (3 or 5 nodes) with a key/value client
// workload. Every seed drives the same code paths the same way: crashes that lose whatever
// was not persisted, partitions, message loss, duplication and reordering, clock drift
// (nodes tick at random), log compaction. After every step an invariant check runs; at the
// end the clients' history is checked for linearizability.
//
//   STARLING_RAFT_SEEDS=N   number of seeds (default 1000, sanitizer builds included)
//   STARLING_RAFT_SEED=S    replay exactly seed S (a failure prints it)
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "supernode/raft/raw_node.h"
#include "supernode/raft/storage.h"
#include "tests/raft/linearizability.h"

namespace starling::raft {
using testing::check_linearizable;
using testing::kNever;
using testing::KvOp;
namespace {

constexpr int kSteps = 8000;       // random steps per seed
constexpr int kDrainSteps = 2000;  // healed network, no faults, clients finish
constexpr int kClients = 3;
constexpr uint64_t kClientTimeout = 300;  // steps before a client gives up on an op
const char* const kKeys[] = {"a", "b", "c"};

// The RawNode aborts on a broken internal invariant; say which seed did it.
volatile uint64_t g_current_seed = 0;
size_t g_exhausted = 0;  // seeds whose linearizability search ran out of budget
size_t g_stale_candidates = 0;
size_t g_snapshots_installed = 0;
size_t g_joins = 0;
size_t g_removals = 0;
size_t g_leader_early_sends = 0;          // leader Readys sent before persisting
size_t g_leader_crashes_unpersisted = 0;  // leaders crashed after sending, before persisting
void on_abort(int) {
  char buf[96];
  int n = std::snprintf(buf, sizeof buf, "\nraft simulation aborted: STARLING_RAFT_SEED=%llu\n",
                        static_cast<unsigned long long>(g_current_seed));
  if (n > 0) (void)!write(2, buf, static_cast<size_t>(n));
}

std::string encode_kv(const std::map<std::string, std::string>& kv) {
  std::string out;
  for (auto& [k, v] : kv) out += k + "=" + v + "\n";
  return out;
}
std::map<std::string, std::string> decode_kv(const std::string& s) {
  std::map<std::string, std::string> kv;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

struct SimNode {
  NodeId id;
  bool joined = false;  // a spare becomes a member (learner) when the leader adds it
  std::unique_ptr<MemoryStorage> disk;  // survives crashes
  std::unique_ptr<RawNode> raft;        // null while down
  std::map<std::string, std::string> kv;
  uint64_t incarnation = 0;
  LogIndex last_commit;  // this incarnation, for the monotonic check
  LogIndex last_applied;
  LogIndex commit_recorded;  // highest commit index copied into committed_
  Term checked_leader_term;  // last term we ran the leader completeness check for
};

struct PendingOp {
  bool active = false;
  KvOp op;
  size_t node = 0;
  uint64_t incarnation = 0;
  std::string token;  // put: the entry's data; get: the read context
  std::optional<LogIndex> read_index;
  uint64_t started_step = 0;
};

class Simulation {
 public:
  // `nodes` initial voters, plus `spares` ids the leader may add later (never reused).
  Simulation(uint64_t seed, size_t nodes, size_t spares) : seed_(seed), rng_(seed) {
    ConfState conf;
    for (size_t i = 0; i < nodes; ++i) conf.voters.push_back(NodeId{i + 1});
    for (size_t i = 0; i < nodes + spares; ++i) {
      SimNode n;
      n.id = NodeId{i + 1};
      n.disk = std::make_unique<MemoryStorage>(conf);
      n.joined = i < nodes;
      nodes_.push_back(std::move(n));
      if (i < nodes) start(i);
    }
    cut_.assign(nodes_.size() * nodes_.size(), false);
    clients_.resize(kClients);
  }

  // Runs the seed; returns an empty string or the first failure.
  std::string run() {
    for (step_ = 0; step_ < kSteps && failure_.empty(); ++step_) {
      random_step(true);
      check_invariants();
    }
    // Drain: heal, restart everyone, stop faults; clients finish or time out.
    cut_.assign(nodes_.size() * nodes_.size(), false);
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!nodes_[i].raft && nodes_[i].joined) start(i);
    }
    for (int s = 0; s < kDrainSteps && failure_.empty(); ++s, ++step_) {
      random_step(false);
      check_invariants();
    }
    for (auto& c : clients_) finish_unknown(c);
    if (!failure_.empty()) return failure_;
    auto lin = check_linearizable(history_);
    if (!lin.explanation.empty() && lin.ok) ++g_exhausted;
    if (!lin.ok) return "history not linearizable on key " + lin.key + ":\n" + lin.explanation;
    if (committed_.empty()) return "liveness: nothing committed in the whole run\n" + describe();
    return {};
  }

  std::string describe() const {
    std::string out;
    for (const SimNode& n : nodes_) {
      out += "node " + std::to_string(n.id.get());
      if (!n.raft) {
        out += " down\n";
        continue;
      }
      const RawNode& r = *n.raft;
      out += std::string(" ") + role_name(r.role()) + " term " + std::to_string(r.term().get()) +
             " lead " + std::to_string(r.lead().get()) + " last " +
             std::to_string(r.log().last_index().get()) + "/" +
             std::to_string(r.log().last_term().get()) + " commit " +
             std::to_string(r.log().committed().get()) + " timeout " +
             std::to_string(r.randomized_election_timeout()) + "\n";
      for (const SimNode& o : nodes_) {
        const Progress* p = r.progress(o.id);
        if (!p) continue;
        out += "  progress " + std::to_string(o.id.get()) + " match " +
               std::to_string(p->match.get()) + " next " + std::to_string(p->next.get()) +
               " state " + std::to_string(static_cast<int>(p->state)) + " probe_sent " +
               std::to_string(p->probe_sent) + " inflight " + std::to_string(p->inflights.size()) +
               " active " + std::to_string(p->recent_active) + "\n";
      }
    }
    out += std::to_string(in_flight_.size()) + " messages in flight\n";
    return out;
  }

  size_t history_size() const { return history_.size(); }
  size_t committed_entries() const { return committed_.size(); }
  size_t leaders() const { return leaders_.size(); }

 private:
  size_t pick(size_t n) { return static_cast<size_t>(rng_() % n); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  bool is_cut(size_t a, size_t b) const { return cut_[a * nodes_.size() + b]; }

  void fail(const std::string& what) {
    if (failure_.empty()) failure_ = "step " + std::to_string(step_) + ": " + what;
  }

  void start(size_t i) {
    SimNode& n = nodes_[i];
    Config c;
    c.id = n.id;
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.max_inflight = 4;  // small, to exercise the window
    c.max_size_per_msg = 64;
    c.seed = seed_ * 1000003 + i * 7919 + n.incarnation;
    // Every fourth seed runs without check-quorum, so deposed leaders linger and get reads.
    c.check_quorum = seed_ % 4 != 0;
    n.raft = std::make_unique<RawNode>(c, *n.disk);
    ++n.incarnation;
    auto snap = n.disk->snapshot();
    n.kv = decode_kv(snap->data);
    n.last_commit = n.raft->log().committed();
    n.last_applied = n.raft->log().applied();
    n.checked_leader_term = Term{};
  }

  void crash(size_t i) { nodes_[i].raft.reset(); }

  void random_step(bool faults) {
    size_t r = pick(1000);
    if (r < 400) {
      deliver(faults);
    } else if (r < 650) {
      size_t i = pick(nodes_.size());
      if (nodes_[i].raft && nodes_[i].raft->has_ready()) handle_ready(i, faults);
    } else if (r < 820) {
      size_t i = pick(nodes_.size());
      if (nodes_[i].raft) nodes_[i].raft->tick();
    } else if (r < 950) {
      client_step();
    } else if (!faults) {
      return;
    } else if (r < 958) {
      size_t i = pick(nodes_.size());
      if (nodes_[i].raft) {
        crash(i);
      } else if (nodes_[i].joined) {
        start(i);
      }
    } else if (r < 970) {
      size_t i = pick(nodes_.size());
      if (!nodes_[i].raft && nodes_[i].joined) start(i);
    } else if (r < 972 && chance(0.75)) {
      repartition();  // partitions last a few hundred steps: long enough for elections
    } else if (r < 980) {
      compact(pick(nodes_.size()));
    } else if (r < 982) {
      // Leadership transfer to a random voter.
      size_t i = pick(nodes_.size());
      if (nodes_[i].raft && nodes_[i].raft->role() == Role::kLeader) {
        (void)nodes_[i].raft->transfer_leadership(NodeId{pick(nodes_.size()) + 1});
      }
    } else if (r < 984) {
      change_membership();
    }
  }

  // Single-server changes through the leader: add the next spare as a learner (the leader
  // promotes it once caught up), or remove a member while more than three voters remain.
  void change_membership() {
    size_t l = nodes_.size();
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].raft && nodes_[i].raft->role() == Role::kLeader) l = i;
    }
    if (l == nodes_.size()) return;
    RawNode& leader = *nodes_[l].raft;
    ConfState conf = leader.conf_state();
    if (chance(0.5)) {
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i].joined) continue;
        if (!leader.propose_conf_change({ConfChangeType::kAddLearner, nodes_[i].id}).ok()) return;
        conf.learners.push_back(nodes_[i].id);  // what the new member is told when it joins
        std::sort(conf.learners.begin(), conf.learners.end());
        // Half the time it is told nothing, as the supernode's --join: it then refuses
        // entries until a snapshot (after a compaction) brings the membership.
        if (chance(0.5)) conf = ConfState{};
        nodes_[i].disk = std::make_unique<MemoryStorage>(conf);
        nodes_[i].joined = true;
        ++g_joins;
        start(i);
        return;
      }
    } else if (conf.voters.size() > 3) {
      NodeId victim = conf.voters[pick(conf.voters.size())];
      if (leader.propose_conf_change({ConfChangeType::kRemove, victim}).ok()) ++g_removals;
    }
  }

  void repartition() {
    size_t n = nodes_.size();
    cut_.assign(n * n, false);
    switch (pick(4)) {
      case 0:
        return;  // healed
      case 1: {  // isolate one node, most often a leader
        size_t a = pick(n);
        for (size_t i = 0; i < n; ++i) {
          if (nodes_[i].raft && nodes_[i].raft->role() == Role::kLeader && chance(0.7)) a = i;
        }
        for (size_t b = 0; b < n; ++b) cut_[a * n + b] = cut_[b * n + a] = (a != b);
        return;
      }
      case 2: {  // split in two random sides
        std::vector<int> side(n);
        for (auto& s : side) s = static_cast<int>(pick(2));
        for (size_t a = 0; a < n; ++a) {
          for (size_t b = 0; b < n; ++b) cut_[a * n + b] = side[a] != side[b];
        }
        return;
      }
      default: {  // some one-way link failures
        for (int k = 0; k < 3; ++k) cut_[pick(n) * n + pick(n)] = true;
        return;
      }
    }
  }

  void deliver(bool faults) {
    if (in_flight_.empty()) return;
    size_t k = pick(in_flight_.size());  // reordering: any message may go next
    Message m = in_flight_[k];
    if (!faults || !chance(0.05)) {  // duplication: leave a copy behind
      in_flight_[k] = std::move(in_flight_.back());
      in_flight_.pop_back();
    }
    if (faults && chance(0.05)) return;  // loss
    size_t from = m.from.get() - 1, to = m.to.get() - 1;
    if (is_cut(from, to) || !nodes_[to].raft) return;
    (void)nodes_[to].raft->step(m);
  }

  // The driver's order: persist, (maybe crash here), send, apply, advance — except that a
  // leader sends first (its own copy counts only after advance()), and may crash after
  // sending, before its entries are durable: the followers hold entries it lost.
  void handle_ready(size_t i, bool faults) {
    SimNode& n = nodes_[i];
    Ready rd = n.raft->ready();
    if (n.raft->role() == Role::kLeader && !rd.hard_state_sync && !rd.snapshot) {
      ++g_leader_early_sends;
      for (Message& m : rd.messages) in_flight_.push_back(std::move(m));
      rd.messages.clear();
      if (faults && !rd.entries.empty() && chance(0.02)) {
        ++g_leader_crashes_unpersisted;
        crash(i);
        return;
      }
    }
    if (rd.snapshot) {
      ++g_snapshots_installed;
      if (!n.disk->apply_snapshot(*rd.snapshot).ok()) fail("snapshot out of date");
    }
    if (!rd.entries.empty()) {
      n.disk->append(rd.entries);
      check_log_matching(n, rd.entries);
    }
    // A hard state that changes only the commit index is written without a sync: model its
    // loss by a later crash by sometimes not writing it (the next synced one carries it).
    if (rd.hard_state && (rd.hard_state_sync || !faults || !chance(0.3))) {
      n.disk->set_hard_state(*rd.hard_state);
    }
    if (faults && chance(0.01)) {  // crash after the fsync, before anything left the node
      crash(i);
      return;
    }
    for (Message& m : rd.messages) in_flight_.push_back(std::move(m));
    if (rd.snapshot) n.kv = decode_kv(rd.snapshot->data);
    for (const Entry& e : rd.committed_entries) apply(n, e);
    for (const ReadState& rs : rd.read_states) {
      for (auto& c : clients_) {
        if (c.active && c.node == i && c.incarnation == n.incarnation && c.token == rs.context) {
          c.read_index = rs.index;
        }
      }
    }
    n.raft->advance(rd);
    complete_reads(i);
  }

  void apply(SimNode& n, const Entry& e) {
    auto [it, fresh] = applied_.emplace(e.index, e);
    if (!fresh && it->second != e) {
      fail("state machine safety: node " + std::to_string(n.id.get()) + " applies at index " +
           std::to_string(e.index.get()) + " term " + std::to_string(e.term.get()) +
           " but another node applied term " + std::to_string(it->second.term.get()));
    }
    if (e.type == EntryType::kConfChange) {
      if (auto cc = decode_conf_change(e.data))
        n.disk->set_conf_state(n.raft->apply_conf_change(*cc));
      return;
    }
    if (e.data.empty()) return;
    // "put <key> <value>"; values are unique per put.
    std::istringstream in(e.data);
    std::string verb, key, value;
    in >> verb >> key >> value;
    n.kv[key] = value;
    size_t idx = static_cast<size_t>(&n - nodes_.data());
    for (auto& c : clients_) {
      if (c.active && c.node == idx && c.incarnation == n.incarnation && c.token == e.data) {
        c.op.ret = ++clock_;
        history_.push_back(c.op);
        c.active = false;
      }
    }
  }

  void complete_reads(size_t i) {
    SimNode& n = nodes_[i];
    for (auto& c : clients_) {
      if (!c.active || c.node != i || c.incarnation != n.incarnation || !c.read_index) continue;
      if (n.raft->log().applied() < *c.read_index) continue;
      auto it = n.kv.find(c.op.key);
      c.op.value = it == n.kv.end() ? std::nullopt : std::optional<std::string>(it->second);
      c.op.ret = ++clock_;
      history_.push_back(c.op);
      c.active = false;
    }
  }

  void client_step() {
    size_t ci = pick(clients_.size());
    PendingOp& c = clients_[ci];
    if (c.active) {
      SimNode& n = nodes_[c.node];
      bool gone = !n.raft || n.incarnation != c.incarnation;
      if (gone || static_cast<uint64_t>(step_) - c.started_step > kClientTimeout) finish_unknown(c);
      return;
    }
    // Talk to the node believed to lead, or anyone.
    // Any of them when a partition left several nodes believing they lead.
    size_t target = pick(nodes_.size());
    std::vector<size_t> leaders;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].raft && nodes_[i].raft->role() == Role::kLeader) leaders.push_back(i);
    }
    if (!leaders.empty() && chance(0.9)) target = leaders[pick(leaders.size())];
    if (leaders.size() > 1) ++g_stale_candidates;
    SimNode& n = nodes_[target];
    if (!n.raft) return;
    c = PendingOp{};
    c.op.client = static_cast<int>(ci);
    c.op.key = kKeys[pick(3)];
    c.node = target;
    c.incarnation = n.incarnation;
    c.started_step = static_cast<uint64_t>(step_);
    if (chance(0.5)) {
      c.op.kind = KvOp::Kind::kPut;
      c.op.value = std::to_string(seed_) + "." + std::to_string(++puts_);
      c.token = "put " + c.op.key + " " + *c.op.value;
      c.op.call = ++clock_;
      if (!n.raft->propose(c.token).ok()) return;  // refused: never happened
    } else {
      c.op.kind = KvOp::Kind::kGet;
      c.token = "read " + std::to_string(++reads_);
      c.op.call = ++clock_;
      if (!n.raft->read_index(c.token).ok()) return;
    }
    c.active = true;
  }

  // The client stops waiting: a put may or may not have happened; a get is dropped.
  void finish_unknown(PendingOp& c) {
    if (!c.active) return;
    if (c.op.kind == KvOp::Kind::kPut) {
      c.op.ret = kNever;
      history_.push_back(c.op);
    }
    c.active = false;
  }

  void compact(size_t i) {
    SimNode& n = nodes_[i];
    if (!n.raft) return;
    LogIndex applied = n.raft->log().applied();
    if (applied <= n.disk->first_index()) return;
    // Keep a few entries so that not every lagging follower needs a snapshot.
    LogIndex at =
        applied - std::min<uint64_t>(applied.get() - n.disk->first_index().get(), pick(2) ? 0 : 3);
    if (at < n.disk->first_index()) return;
    // The KV state at `applied` is what we have; snapshot exactly there.
    (void)n.disk->create_snapshot(applied, n.raft->conf_state(), encode_kv(n.kv));
  }

  // Log matching, checked on every persisted entry: an (index, term) pair always names the
  // same data and the same predecessor term.
  void check_log_matching(SimNode& n, const std::vector<Entry>& ents) {
    for (const Entry& e : ents) {
      Term prev;
      auto t = n.disk->term(e.index - 1);
      if (!t.ok()) continue;
      prev = *t;
      auto key = std::make_pair(e.index, e.term);
      auto [it, fresh] = entries_.emplace(key, std::make_pair(e.data, prev));
      if (!fresh && it->second != std::make_pair(e.data, prev)) {
        fail("log matching: node " + std::to_string(n.id.get()) + " has a different entry at " +
             std::to_string(e.index.get()) + " term " + std::to_string(e.term.get()));
      }
    }
  }

  void check_invariants() {
    for (SimNode& n : nodes_) {
      if (!n.raft) continue;
      RawNode& r = *n.raft;
      const RaftLog& log = r.log();
      // Monotonic commit and apply within an incarnation; applied <= committed.
      if (log.committed() < n.last_commit) fail("commit index went backwards");
      if (log.applied() < n.last_applied) fail("applied index went backwards");
      if (log.applied() > log.committed()) fail("applied beyond committed");
      n.last_commit = log.committed();
      n.last_applied = log.applied();
      // Record newly committed entries; two nodes never commit different entries at an index.
      for (LogIndex i = std::max(n.commit_recorded + 1, log.first_index()); i <= log.committed();
           ++i) {
        auto t = log.term(i);
        if (!t.ok()) continue;
        auto [it, fresh] = committed_.emplace(i, *t);
        if (!fresh && it->second != *t) {
          fail("committed entry differs at index " + std::to_string(i.get()));
        }
      }
      n.commit_recorded = std::max(n.commit_recorded, log.committed());
      if (r.role() != Role::kLeader) continue;
      // At most one leader per term.
      auto [lt, fresh] = leaders_.emplace(r.term(), n.id);
      if (!fresh && lt->second != n.id) {
        fail("two leaders in term " + std::to_string(r.term().get()) + ": " +
             std::to_string(lt->second.get()) + " and " + std::to_string(n.id.get()));
      }
      // Leader completeness: a new leader holds every entry committed so far.
      if (n.checked_leader_term != r.term()) {
        n.checked_leader_term = r.term();
        for (auto& [i, term] : committed_) {
          if (i < log.first_index()) continue;
          if (log.term_or_zero(i) != term) {
            fail("leader completeness: leader " + std::to_string(n.id.get()) + " of term " +
                 std::to_string(r.term().get()) + " lacks committed entry " +
                 std::to_string(i.get()));
            break;
          }
        }
      }
    }
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<SimNode> nodes_;
  std::vector<Message> in_flight_;
  std::vector<bool> cut_;
  std::vector<PendingOp> clients_;
  std::vector<KvOp> history_;
  std::map<LogIndex, Entry> applied_;
  std::map<LogIndex, Term> committed_;
  std::map<std::pair<LogIndex, Term>, std::pair<std::string, Term>> entries_;
  std::map<Term, NodeId> leaders_;
  uint64_t clock_ = 0;
  uint64_t puts_ = 0;
  uint64_t reads_ = 0;
  int step_ = 0;
  std::string failure_;
};

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

TEST(RaftSimulation, RandomizedSeeds) {
  // 1000 seeds: ~2 s in a release build, ~11 s under ASan+UBSan (measured on 2 shared cores),
  // so the sanitizer run keeps the same default.
  const uint64_t default_seeds = 1000;
  std::signal(SIGABRT, on_abort);
  std::vector<uint64_t> seeds;
  if (const char* one = std::getenv("STARLING_RAFT_SEED"); one && *one) {
    seeds.push_back(std::strtoull(one, nullptr, 10));
  } else {
    uint64_t n = env_u64("STARLING_RAFT_SEEDS", default_seeds);
    for (uint64_t s = 1; s <= n; ++s) seeds.push_back(s);
  }
  auto t0 = std::chrono::steady_clock::now();
  size_t ops = 0;
  size_t failures = 0;
  size_t committed = 0;
  size_t leaders = 0;
  for (uint64_t seed : seeds) {
    g_current_seed = seed;
    Simulation sim(seed, seed % 2 ? 3 : 5, 2);
    std::string failure = sim.run();
    ops += sim.history_size();
    committed += sim.committed_entries();
    leaders += sim.leaders();
    if (!failure.empty()) {
      ++failures;
      ADD_FAILURE() << "seed " << seed << " failed; replay with STARLING_RAFT_SEED=" << seed << "\n"
                    << failure;
      if (failures >= 3) break;
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "raft simulation: %zu seeds, %zu client ops checked, %zu entries committed, %zu terms "
      "with a leader, %zu snapshots installed, %zu learners added, %zu removals proposed, %zu "
      "multi-leader client steps, %zu inconclusive linearizability searches, %zu leader Readys "
      "sent before persisting, %zu leader crashes losing sent entries, %.1f s\n",
      seeds.size(), ops, committed, leaders, g_snapshots_installed, g_joins, g_removals,
      g_stale_candidates, g_exhausted, g_leader_early_sends, g_leader_crashes_unpersisted, secs);
}

}  // namespace
}  // namespace starling::raft

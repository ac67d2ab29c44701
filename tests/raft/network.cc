#include "tests/raft/network.h"

#include <deque>

namespace starling::raft::testing {

Network::Network(std::vector<uint64_t> voters, std::function<void(Config&)> tweak)
    : tweak_(std::move(tweak)) {
  ConfState conf;
  for (uint64_t v : voters) conf.voters.push_back(nid(v));
  std::sort(conf.voters.begin(), conf.voters.end());
  for (uint64_t v : voters) {
    TestNode n;
    n.storage = std::make_unique<MemoryStorage>(conf);
    nodes_.emplace(nid(v), std::move(n));
    restart(v);
  }
}

void Network::add_blank_node(uint64_t id, ConfState conf) {
  TestNode n;
  n.storage = std::make_unique<MemoryStorage>(std::move(conf));
  nodes_.emplace(nid(id), std::move(n));
  restart(id);
}

void Network::restart(uint64_t id) {
  TestNode& n = nodes_.at(nid(id));
  Config c;
  c.id = nid(id);
  c.seed = seed_++ * 7919 + id;
  if (tweak_) tweak_(c);
  n.node = std::make_unique<RawNode>(c, *n.storage);
}

std::vector<uint64_t> Network::ids() const {
  std::vector<uint64_t> out;
  for (auto& [id, n] : nodes_) out.push_back(id.get());
  return out;
}

void Network::handle_ready(TestNode& n, std::vector<Message>& out) {
  Ready rd = n.node->ready();
  // Persist first (snapshot, entries, hard state), then send, then apply.
  if (rd.snapshot) {
    (void)n.storage->apply_snapshot(*rd.snapshot);
    n.applied.clear();  // tests only look at what follows a snapshot
  }
  n.storage->append(rd.entries);
  if (rd.hard_state) n.storage->set_hard_state(*rd.hard_state);
  if (rd.soft_state) n.soft_states.push_back(*rd.soft_state);
  for (Message& m : rd.messages) out.push_back(std::move(m));
  for (const Entry& e : rd.committed_entries) {
    if (e.type == EntryType::kConfChange) {
      if (auto cc = decode_conf_change(e.data)) {
        n.storage->set_conf_state(n.node->apply_conf_change(*cc));
      }
    } else if (!e.data.empty()) {
      n.applied.push_back(e);
    }
  }
  for (auto& r : rd.read_states) n.read_states.push_back(r);
  n.node->advance(rd);
}

bool Network::blocked(const Message& m) const {
  if (dropped_types_.count(m.type)) return true;
  return cuts_.count({m.from.get(), m.to.get()}) > 0;
}

void Network::stabilize() {
  std::deque<Message> queue;
  for (int round = 0; round < 100000; ++round) {
    std::vector<Message> out;
    for (auto& [id, n] : nodes_) {
      if (n.node->has_ready()) handle_ready(n, out);
    }
    for (auto& m : out) queue.push_back(std::move(m));
    if (queue.empty()) return;
    while (!queue.empty()) {
      Message m = std::move(queue.front());
      queue.pop_front();
      auto it = nodes_.find(m.to);
      if (it == nodes_.end() || blocked(m)) continue;
      delivered.push_back(m);
      (void)it->second.node->step(m);
    }
  }
}

void Network::tick(uint64_t id, int n) {
  for (int i = 0; i < n; ++i) node(id).tick();
}

void Network::tick_all(int n) {
  for (int i = 0; i < n; ++i) {
    for (auto& [id, node] : nodes_) node.node->tick();
  }
}

void Network::run(int n) {
  for (int i = 0; i < n; ++i) {
    tick_all(1);
    stabilize();
  }
}

void Network::elect(uint64_t id) {
  node(id).campaign();
  stabilize();
}

uint64_t Network::leader() const {
  uint64_t best = 0;
  Term best_term;
  for (auto& [id, n] : nodes_) {
    if (n.node->role() == Role::kLeader && n.node->term() >= best_term) {
      best = id.get();
      best_term = n.node->term();
    }
  }
  return best;
}

void Network::cut(uint64_t a, uint64_t b) {
  cuts_.insert({a, b});
  cuts_.insert({b, a});
}

void Network::isolate(uint64_t id) {
  for (auto& [other, n] : nodes_) {
    if (other.get() != id) cut(id, other.get());
  }
}

void Network::partition(const std::vector<std::vector<uint64_t>>& groups) {
  for (size_t i = 0; i < groups.size(); ++i) {
    for (size_t j = 0; j < groups.size(); ++j) {
      if (i == j) continue;
      for (uint64_t a : groups[i]) {
        for (uint64_t b : groups[j]) cut(a, b);
      }
    }
  }
}

void Network::heal() {
  cuts_.clear();
  dropped_types_.clear();
}

void Network::compact(uint64_t id) {
  TestNode& n = nodes_.at(nid(id));
  LogIndex applied = n.node->log().applied();
  std::string data;
  for (const Entry& e : n.applied) data += e.data + ";";
  (void)n.storage->create_snapshot(applied, n.node->conf_state(), data);
}

}  // namespace starling::raft::testing

// An in-process network of RawNodes for the paper and scenario tests: every node has a
// MemoryStorage that stands for its disk, messages are delivered synchronously until the
// group is quiet, and links can be cut (drop, isolate, partition).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "supernode/raft/raw_node.h"
#include "supernode/raft/storage.h"

namespace starling {
template <class Tag>
void PrintTo(const StrongId<Tag, uint64_t>& id, std::ostream* os) {
  *os << "node " << id.get();
}
namespace raft {
template <class Tag>
void PrintTo(const Ordinal<Tag>& o, std::ostream* os) {
  *os << o.get();
}
}  // namespace raft
}  // namespace starling

namespace starling::raft::testing {

inline NodeId nid(uint64_t v) { return NodeId{v}; }
inline LogIndex li(uint64_t v) { return LogIndex{v}; }
inline Term tm(uint64_t v) { return Term{v}; }

struct TestNode {
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<RawNode> node;
  std::vector<Entry> applied;          // committed normal entries, in order
  std::vector<ReadState> read_states;  // every ReadState seen
  std::vector<SoftState> soft_states;
};

class Network {
 public:
  // Nodes `voters` form the group; every one starts as a follower at term 0.
  explicit Network(std::vector<uint64_t> voters, std::function<void(Config&)> tweak = nullptr);

  // Adds a node with an empty log that knows the membership `conf` it was told when it was
  // added (the bootstrap membership is not in the log; see supernode/raft/README.md).
  void add_blank_node(uint64_t id, ConfState conf);
  // Crash and restart: the RawNode is rebuilt from its storage (what it persisted).
  void restart(uint64_t id);

  RawNode& node(uint64_t id) { return *nodes_.at(nid(id)).node; }
  TestNode& test_node(uint64_t id) { return nodes_.at(nid(id)); }
  MemoryStorage& storage(uint64_t id) { return *nodes_.at(nid(id)).storage; }
  std::vector<uint64_t> ids() const;

  // Processes every Ready and delivers every message (respecting cuts) until quiet.
  void stabilize();
  void tick(uint64_t id, int n = 1);
  void tick_all(int n = 1);
  // Ticks everyone once and stabilizes, `n` times.
  void run(int n);
  // campaign() on `id` and stabilize.
  void elect(uint64_t id);
  // The unique node that thinks it is leader in the highest term, or 0.
  uint64_t leader() const;

  void cut(uint64_t a, uint64_t b);  // both directions
  void isolate(uint64_t id);
  void partition(const std::vector<std::vector<uint64_t>>& groups);
  void heal();
  // Drops every message of this type until heal().
  void drop_type(MessageType type) { dropped_types_.insert(type); }
  // Makes a snapshot of `id` at its applied index and compacts its log.
  void compact(uint64_t id);

  // Every message delivered so far (for assertions).
  std::vector<Message> delivered;

 private:
  void handle_ready(TestNode& n, std::vector<Message>& out);
  bool blocked(const Message& m) const;

  std::map<NodeId, TestNode> nodes_;
  std::set<std::pair<uint64_t, uint64_t>> cuts_;
  std::set<MessageType> dropped_types_;
  std::function<void(Config&)> tweak_;
  uint64_t seed_ = 1;
};

}  // namespace starling::raft::testing

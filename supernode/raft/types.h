// Raft's vocabulary: ids, log entries, messages, persistent state and the Ready batch.
// Pure values; no I/O. See supernode/raft/README.md for the Ready/advance contract.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"

namespace starling::raft {

// A counter-like strong type: ordered, with the little arithmetic Raft needs (index + n,
// index - n, distance between two indexes). Distinct tags do not mix.
template <class Tag>
class Ordinal {
 public:
  constexpr Ordinal() = default;
  constexpr explicit Ordinal(uint64_t v) : v_(v) {}
  constexpr uint64_t get() const { return v_; }
  auto operator<=>(const Ordinal&) const = default;
  bool operator==(const Ordinal&) const = default;
  constexpr Ordinal operator+(uint64_t n) const { return Ordinal(v_ + n); }
  // REQUIRES: get() >= n
  constexpr Ordinal operator-(uint64_t n) const { return Ordinal(v_ - n); }
  // REQUIRES: *this >= o
  constexpr uint64_t operator-(Ordinal o) const { return v_ - o.v_; }
  Ordinal& operator++() {
    ++v_;
    return *this;
  }

 private:
  uint64_t v_ = 0;
};

// The election term. 0 = before any election.
using Term = Ordinal<struct TermTag>;
// Position in the replicated log; 0 = before the first entry. Raft's own type: the driver
// converts to tracker::LogIndex (same value) when it hands committed commands to the tracker,
// which keeps the tracker free of Raft and Raft free of the tracker's command codec.
using LogIndex = Ordinal<struct LogIndexTag>;
// A member of the Raft group. A uint64 chosen when the member is added and never reused
// (ConfState::removed remembers retired ids); the driver maps it to the mesh NodeId (the
// Ed25519 key). 0 means "nobody" (kNoNode).
using NodeId = StrongId<struct RaftNodeIdTag, uint64_t>;
inline const NodeId kNoNode{0};

enum class EntryType : uint8_t { kNormal, kConfChange };

struct Entry {
  Term term;
  LogIndex index;
  EntryType type = EntryType::kNormal;
  std::string data;  // opaque to Raft for kNormal; encode_conf_change() for kConfChange
  bool operator==(const Entry&) const = default;
};

// Single-server membership change (one in flight at a time).
enum class ConfChangeType : uint8_t {
  kAddLearner = 1,  // a new id joins as a non-voting learner
  kPromote = 2,     // a learner becomes a voter
  kRemove = 3,      // a voter or learner leaves; its id is retired forever
};
// At most this many bytes of ConfChange::context / MemberAddress::address.
inline constexpr size_t kMaxConfContext = 255;
struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddLearner;
  NodeId node;
  // kAddLearner only: opaque to Raft, recorded in ConfState::addresses for `node` when the
  // change is applied (the supernode puts the member's mesh address "HOST:PORT" there), so
  // the address is replicated, kept with the membership and carried by snapshots. Empty = none.
  std::string context{};
  bool operator==(const ConfChange&) const = default;
};
std::string encode_conf_change(const ConfChange& cc);
// Total: any bytes; nullopt when they are not an encoded ConfChange (also: a context longer
// than kMaxConfContext, or a context on a change other than kAddLearner).
std::optional<ConfChange> decode_conf_change(const std::string& data);

// The context a member was added with (see ConfChange::context).
struct MemberAddress {
  NodeId node;
  std::string address;
  bool operator==(const MemberAddress&) const = default;
};

// The membership. Sorted, disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  std::vector<NodeId> removed;  // ids that left; never admitted again
  // Sorted by node, unique, only for current voters or learners (a removed member's entry is
  // dropped). Opaque to Raft's decisions; a bootstrap membership may carry them too.
  std::vector<MemberAddress> addresses{};
  bool operator==(const ConfState&) const = default;
};
// The address recorded for `node`, or nullptr.
const MemberAddress* find_address(const ConfState& conf, NodeId node);

// What must be durable before any message of the same Ready is sent.
struct HardState {
  Term term;
  NodeId vote = kNoNode;
  LogIndex commit;
  bool operator==(const HardState&) const = default;
};

struct SnapshotMeta {
  LogIndex index;
  Term term;
  ConfState conf;
  bool operator==(const SnapshotMeta&) const = default;
};
struct Snapshot {
  SnapshotMeta meta;
  std::string data;  // the application's state at meta.index; opaque to Raft
  bool empty() const { return meta.index == LogIndex{0}; }
  bool operator==(const Snapshot&) const = default;
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* role_name(Role role);

// Volatile state, reported when it changes; never persisted.
struct SoftState {
  NodeId lead = kNoNode;
  Role role = Role::kFollower;
  bool operator==(const SoftState&) const = default;
};

enum class MessageType : uint8_t {
  kApp,            // leader -> follower: entries after (index, log_term), commit
  kAppResp,        // index = last matching index, or reject + reject_hint/log_term
  kVote,           // candidate: term, (log_term, index) = its last entry
  kVoteResp,       // reject = vote denied
  kPreVote,        // pre-candidate: term = the term it would campaign in
  kPreVoteResp,    //
  kSnap,           // leader -> lagging follower: snapshot
  kHeartbeat,      // leader: commit, context (a ReadIndex round, or empty)
  kHeartbeatResp,  // context echoed
  kTimeoutNow,     // leader -> transferee: campaign now, skipping pre-vote
};
const char* message_type_name(MessageType type);

struct Message {
  MessageType type = MessageType::kApp;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term;
  Term log_term;   // kApp: term at `index`; votes: last log term; reject: term at reject_hint
  LogIndex index;  // kApp: entry before `entries`; votes: last index; kAppResp: see above
  std::vector<Entry> entries;
  LogIndex commit;
  bool reject = false;
  LogIndex reject_hint;
  std::optional<Snapshot> snapshot;  // kSnap only
  std::string context;               // heartbeat ReadIndex round; "transfer" on forced votes
  bool operator==(const Message&) const = default;
};

// A ReadIndex answer: once the application has applied up to `index`, a read tagged
// `context` observes every write committed before read_index() was called.
struct ReadState {
  LogIndex index;
  std::string context;
  bool operator==(const ReadState&) const = default;
};

// One batch of work for the driver. See README.md: persist, then send, then apply, then
// advance().
struct Ready {
  std::optional<SoftState> soft_state;   // set when leader or role changed
  std::optional<HardState> hard_state;   // set when it changed; persist
  std::optional<Snapshot> snapshot;      // persist (replaces the log) and apply
  std::vector<Entry> entries;            // append to the log; persist before sending
  std::vector<Entry> committed_entries;  // apply in order, after persisting
  std::vector<Message> messages;         // send after persisting
  std::vector<ReadState> read_states;
  // Set by RawNode::ready() when the term or the vote changed (not only the commit index).
  bool hard_state_sync = false;
  // True when entries, a snapshot or a new term/vote must reach stable storage (fsync) before
  // any message of this Ready that acknowledges them is sent. A hard state whose only change
  // is the commit index is still written, but need not be synced: the commit index can be
  // learned again from the leader, and a node that restarts with an older one only re-applies
  // (Raft thesis §3.8; etcd-raft's MustSync).
  bool must_sync() const { return hard_state_sync || !entries.empty() || snapshot; }
};

}  // namespace starling::raft

// RawNode: the Raft consensus core as a pure state machine, in etcd-raft's design.
//
// Inputs: tick() (one logical clock tick, driven by the owner's timer), step(Message) (a
// message from a peer), and the local requests propose / propose_conf_change / read_index /
// transfer_leadership / campaign. Outputs: ready() returns what to persist, send and apply;
// advance() acknowledges it. No I/O, no clock, no threads; the only randomness is the
// election timeout jitter, drawn from an RNG seeded by Config::seed.
//
// Ownership and threading: one owner (the driver's strand, or a test) calls every method;
// nothing is thread-safe. The Storage passed in must outlive the node; the core only reads
// it, the owner writes it between ready() and advance().
//
// Invariants (checked by tests/raft, asserted or aborting here where continuing would corrupt
// data): a committed entry is never truncated; commit and applied only grow; a leader only
// commits by counting replicas of an entry of its own term (Figure 8); a ReadIndex answer is
// produced only after a quorum acknowledged this leader in this term.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "supernode/raft/raft_log.h"
#include "supernode/raft/storage.h"
#include "supernode/raft/types.h"

namespace starling::raft {

inline constexpr char kErrNotLeader[] = "raft.not_leader";
inline constexpr char kErrProposalDropped[] = "raft.proposal_dropped";  // transfer in progress
inline constexpr char kErrNotReady[] = "raft.not_ready";  // leader has no commit in its term yet
inline constexpr char kErrConfChangeInFlight[] = "raft.conf_change_in_flight";
inline constexpr char kErrBadConfChange[] = "raft.bad_conf_change";

struct Config {
  NodeId id;               // REQUIRES: != kNoNode
  int election_tick = 10;  // followers wait a random [election_tick, 2*election_tick) ticks
  int heartbeat_tick = 1;  // leader heartbeat period; REQUIRES: < election_tick
  uint64_t max_size_per_msg = 1 << 20;  // bytes of entry data per kApp (at least one entry)
  size_t max_inflight = 256;            // unacknowledged kApp per follower in replicate state
  bool pre_vote = true;
  bool check_quorum = true;
  // The leader proposes kPromote for a learner once its match reaches the commit index.
  bool auto_promote_learners = true;
  uint64_t seed = 0;  // election timeout jitter
};

enum class ProgressState : uint8_t { kProbe, kReplicate, kSnapshot };

// The leader's view of one follower (or learner).
struct Progress {
  LogIndex match;
  LogIndex next;
  ProgressState state = ProgressState::kProbe;
  bool probe_sent = false;    // kProbe: one kApp outstanding, wait for its answer or a heartbeat
  LogIndex pending_snapshot;  // kSnapshot: index of the snapshot sent
  int snapshot_wait = 0;      // heartbeat answers seen while in kSnapshot (resend after a while)
  bool recent_active = false;
  bool is_learner = false;
  std::deque<LogIndex> inflights;  // last index of each unacknowledged kApp (kReplicate)
};

class RawNode {
 public:
  // Restores term, vote, commit and membership from storage.initial_state(); the applied
  // index starts at the storage's snapshot index.
  RawNode(const Config& config, const Storage& storage);

  void tick();
  // A message from the network. Messages for another node are ignored.
  Status step(const Message& m);
  // Appends `data` to the log. kErrNotLeader unless leader; kErrProposalDropped during a
  // leadership transfer.
  Status propose(std::string data);
  // kErrConfChangeInFlight while an earlier change is not applied on this leader;
  // kErrBadConfChange for an id already present, retired, unknown, or 0.
  Status propose_conf_change(const ConfChange& cc);
  // The owner calls this when it applies a committed kConfChange entry (in log order).
  // Returns the membership after the change; persist it with the applied index.
  ConfState apply_conf_change(const ConfChange& cc);
  // Linearizable read: on success a ReadState{index, context} appears in a later Ready once a
  // quorum confirmed this leadership. A leader that loses leadership first never answers.
  // `context` must be unique among outstanding reads. kErrNotLeader on a non-leader;
  // kErrNotReady until the leader committed an entry of its term (retry).
  Status read_index(std::string context);
  // Asks the leader to hand leadership to voter `to` (sends kTimeoutNow once it caught up;
  // abandoned after an election timeout).
  Status transfer_leadership(NodeId to);
  // Starts an election now (with pre-vote if configured). Ignored on a leader or a learner.
  void campaign();
  // From the transport: `to` is unreachable / the snapshot sent to it succeeded or failed.
  void report_unreachable(NodeId to);
  void report_snapshot(NodeId to, bool ok);

  bool has_ready() const;
  // REQUIRES: the previous Ready was advance()d.
  Ready ready();
  // The owner persisted, sent and applied `rd` (see README.md).
  void advance(const Ready& rd);

  // Introspection (tests, metrics, the driver).
  NodeId id() const { return id_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  Role role() const { return role_; }
  NodeId lead() const { return lead_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  const RaftLog& log() const { return log_; }
  const ConfState& conf_state() const { return conf_; }
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  const Progress* progress(NodeId node) const;
  int randomized_election_timeout() const { return randomized_election_timeout_; }

 private:
  struct ReadRequest {
    std::string context;
    LogIndex index;
    std::set<NodeId> acks;
  };
  enum class CampaignType { kPreVote, kVote, kTransfer };
  enum class VoteResult { kPending, kWon, kLost };

  bool promotable() const;
  bool is_voter(NodeId n) const;
  size_t quorum() const { return conf_.voters.size() / 2 + 1; }
  void reset(Term term);
  void reset_randomized_election_timeout();
  void become_follower(Term term, NodeId lead);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void hup(CampaignType type);
  void start_campaign(CampaignType type);
  VoteResult poll(NodeId from, bool granted);
  void tick_election();
  void tick_heartbeat();

  void step_leader(const Message& m);
  void step_candidate(const Message& m);
  void step_follower(const Message& m);
  void handle_append(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  void handle_vote(const Message& m);
  void handle_app_resp(const Message& m, Progress& pr);
  void handle_heartbeat_resp(const Message& m, Progress& pr);

  void send(Message m);
  bool send_append(NodeId to, bool send_if_empty = true);
  void send_heartbeat(NodeId to, const std::string& context);
  void bcast_append();
  void bcast_heartbeat(const std::string& context);
  void send_timeout_now(NodeId to);
  void append_entries(std::vector<Entry> ents);
  bool maybe_commit();
  bool quorum_active();
  void abort_leader_transfer() { lead_transferee_ = kNoNode; }
  void maybe_promote_learners();
  void init_progress(NodeId node, bool learner);

  NodeId id_;
  Config config_;
  RaftLog log_;
  std::mt19937_64 rng_;

  Term term_;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  ConfState conf_;
  std::map<NodeId, Progress> prs_;  // leader only: every voter and learner, self included
  std::map<NodeId, bool> votes_;    // candidates: answers so far
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  NodeId lead_transferee_ = kNoNode;
  LogIndex pending_conf_index_;  // leader: index of the last conf change it appended
  std::deque<ReadRequest> pending_reads_;

  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  SoftState prev_soft_;
  HardState prev_hard_;
  bool ready_outstanding_ = false;
};

}  // namespace starling::raft

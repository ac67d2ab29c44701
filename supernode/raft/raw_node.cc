#include "supernode/raft/raw_node.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace starling::raft {
namespace {

constexpr char kTransferContext[] = "transfer";

bool contains(const std::vector<NodeId>& v, NodeId n) {
  return std::find(v.begin(), v.end(), n) != v.end();
}
void insert_sorted(std::vector<NodeId>& v, NodeId n) {
  if (!contains(v, n)) v.insert(std::upper_bound(v.begin(), v.end(), n), n);
}
void erase(std::vector<NodeId>& v, NodeId n) {
  v.erase(std::remove(v.begin(), v.end(), n), v.end());
}
void set_address(ConfState& conf, NodeId n, const std::string& address) {
  auto it =
      std::lower_bound(conf.addresses.begin(), conf.addresses.end(), n,
                       [](const MemberAddress& a, NodeId id) { return a.node.get() < id.get(); });
  if (it != conf.addresses.end() && it->node == n) {
    it->address = address;
  } else {
    conf.addresses.insert(it, MemberAddress{n, address});
  }
}

MessageType response_type(MessageType t) {
  return t == MessageType::kVote ? MessageType::kVoteResp : MessageType::kPreVoteResp;
}

bool is_paused(const Progress& pr, size_t max_inflight) {
  switch (pr.state) {
    case ProgressState::kProbe:
      return pr.probe_sent;
    case ProgressState::kReplicate:
      return pr.inflights.size() >= max_inflight;
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

void become_probe(Progress& pr) {
  if (pr.state == ProgressState::kSnapshot) {
    pr.next = std::max(pr.match + 1, pr.pending_snapshot + 1);
  } else {
    pr.next = pr.match + 1;
  }
  pr.state = ProgressState::kProbe;
  pr.probe_sent = false;
  pr.pending_snapshot = LogIndex{0};
  pr.inflights.clear();
}

void become_replicate(Progress& pr) {
  pr.state = ProgressState::kReplicate;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.inflights.clear();
}

void become_snapshot(Progress& pr, LogIndex i) {
  pr.state = ProgressState::kSnapshot;
  pr.pending_snapshot = i;
  pr.snapshot_wait = 0;
  pr.inflights.clear();
}

// Returns true if `n` moved match forward.
bool maybe_update(Progress& pr, LogIndex n) {
  bool updated = false;
  if (pr.match < n) {
    pr.match = n;
    updated = true;
    pr.probe_sent = false;
  }
  pr.next = std::max(pr.next, n + 1);
  return updated;
}

// A rejection of the kApp at `rejected`; `match_hint` is the leader's guess of the last
// index where the logs agree (the follower's hint, refined by term). False if stale.
bool maybe_decr_to(Progress& pr, LogIndex rejected, LogIndex match_hint) {
  if (pr.state == ProgressState::kReplicate) {
    if (rejected <= pr.match) return false;
    pr.next = pr.match + 1;
    return true;
  }
  if (pr.next - 1 != rejected) return false;
  pr.next = std::max(std::min(rejected, match_hint + 1), pr.match + 1);
  pr.probe_sent = false;
  return true;
}

}  // namespace

RawNode::RawNode(const Config& config, const Storage& storage)
    : id_(config.id), config_(config), log_(storage), rng_(config.seed) {
  assert(id_ != kNoNode);
  assert(config.heartbeat_tick < config.election_tick);
  auto [hs, conf] = storage.initial_state();
  conf_ = conf;
  if (hs.commit > LogIndex{0}) log_.commit_to(hs.commit);
  become_follower(hs.term, kNoNode);
  vote_ = hs.vote;
  prev_hard_ = hard_state();
  prev_soft_ = SoftState{lead_, role_};
}

bool RawNode::is_voter(NodeId n) const { return contains(conf_.voters, n); }
bool RawNode::promotable() const { return is_voter(id_); }

const Progress* RawNode::progress(NodeId node) const {
  auto it = prs_.find(node);
  return it == prs_.end() ? nullptr : &it->second;
}

void RawNode::init_progress(NodeId node, bool learner) {
  Progress pr;
  pr.next = log_.last_index() + 1;
  pr.is_learner = learner;
  if (node == id_) {
    pr.match = log_.stable_last_index();  // its own copy counts once durable (advance())
    pr.recent_active = true;
  }
  prs_[node] = pr;
}

void RawNode::reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_election_timeout();
  abort_leader_transfer();
  votes_.clear();
  prs_.clear();
  pending_conf_index_ = LogIndex{0};
  pending_reads_.clear();  // a read never outlives the leadership that accepted it
}

void RawNode::reset_randomized_election_timeout() {
  auto span = static_cast<uint64_t>(config_.election_tick);
  randomized_election_timeout_ = config_.election_tick + static_cast<int>(rng_() % span);
}

void RawNode::become_follower(Term term, NodeId lead) {
  reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void RawNode::become_pre_candidate() {
  assert(role_ != Role::kLeader);
  // Neither the term nor the vote changes: a pre-vote is a dry run.
  votes_.clear();
  prs_.clear();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void RawNode::become_candidate() {
  assert(role_ != Role::kLeader);
  reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void RawNode::become_leader() {
  assert(role_ != Role::kFollower);
  reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  for (NodeId n : conf_.voters) init_progress(n, false);
  for (NodeId n : conf_.learners) init_progress(n, true);
  // Conf changes in the log but not applied block a new one until this leader applied them.
  pending_conf_index_ = log_.last_index();
  // An empty entry of this term: committing it commits every earlier entry (Figure 8).
  append_entries({Entry{}});
}

void RawNode::tick() {
  if (role_ == Role::kLeader) {
    tick_heartbeat();
  } else {
    tick_election();
  }
}

void RawNode::tick_election() {
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    hup(config_.pre_vote ? CampaignType::kPreVote : CampaignType::kVote);
  }
}

void RawNode::tick_heartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_tick) {
    election_elapsed_ = 0;
    if (config_.check_quorum && !quorum_active()) {
      become_follower(term_, kNoNode);  // step down: a partitioned leader stops serving
      return;
    }
    if (lead_transferee_ != kNoNode) abort_leader_transfer();
  }
  if (role_ != Role::kLeader) return;
  if (heartbeat_elapsed_ >= config_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    bcast_heartbeat("");
    maybe_promote_learners();
  }
}

bool RawNode::quorum_active() {
  size_t active = 0;
  for (auto& [node, pr] : prs_) {
    if (node == id_) {
      if (!pr.is_learner) ++active;
      continue;
    }
    if (pr.recent_active && !pr.is_learner) ++active;
    pr.recent_active = false;
  }
  return active >= quorum();
}

void RawNode::campaign() { hup(config_.pre_vote ? CampaignType::kPreVote : CampaignType::kVote); }

void RawNode::hup(CampaignType type) {
  if (role_ == Role::kLeader || !promotable()) return;
  // A conf change committed but not applied could change who votes; wait until applied.
  if (log_.has_next_committed_entries()) {
    auto ents = log_.slice(log_.applied() + 1, log_.committed() + 1, kNoLimit);
    if (!ents.ok()) return;
    for (const Entry& e : *ents) {
      if (e.type == EntryType::kConfChange) return;
    }
  }
  start_campaign(type);
}

void RawNode::start_campaign(CampaignType type) {
  Term vote_term;
  MessageType msg_type;
  if (type == CampaignType::kPreVote) {
    become_pre_candidate();
    vote_term = term_ + 1;
    msg_type = MessageType::kPreVote;
  } else {
    become_candidate();
    vote_term = term_;
    msg_type = MessageType::kVote;
  }
  if (poll(id_, true) == VoteResult::kWon) {
    if (type == CampaignType::kPreVote) {
      start_campaign(CampaignType::kVote);
    } else {
      become_leader();
    }
    return;
  }
  for (NodeId n : conf_.voters) {
    if (n == id_) continue;
    Message m;
    m.type = msg_type;
    m.to = n;
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    if (type == CampaignType::kTransfer) m.context = kTransferContext;
    send(std::move(m));
  }
}

RawNode::VoteResult RawNode::poll(NodeId from, bool granted) {
  if (!is_voter(from)) return VoteResult::kPending;
  votes_.emplace(from, granted);  // the first answer counts
  size_t yes = 0;
  size_t no = 0;
  for (auto& [n, v] : votes_) (v ? yes : no)++;
  if (yes >= quorum()) return VoteResult::kWon;
  if (no > conf_.voters.size() - quorum()) return VoteResult::kLost;
  return VoteResult::kPending;
}

Status RawNode::step(const Message& m) {
  if (m.to != id_ || m.from == kNoNode || m.from == id_) return {};
  const bool vote_request = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  if (m.term > term_) {
    if (vote_request) {
      const bool force = m.context == kTransferContext;
      const bool in_lease =
          config_.check_quorum && lead_ != kNoNode && election_elapsed_ < config_.election_tick;
      // We heard from a live leader within the election timeout: a disruptive candidate
      // (e.g. a rejoining partitioned node) gets no answer.
      if (!force && in_lease) return {};
    }
    if (m.type == MessageType::kPreVote) {
      // Never change our term for a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // The term we would campaign in; counted in step_candidate.
    } else if (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnap) {
      become_follower(m.term, m.from);
    } else {
      become_follower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if ((config_.check_quorum || config_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kApp)) {
      // A stale leader (e.g. it was partitioned away): tell it our term so it steps down.
      Message r;
      r.type = MessageType::kAppResp;
      r.to = m.from;
      send(std::move(r));
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.term = term_;
      r.reject = true;
      send(std::move(r));
    }
    return {};
  }

  if (vote_request) {
    handle_vote(m);
    return {};
  }
  switch (role_) {
    case Role::kLeader:
      step_leader(m);
      break;
    case Role::kCandidate:
    case Role::kPreCandidate:
      step_candidate(m);
      break;
    case Role::kFollower:
      step_follower(m);
      break;
  }
  return {};
}

void RawNode::handle_vote(const Message& m) {
  // A node that applied its own removal never votes again: only a candidate counting by a
  // stale membership (it missed the removal) could ask for it, and counting it there could
  // elect a leader without a majority of the current membership.
  const bool removed = contains(conf_.removed, id_);
  const bool can_vote = !removed && (vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) ||
                                     (m.type == MessageType::kPreVote && m.term > term_));
  Message r;
  r.type = response_type(m.type);
  r.to = m.from;
  if (can_vote && log_.is_up_to_date(m.index, m.log_term)) {
    // Granted answers carry the campaign's term, so a pre-candidate counts them.
    r.term = m.term;
    send(std::move(r));
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
    send(std::move(r));
  }
}

void RawNode::step_follower(const Message& m) {
  switch (m.type) {
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      handle_append(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      handle_heartbeat(m);
      break;
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      handle_snapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Leadership transfer: campaign at once, skipping pre-vote and the voters' lease.
      hup(CampaignType::kTransfer);
      break;
    default:
      break;
  }
}

void RawNode::step_candidate(const Message& m) {
  switch (m.type) {
    case MessageType::kApp:
    case MessageType::kHeartbeat:
    case MessageType::kSnap:
      become_follower(m.term, m.from);  // a leader of this term exists
      step_follower(m);
      break;
    case MessageType::kVoteResp:
    case MessageType::kPreVoteResp: {
      const bool mine = (role_ == Role::kCandidate && m.type == MessageType::kVoteResp) ||
                        (role_ == Role::kPreCandidate && m.type == MessageType::kPreVoteResp);
      if (!mine) break;
      switch (poll(m.from, !m.reject)) {
        case VoteResult::kWon:
          if (role_ == Role::kPreCandidate) {
            start_campaign(CampaignType::kVote);
          } else {
            become_leader();
            bcast_append();
          }
          break;
        case VoteResult::kLost:
          become_follower(term_, kNoNode);
          break;
        case VoteResult::kPending:
          break;
      }
      break;
    }
    default:
      break;
  }
}

void RawNode::handle_append(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  if (m.index < log_.committed()) {
    r.index = log_.committed();
    send(std::move(r));
    return;
  }
  if (conf_.voters.empty()) {
    // A joining node started without a membership: the bootstrap membership lives outside
    // the log, so replaying entries from index 1 would build a wrong one (it could even make
    // this node a voter on its own). Only a snapshot, which carries the membership, may
    // initialize it; point the leader at the start until it sends one.
    r.reject = true;
    r.index = m.index;
    r.reject_hint = LogIndex{0};
    send(std::move(r));
    return;
  }
  if (auto last = log_.maybe_append(m.index, m.log_term, m.commit, m.entries)) {
    r.index = *last;
    send(std::move(r));
    return;
  }
  // Fast backtracking: point the leader at the last index that can possibly match — at most
  // our last index, and no entry whose term exceeds the leader's term at m.index.
  LogIndex hint = log_.find_conflict_by_term(std::min(m.index, log_.last_index()), m.log_term);
  r.reject = true;
  r.index = m.index;
  r.reject_hint = hint;
  r.log_term = log_.term_or_zero(hint);
  send(std::move(r));
}

void RawNode::handle_heartbeat(const Message& m) {
  log_.commit_to(std::min(m.commit, log_.last_index()));
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.context = m.context;
  send(std::move(r));
}

void RawNode::handle_snapshot(const Message& m) {
  Message r;
  r.type = MessageType::kAppResp;
  r.to = m.from;
  if (!m.snapshot || m.snapshot->empty()) return;
  const Snapshot& s = *m.snapshot;
  if (s.meta.index <= log_.committed()) {
    r.index = log_.committed();
  } else if (log_.match_term(s.meta.index, s.meta.term)) {
    // We have the entry already: just fast-forward the commit index.
    log_.commit_to(s.meta.index);
    r.index = log_.last_index();
  } else {
    log_.restore(s);
    conf_ = s.meta.conf;
    r.index = log_.last_index();
  }
  send(std::move(r));
}

void RawNode::step_leader(const Message& m) {
  auto it = prs_.find(m.from);
  if (it == prs_.end()) return;  // not (or no longer) a member
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::kAppResp:
      handle_app_resp(m, pr);
      break;
    case MessageType::kHeartbeatResp:
      handle_heartbeat_resp(m, pr);
      break;
    default:
      break;
  }
}

void RawNode::handle_app_resp(const Message& m, Progress& pr) {
  pr.recent_active = true;
  const NodeId from = m.from;
  if (m.reject) {
    LogIndex probe = m.reject_hint;
    if (m.log_term > Term{0}) probe = log_.find_conflict_by_term(m.reject_hint, m.log_term);
    if (maybe_decr_to(pr, m.index, probe)) {
      if (pr.state == ProgressState::kReplicate) become_probe(pr);
      if (m.index > LogIndex{0}) {
        send_append(from);
      } else {
        // Even the log from index 1 was refused: only a node without a membership does that
        // (handle_append). Nothing lower to try; retry at its next heartbeat answer rather
        // than at once, by when this leader has usually compacted and sends a snapshot.
        pr.probe_sent = true;
      }
    }
    return;
  }
  const bool was_paused = is_paused(pr, config_.max_inflight);
  if (!maybe_update(pr, m.index)) {
    if (pr.state == ProgressState::kReplicate) {
      while (!pr.inflights.empty() && pr.inflights.front() <= m.index) pr.inflights.pop_front();
    }
    return;
  }
  switch (pr.state) {
    case ProgressState::kProbe:
      become_replicate(pr);
      break;
    case ProgressState::kSnapshot:
      if (pr.match >= pr.pending_snapshot) become_probe(pr);
      break;
    case ProgressState::kReplicate:
      while (!pr.inflights.empty() && pr.inflights.front() <= m.index) pr.inflights.pop_front();
      break;
  }
  if (maybe_commit()) {
    bcast_append();
  } else {
    // A follower that was paused may have missed the commit index: tell it (possibly with
    // an empty kApp), then send as many further batches as the window allows.
    if (was_paused) send_append(from);
    while (send_append(from, false)) {
    }
  }
  if (from == lead_transferee_) {
    const Progress& p = prs_[from];
    if (p.match == log_.last_index()) send_timeout_now(from);
  }
  maybe_promote_learners();
}

void RawNode::handle_heartbeat_resp(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.probe_sent = false;
  if (pr.state == ProgressState::kSnapshot && ++pr.snapshot_wait >= config_.election_tick) {
    // The snapshot (or its answer) was probably lost: probe again, which resends it.
    pr.pending_snapshot = LogIndex{0};
    become_probe(pr);
  }
  // A full window whose kApps were lost would stall forever: free one slot per heartbeat
  // answer, so the next kApp goes out and a rejection resets the follower to probing.
  if (pr.state == ProgressState::kReplicate && pr.inflights.size() >= config_.max_inflight) {
    pr.inflights.pop_front();
  }
  if (pr.match < log_.last_index()) send_append(m.from);
  if (m.context.empty() || pending_reads_.empty()) return;
  if (!is_voter(m.from)) return;
  // A voter acknowledged our leadership after the read with this context was accepted.
  auto it = std::find_if(pending_reads_.begin(), pending_reads_.end(),
                         [&](const ReadRequest& r) { return r.context == m.context; });
  if (it == pending_reads_.end()) return;
  it->acks.insert(m.from);
  if (it->acks.size() < quorum()) return;
  // This confirmation also covers every read accepted before it.
  auto end = std::next(it);
  for (auto r = pending_reads_.begin(); r != end; ++r) {
    read_states_.push_back(ReadState{r->index, r->context});
  }
  pending_reads_.erase(pending_reads_.begin(), end);
}

void RawNode::send(Message m) {
  m.from = id_;
  switch (m.type) {
    case MessageType::kVote:
    case MessageType::kPreVote:
    case MessageType::kVoteResp:
    case MessageType::kPreVoteResp:
      assert(m.term > Term{0} || m.type == MessageType::kPreVoteResp);
      break;
    default:
      m.term = term_;
  }
  msgs_.push_back(std::move(m));
}

bool RawNode::send_append(NodeId to, bool send_if_empty) {
  auto it = prs_.find(to);
  if (it == prs_.end()) return false;
  Progress& pr = it->second;
  if (is_paused(pr, config_.max_inflight)) return false;
  auto prev_term = log_.term(pr.next - 1);
  auto ents = log_.entries(pr.next, config_.max_size_per_msg);
  if (!prev_term.ok() || !ents.ok()) {
    // The entries it needs were compacted: send the snapshot instead.
    if (!pr.recent_active) return false;
    auto snap = log_.snapshot();
    if (!snap.ok() || snap->empty()) return false;
    Message m;
    m.type = MessageType::kSnap;
    m.to = to;
    m.snapshot = *snap;
    become_snapshot(pr, snap->meta.index);
    send(std::move(m));
    return true;
  }
  if (ents->empty() && !send_if_empty) return false;
  Message m;
  m.type = MessageType::kApp;
  m.to = to;
  m.index = pr.next - 1;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  if (!ents->empty()) {
    LogIndex last = ents->back().index;
    if (pr.state == ProgressState::kReplicate) {
      pr.next = last + 1;  // optimistic: pipeline the next batch
      pr.inflights.push_back(last);
    } else if (pr.state == ProgressState::kProbe) {
      pr.probe_sent = true;
    }
  }
  m.entries = std::move(*ents);
  send(std::move(m));
  return true;
}

void RawNode::send_heartbeat(NodeId to, const std::string& context) {
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  // Never tell a follower to commit beyond what it is known to hold.
  m.commit = std::min(prs_[to].match, log_.committed());
  m.context = context;
  send(std::move(m));
}

void RawNode::bcast_append() {
  for (auto& [n, pr] : prs_) {
    if (n != id_) send_append(n);
  }
}

void RawNode::bcast_heartbeat(const std::string& context) {
  std::vector<NodeId> to;
  for (auto& [n, pr] : prs_) {
    if (n != id_) to.push_back(n);
  }
  for (NodeId n : to) send_heartbeat(n, context);
}

void RawNode::send_timeout_now(NodeId to) {
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  send(std::move(m));
}

void RawNode::append_entries(std::vector<Entry> ents) {
  LogIndex last = log_.last_index();
  for (Entry& e : ents) {
    e.term = term_;
    last = last + 1;
    e.index = last;
  }
  log_.append(ents);
  // The leader's own copy is NOT counted yet: it counts toward the quorum only once the driver
  // persisted it and called advance() (etcd-raft's async storage writes), so the driver may
  // send the kApps carrying these entries before or while it persists them (Raft thesis
  // §10.2.1). A commit needs a quorum of durable copies either way.
}

bool RawNode::maybe_commit() {
  std::vector<LogIndex> matches;
  for (NodeId n : conf_.voters) {
    auto it = prs_.find(n);
    matches.push_back(it == prs_.end() ? LogIndex{0} : it->second.match);
  }
  if (matches.empty()) return false;
  std::sort(matches.begin(), matches.end(), std::greater<>());
  LogIndex candidate = matches[quorum() - 1];
  // Figure 8: count replicas only for an entry of the current term.
  if (candidate > log_.committed() && log_.term_or_zero(candidate) == term_) {
    log_.commit_to(candidate);
    return true;
  }
  return false;
}

Status RawNode::propose(std::string data) {
  if (role_ != Role::kLeader) return make_error(kErrNotLeader, "raft: not the leader");
  if (lead_transferee_ != kNoNode) {
    return make_error(kErrProposalDropped, "raft: leadership transfer in progress");
  }
  append_entries({Entry{Term{}, LogIndex{}, EntryType::kNormal, std::move(data)}});
  bcast_append();
  return {};
}

Status RawNode::propose_conf_change(const ConfChange& cc) {
  if (role_ != Role::kLeader) return make_error(kErrNotLeader, "raft: not the leader");
  if (lead_transferee_ != kNoNode) {
    return make_error(kErrProposalDropped, "raft: leadership transfer in progress");
  }
  if (pending_conf_index_ > log_.applied()) {
    return make_error(kErrConfChangeInFlight, "raft: a membership change is in flight");
  }
  const NodeId n = cc.node;
  const std::string who = "raft: node " + std::to_string(n.get());
  switch (cc.type) {
    case ConfChangeType::kAddLearner:
      if (n == kNoNode) return make_error(kErrBadConfChange, "raft: node id 0 is reserved");
      if (is_voter(n) || contains(conf_.learners, n)) {
        return make_error(kErrBadConfChange, who + " is already a member");
      }
      if (contains(conf_.removed, n)) {
        return make_error(kErrBadConfChange, who + " was removed (ids are never reused)");
      }
      if (cc.context.size() > kMaxConfContext) {
        return make_error(kErrBadConfChange, who + ": context longer than " +
                                                 std::to_string(kMaxConfContext) + " bytes");
      }
      break;
    case ConfChangeType::kPromote:
      if (!contains(conf_.learners, n))
        return make_error(kErrBadConfChange, who + " is not a learner");
      if (!cc.context.empty()) return make_error(kErrBadConfChange, who + ": unexpected context");
      break;
    case ConfChangeType::kRemove:
      if (!is_voter(n) && !contains(conf_.learners, n)) {
        return make_error(kErrBadConfChange, who + " is not a member");
      }
      if (is_voter(n) && conf_.voters.size() == 1) {
        return make_error(kErrBadConfChange, who + " is the last voter");
      }
      if (!cc.context.empty()) return make_error(kErrBadConfChange, who + ": unexpected context");
      break;
  }
  append_entries({Entry{Term{}, LogIndex{}, EntryType::kConfChange, encode_conf_change(cc)}});
  pending_conf_index_ = log_.last_index();
  bcast_append();
  return {};
}

ConfState RawNode::apply_conf_change(const ConfChange& cc) {
  const NodeId n = cc.node;
  switch (cc.type) {
    case ConfChangeType::kAddLearner:
      if (n == kNoNode || is_voter(n) || contains(conf_.removed, n)) break;
      insert_sorted(conf_.learners, n);
      if (!cc.context.empty()) set_address(conf_, n, cc.context);
      if (role_ == Role::kLeader && !prs_.count(n)) init_progress(n, true);
      break;
    case ConfChangeType::kPromote:
      if (!contains(conf_.learners, n)) break;
      erase(conf_.learners, n);
      insert_sorted(conf_.voters, n);
      if (auto it = prs_.find(n); it != prs_.end()) it->second.is_learner = false;
      break;
    case ConfChangeType::kRemove:
      if (!is_voter(n) && !contains(conf_.learners, n)) break;
      erase(conf_.voters, n);
      erase(conf_.learners, n);
      insert_sorted(conf_.removed, n);
      std::erase_if(conf_.addresses, [n](const MemberAddress& a) { return a.node == n; });
      prs_.erase(n);
      if (lead_transferee_ == n) abort_leader_transfer();
      break;
  }
  if (role_ == Role::kLeader) {
    if (!is_voter(id_)) {
      become_follower(term_, kNoNode);  // removed (or never a voter): stop leading
    } else if (maybe_commit()) {
      bcast_append();  // a smaller quorum may commit more
    }
  }
  return conf_;
}

void RawNode::maybe_promote_learners() {
  if (!config_.auto_promote_learners || role_ != Role::kLeader) return;
  if (pending_conf_index_ > log_.applied() || lead_transferee_ != kNoNode) return;
  for (auto& [n, pr] : prs_) {
    if (pr.is_learner && pr.match >= log_.committed()) {
      (void)propose_conf_change(ConfChange{ConfChangeType::kPromote, n});
      return;
    }
  }
}

Status RawNode::read_index(std::string context) {
  if (role_ != Role::kLeader) return make_error(kErrNotLeader, "raft: not the leader");
  if (log_.term_or_zero(log_.committed()) != term_) {
    // Until an entry of our term commits we do not know the true commit index.
    return make_error(kErrNotReady, "raft: leader has not committed in its term yet");
  }
  if (conf_.voters.size() == 1) {
    read_states_.push_back(ReadState{log_.committed(), std::move(context)});
    return {};
  }
  ReadRequest req{context, log_.committed(), {id_}};
  pending_reads_.push_back(std::move(req));
  bcast_heartbeat(context);
  return {};
}

Status RawNode::transfer_leadership(NodeId to) {
  if (role_ != Role::kLeader) return make_error(kErrNotLeader, "raft: not the leader");
  if (to == id_) return {};
  if (!is_voter(to)) {
    return make_error(kErrBadConfChange,
                      "raft: transfer target " + std::to_string(to.get()) + " is not a voter");
  }
  if (lead_transferee_ == to) return {};
  lead_transferee_ = to;
  election_elapsed_ = 0;  // the transfer is abandoned after one election timeout
  if (prs_[to].match == log_.last_index()) {
    send_timeout_now(to);
  } else {
    send_append(to);
  }
  return {};
}

void RawNode::report_unreachable(NodeId to) {
  auto it = prs_.find(to);
  if (it != prs_.end() && it->second.state == ProgressState::kReplicate) become_probe(it->second);
}

void RawNode::report_snapshot(NodeId to, bool ok) {
  auto it = prs_.find(to);
  if (it == prs_.end() || it->second.state != ProgressState::kSnapshot) return;
  if (!ok) it->second.pending_snapshot = LogIndex{0};
  become_probe(it->second);
  it->second.probe_sent = true;  // wait for the next heartbeat answer
}

bool RawNode::has_ready() const {
  if (SoftState{lead_, role_} != prev_soft_) return true;
  if (hard_state() != prev_hard_) return true;
  return !log_.unstable_entries().empty() || log_.unstable_snapshot().has_value() ||
         !msgs_.empty() || log_.has_next_committed_entries() || !read_states_.empty();
}

Ready RawNode::ready() {
  assert(!ready_outstanding_);
  ready_outstanding_ = true;
  Ready rd;
  SoftState soft{lead_, role_};
  if (soft != prev_soft_) {
    rd.soft_state = soft;
    prev_soft_ = soft;
  }
  HardState hard = hard_state();
  if (hard != prev_hard_) {
    rd.hard_state = hard;
    rd.hard_state_sync = hard.term != prev_hard_.term || hard.vote != prev_hard_.vote;
    prev_hard_ = hard;
  }
  rd.snapshot = log_.unstable_snapshot();
  rd.entries = log_.unstable_entries();
  rd.committed_entries = log_.next_committed_entries();
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  return rd;
}

void RawNode::advance(const Ready& rd) {
  assert(ready_outstanding_);
  ready_outstanding_ = false;
  if (rd.snapshot) {
    log_.stable_snap_to(rd.snapshot->meta.index);
    if (rd.snapshot->meta.index > log_.applied()) log_.applied_to(rd.snapshot->meta.index);
  }
  if (!rd.entries.empty()) log_.stable_to(rd.entries.back().index, rd.entries.back().term);
  if (!rd.committed_entries.empty()) log_.applied_to(rd.committed_entries.back().index);
  if (role_ == Role::kLeader && !rd.entries.empty()) {
    // The leader's own acknowledgement, now that its entries are durable. A new commit index
    // goes to the followers at once (they apply; the leader answers proposers in the next
    // Ready).
    auto it = prs_.find(id_);
    if (it != prs_.end() && maybe_update(it->second, log_.stable_last_index()) && maybe_commit()) {
      bcast_append();
    }
  }
}

}  // namespace starling::raft

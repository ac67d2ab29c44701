#include "supernode/raft/driver.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <random>
#include <type_traits>

#include "supernode/raft/sqlite_storage.h"

namespace starling::raft {

// One caller waiting for an answer from the driver's thread. The thread (or stop()) completes
// it exactly once; the caller may have given up already (its own deadline), which is harmless.
// Completing releases the caller's max_pending slot, if it took one.
template <class R>
class Driver::Waiter {
 public:
  Waiter(Clock::time_point deadline, std::atomic<size_t>* pending)
      : deadline_(deadline), pending_(pending) {}

  Clock::time_point deadline() const { return deadline_; }
  void complete(R r) {
    {
      std::lock_guard lk(mu_);
      if (result_) return;
      result_.emplace(std::move(r));
    }
    cv_.notify_all();
    if (pending_) pending_->fetch_sub(1);
  }
  // nullopt when `until` passed first.
  std::optional<R> wait_until(Clock::time_point until) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_until(lk, until, [&] { return result_.has_value(); })) return std::nullopt;
    return std::move(result_);
  }

 private:
  const Clock::time_point deadline_;
  std::atomic<size_t>* const pending_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<R> result_;
};

struct Driver::ProposeRequest {
  std::string data;
  std::shared_ptr<Waiter<Result<std::string>>> w;
};
struct Driver::ConfChangeRequest {
  ConfChange cc;
  std::shared_ptr<Waiter<Status>> w;
};
struct Driver::ReadRequest {
  std::shared_ptr<Waiter<Result<LogIndex>>> w;
};
struct Driver::WaitAppliedRequest {
  LogIndex index;
  std::shared_ptr<Waiter<Status>> w;
};
struct Driver::TransferRequest {
  NodeId to;
  std::shared_ptr<Waiter<Status>> w;
};
struct Driver::ReportRequest {
  enum class Kind { kUnreachable, kSnapshotOk, kSnapshotFailed };
  Kind kind;
  NodeId node;
};
// A local entry in the log at some index: answered when that index is applied.
struct Driver::Proposal {
  Term term;
  std::shared_ptr<Waiter<Result<std::string>>> w;  // kNormal
  std::shared_ptr<Waiter<Status>> conf_w;          // kConfChange
  Clock::time_point deadline() const { return w ? w->deadline() : conf_w->deadline(); }
  void fail(const Error& e) {
    if (w) w->complete(e);
    if (conf_w) conf_w->complete(e);
  }
};
struct Driver::PendingRead {
  std::string context;
  Term term;                      // the leadership that accepted it
  std::optional<LogIndex> index;  // set once the quorum confirmed it (ReadState)
  std::shared_ptr<Waiter<Result<LogIndex>>> w;
};

namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  // Saturate: "wait forever" must not overflow the clock.
  constexpr auto kMax = std::chrono::hours(24 * 365);
  return Clock::now() + std::clamp<std::chrono::milliseconds>(timeout, {}, kMax);
}

std::string ms(std::chrono::milliseconds t) { return std::to_string(t.count()) + " ms"; }

// A kApp whose entries do not follow its index one by one would make the log non-contiguous
// (the storage aborts on that): a broken or hostile peer must not crash us.
bool well_formed(const Message& m) {
  if (m.type != MessageType::kApp) return true;
  LogIndex next = m.index + 1;
  for (const Entry& e : m.entries) {
    if (e.index != next || next == LogIndex{0}) return false;
    next = next + 1;
  }
  return true;
}

}  // namespace

Driver::Driver(DriverConfig config, Transport& transport, Application& app)
    : config_(std::move(config)), transport_(transport), app_(app) {
  if (config_.raft.seed == 0) {
    // Nodes must not share the election jitter; 0 means "draw one".
    std::random_device rd;
    config_.raft.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ config_.raft.id.get();
  }
}

Driver::~Driver() { stop(); }

Result<std::unique_ptr<Driver>> Driver::start(DriverConfig config, Transport& transport,
                                              Application& app) {
  if (config.raft.id == kNoNode || config.raft.election_tick <= config.raft.heartbeat_tick ||
      config.raft.heartbeat_tick < 1 || config.tick <= std::chrono::milliseconds::zero() ||
      config.max_pending == 0) {
    return make_error(kErrBadConfig,
                      "raft driver: need id != 0, 1 <= heartbeat_tick < election_tick, tick > 0, "
                      "max_pending > 0");
  }
  std::unique_ptr<Driver> d(new Driver(std::move(config), transport, app));
  if (Status s = d->open(); !s.ok()) {
    std::lock_guard lk(d->mu_);
    d->closed_ = true;
    return s.error();
  }
  d->thread_ = std::thread([p = d.get()] { p->run(); });
  return d;
}

Status Driver::open() {
  const std::string who = "raft node " + std::to_string(config_.raft.id.get());
  auto s = SqliteRaftStorage::open(config_.storage_path, config_.bootstrap);
  if (!s.ok()) {
    return make_error(s.error().code, who + ": cannot start: " + s.error().message + " (" +
                                          config_.storage_path + ")");
  }
  storage_ = std::move(*s);
  node_ = std::make_unique<RawNode>(config_.raft, *storage_);
  applied_ = node_->log().applied();  // the snapshot's index
  if (applied_ > LogIndex{0} && app_.applied_index() < applied_) {
    auto snap = storage_->snapshot();
    if (!snap.ok()) return make_error(snap.error().code, who + ": " + snap.error().message);
    if (Status r = app_.restore(snap->meta.index, snap->data); !r.ok()) {
      return make_error(r.error().code, who + ": restoring the application from the snapshot: " +
                                            r.error().message);
    }
  }
  last_lead_ = node_->lead();
  last_role_ = node_->role();
  last_term_ = node_->term();
  // Re-apply what was committed but not in the snapshot (the first Ready carries it).
  while (node_->has_ready()) {
    if (!handle_ready()) return *fatal_;
  }
  notify_conf();
  // A membership change applied before a crash, but not yet compacted, is compacted now.
  if (!maybe_compact()) return *fatal_;
  publish_info();
  return {};
}

void Driver::stop() {
  std::lock_guard sl(stop_mu_);
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      std::fprintf(stderr, "raft driver: stop() called on the driver's own thread\n");
      std::abort();
    }
    thread_.join();
  }
}

bool Driver::enqueue(Request r) {
  {
    std::lock_guard lk(mu_);
    if (closed_) return false;
    requests_.push_back(std::move(r));
  }
  cv_.notify_one();
  return true;
}

bool Driver::reserve_pending(Error& busy) {
  if (pending_.fetch_add(1) >= config_.max_pending) {
    pending_.fetch_sub(1);
    busy = make_error(kErrProposalDropped, "raft: busy (" + std::to_string(config_.max_pending) +
                                               " requests outstanding)");
    return false;
  }
  return true;
}

void Driver::receive(std::vector<Message> batch) {
  {
    std::lock_guard lk(mu_);
    if (closed_ || stopping_) return;
    for (Message& m : batch) {
      if (inbox_.size() >= config_.max_inbox) break;  // dropped: the sender retransmits
      inbox_.push_back(std::move(m));
    }
  }
  cv_.notify_one();
}

void Driver::report_unreachable(NodeId node) {
  (void)enqueue(
      std::make_unique<ReportRequest>(ReportRequest{ReportRequest::Kind::kUnreachable, node}));
}

void Driver::report_snapshot(NodeId node, bool ok) {
  (void)enqueue(std::make_unique<ReportRequest>(ReportRequest{
      ok ? ReportRequest::Kind::kSnapshotOk : ReportRequest::Kind::kSnapshotFailed, node}));
}

Result<std::string> Driver::propose(std::string data, std::chrono::milliseconds timeout) {
  if (data.empty()) {
    // Empty entries are the leaders' no-ops; the driver never hands them to the application.
    return make_error(kErrProposalDropped, "raft: empty proposal");
  }
  if (data.size() >= std::numeric_limits<uint32_t>::max()) {
    return make_error(kErrProposalDropped, "raft: proposal too large for the wire codec");
  }
  Error busy;
  if (!reserve_pending(busy)) return busy;
  auto deadline = deadline_after(timeout);
  auto w = std::make_shared<Waiter<Result<std::string>>>(deadline, &pending_);
  if (!enqueue(std::make_unique<ProposeRequest>(ProposeRequest{std::move(data), w}))) {
    w->complete(make_error(kErrStopped, "raft: driver stopped"));
  }
  auto r = w->wait_until(deadline);
  if (!r) {
    return make_error(kErrTimeout, "raft: proposal not applied within " + ms(timeout) +
                                       " (outcome unknown: it may still commit)");
  }
  return std::move(*r);
}

Result<LogIndex> Driver::read_index(std::chrono::milliseconds timeout) {
  Error busy;
  if (!reserve_pending(busy)) return busy;
  auto deadline = deadline_after(timeout);
  auto w = std::make_shared<Waiter<Result<LogIndex>>>(deadline, &pending_);
  if (!enqueue(std::make_unique<ReadRequest>(ReadRequest{w}))) {
    w->complete(make_error(kErrStopped, "raft: driver stopped"));
  }
  auto r = w->wait_until(deadline);
  if (!r) return make_error(kErrTimeout, "raft: read index not confirmed within " + ms(timeout));
  return std::move(*r);
}

Status Driver::wait_applied(LogIndex index, std::chrono::milliseconds timeout) {
  Error busy;
  if (!reserve_pending(busy)) return busy;
  auto deadline = deadline_after(timeout);
  auto w = std::make_shared<Waiter<Status>>(deadline, &pending_);
  if (!enqueue(std::make_unique<WaitAppliedRequest>(WaitAppliedRequest{index, w}))) {
    w->complete(make_error(kErrStopped, "raft: driver stopped"));
  }
  auto r = w->wait_until(deadline);
  if (!r) {
    return make_error(kErrTimeout, "raft: index " + std::to_string(index.get()) +
                                       " not applied within " + ms(timeout));
  }
  return std::move(*r);
}

Status Driver::change_membership(ConfChange cc, std::chrono::milliseconds timeout) {
  Error busy;
  if (!reserve_pending(busy)) return busy;
  auto deadline = deadline_after(timeout);
  auto w = std::make_shared<Waiter<Status>>(deadline, &pending_);
  if (!enqueue(std::make_unique<ConfChangeRequest>(ConfChangeRequest{cc, w}))) {
    w->complete(make_error(kErrStopped, "raft: driver stopped"));
  }
  auto r = w->wait_until(deadline);
  if (!r) {
    return make_error(kErrTimeout, "raft: membership change not applied within " + ms(timeout) +
                                       " (outcome unknown)");
  }
  return std::move(*r);
}

Status Driver::transfer_leadership(NodeId to) {
  // Answered within one round of the loop (or by stop()); the deadline only bounds the wait.
  const auto deadline = deadline_after(std::chrono::hours(24 * 365));
  auto w = std::make_shared<Waiter<Status>>(deadline, nullptr);
  if (!enqueue(std::make_unique<TransferRequest>(TransferRequest{to, w}))) {
    return make_error(kErrStopped, "raft: driver stopped");
  }
  auto r = w->wait_until(deadline);
  if (!r) return make_error(kErrTimeout, "raft: leadership transfer not accepted");
  return std::move(*r);
}

DriverInfo Driver::info() const {
  std::lock_guard lk(info_mu_);
  return info_;
}

std::optional<Error> Driver::fatal_error() const {
  std::lock_guard lk(info_mu_);
  return fatal_;
}

// ---- The driver's thread ----

void Driver::run() {
  auto next_tick = Clock::now() + config_.tick;
  for (;;) {
    std::vector<Message> msgs;
    std::vector<Request> reqs;
    {
      std::unique_lock lk(mu_);
      if (!node_->has_ready()) {
        cv_.wait_until(lk, next_tick,
                       [&] { return stopping_ || !inbox_.empty() || !requests_.empty(); });
      }
      if (stopping_) break;
      msgs.swap(inbox_);
      reqs.swap(requests_);
    }
    auto now = Clock::now();
    if (now >= next_tick) {
      node_->tick();
      // One tick per round: after a long fsync, skipping ticks delays an election a little;
      // replaying them in a burst would start spurious ones.
      next_tick += config_.tick;
      if (next_tick <= now) next_tick = now + config_.tick;
      expire(now);
    }
    for (const Message& m : msgs) {
      if (well_formed(m)) (void)node_->step(m);
    }
    // Every request queued meanwhile goes into the coming Ready: one fsync for all of them.
    for (Request& r : reqs) handle(r);
    fail_unconfirmed_reads_if_not_leader();
    if (node_->lead() != last_lead_ || node_->role() != last_role_ || node_->term() != last_term_) {
      last_lead_ = node_->lead();
      last_role_ = node_->role();
      last_term_ = node_->term();
      if (config_.on_leader_change) config_.on_leader_change(last_lead_, last_role_, last_term_);
    }
    if (node_->has_ready() && !handle_ready()) break;
    publish_info();
  }
  std::vector<Request> left;
  {
    std::lock_guard lk(mu_);
    closed_ = true;
    left.swap(requests_);
    inbox_.clear();
  }
  std::optional<Error> fatal = fatal_error();
  Error stopped = make_error(
      kErrStopped, fatal ? "raft: driver stopped: " + fatal->message : "raft: driver stopped");
  for (Request& r : left) {
    std::visit(
        [&](auto& req) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(*req)>, ReportRequest>) {
            req->w->complete(stopped);
          }
        },
        r);
  }
  // Entries applied before a fatal error keep their answers; everything else is stopped.
  for (auto& answer : answered_) answer();
  answered_.clear();
  fail_all(stopped);
  publish_info();
}

Error Driver::not_leader_error() const {
  NodeId lead = node_->lead();
  std::string msg = "raft: not the leader";
  if (lead != kNoNode && lead != node_->id()) {
    msg += " (leader is " + std::to_string(lead.get()) + ")";
  } else {
    msg += " (leader unknown)";
  }
  return make_error(kErrNotLeader, msg);
}

void Driver::handle(Request& r) {
  auto map_error = [&](const Error& e) { return e.code == kErrNotLeader ? not_leader_error() : e; };
  // Several proposals may wait on one index (this node led in several terms and its older
  // entries were overwritten): only the one whose term is applied there succeeds. An entry
  // overwritten in our log is not necessarily lost — another node may still hold it and commit
  // it as leader of a later term — so nothing is decided before the index is applied.
  auto track = [&](std::unique_ptr<Proposal> p) {
    proposals_.emplace(node_->log().last_index(), std::move(p));
  };
  std::visit(
      [&](auto& req) {
        using T = std::decay_t<decltype(*req)>;
        if constexpr (std::is_same_v<T, ProposeRequest>) {
          if (Clock::now() >= req->w->deadline()) {
            req->w->complete(make_error(kErrTimeout, "raft: proposal expired before it was sent"));
            return;
          }
          if (Status s = node_->propose(std::move(req->data)); !s.ok()) {
            req->w->complete(map_error(s.error()));
            return;
          }
          track(std::make_unique<Proposal>(Proposal{node_->term(), std::move(req->w), nullptr}));
        } else if constexpr (std::is_same_v<T, ConfChangeRequest>) {
          if (Status s = node_->propose_conf_change(req->cc); !s.ok()) {
            req->w->complete(map_error(s.error()));
            return;
          }
          track(std::make_unique<Proposal>(Proposal{node_->term(), nullptr, std::move(req->w)}));
        } else if constexpr (std::is_same_v<T, ReadRequest>) {
          // Unique among this leadership's reads; the term keeps it unique across restarts.
          std::string ctx =
              std::to_string(node_->term().get()) + "/" + std::to_string(next_read_ctx_++);
          if (Status s = node_->read_index(ctx); !s.ok()) {
            req->w->complete(map_error(s.error()));
            return;
          }
          reads_.push_back(std::make_unique<PendingRead>(
              PendingRead{std::move(ctx), node_->term(), std::nullopt, std::move(req->w)}));
        } else if constexpr (std::is_same_v<T, WaitAppliedRequest>) {
          if (applied_ >= req->index) {
            req->w->complete(Status{});
            return;
          }
          LogIndex i = req->index;
          applied_waits_.emplace(i, std::move(req));
        } else if constexpr (std::is_same_v<T, TransferRequest>) {
          Status s = node_->transfer_leadership(req->to);
          req->w->complete(s.ok() ? s : Status(map_error(s.error())));
        } else {
          static_assert(std::is_same_v<T, ReportRequest>);
          switch (req->kind) {
            case ReportRequest::Kind::kUnreachable:
              node_->report_unreachable(req->node);
              break;
            case ReportRequest::Kind::kSnapshotOk:
              node_->report_snapshot(req->node, true);
              break;
            case ReportRequest::Kind::kSnapshotFailed:
              node_->report_snapshot(req->node, false);
              break;
          }
        }
      },
      r);
}

bool Driver::handle_ready() {
  Ready rd = node_->ready();
  auto send_all = [&] {
    if (rd.messages.empty()) return;
    std::map<NodeId, std::vector<Message>> by_to;
    for (Message& m : rd.messages) by_to[m.to].push_back(std::move(m));
    rd.messages.clear();
    for (auto& [to, batch] : by_to) transport_.send(std::move(batch));
  };
  // A leader's messages (kApp, heartbeats, kSnap, kTimeoutNow, rejections) acknowledge nothing
  // of this Ready: its own copy of the entries counts toward the quorum only after advance(),
  // i.e. after they are durable (RawNode::advance). So it sends them first and the followers
  // write in parallel with its fsync (Raft thesis §10.2.1). Not when this Ready changes the
  // term or the vote (a single-voter cluster electing itself): those go out only once durable.
  if (node_->role() == Role::kLeader && !rd.hard_state_sync && !rd.snapshot) send_all();
  // 1. Persist; no acknowledgement, vote or follower answer of this Ready leaves, and nothing is
  // applied, before it committed. A hard state whose only change is the commit index is
  // written without an fsync (Ready::must_sync()).
  if (rd.must_sync() || rd.hard_state) {
    if (Status s = storage_->persist(rd); !s.ok()) {
      set_fatal(make_error(s.error().code, "persisting a Ready: " + s.error().message));
      return false;
    }
    if (rd.must_sync()) ++persists_;
  }
  // 2. Send, one batch per destination (in the order the core produced them).
  send_all();
  // 3. Apply.
  if (rd.snapshot) {
    const Snapshot& s = *rd.snapshot;
    if (app_.applied_index() < s.meta.index) {
      if (Status st = app_.restore(s.meta.index, s.data); !st.ok()) {
        set_fatal(make_error(st.error().code, "restoring the application from the snapshot at " +
                                                  std::to_string(s.meta.index.get()) + ": " +
                                                  st.error().message));
        return false;
      }
    }
    resolve_proposals_up_to(
        s.meta.index, "outcome unknown: the log up to it was replaced by a leader's snapshot");
    applied_ = std::max(applied_, s.meta.index);
  }
  if (!apply_committed(rd.committed_entries)) return false;
  notify_conf();  // before answering: a caller told "applied" sees the new membership's effects
  for (const ReadState& rs : rd.read_states) {
    for (auto& r : reads_) {
      if (r->context == rs.context) r->index = rs.index;
    }
  }
  // Answer only once info() shows what was applied: a caller told "applied" may look.
  publish_info();
  for (auto& answer : answered_) answer();
  answered_.clear();
  complete_reads_and_waits();
  // 4. Acknowledge, then compact if due.
  node_->advance(rd);
  return maybe_compact();
}

void Driver::notify_conf() {
  if (!config_.on_conf_change) return;
  const ConfState& conf = node_->conf_state();
  if (notified_conf_ && *notified_conf_ == conf) return;
  notified_conf_ = conf;
  config_.on_conf_change(conf);
}

std::unique_ptr<Driver::Proposal> Driver::take_proposal(const Entry& e) {
  std::unique_ptr<Proposal> p;  // the local proposal of exactly this entry, if any
  auto [first, last] = proposals_.equal_range(e.index);
  for (auto it = first; it != last; ++it) {
    if (it->second->term == e.term) {
      p = std::move(it->second);
    } else {
      it->second->fail(make_error(kErrProposalLost, "raft: entry at index " +
                                                        std::to_string(e.index.get()) +
                                                        " was replaced by another leader's (term " +
                                                        std::to_string(e.term.get()) + ")"));
    }
  }
  proposals_.erase(first, last);
  return p;
}

// Runs of normal entries go to the application in one apply_batch() (one transaction for a
// durable application: one sync for the whole Ready instead of one per entry); a membership
// change ends a run.
bool Driver::apply_committed(const std::vector<Entry>& entries) {
  size_t k = 0;
  while (k < entries.size()) {
    if (entries[k].type == EntryType::kConfChange) {
      if (!apply_conf_entry(entries[k])) return false;
      ++k;
      continue;
    }
    size_t end = k;
    std::vector<const Entry*> batch;
    const LogIndex app_applied = app_.applied_index();
    for (; end < entries.size() && entries[end].type != EntryType::kConfChange; ++end) {
      const Entry& e = entries[end];
      if (!e.data.empty() && e.index > app_applied) batch.push_back(&e);
    }
    std::vector<Result<std::string>> results;
    if (!batch.empty()) {
      auto r = app_.apply_batch(batch);
      if (r.ok() && r->size() != batch.size()) {
        r = make_error(kErrApplyFailed, "apply_batch returned " + std::to_string(r->size()) +
                                            " results for " + std::to_string(batch.size()) +
                                            " entries");
      }
      if (!r.ok()) {
        set_fatal(make_error(kErrApplyFailed, "applying indexes " +
                                                  std::to_string(batch.front()->index.get()) +
                                                  ".." + std::to_string(batch.back()->index.get()) +
                                                  ": " + r.error().message));
        for (size_t m = k; m < end; ++m) {
          if (auto p = take_proposal(entries[m])) {
            p->fail(make_error(kErrStopped, "raft: driver stopped: " + r.error().message));
          }
        }
        return false;
      }
      results = std::move(*r);
    }
    size_t next_result = 0;
    for (; k < end; ++k) {
      const Entry& e = entries[k];
      std::unique_ptr<Proposal> p = take_proposal(e);
      const bool applied_now = next_result < batch.size() && batch[next_result] == &e;
      if (applied_now) {
        Result<std::string>& r = results[next_result++];
        if (p && p->w) answered_.push_back([w = p->w, r = std::move(r)] { w->complete(r); });
      } else if (p && p->w) {
        // Only when the application was ahead of the driver (it applied this index before).
        answered_.push_back([w = p->w] { w->complete(std::string()); });
      }
      applied_ = e.index;
      applied_bytes_ += e.data.size();
    }
  }
  return true;
}

bool Driver::apply_conf_entry(const Entry& e) {
  std::unique_ptr<Proposal> p = take_proposal(e);
  // Entries up to conf_index() are already in the stored membership (a restart replays them).
  if (e.index > storage_->conf_index()) {
    auto cc = decode_conf_change(e.data);
    if (!cc) {
      set_fatal(make_error(kErrCorruptLog, "committed membership change at index " +
                                               std::to_string(e.index.get()) + " does not decode"));
      return false;
    }
    ConfState conf = node_->apply_conf_change(*cc);
    if (Status s = storage_->set_conf_state(e.index, conf); !s.ok()) {
      set_fatal(make_error(s.error().code, "recording the membership at index " +
                                               std::to_string(e.index.get()) + ": " +
                                               s.error().message));
      return false;
    }
  }
  if (p && p->conf_w) answered_.push_back([w = p->conf_w] { w->complete(Status{}); });
  applied_ = e.index;
  return true;
}

// Also compacts whenever a membership change is newer than the snapshot: the bootstrap
// membership lives outside the log, so a member added later must be initialized by a snapshot
// (which carries the membership and its addresses), never by replaying the log from index 1;
// a node without a membership refuses entries until then (RawNode). After this, a leader
// that knows of the new member no longer has the log from index 1.
bool Driver::maybe_compact() {
  const LogIndex snap = storage_->first_index() - 1;
  const uint64_t every = std::max<uint64_t>(1, config_.snapshot_entries);
  if (applied_ <= snap) return true;
  if (storage_->conf_index() > snap) return compact_in_line();
  if (background_snapshot_.valid()) {
    if (background_snapshot_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      return true;  // still reading; appends and applies go on meanwhile
    }
    auto got = background_snapshot_.get();
    if (!got.ok()) {
      std::cerr << "raft: node " << config_.raft.id.get()
                << ": reading the snapshot on the side failed, taking it in line: "
                << got.error().message << "\n";
      return compact_in_line();
    }
    // Usable unless a snapshot installed meanwhile is as new, or a membership change was
    // applied after it (the ConfState stored with it must be the one in force at its index).
    const LogIndex at = got->file.index;
    if (at > snap && at <= applied_ && storage_->conf_index() <= at) {
      if (Status s =
              storage_->compact_to_file(got->file, node_->conf_state(), std::move(got->data));
          !s.ok()) {
        set_fatal(make_error(s.error().code, "compacting the log at " + std::to_string(at.get()) +
                                                 ": " + s.error().message));
        return false;
      }
      return true;
    }
  }
  if (applied_ - snap < every && applied_bytes_ < config_.snapshot_bytes) return true;
  applied_bytes_ = 0;
  if (auto read = app_.concurrent_snapshot()) {
    background_snapshot_ = std::async(
        std::launch::async,
        [read = std::move(read), path = config_.storage_path]() -> Result<BackgroundSnapshot> {
          auto got = read();
          if (!got.ok()) return got.error();
          auto file = SqliteRaftStorage::write_snapshot_file(path, got->index, got->data);
          if (!file.ok()) return file.error();
          return BackgroundSnapshot{*file, std::move(got->data)};
        });
    return true;
  }
  return compact_in_line();
}

bool Driver::compact_in_line() {
  applied_bytes_ = 0;
  auto data = app_.snapshot();
  if (!data.ok()) {
    set_fatal(make_error(data.error().code, "taking the application snapshot at " +
                                                std::to_string(applied_.get()) + ": " +
                                                data.error().message));
    return false;
  }
  if (Status s = storage_->compact(applied_, node_->conf_state(), std::move(*data)); !s.ok()) {
    set_fatal(make_error(s.error().code, "compacting the log at " + std::to_string(applied_.get()) +
                                             ": " + s.error().message));
    return false;
  }
  return true;
}

void Driver::resolve_proposals_up_to(LogIndex i, const char* why) {
  auto end = proposals_.upper_bound(i);
  for (auto it = proposals_.begin(); it != end; ++it) {
    it->second->fail(
        make_error(kErrTimeout, "raft: index " + std::to_string(it->first.get()) + ": " + why));
  }
  proposals_.erase(proposals_.begin(), end);
}

void Driver::complete_reads_and_waits() {
  std::erase_if(reads_, [&](const std::unique_ptr<PendingRead>& r) {
    if (!r->index || *r->index > applied_) return false;
    r->w->complete(*r->index);
    return true;
  });
  auto end = applied_waits_.upper_bound(applied_);
  for (auto it = applied_waits_.begin(); it != end; ++it) it->second->w->complete(Status{});
  applied_waits_.erase(applied_waits_.begin(), end);
}

void Driver::fail_unconfirmed_reads_if_not_leader() {
  if (reads_.empty()) return;
  const bool leading = node_->role() == Role::kLeader;
  std::erase_if(reads_, [&](const std::unique_ptr<PendingRead>& r) {
    if (r->index || (leading && node_->term() == r->term)) return false;
    // The core dropped it with the leadership: a deposed leader never answers a read.
    r->w->complete(
        make_error(kErrNotLeader,
                   not_leader_error().message + "; leadership lost before the read was confirmed"));
    return true;
  });
}

void Driver::expire(Clock::time_point now) {
  const Error timeout = make_error(kErrTimeout, "raft: timed out");
  std::erase_if(proposals_, [&](auto& kv) {
    if (kv.second->deadline() > now) return false;
    kv.second->fail(timeout);
    return true;
  });
  std::erase_if(reads_, [&](const std::unique_ptr<PendingRead>& r) {
    if (r->w->deadline() > now) return false;
    r->w->complete(timeout);
    return true;
  });
  std::erase_if(applied_waits_, [&](auto& kv) {
    if (kv.second->w->deadline() > now) return false;
    kv.second->w->complete(timeout);
    return true;
  });
}

void Driver::fail_all(const Error& e) {
  for (auto& [i, p] : proposals_) p->fail(e);
  proposals_.clear();
  for (auto& r : reads_) r->w->complete(e);
  reads_.clear();
  for (auto& [i, w] : applied_waits_) w->w->complete(e);
  applied_waits_.clear();
}

void Driver::set_fatal(Error e) {
  std::fprintf(stderr, "raft node %llu: fatal: %s: %s; stopping (restart the process)\n",
               static_cast<unsigned long long>(config_.raft.id.get()), e.code.c_str(),
               e.message.c_str());
  std::lock_guard lk(info_mu_);
  fatal_ = std::move(e);
}

void Driver::publish_info() {
  DriverInfo i;
  i.id = node_->id();
  i.lead = node_->lead();
  i.role = node_->role();
  i.term = node_->term();
  i.commit = node_->log().committed();
  i.applied = applied_;
  i.last_index = node_->log().last_index();
  i.snapshot_index = storage_->first_index() - 1;
  i.conf = node_->conf_state();
  i.persists = persists_;
  std::lock_guard lk(info_mu_);
  info_ = std::move(i);
}

}  // namespace starling::raft

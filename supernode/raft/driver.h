// Driver: runs one RawNode over one SqliteRaftStorage on its own thread (the node's strand)
// and offers blocking, thread-safe calls to the rest of the supernode (issue 3 item 3).
//
// The loop (driver.cc): every `tick` it ticks the node; it drains every message received and
// every local request queued since the last round, then, if the node has a Ready: persists it
// (SqliteRaftStorage::persist, one transaction, fsync) — only then sends its messages grouped
// per destination (a leader sends its kApps and heartbeats before persisting: its own copy
// counts toward the quorum only after advance(), see README.md) — applies the snapshot
// (Application::restore) and the committed entries (Application::apply_batch, one call per run
// of normal entries; membership changes through RawNode::apply_conf_change and
// SqliteRaftStorage::set_conf_state) — answers the waiting callers — advance()s the node and
// compacts the log when `snapshot_entries` entries (or `snapshot_bytes`) were applied since the
// last snapshot. The
// application's state for that snapshot is read on a thread of its own when the application
// offers Application::concurrent_snapshot() (reading a large state took 150-350 ms, during
// which no write could commit: docs/bench/raft.md); the log is compacted at the index that
// snapshot names once it is there.
// Because the queue is drained before ready(), every proposal that arrived while the previous
// Ready was being persisted goes into ONE Ready and one fsync (group commit).
//
// Threading: the RawNode, the storage, the Transport and the Application are touched only on
// the driver's thread. persist() blocks that thread on fsync; nothing else needs it meanwhile,
// incoming messages and requests queue up (that is what batches them). Every public method
// may be called from any thread; the blocking ones wait on their own condition, never on the
// driver's mutex across I/O. Do not call the blocking methods (or stop()) from the Transport
// or the Application: they run on the driver's thread and would wait for themselves.
//
// Failure: a failed persist / compact / set_conf_state, a failed Application::restore or
// snapshot, or Application::apply returning kErrApplyFailed is fatal: the driver logs it to
// stderr, sends nothing more, fails every waiter with kErrStopped and stops its loop; the
// process is expected to restart it (the disk holds each transaction entirely or not at all).
// fatal_error() tells why.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/result.h"
#include "supernode/raft/raw_node.h"
#include "supernode/raft/sqlite_storage.h"
#include "supernode/raft/types.h"

namespace starling::raft {

// Driver stopped, or a fatal storage / application error stopped it.
inline constexpr char kErrStopped[] = "raft.stopped";
// The proposal's entry was overwritten by another leader's: it will never apply; retry.
inline constexpr char kErrProposalLost[] = "raft.proposal_lost";
// The wait ended first; the outcome is unknown (a proposal may still commit).
inline constexpr char kErrTimeout[] = "raft.timeout";
// Returned by Application::apply for a storage failure (fatal), as opposed to a deterministic
// rejection of the command.
inline constexpr char kErrApplyFailed[] = "raft.apply_failed";
inline constexpr char kErrBadConfig[] = "raft.bad_config";  // start(): invalid DriverConfig
// kErrNotLeader, kErrProposalDropped, kErrNotReady come from raw_node.h.

// Outgoing messages. Implementations must not block: queue (bounded) and return; dropping is
// allowed (Raft retransmits). Called on the driver's thread.
class Transport {
 public:
  virtual ~Transport() = default;
  // All messages have the same `to`. A kSnap message should be followed, once delivered or
  // known lost, by Driver::report_snapshot(to, ok) (from any thread).
  virtual void send(std::vector<Message> batch_for_one_node) = 0;
};

// The replicated application. Called ONLY on the driver's thread, in log order.
class Application {
 public:
  virtual ~Application() = default;
  // A committed kNormal entry with non-empty data. Must have no effect for index <=
  // applied_index() (a restart re-delivers entries since the last snapshot; the driver skips
  // those itself but the application must not rely on it). The returned value (or error) is
  // handed to the local proposer of that entry, if any. A Result error here is a
  // *deterministic* rejection (e.g. a failed compare-and-set), not a failure; a storage
  // failure must be reported as Error{kErrApplyFailed, ...}, which stops the driver (fatal).
  virtual Result<std::string> apply(LogIndex index, const std::string& data) = 0;
  // The committed kNormal entries of one Ready with non-empty data and index >
  // applied_index(), in log order (indexes increasing, not necessarily consecutive: no-ops and
  // membership changes are not passed). An application with a durable state should make them
  // durable together (one transaction, one sync). Returns one result per entry, with apply()'s
  // meaning; an Error{kErrApplyFailed} in place of the vector is a storage failure (fatal; the
  // entries' outcome is then unknown). The default calls apply() for each.
  virtual Result<std::vector<Result<std::string>>> apply_batch(
      const std::vector<const Entry*>& entries) {
    std::vector<Result<std::string>> out;
    out.reserve(entries.size());
    for (const Entry* e : entries) {
      Result<std::string> r = apply(e->index, e->data);
      if (!r.ok() && r.error().code == kErrApplyFailed) return r.error();
      out.push_back(std::move(r));
    }
    return out;
  }
  virtual LogIndex applied_index() const = 0;
  // The whole application state (opaque bytes) as of applied_index(), for a Raft snapshot.
  virtual Result<std::string> snapshot() = 0;
  // Replaces the whole state with a snapshot's data taken at `index`; afterwards
  // applied_index() == index.
  virtual Status restore(LogIndex index, const std::string& data) = 0;

  // The state of one moment, read off the driver's thread: the returned callable runs on a
  // thread of its own, concurrently with apply(), and returns what snapshot() would have
  // returned at the applied index it names (the driver compacts the log there; a stopping
  // driver waits for it). Null (the default) when the application cannot: the driver then
  // calls snapshot() on its own thread.
  struct IndexedSnapshot {
    LogIndex index;
    std::string data;
  };
  virtual std::function<Result<IndexedSnapshot>()> concurrent_snapshot() { return nullptr; }
};

struct DriverConfig {
  Config raft;               // id, election_tick, heartbeat_tick, ...; seed 0 = the driver
                             // draws one (nodes must not share their election jitter)
  std::string storage_path;  // SqliteRaftStorage file
  ConfState bootstrap;       // initial membership for a new store (a joining node: the
                             // membership it was told when it was added)
  std::chrono::milliseconds tick{100};
  // Compact once this many entries, or entries holding this many bytes, were applied since the
  // last snapshot (etcd's default is 100,000 entries too). Memory holds the log in between.
  uint64_t snapshot_entries = 100000;
  uint64_t snapshot_bytes = uint64_t{64} << 20;
  size_t max_pending = 4096;  // proposals + reads + waits outstanding; beyond it the call fails
                              // kErrProposalDropped ("busy")
  size_t max_inbox = 65536;   // received messages waiting for the loop; beyond it receive()
                              // drops (Raft retransmits)
  // Called on the driver's thread whenever the leader, the role or the term changes (e.g. to
  // log it). Must not block or call the driver's blocking methods.
  std::function<void(NodeId lead, Role role, Term term)> on_leader_change;
  // Called on the driver's thread (the first time from start(), before it returns) with the
  // membership in force whenever it changed: a membership change applied, a snapshot
  // installed. Must not block or call the driver's blocking methods.
  std::function<void(const ConfState& conf)> on_conf_change;
};

struct DriverInfo {  // a consistent copy, taken on the driver's thread
  NodeId id;
  NodeId lead;
  Role role = Role::kFollower;
  Term term;
  LogIndex commit, applied, last_index, snapshot_index;
  ConfState conf;
  uint64_t persists = 0;  // Readys made durable (transactions, fsyncs) since start()
};

class Driver {
 public:
  // Opens the storage (kErrCorruptLog / kErrStorageIo => refuse to start, the message says
  // why), restores the application from the stored snapshot if it is behind it, re-applies the
  // committed entries (membership changes after storage.conf_index() included), then starts
  // the thread and the ticker. `transport` and `app` must outlive the driver.
  static Result<std::unique_ptr<Driver>> start(DriverConfig config, Transport& transport,
                                               Application& app);
  ~Driver();  // stop()
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  // Idempotent: fails every waiter with kErrStopped and joins the thread. A stopped driver
  // answers every call with kErrStopped. Must not be called on the driver's thread.
  void stop();

  // From the transport, any thread. Never blocks on I/O (queues; drops beyond max_inbox).
  void receive(std::vector<Message> batch);
  void report_unreachable(NodeId node);
  void report_snapshot(NodeId node, bool ok);

  // Any thread. Blocks until the entry is committed AND applied on this node and returns
  // Application::apply's result, or fails: kErrNotLeader (not the leader; the message names
  // the leader if known: "not the leader (leader is 2)"), kErrProposalDropped (leadership
  // transfer in progress, empty data, or more than max_pending outstanding: "busy"),
  // kErrProposalLost (another leader's entry took its index: it will never apply; retry),
  // kErrTimeout (outcome unknown: it may still commit), kErrStopped.
  Result<std::string> propose(std::string data, std::chrono::milliseconds timeout);
  // Linearizable read barrier on the leader: returns the ReadIndex once this node has applied
  // up to it, so a read from the application afterwards sees every write committed before the
  // call. kErrNotLeader (also when leadership is lost before the quorum confirmed it) /
  // kErrNotReady (new leader without a commit in its term yet; retry) / kErrTimeout /
  // kErrStopped.
  Result<LogIndex> read_index(std::chrono::milliseconds timeout);
  // Any node: blocks until applied >= index (followers, after asking the leader for a read
  // index). kErrTimeout / kErrStopped.
  Status wait_applied(LogIndex index, std::chrono::milliseconds timeout);
  // Membership (leader only): blocks until the change is applied on this node. Node ids are
  // never reused. Errors: those of propose() plus kErrConfChangeInFlight and kErrBadConfChange
  // from the core. A learner is promoted automatically once caught up (Config).
  Status change_membership(ConfChange cc, std::chrono::milliseconds timeout);
  // Leader only: starts handing leadership to voter `to`; returns once the node accepted the
  // request (the transfer itself completes or is abandoned within an election timeout).
  Status transfer_leadership(NodeId to);
  // Any thread; never blocks on the driver's I/O (the copy published after each round).
  DriverInfo info() const;
  // The error that stopped the driver (fatal storage or application failure), if any.
  std::optional<Error> fatal_error() const;

 private:
  using Clock = std::chrono::steady_clock;
  template <class R>
  class Waiter;
  struct ProposeRequest;
  struct ConfChangeRequest;
  struct ReadRequest;
  struct WaitAppliedRequest;
  struct TransferRequest;
  struct ReportRequest;
  using Request = std::variant<std::unique_ptr<ProposeRequest>, std::unique_ptr<ConfChangeRequest>,
                               std::unique_ptr<ReadRequest>, std::unique_ptr<WaitAppliedRequest>,
                               std::unique_ptr<TransferRequest>, std::unique_ptr<ReportRequest>>;
  struct Proposal;
  struct PendingRead;

  Driver(DriverConfig config, Transport& transport, Application& app);
  Status open();  // before the thread starts: storage, node, application catch-up
  void run();     // the thread
  bool enqueue(Request r);
  bool reserve_pending(Error& busy);

  // On the driver's thread.
  void handle(Request& r);
  bool handle_ready();  // false: fatal (fatal_ set)
  bool apply_committed(const std::vector<Entry>& entries);
  bool apply_conf_entry(const Entry& e);
  std::unique_ptr<Proposal> take_proposal(const Entry& e);
  bool maybe_compact();
  bool compact_in_line();  // Application::snapshot() on this thread, then compact at applied_
  void resolve_proposals_up_to(LogIndex i, const char* why);
  void complete_reads_and_waits();
  void fail_unconfirmed_reads_if_not_leader();
  void expire(Clock::time_point now);
  void fail_all(const Error& e);
  void set_fatal(Error e);
  void publish_info();
  void notify_conf();  // config_.on_conf_change when the membership differs from the last call
  Error not_leader_error() const;

  DriverConfig config_;
  Transport& transport_;
  Application& app_;

  // Touched only on the driver's thread (or in start() before it exists).
  std::unique_ptr<SqliteRaftStorage> storage_;
  std::unique_ptr<RawNode> node_;
  LogIndex applied_;
  std::multimap<LogIndex, std::unique_ptr<Proposal>> proposals_;  // by entry index
  std::vector<std::unique_ptr<PendingRead>> reads_;
  std::multimap<LogIndex, std::unique_ptr<WaitAppliedRequest>> applied_waits_;
  std::vector<std::function<void()>> answered_;  // proposers to answer after publish_info()
  uint64_t next_read_ctx_ = 1;
  uint64_t persists_ = 0;
  NodeId last_lead_ = kNoNode;
  Role last_role_ = Role::kFollower;
  Term last_term_;
  std::optional<ConfState> notified_conf_;
  uint64_t applied_bytes_ = 0;  // entry data applied since the last compaction began
  // Application::concurrent_snapshot() and SqliteRaftStorage::write_snapshot_file() running on
  // a thread of their own (valid() while they are).
  struct BackgroundSnapshot {
    SqliteRaftStorage::SnapshotFile file;
    std::string data;
  };
  std::future<Result<BackgroundSnapshot>> background_snapshot_;

  // The queue between callers and the thread.
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Message> inbox_;
  std::vector<Request> requests_;
  bool stopping_ = false;  // stop() asked
  bool closed_ = false;    // the loop ended: nothing is queued any more

  std::atomic<size_t> pending_{0};
  std::mutex stop_mu_;
  std::thread thread_;

  mutable std::mutex info_mu_;
  DriverInfo info_;
  std::optional<Error> fatal_;
};

}  // namespace starling::raft

// The tracker: the replicated registry of the supernodes (ARCHITECTURE §5): tasks with their
// seeder, a Consul-like kv namespace, and the certificates issued and revoked (issue 5).
// TrackerStateMachine is the seam between Raft and the store: Raft decides the order and the index
// of each Proposal; the state machine applies them deterministically and exactly once per
// (client_id, seq), so every replica holds the same state after the same entries.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "supernode/tracker/command.h"

namespace starling::tracker {

// Position of an entry in the replicated log; 0 = nothing applied yet. Same value as
// raft::LogIndex (the driver converts).
using LogIndex = StrongId<struct LogIndexTag, uint64_t>;

inline constexpr char kErrStorage[] = "tracker.storage";         // disk / SQLite failure
inline constexpr char kErrTaskExists[] = "tracker.task_exists";  // CreateTask of a known task
inline constexpr char kErrTaskUnknown[] = "task.unknown";        // command for an unknown task
inline constexpr char kErrBadTransition[] = "tracker.bad_transition";
inline constexpr char kErrCasFailed[] = "kv.cas_failed";  // compare-and-set did not match
inline constexpr char kErrKeyUnknown[] = "kv.not_found";  // cas n > 0 on a key that is absent
inline constexpr char kErrBadSnapshot[] = "tracker.bad_snapshot";
// IssueCertificate for a node that was revoked ("node <id> was revoked: <reason>").
inline constexpr char kErrCertRevoked[] = "cert.revoked";
// A fenced task command (PublishSegment, RenewSeedLease, MarkTaskReady/MarkTaskFailed with an
// epoch) whose epoch is not the task's current lease epoch, or a TakeOverSeed or ReseedTask
// whose expected_epoch is stale: the proposer lost the seed lease and must stop.
inline constexpr char kErrStaleLease[] = "tracker.stale_lease";

// Results of (client_id, seq) are remembered while their index is within this many indexes of
// the index being applied; older ones are dropped at every apply (a pure function of the
// index, so every replica forgets the same records at the same entry).
inline constexpr uint64_t kResultWindow = 100000;

enum class TaskState { kFetching, kReady, kFailed };
const char* task_state_name(TaskState state);  // "fetching", "ready", "failed"

// One published segment of a task: [offset, offset + size) of the content, and the bencoded
// torrent of those bytes.
struct SegmentRecord {
  int64_t index = 0;
  int64_t offset = 0;
  int64_t size = 0;
  std::string metainfo;
  bool operator==(const SegmentRecord&) const = default;
};

struct TaskRecord {
  TaskId task_id;
  std::string url;
  std::optional<std::string> digest;
  int64_t created_at = 0;
  TaskState state = TaskState::kFetching;
  std::string seeder;        // node id of the supernode that fetches and seeds it (last CreateTask,
                             // RestartTask, TakeOverSeed or ReseedTask)
  int64_t segment_size = 0;  // fixed at CreateTask
  // Index of the entry that granted `seeder` its lease (CreateTask, RestartTask, TakeOverSeed,
  // ReseedTask).
  LogIndex lease_epoch;
  // Published so far, in index order: segments[i].index == i, contiguous offsets.
  std::vector<SegmentRecord> segments;
  // Set when state == kReady: the content's size (sum of the segment sizes) and SHA-256.
  int64_t size = 0;
  std::string sha256;
  std::string seed_ip;  // the seeder's libtorrent SSL endpoint ("" / 0 = none known yet)
  int64_t seed_port = 0;
  // Set when state == kFailed (and only then).
  std::optional<Error> error;
  LogIndex updated_index;  // index of the last command that changed this task
};

// One kv entry. create_index: index of the KvPut that created it (since it last did not
// exist); modify_index: index of the last KvPut that wrote it.
struct KvRecord {
  std::string key;
  std::string value;
  uint64_t create_index = 0;
  uint64_t modify_index = 0;
  bool operator==(const KvRecord&) const = default;
};

// A revocation: when (proposer's unix seconds), why, and the index of the RevokeCertificate.
struct Revocation {
  int64_t revoked_at = 0;
  std::string reason;
  LogIndex index;
  bool operator==(const Revocation&) const = default;
};

// What the cluster knows of one node's certificates: its latest recorded issuance (role and
// validity of the last IssueCertificate; `issued_index` 0, `role` "" and validity 0 when none
// was recorded, i.e. the node was revoked without ever enrolling through the cluster) and its
// revocation, if any. A revoked node stays revoked.
struct CertificateRecord {
  std::string node_id;  // 64 lowercase hex
  std::string role;     // "peer", "supernode", "admin", or "" (no issuance recorded)
  int64_t not_before = 0;
  int64_t not_after = 0;
  LogIndex issued_index;  // index of the last IssueCertificate; 0 = none
  std::optional<Revocation> revocation;
  bool revoked() const { return revocation.has_value(); }
  bool operator==(const CertificateRecord&) const = default;
};

// Applies proposals in log order. Task transitions (E = the entry's index; "fenced": the
// command's epoch must equal lease_epoch, else kErrStaleLease):
//   CreateTask      unknown task          -> fetching   (seeder, segment_size; lease_epoch = E)
//   PublishSegment  fetching, fenced      -> fetching   (segment appended, seed endpoint set;
//                   index/offset/size rules in command.h, else kErrBadTransition)
//   RenewSeedLease  fetching, fenced      -> fetching   (only updated_index = E)
//   TakeOverSeed    fetching, expected_epoch == lease_epoch
//                                         -> fetching   (seeder, seed endpoint; lease_epoch = E;
//                                                        segments kept)
//   ReseedTask      ready, expected_epoch == lease_epoch
//                                         -> ready      (seeder, seed endpoint; lease_epoch = E)
//   MarkTaskReady   fetching, fenced, size == sum of segment sizes
//                                         -> ready      (size, sha256, seed endpoint)
//   MarkTaskFailed  fetching or ready (fenced when it has an epoch: a fetching task at that
//                   epoch, or with seed_lost a ready one)
//                                         -> failed     (ready -> failed: the seed lost it)
//   RestartTask     failed                -> fetching   (seeder replaced, segments dropped,
//                                                        lease_epoch = E)
// Results: CreateTask, RestartTask, TakeOverSeed and ReseedTask {"epoch": E}; other task
// commands "{}".
// Every task command that changes a task sets its updated_index = E (so a renewal is visible
// as a new updated_index).
// Kv:
//   KvPut     cas nullopt: always; cas 0: key absent; cas n: key present at modify_index n.
//             Result {"index": <modify_index>}.
//   KvDelete  cas nullopt: always (absent key: {"deleted": false}); cas 0: key absent (then
//             {"deleted": false}); cas n: key present at modify_index n. Result
//             {"deleted": true|false}.
//   A cas that does not match a present key: kErrCasFailed ("key 'a' is at index 7, not 5");
//   cas n > 0 on an absent key: kErrKeyUnknown.
// Certificates:
//   IssueCertificate   node not revoked: records (role, validity, index) as the node's latest
//                      issuance. Result {"issued_index": N}. Revoked node: kErrCertRevoked
//                      ("node <id> was revoked: <reason>"), nothing recorded.
//   RevokeCertificate  node not revoked (with or without an issuance): revoked with
//                      (revoked_at, reason, index). Result {"revoked_at": T}. Already revoked:
//                      no change; result {"revoked_at": T of the first revocation,
//                      "already_revoked": true}.
//
// Thread-safety: implementations serialise calls internally; any thread may call.
class TrackerStateMachine {
 public:
  virtual ~TrackerStateMachine() = default;

  // Applies `p` at `index`, exactly once per (client_id, seq):
  //  - index <= applied_index(): no effect; returns the result recorded for (client_id, seq)
  //    if still known, otherwise OK with "{}".
  //  - (client_id, seq) already applied at an earlier index: no effect except applied_index()
  //    becomes `index`; returns the result recorded then (success JSON or the same Error).
  //  - otherwise applies the command; the result is a JSON text: task commands as above, KvPut
  //    {"index":N}, KvDelete {"deleted":true|false}, certificate commands as above. A
  //    deterministic rejection (kErrTaskExists, kErrTaskUnknown, kErrBadTransition,
  //    kErrCasFailed, kErrKeyUnknown, kErrCertRevoked, kErrStaleLease, and kErrBadCommand for a
  //    proposal that fails validate_proposal) is returned as the Error, the state is unchanged,
  //    applied_index() = index, and the rejection is recorded for (client_id, seq) too (not when
  //    the client_id itself is invalid).
  //  - kErrStorage: nothing applied, applied_index() unchanged.
  // Everything of one apply (effect, result record, pruning, applied_index) is ONE SQLite
  // transaction. Indexes may skip (entries that are not tracker proposals).
  virtual Result<std::string> apply(LogIndex index, const Proposal& p) = 0;
  // One committed entry of a batch.
  struct BatchEntry {
    LogIndex index;
    const Proposal* proposal = nullptr;  // not null
  };
  // apply() for each entry, in order, but everything in ONE transaction (one sync for all of
  // them): results per entry with apply()'s meaning; applied_index() becomes the last index,
  // stored in that same transaction. kErrStorage: nothing of the batch applied, applied_index()
  // unchanged. REQUIRES: indexes strictly increasing. The default calls apply() for each (not
  // atomic; for implementations without transactions).
  virtual Result<std::vector<Result<std::string>>> apply_batch(
      const std::vector<BatchEntry>& entries) {
    std::vector<Result<std::string>> out;
    out.reserve(entries.size());
    for (const BatchEntry& e : entries) {
      Result<std::string> r = apply(e.index, *e.proposal);
      if (!r.ok() && r.error().code == kErrStorage) return r.error();
      out.push_back(std::move(r));
    }
    return out;
  }
  // The last applied index; persisted atomically with the effect of that proposal.
  virtual LogIndex applied_index() const = 0;

  virtual Result<std::optional<TaskRecord>> get_task(const TaskId& task) const = 0;
  // Every task, ordered by creation (created_at, then task id).
  virtual Result<std::vector<TaskRecord>> list_tasks() const = 0;

  virtual Result<std::optional<KvRecord>> kv_get(const std::string& key) const = 0;
  // Every entry whose key starts with `prefix` ("" = all), ordered by key (bytewise).
  virtual Result<std::vector<KvRecord>> kv_list(const std::string& prefix) const = 0;
  virtual Result<uint64_t> kv_count() const = 0;

  // The revocation of `node` (64 lowercase hex), or nullopt when it is not revoked. Served
  // from memory (a copy of the revoked rows, refreshed when a RevokeCertificate or a restore
  // commits), so it never waits for an apply's disk sync: the supernode asks on every RPC.
  virtual Result<std::optional<Revocation>> revocation(const std::string& node) const = 0;
  // revocation(node).has_value().
  virtual Result<bool> is_revoked(const std::string& node) const = 0;
  virtual Result<std::optional<CertificateRecord>> get_certificate(
      const std::string& node) const = 0;
  // Every node with a recorded issuance or revocation, ordered by node id.
  virtual Result<std::vector<CertificateRecord>> list_certificates() const = 0;

  // The whole state (tasks, kv, certificates, recorded results, applied_index) as bytes for a Raft
  // snapshot (format: snapshot_codec.h), read in one transaction.
  virtual Result<std::string> snapshot() const = 0;
  // The same bytes, read on another thread while apply() goes on: the returned callable opens a
  // connection of its own, reads everything in one transaction (one moment, the applied index
  // it returns with the bytes) and does not refer to this object. Null if this state machine
  // cannot (the caller then uses snapshot()).
  struct IndexedSnapshot {
    LogIndex index;
    std::string data;
  };
  virtual std::function<Result<IndexedSnapshot>()> concurrent_snapshot() const { return nullptr; }
  // Replaces everything with `data` in one transaction and sets applied_index() = index.
  // `data` comes from the network: decoded strictly (kErrBadSnapshot on anything malformed,
  // including a snapshot whose own applied index is above `index`); on any error the state is
  // unchanged.
  virtual Status restore(LogIndex index, std::string_view data) = 0;
};

// SQLite at `path` (created if absent): WAL, synchronous=NORMAL (the Raft log is the durable
// record; see README.md "Durability"), one transaction per apply or apply_batch that also
// stores applied_index, prepared statements. The file belongs to this object alone (and to
// the read-only connections of its concurrent_snapshot()). A
// file written by the schema-1 tracker (before Raft) is refused with kErrStorage: there is no
// deployed data to migrate.
Result<std::unique_ptr<TrackerStateMachine>> open_sqlite_tracker(const std::string& path);

}  // namespace starling::tracker

// The supernode's RPC service (supernode/rpc_api.md) and its seeding workers.
//
// Owns: the swarm registry (soft state, this member's own), and one thread per origin fetch
// (a "seeding worker": fetch -> build metainfo -> seed -> MarkTaskReady). Borrows: the
// replicated log (writes go through it to the Raft leader), the tracker state machine it
// applies to (reads), and the torrent engine, which must outlive it.
//
// Cluster behaviour (issue 4): every member answers every method. Writes (task registration,
// kv) are committed through the ClusterLog; GetTask and KvGet are linearizable by default
// (a ReadIndex barrier; `"stale": true` skips it); Announce and its peer lists are served from
// this member's soft state even without a majority. The member that first receives a
// RegisterTask for a new (or failed) task is its seeder: it records itself in the task (its seed
// lease, epoch = the entry's index), fetches from the origin segment by segment, seeds each
// segment and publishes it (PublishSegment) as soon as it is complete, renews the lease every
// seed_lease_timeout / 3 and ends with MarkTaskReady (issue 4 item 4).
//
// Seed leases (issue 4 item 5): the leader watches every fetching task on its own monotonic
// clock (soft state; a new leader starts every timer at its election). A task whose lease was
// not renewed (RenewSeedLease or PublishSegment) for seed_lease_timeout is taken over by the
// leader itself (TakeOverSeed: the one member known to be alive and in the majority), which
// resumes the fetch after the published segments with a Range request (from zero, discarding,
// when the origin ignores Range) and gets the earlier segments from the swarm (the peers that
// announced them to this member), or from the origin by Range when the swarm makes no
// progress. A seeder whose renewal or publication is refused as stale stops and drops its
// seeds of the task. Request headers are not replicated (they may carry credentials): the
// new seeder uses those of a RegisterTask it received itself for the task, if any, and the
// URL as recorded (without filtered parameters) otherwise.
//
// Seeders of ready tasks: a ready task holds no lease renewals; the leader instead notes when
// each member's Raft traffic last reached it (SeederWatch). A ready task whose seeder it has
// not heard from for seed_lease_timeout (counted from its election at the earliest) is handed
// to the leader itself (ReseedTask), which obtains every published segment (from the swarm,
// else from the origin by Range, each checked against the published metainfo) and seeds it.
// The task stays ready throughout; if a segment cannot be obtained the task is marked failed
// with the reason, and the next RegisterTask restarts it.
//
// Certificates (issue 5 item 1): every leaf Enroll hands out is first committed as an
// IssueCertificate entry (so enrolment needs a majority: cluster.unavailable otherwise, which
// peers retry). "Revoke" commits a RevokeCertificate; from the moment a member applies it, that
// member refuses every RPC of the node (new sessions and open ones alike: the check runs per
// call, against the local replica's in-memory revocation list), refuses to enrol it again and
// leaves it out of peer lists. Its data-plane certificate stays valid until it expires (at most
// ServiceConfig::leaf_validity_seconds; its renewal is refused).
//
// Threading: handle() is called concurrently from the mesh server's session threads. The
// tracker and the ClusterLog serialise themselves; the swarm registry and the per-task origin
// byte counters are guarded by their own mutexes. Register/restart decisions are atomic
// through the state machine's transitions (a second CreateTask or RestartTask of a task is
// rejected), so concurrent registrations of one task start exactly one worker.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/result.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "mesh/session.h"
#include "peer/engine/torrent_engine.h"
#include "supernode/cluster_log.h"
#include "supernode/defaults.h"
#include "supernode/seeder_watch.h"
#include "supernode/swarm_registry.h"
#include "supernode/tracker/state_machine.h"

namespace starling::supernode {

inline constexpr char kErrKeyMismatch[] = "enroll.key_mismatch";
// Enroll for a node that was revoked: "node <id> was revoked: <reason>".
inline constexpr char kErrEnrollRevoked[] = "enroll.revoked";
// Every method but Enroll needs a certificate from the network CA for the session's key...
inline constexpr char kErrUnauthenticated[] = "rpc.unauthenticated";
// ...whose role permits the method (and, for Announce, whose node id is the one announced).
inline constexpr char kErrForbidden[] = "rpc.forbidden";
inline constexpr char kErrTaskUnknownRpc[] = "task.unknown";
// Task errors recorded by the supernode itself (shown by GetTask, cleared by RegisterTask).
inline constexpr char kErrInterrupted[] = "supernode.interrupted";
inline constexpr char kErrContentMissing[] = "supernode.content_missing";
inline constexpr char kErrSeed[] = "supernode.seed";

// Peers returned by one Announce, the supernode's own seed included.
inline constexpr size_t kMaxAnnouncePeers = 50;
// Announce "segments": at most this many indices, each below it (1 TiB in 1 MiB segments).
inline constexpr uint64_t kMaxAnnounceSegments = 1u << 20;
// Default validity of certificates issued by Enroll (ServiceConfig::leaf_validity_seconds).
inline constexpr int64_t kLeafValiditySeconds = 12 * 3600;

struct ServiceConfig {
  std::string data_dir;   // tasks/<task_id>/content lives here
  std::string listen_ip;  // advertised with the engine's SSL port as this node's seed endpoint
  crypto::Ed25519KeyPair node_key;
  crypto::Ed25519KeyPair ca_key;
  std::string ca_pem;
  int64_t leaf_validity_seconds = kLeafValiditySeconds;  // of the leaves Enroll issues
  int64_t segment_size = kDefaultSegmentSize;            // of the tasks this member creates
  // A fetching task whose seeder did not renew its lease for this long is taken over.
  std::chrono::milliseconds seed_lease_timeout = kDefaultSeedLeaseTimeout;
};

class SupernodeService {
 public:
  // `log`, `tracker` (the state machine `log` applies to) and `engine` must outlive the
  // service.
  SupernodeService(ServiceConfig config, ClusterLog& log, tracker::TrackerStateMachine& tracker,
                   peer::TorrentEngine& engine);
  ~SupernodeService();  // stop()
  SupernodeService(const SupernodeService&) = delete;
  SupernodeService& operator=(const SupernodeService&) = delete;

  // Called once at start, after the mesh listener is up (marking a task failed needs the
  // other members): in a worker thread, re-seeds every segment of this member's ready tasks
  // whose segment files are present, marks its ready tasks whose segments are gone as failed
  // (the next RegisterTask restarts them), and starts the leader's seed lease watch. A fetch
  // this member held when it stopped is not resumed here: its lease expires and the leader
  // (possibly this member) takes it over and resumes it after the published segments.
  void resume();

  // One RPC. Never throws; malformed params give rpc.bad_message.
  // Access: Enroll is open to any PSK holder (it is how a node gets its certificate) whose
  // node is not revoked (enroll.revoked). Every other method needs `from.payload` to be a
  // certificate that crypto::verify_leaf accepts against the network CA now, whose Ed25519 key
  // converts to `from.static_key`, and whose node is not revoked in this member's replica
  // (rpc.unauthenticated otherwise), and whose role permits the method (rpc.forbidden):
  // peer: RegisterTask, GetTask, Announce; admin: those, Status, Kv*, Revoke and
  // Certificates; supernode: all (including the member-to-member methods Raft, Propose,
  // ReadIndex).
  Result<nlohmann::json> handle(const mesh::RemotePeer& from, const std::string& method,
                                const nlohmann::json& params);

  // Aborts every origin fetch and joins every worker. Idempotent. After stop() no new worker
  // starts.
  void stop();

  const NodeId& node_id() const { return node_id_; }

 private:
  struct FetchJob {
    TaskId task;
    std::string url;  // as the caller gave it (may carry a signature the record does not)
    std::vector<std::string> headers;
    std::optional<std::string> sha256;  // expected lowercase hex
  };
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
    std::optional<TaskId> task;      // the seeding worker's task (none for resume)
    std::atomic<bool> abort{false};  // stop this worker (stop(), or its lease was lost)
  };

  Result<nlohmann::json> enroll(const mesh::RemotePeer& from, const nlohmann::json& params);
  Result<nlohmann::json> register_task(const nlohmann::json& params);
  Result<nlohmann::json> get_task(const nlohmann::json& params);
  Result<nlohmann::json> kv(const std::string& method, const nlohmann::json& params);
  // Unless params has "stale": true, waits for a linearizable read point.
  Status read_barrier(const nlohmann::json& params);
  void resume_tasks();
  Result<nlohmann::json> announce(const crypto::CertInfo& caller, const nlohmann::json& params);
  // The verified certificate of the caller, or kErrUnauthenticated (also when its node is
  // revoked).
  Result<crypto::CertInfo> authenticate(const mesh::RemotePeer& from) const;
  Result<nlohmann::json> status();
  Result<nlohmann::json> revoke(const crypto::CertInfo& caller, const nlohmann::json& params);
  Result<nlohmann::json> certificates(const nlohmann::json& params);
  // MemberAdd {"id", "address"} / MemberRemove {"id"} (admin): ClusterLog::add_member /
  // remove_member.
  Result<nlohmann::json> change_member(const crypto::CertInfo& caller, const std::string& method,
                                       const nlohmann::json& params);

  // What a worker does: fetch from the origin and publish (a fetching task), or obtain the
  // published segments of a ready task whose seeder went silent and seed them.
  enum class Work { kFetch, kReseed };
  // Starts the worker of `job` holding the lease `epoch`, unless one runs for that task on this
  // member already (false then).
  bool start_worker(FetchJob job, uint64_t epoch, Work work = Work::kFetch);
  void run_worker(const FetchJob& job, uint64_t epoch, Worker& self);
  void run_reseed(const FetchJob& job, uint64_t epoch, Worker& self);
  // The task's record if it is in `state` at lease `epoch`; else logs "not <work>" and nullopt.
  std::optional<tracker::TaskRecord> task_at(const TaskId& task, uint64_t epoch,
                                             tracker::TaskState state, const char* work) const;
  // Whether a worker of this member runs for `task` (or the service is stopping).
  bool busy_with(const TaskId& task);
  // Makes the published `segments` of the task present at their paths and seeded: those on
  // disk already as they are; the others one at a time, the last first, from the swarm, with
  // the pieces no peer has from the origin by Range (each checked by the engine against the
  // metainfo); a segment that does not complete that way from the origin whole, checked
  // against its metainfo.
  Status obtain_segments(const FetchJob& job, const std::vector<tracker::SegmentRecord>& segments,
                         int64_t segment_size, Worker& self);
  Status origin_segment(const FetchJob& job, const tracker::SegmentRecord& seg,
                        int64_t segment_size, Worker& self);
  // Downloads `seg` from the peers that announced it, the pieces none of them has from the
  // origin (fill_from_origin); true once complete and seeded. False (the download dropped)
  // when it cannot complete that way: the caller fetches the whole segment.
  Result<bool> swarm_segment(const FetchJob& job, const tracker::SegmentRecord& seg, Worker& self);
  // Fetches from the origin, by Range, the pieces the download `torrent` of `seg` still lacks
  // (with `nowhere_only`, those no connected peer has) and hands them to the engine, which
  // checks each against the metainfo; returns how many. -1 when that cannot be done piece by
  // piece (pieces not aligned in the content, an origin that ignores Range): the caller
  // fetches the whole segment instead.
  Result<int64_t> fill_from_origin(const FetchJob& job, const tracker::SegmentRecord& seg,
                                   const TaskId& torrent, bool nowhere_only, Worker& self);
  // Commits MarkTaskFailed fenced by `epoch`: of this member's fetch, or with seed_lost of its
  // seed of the ready task (tracker/command.h).
  void fail_task(const TaskId& task, const Error& error, uint64_t epoch, bool seed_lost);
  std::string segment_path(const TaskId& task, int64_t index) const;
  std::string task_dir(const TaskId& task) const;
  void add_origin_bytes(const TaskId& task, int64_t bytes);
  // The leader's seed lease watch (one thread, started by resume(), stopped by stop()): takes
  // over fetching tasks whose lease expired, and re-seeds ready tasks whose seeder went silent.
  void watch_leases();
  void reseed_silent_seeders();
  void remember_job(const FetchJob& job);
  FetchJob job_for(const tracker::TaskRecord& task) const;
  std::optional<int64_t> origin_bytes(const TaskId& task) const;

  const ServiceConfig config_;
  const NodeId node_id_;
  ClusterLog& log_;
  tracker::TrackerStateMachine& tracker_;
  peer::TorrentEngine& engine_;

  std::mutex swarm_mu_;
  SwarmRegistry swarm_;  // guarded by swarm_mu_

  // Certificates that passed crypto::verify_session_certificate, by payload + session key
  // (see authenticate()). Cleared when it reaches kMaxVerifiedCertificates.
  static constexpr size_t kMaxVerifiedCertificates = 4096;
  mutable std::mutex verified_mu_;
  mutable std::unordered_map<std::string, crypto::CertInfo> verified_;  // guarded by verified_mu_

  mutable std::mutex origin_mu_;
  std::unordered_map<TaskId, int64_t> origin_bytes_;  // guarded by origin_mu_

  // The caller's URL, headers and digest of tasks this member saw a RegisterTask for (a new
  // seeder after a takeover uses them). Cleared when it reaches kMaxRememberedJobs.
  static constexpr size_t kMaxRememberedJobs = 4096;
  mutable std::mutex jobs_mu_;
  std::unordered_map<TaskId, FetchJob> jobs_;  // guarded by jobs_mu_

  std::thread lease_watch_;  // started by resume(); joined by stop()

  // When each member's Raft traffic last reached this member (used while it leads).
  std::mutex seeders_mu_;
  SeederWatch seeders_;  // guarded by seeders_mu_

  std::atomic<bool> abort_{false};
  std::mutex workers_mu_;
  bool stopping_ = false;      // guarded by workers_mu_
  std::list<Worker> workers_;  // guarded by workers_mu_; list: stable addresses
};

}  // namespace starling::supernode

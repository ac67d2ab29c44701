// ClusterLog: the replicated tracker log as this supernode's service sees it (issue 3 item 3,
// issue 4 items 1-2). It owns the Raft driver (SQLite log under the data dir), the mesh
// transport to the other members and a pool of sessions for forwarding, and it applies
// committed entries to the TrackerStateMachine.
//
//  - propose(command): exactly once. The command goes into a tracker::Proposal with this
//    process's client id and the next sequence number; on the leader it is proposed
//    directly, on a follower it is forwarded to the leader ("Propose"). Leader changes,
//    lost entries and unreachable members are retried with the SAME (client id, seq) until
//    the deadline, so a retry never applies twice. When no majority answers in time:
//    kErrUnavailable ("no quorum ...").
//  - read_barrier(): linearizable reads (ReadIndex). On a follower it asks the leader for a
//    read index ("ReadIndex") and waits until it applied that far. A member cut off from the
//    majority answers kErrUnavailable; --stale readers skip the barrier.
//  - add_member() / remove_member(): runtime membership (single-server changes through the
//    leader, forwarded like proposals). The member's mesh address travels in the Raft
//    ConfChange's context and is kept in the Raft membership (raft::ConfState::addresses), so
//    every member, every restart and every snapshot knows it; the transport and the
//    forwarding sessions follow the applied membership (supernode/README.md "Membership").
//  - handle(): the member-to-member methods "Raft", "Propose", "ReadIndex" and
//    "ChangeMembership", called by SupernodeService for callers holding a supernode
//    certificate.
//
// A joining member (ClusterConfig::join) starts with no membership of its own: it never
// campaigns, answers the leader, and takes the membership (and the addresses) from the
// leader's snapshot once it has been added; until then it knows the others from `members`.
//
// Threads: every method may be called from any thread (the RPC session threads). The driver
// owns its strand; the tracker serialises itself.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "mesh/session.h"
#include "supernode/members.h"
#include "supernode/raft/types.h"
#include "supernode/tracker/command.h"
#include "supernode/tracker/state_machine.h"

namespace starling::supernode {

// A write or consistent read could not reach a majority of the supernodes in time.
inline constexpr char kErrUnavailable[] = "cluster.unavailable";

// A membership change the cluster refused: the id is a member already or was removed before
// (ids are never reused), or it is not a member (remove).
inline constexpr char kErrBadMemberChange[] = "cluster.bad_member_change";
// Another membership change (possibly the automatic promotion of a learner that caught up)
// is not applied yet; retry later.
inline constexpr char kErrMemberChangeInFlight[] = "cluster.member_change_in_flight";

struct ClusterConfig {
  raft::NodeId id;
  // Without `join`: the initial membership, this member included (used for a new Raft store;
  // an existing one keeps the membership it recorded). With `join`: members of the running
  // cluster to talk to until this one has been added and received the membership; `id` must
  // not be among them.
  std::vector<Member> members;
  bool join = false;
  std::string raft_path;  // SQLite file of the Raft log
  mesh::MeshConfig mesh;  // this supernode's identity, for sessions to other members
  std::chrono::milliseconds tick{100};
  int election_tick = 10;
  int heartbeat_tick = 1;
  uint64_t snapshot_entries = 100000;  // raft::DriverConfig::snapshot_entries
};

class ClusterLog {
 public:
  // Opens the Raft log (refusing a corrupt one: raft.corrupt_log) and starts the driver and
  // the transport. `tracker` must outlive the log.
  static Result<std::unique_ptr<ClusterLog>> start(ClusterConfig config,
                                                   tracker::TrackerStateMachine& tracker);
  ~ClusterLog();
  ClusterLog(const ClusterLog&) = delete;
  ClusterLog& operator=(const ClusterLog&) = delete;
  // Stops the driver and the transport; later calls fail with raft.stopped. Idempotent.
  void stop();

  // Commits and applies `command` (see the header comment). Returns the tracker's result JSON
  // text, or its deterministic rejection (e.g. tracker.task_exists, kv.cas_failed).
  Result<std::string> propose(const tracker::Command& command,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // After OK, the local tracker reflects every write acknowledged before the call.
  Status read_barrier(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Adds `member` as a learner (promoted to voter by the leader once it caught up), or
  // removes member `id` (a voter or learner; the leader removing itself steps down). Blocks
  // until the change is applied on the leader, retrying on leader changes until `timeout`.
  // Errors: kErrBadMemberChange, kErrMemberChangeInFlight, kErrUnavailable (no majority).
  Status add_member(const Member& member,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));
  Status remove_member(raft::NodeId id,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The members (voters and learners) as of the membership this member applied, with their
  // addresses.
  std::vector<Member> members() const;

  // The member-to-member methods; nullopt when `method` is not one of them.
  std::optional<Result<nlohmann::json>> handle(const std::string& method,
                                               const nlohmann::json& params);

  // {"id", "state", "lead", "term", "commit", "applied", "snapshot_index", "last_index",
  //  "members": [{"id", "address", "voter"}]}
  nlohmann::json status() const;

 private:
  struct Parts;
  explicit ClusterLog(std::unique_ptr<Parts> parts);
  Status change_membership(const raft::ConfChange& cc, std::chrono::milliseconds timeout);
  std::unique_ptr<Parts> parts_;
};

}  // namespace starling::supernode

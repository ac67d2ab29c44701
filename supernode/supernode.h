// A supernode process (ARCHITECTURE §1, §5): one member of a Raft cluster (a cluster of one
// when no members are given). Owns the tracker (SQLite under data_dir), the replicated log
// (Raft, SQLite under data_dir), the torrent engine that seeds fetched content, the RPC service
// and the mesh listener. No SQLite, libtorrent or Asio type appears here.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "supernode/defaults.h"
#include "supernode/members.h"

namespace starling::supernode {

struct SupernodeConfig {
  std::string network_dir;  // network.secret, ca.key, ca.pem (crypto::network_files)
  std::string data_dir;     // node.key, tracker.db, tasks/<task_id>/content
  std::string listen_ip = "127.0.0.1";
  uint16_t mesh_port = 8002;  // 0 = any free port
  uint16_t data_port = 0;     // libtorrent SSL port; 0 = any free port
  // Raft: this member's id and the initial members (this one included, at listen_ip:mesh_port).
  // Empty = a cluster of one with id 1.
  raft::NodeId id{1};
  std::vector<Member> members;
  // Join a running cluster (`--join`): `members` are (some of) its members, this one not
  // included; this supernode starts without a membership, never campaigns, and catches up
  // from the leader once an admin added it (`starling member add`). A restart with an
  // existing Raft store uses the membership it recorded either way.
  bool join = false;
  std::chrono::milliseconds raft_tick{100};
  // Followers start an election after a random [8, 16) ticks (0.8-1.6 s) without a leader;
  // the leader heartbeats every tick, so a heartbeat interval is 1/8 of the shortest timeout.
  int election_tick = 8;
  // Lifetime of the leaves this supernode issues (Enroll) and signs for itself; each holder
  // renews its leaf when two thirds of it have passed (crypto/renewal.h).
  std::chrono::seconds cert_lifetime{12 * 3600};
  // Segment size of the tasks this member creates (fixed per task; ARCHITECTURE §3), and how
  // long a fetching task's seed lease may go unrenewed before the leader takes it over.
  int64_t segment_size = kDefaultSegmentSize;
  std::chrono::milliseconds seed_lease_timeout = kDefaultSeedLeaseTimeout;
  // The Raft log is compacted into a snapshot of the tracker every this many entries.
  uint64_t snapshot_entries = 100000;
};

class Supernode {
 public:
  // Loads the network and node keys, issues itself a supernode certificate (cert_lifetime,
  // re-signed by a background thread at two thirds of it), opens the tracker and the Raft log
  // (refusing a corrupt log), joins the cluster, starts the engine and the mesh RPC listener,
  // then re-seeds its ready tasks in the background. Errors name the file or address that
  // failed.
  static Result<std::unique_ptr<Supernode>> start(const SupernodeConfig& config);
  // Stops the listener and every session, aborts origin fetches and joins every thread.
  ~Supernode();
  Supernode(const Supernode&) = delete;
  Supernode& operator=(const Supernode&) = delete;

  uint16_t mesh_port() const;
  uint16_t data_port() const;
  const NodeId& node_id() const;

 private:
  struct Parts;
  explicit Supernode(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace starling::supernode

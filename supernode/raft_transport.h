// MeshRaftTransport: carries Raft messages between supernodes over mesh sessions (issue 3
// item 3, ARCHITECTURE §5).
//
// One bounded queue and one sender thread per other member. A sender takes everything queued
// for its member (up to kMaxBatchBytes), encodes it with raft::encode_messages and delivers it
// as one "Raft" RPC on a mesh session made with this supernode's certificate; the answer only
// says the batch was handed to the receiving driver. Nothing here blocks the driver: send()
// queues and returns. A full queue drops the newest messages and an unreachable member loses
// what was queued for it; Raft retransmits, and the driver hears of it through
// report_unreachable (and report_snapshot for snapshots) so it falls back to probing.
//
// The set of members changes at runtime (set_members, from the membership the driver
// applied): a new member gets a link and a sender; a removed one's sender is retired (it ends
// by itself; stop() joins it), so nothing more is sent to it.
//
// Threads: send() and set_members() run on the driver's strand (set_members also from the
// constructor's caller); the senders are this object's own threads, joined by stop(). The
// receiving side is SupernodeService's "Raft" method.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "mesh/session.h"
#include "supernode/members.h"
#include "supernode/raft/driver.h"

namespace starling::supernode {

class MeshRaftTransport final : public raft::Transport {
 public:
  static constexpr size_t kMaxQueuedMessages = 8192;
  static constexpr size_t kMaxBatchBytes = 4 * 1024 * 1024;

  // `members` may include `self` (skipped). `mesh` carries this supernode's certificate; with a
  // payload_source, a renewed certificate makes every sender redial before its next batch.
  MeshRaftTransport(const std::vector<Member>& members, raft::NodeId self, mesh::MeshConfig mesh);
  ~MeshRaftTransport() override;  // stop()
  MeshRaftTransport(const MeshRaftTransport&) = delete;
  MeshRaftTransport& operator=(const MeshRaftTransport&) = delete;

  // Where delivery failures are reported. Set once, before the driver sends anything.
  void set_driver(raft::Driver* driver) { driver_ = driver; }
  void send(std::vector<raft::Message> batch) override;
  // Replaces the set of members (`self` skipped): links to new members (or to a member at a
  // new address) start, links to members no longer listed are retired. Never blocks on I/O.
  void set_members(const std::vector<Member>& members);
  // The members a link currently exists for (tests, status).
  std::vector<Member> members() const;
  // Joins every sender; queued messages are dropped. Idempotent.
  void stop();

 private:
  struct Link {
    Member member;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<raft::Message> queue;  // guarded by mu
    std::atomic<bool> retired{false};
    std::thread thread;
  };
  void run(Link& link);

  const raft::NodeId self_;
  mesh::MeshConfig mesh_;
  std::atomic<raft::Driver*> driver_{nullptr};
  std::atomic<bool> stopping_{false};
  mutable std::mutex links_mu_;
  std::vector<std::unique_ptr<Link>> links_;    // guarded by links_mu_
  std::vector<std::unique_ptr<Link>> retired_;  // guarded by links_mu_; joined by stop()
};

}  // namespace starling::supernode

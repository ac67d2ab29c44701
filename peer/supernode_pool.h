// The peer daemon's view of the supernode cluster (issue 4, item 6): one mesh RPC session per
// member, and the failover rules that keep a supernode failure invisible to the user while a
// majority of the cluster is alive.
//
// - call() asks the current member (the last one that answered); on a transport failure or a
//   "cluster cannot serve this now" answer (codes "raft.*" and "cluster.*": not leader, no
//   quorum, timeout) it moves to the next member, and after a round in which every member
//   failed that way it backs off and tries again, until a deadline. Every supernode method a
//   peer calls is idempotent (Enroll, RegisterTask, GetTask, Announce), so a request that may
//   or may not have reached a member before its session broke is safe to send again.
// - A refused handshake (mesh.handshake_refused: wrong network key) is final and comes back
//   unchanged; any other answer from a member (e.g. task.unknown, rpc.forbidden) is the
//   answer. A member that rejects the certificate exchange (mesh.peer_rejected) is skipped.
// - call_all() asks every member at once (Announce: the swarm registry is soft state kept by
//   each supernode) and merges the peer lists; it fails only when every member failed.
//
// Threading: every public method is thread-safe. Each member has its own mutex that
// serialises its session (connect and call), so a slow or unreachable member delays only
// the calls that are using it. A second mutex guards the shared state (mesh config, member
// health, current member); it is never held across network I/O, and it is taken after a
// member's mutex, never before.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "mesh/session.h"

namespace starling::mesh {
class RpcClient;
}

namespace starling::peer {

// Every member failed with a retryable error until the deadline; the message names each
// member tried and its last error.
inline constexpr char kErrNoSupernode[] = "peer.no_supernode";
inline constexpr char kErrPoolStopped[] = "peer.stopping";

// A supernode's mesh (control) address.
struct SupernodeEndpoint {
  std::string host;
  uint16_t port = 0;

  std::string str() const { return host + ":" + std::to_string(port); }
  bool operator==(const SupernodeEndpoint&) const = default;
};

// True for failures another member (or the same one a little later) may not have: mesh
// transport failures except a refused handshake, "raft.*" and "cluster.*" answers, and
// kErrNoSupernode. `starling peer` keeps waiting at startup while enrolment fails this way.
bool is_retryable(const Error& e);

// Merges Announce answers ({"peers": [{"node_id", ...}, ...]}, each ranked by its supernode):
// the first answer's order first, then peers only later answers know, each node id once.
// Entries without a string node_id are dropped. Fields other than "peers" come from the
// first answer.
nlohmann::json merge_peer_answers(const std::vector<nlohmann::json>& answers);

struct SupernodePoolOptions {
  std::chrono::milliseconds deadline{30000};        // call(): overall budget for retries
  std::chrono::milliseconds connect_timeout{3000};  // TCP connect, and the handshake
  std::chrono::milliseconds call_timeout{10000};
  // An attempt started close to the deadline still gets this much time (capped by the two
  // timeouts above), so call() returns at most about this long after its deadline.
  std::chrono::milliseconds min_attempt_timeout{2000};
  // call_all(): the most one member's attempt (connect, handshake and call) may take. An
  // Announce is answered from the member's soft state at once, so a member that takes longer
  // is hung (a stopped process, a black-holed link) or overloaded, and the merged answer does
  // without it rather than hold the caller for call_timeout.
  std::chrono::milliseconds call_all_timeout{2000};
  std::chrono::milliseconds first_backoff{100};  // between rounds of call(), doubling
  std::chrono::milliseconds max_backoff{1000};
  // A member whose connection failed is not dialled again for this long (doubling per
  // failure, up to 8×): calls fail on it at once meanwhile, call() tries it only after the
  // healthy members and call_all() skips it.
  std::chrono::milliseconds member_cooldown{500};
};

class SupernodePool {
 public:
  // REQUIRES: !members.empty(). Duplicate endpoints are dropped. `mesh` is the config every
  // session is dialled with (its payload is the node's certificate once enrolled).
  SupernodePool(std::vector<SupernodeEndpoint> members, mesh::MeshConfig mesh,
                SupernodePoolOptions options = {});
  ~SupernodePool();
  SupernodePool(const SupernodePool&) = delete;
  SupernodePool& operator=(const SupernodePool&) = delete;

  // One request, answered by some member (see the rules above), within options.deadline.
  Result<nlohmann::json> call(const std::string& method, const nlohmann::json& params);
  // The same with its own deadline; 0 means one round: each member at most once.
  Result<nlohmann::json> call(const std::string& method, const nlohmann::json& params,
                              std::chrono::milliseconds deadline);

  // The request to every member in parallel, one attempt each (at most call_all_timeout);
  // the successful answers merged by merge_peer_answers(). Fails only if every member failed:
  // with the first member's answer if some member answered with an error of its own, else
  // with kErrNoSupernode. Members cooling down after a connection failure are skipped unless
  // all are.
  Result<nlohmann::json> call_all(const std::string& method, const nlohmann::json& params);

  // Changes the handshake payload (the certificate after enrolment). Every session made with
  // the old payload is dropped before its next use, so later calls present the new one.
  void set_payload(std::string payload);

  // Makes every call in a retry loop, and every later call, return kErrPoolStopped. A call
  // blocked in the network finishes its attempt first (bounded by the timeouts).
  void stop();

  const std::vector<SupernodeEndpoint>& members() const { return endpoints_; }
  // The member call() tries first: the last one that answered.
  SupernodeEndpoint current() const;

 private:
  struct Member;
  struct Attempt;

  // One request to one member on its session (dialled if needed); records the member's health.
  Attempt attempt(size_t index, const std::string& method, const nlohmann::json& params,
                  std::chrono::milliseconds connect_timeout, std::chrono::milliseconds timeout);
  std::vector<size_t> round_order(bool skip_cooling);
  // kErrNoSupernode: `what`, then each member tried with its last failure (tried[i], by index).
  Error unavailable(const std::string& what, const std::vector<std::string>& tried) const;

  const std::vector<SupernodeEndpoint> endpoints_;
  const SupernodePoolOptions options_;
  std::vector<std::unique_ptr<Member>> members_;  // one per endpoint, same order

  mutable std::mutex mu_;       // guards everything below and every Member's health fields
  std::condition_variable cv_;  // wakes backoff sleeps on stop()
  mesh::MeshConfig mesh_;
  uint64_t generation_ = 0;  // bumped by set_payload(); sessions of older ones are dropped
  size_t current_ = 0;
  bool stopped_ = false;
};

}  // namespace starling::peer

// The peer daemon (`starling peer`, ARCHITECTURE §1 and §6): joins the mesh through the
// supernode cluster (enrolment with any member gives it a certificate), downloads content
// with the torrent engine, keeps seeding it, and serves the local API that `starling get`
// talks to. It talks to the supernodes through a SupernodePool (peer/supernode_pool.h):
// RegisterTask and GetTask go to one member and move to another when it fails, Announce
// goes to every member, so a supernode failure is not the user's while a majority is alive.
//
// Threads: the local API's connection threads, one worker thread per task (polling GetTask
// while the supernode fetches, adding each published segment torrent at once, announcing and
// connecting peers per segment, verifying the content end to end; peer/README.md),
// libtorrent's own threads inside the engine. Shared state (the task table) is guarded by one
// mutex; the SupernodePool is thread-safe itself.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "mesh/session.h"
#include "peer/supernode_pool.h"

namespace starling::peer {

inline constexpr char kErrTask[] = "task.failed";
inline constexpr char kErrUnknownTask[] = "task.unknown";

struct PeerConfig {
  std::string network_dir;                    // network.secret and ca.pem
  std::string data_dir;                       // node.key, tasks/<id>/seg-<i>
  std::vector<SupernodeEndpoint> supernodes;  // every member of the cluster (at least one)
  SupernodePoolOptions supernode_options;     // failover timing; the defaults suit production
  std::string listen_ip = "127.0.0.1";
  uint16_t data_port = 0;
  std::string socket_path;
  bool quiet = false;  // no log lines on stderr (a one-shot peer inside `starling get`)
};

class PeerDaemon {
 public:
  // Enrols with the first member that answers, trying each once. Fails with the mesh's error
  // when a handshake is refused (e.g. "handshake with H:P refused (wrong network key, or not
  // a Starling node)"), and with kErrNoSupernode, naming every member and why, when none
  // answered (is_retryable() then says whether waiting may help).
  static Result<std::unique_ptr<PeerDaemon>> start(const PeerConfig& config);
  virtual ~PeerDaemon() = default;  // stops workers, the API and the engine
};

}  // namespace starling::peer

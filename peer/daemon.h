// The peer daemon (`starling peer`, ARCHITECTURE §1 and §6): joins the mesh through a
// supernode (enrolment gives it a certificate), downloads content with the torrent engine,
// keeps seeding it, and serves the local API that `starling get` talks to.
//
// Threads: the local API's connection threads, one worker thread per task (registration,
// waiting for the supernode's seed, announcing and connecting peers, final verification),
// libtorrent's own threads inside the engine. Shared state (the task table) is guarded by one
// mutex; the supernode RPC client serialises its calls itself.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "mesh/session.h"

namespace starling::peer {

inline constexpr char kErrTask[] = "task.failed";
inline constexpr char kErrUnknownTask[] = "task.unknown";

struct PeerConfig {
  std::string network_dir;  // network.secret and ca.pem
  std::string data_dir;     // node.key, tasks/<id>/content
  std::string supernode_host;
  uint16_t supernode_port = 8002;
  std::string listen_ip = "127.0.0.1";
  uint16_t data_port = 0;
  std::string socket_path;
};

// A MeshConfig::verify_remote check for anyone dialing a supernode (the peer daemon, `starling
// status`): the remote must present a supernode certificate from the network CA for the key
// its session was made with.
std::function<Status(const mesh::RemotePeer&)> require_supernode(std::string ca_pem);

class PeerDaemon {
 public:
  // Fails (with the mesh's error, e.g. "handshake with H:P refused (wrong network key, or
  // not a Starling node)") when the supernode cannot be reached or refuses the node.
  static Result<std::unique_ptr<PeerDaemon>> start(const PeerConfig& config);
  virtual ~PeerDaemon() = default;  // stops workers, the API and the engine
};

}  // namespace starling::peer

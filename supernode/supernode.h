// A supernode process (ARCHITECTURE §1, §5): single member for now. Owns the tracker (SQLite
// under data_dir), the torrent engine that seeds fetched content, the RPC service and the mesh
// listener. No SQLite, libtorrent or Asio type appears here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/ids.h"
#include "common/result.h"

namespace starling::supernode {

struct SupernodeConfig {
  std::string network_dir;  // network.secret, ca.key, ca.pem (crypto::network_files)
  std::string data_dir;     // node.key, tracker.db, tasks/<task_id>/content
  std::string listen_ip = "127.0.0.1";
  uint16_t mesh_port = 8002;  // 0 = any free port
  uint16_t data_port = 0;     // libtorrent SSL port; 0 = any free port
};

class Supernode {
 public:
  // Loads the network and node keys, issues itself a supernode certificate (12 h), opens the
  // tracker, re-seeds ready tasks, starts the engine and the mesh RPC listener. Errors name
  // the file or address that failed.
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

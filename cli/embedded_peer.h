// `starling get` without a peer daemon (ARCHITECTURE: "with none running it starts an embedded
// one-shot peer in-process"): a PeerDaemon inside the get process, joined to the mesh through
// the supernodes the user named, that downloads and uploads like any peer while the get runs
// and is gone when it ends. Its state lives in directories of its own, removed when it stops:
// the data directory (node key, segment files) beside the output, so the segments are on the
// output's file system, and the local API socket in a private directory under $TMPDIR (a unix
// socket path must be short). Both are locked while the get runs; a later get removes them if
// this one was killed before it could (cli/leftovers.h).
#pragma once

#include <signal.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/leftovers.h"
#include "common/result.h"
#include "peer/daemon.h"

namespace starling::cli {

// The error of a start that a stop signal ended (the signal is in `stopped_by`).
inline constexpr char kErrStopped[] = "cli.stopped";

// Starts a peer daemon. While no supernode can answer yet (none is up, or the cluster has no
// leader yet) it tries again, backing off from 250 ms to 4 s, for up to `patience`, and tells
// `on_wait` why each time; a refused handshake (a wrong network key) fails at once. A signal
// of `stop` while waiting ends it with kErrStopped and sets `stopped_by`.
Result<std::unique_ptr<peer::PeerDaemon>> start_peer_waiting(
    const peer::PeerConfig& config, std::chrono::milliseconds patience, const sigset_t& stop,
    const std::function<void(const std::string&)>& on_wait, int& stopped_by);

struct EmbeddedPeerConfig {
  std::string network_dir;           // network.secret and ca.pem
  std::vector<HostPort> supernodes;  // every member the user named
  std::string listen_ip;             // empty: the local address that reaches the first supernode
  std::string output;                // the get's output; the data directory goes beside it
  std::chrono::milliseconds patience{10000};  // start_peer_waiting's
};

class EmbeddedPeer {
 public:
  static Result<std::unique_ptr<EmbeddedPeer>> start(
      const EmbeddedPeerConfig& config, const sigset_t& stop,
      const std::function<void(const std::string&)>& on_wait, int& stopped_by);
  ~EmbeddedPeer();  // stops the daemon, then removes both directories
  EmbeddedPeer(const EmbeddedPeer&) = delete;
  EmbeddedPeer& operator=(const EmbeddedPeer&) = delete;

  const std::string& socket() const { return socket_; }

 private:
  EmbeddedPeer() = default;

  std::string data_dir_;
  std::string socket_dir_;
  std::string socket_;
  std::vector<OwnerLock> locks_;  // on both directories: this get still runs (cli/leftovers.h)
  std::unique_ptr<peer::PeerDaemon> daemon_;
};

}  // namespace starling::cli

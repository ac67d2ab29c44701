#include "cli/embedded_peer.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "cli/leftovers.h"
#include "cli/local_net.h"
#include "cli/stop_signals.h"

namespace starling::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline constexpr char kErrEmbedded[] = "get.peer";

// mkdtemp(prefix + "XXXXXX"): a new directory of mode 0700.
Result<std::string> make_private_dir(const std::string& prefix) {
  std::string pattern = prefix + "XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return make_error(kErrEmbedded,
                      "cannot create " + pattern + " for a one-shot peer: " + std::strerror(errno));
  }
  return pattern;
}

}  // namespace

Result<std::unique_ptr<peer::PeerDaemon>> start_peer_waiting(
    const peer::PeerConfig& config, std::chrono::milliseconds patience, const sigset_t& stop,
    const std::function<void(const std::string&)>& on_wait, int& stopped_by) {
  auto daemon = peer::PeerDaemon::start(config);
  const auto give_up = std::chrono::steady_clock::now() + patience;
  auto backoff = 250ms;
  while (!daemon && peer::is_retryable(daemon.error()) &&
         std::chrono::steady_clock::now() < give_up) {
    on_wait(daemon.error().message);
    if (const int sig = stop_signal_within(stop, backoff.count()); sig != 0) {
      stopped_by = sig;
      return make_error(kErrStopped, std::string("stopped by ") + ::strsignal(sig));
    }
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 4s);
    daemon = peer::PeerDaemon::start(config);
  }
  return daemon;
}

Result<std::unique_ptr<EmbeddedPeer>> EmbeddedPeer::start(
    const EmbeddedPeerConfig& config, const sigset_t& stop,
    const std::function<void(const std::string&)>& on_wait, int& stopped_by) {
  if (config.supernodes.empty()) return make_error(kErrEmbedded, "no supernode given");
  peer::PeerConfig peer;
  peer.network_dir = config.network_dir;
  for (const auto& s : config.supernodes) peer.supernodes.push_back({s.host, s.port});
  peer.listen_ip = config.listen_ip;
  if (peer.listen_ip.empty()) {
    auto ip = local_address_towards(config.supernodes.front().host, config.supernodes.front().port);
    if (!ip) return ip.error();
    peer.listen_ip = *ip;
  }
  peer.data_port = 0;
  peer.quiet = true;  // `get` reports for it; "peer: ..." lines would only confuse

  std::unique_ptr<EmbeddedPeer> self(new EmbeddedPeer());
  const fs::path output = fs::absolute(config.output);
  auto data = make_private_dir(
      (output.parent_path() / ("." + output.filename().string() + ".starling-peer-")).string());
  if (!data) return data.error();
  self->data_dir_ = *data;
  if (auto lock = OwnerLock::take(self->data_dir_)) self->locks_.push_back(std::move(*lock));
  auto sockets = make_private_dir(temp_root() + "/starling-get-");
  if (!sockets) return sockets.error();
  self->socket_dir_ = *sockets;
  if (auto lock = OwnerLock::take(self->socket_dir_)) self->locks_.push_back(std::move(*lock));
  self->socket_ = self->socket_dir_ + "/peer.sock";
  peer.data_dir = self->data_dir_;
  peer.socket_path = self->socket_;

  auto daemon = start_peer_waiting(peer, config.patience, stop, on_wait, stopped_by);
  if (!daemon) return daemon.error();  // `self` removes both directories
  self->daemon_ = std::move(daemon).value();
  return self;
}

EmbeddedPeer::~EmbeddedPeer() {
  daemon_.reset();
  std::error_code ignored;
  if (!data_dir_.empty()) fs::remove_all(data_dir_, ignored);
  if (!socket_dir_.empty()) fs::remove_all(socket_dir_, ignored);
}

}  // namespace starling::cli

// Encrypted, mutually authenticated control links over TCP (ARCHITECTURE §2).
//
// A MeshSession is a TCP connection that has completed a Noise handshake
// (Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b, or Noise_IKpsk2_... when the dialer knows the
// listener's static key; the PSK derives from the network secret) and then carries messages of
// up to kMaxMessageSize bytes, split into AEAD records of at most 64 KiB whose keys are
// replaced as they wear out (see mesh/record_codec.h). There is no plaintext path. Listeners
// check a PSK-keyed MAC before any Diffie-Hellman, rate-limit handshakes per source address
// and demand a cookie round trip under load (see mesh/admission.h). Blocking I/O: one thread
// uses a session at a time for sending and one for receiving (send and recv may run
// concurrently on two threads).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace starling::mesh {

inline constexpr char kErrConnect[] = "mesh.connect";  // TCP connect failed, or reset / busy
inline constexpr char kErrHandshake[] = "mesh.handshake_refused";  // wrong key / not a node
inline constexpr char kErrPeerRejected[] = "mesh.peer_rejected";   // verify callback said no
inline constexpr char kErrClosed[] = "mesh.closed";                // orderly close by the peer
inline constexpr char kErrProtocol[] = "mesh.protocol";            // tamper, replay, truncation
inline constexpr char kErrTimeout[] = "mesh.timeout";

inline constexpr size_t kMaxMessageSize = 16 * 1024 * 1024;

struct RemotePeer {
  std::array<uint8_t, 32> static_key{};  // the peer's X25519 Noise static key
  std::string payload;                   // its handshake payload (a certificate PEM, or empty)
  std::string address;                   // "ip:port"
};

// A handshake payload that is replaced while sessions are being made with it: a node's
// certificate, renewed before it expires (issue 5 item 1). Every copy of a MeshConfig that
// points to one source presents its current value at each new handshake; sessions already
// made keep the payload they were made with (an RpcClient notices, see mesh/rpc.h).
// Thread-safe: set() and get() may race from any threads.
class PayloadSource {
 public:
  struct Snapshot {
    std::string payload;
    uint64_t generation = 0;  // 0 for the initial payload, +1 per set()
  };
  explicit PayloadSource(std::string payload = {}) : payload_(std::move(payload)) {}
  void set(std::string payload) {
    std::lock_guard lock(mu_);
    payload_ = std::move(payload);
    ++generation_;
  }
  Snapshot get() const {
    std::lock_guard lock(mu_);
    return {payload_, generation_};
  }
  uint64_t generation() const {
    std::lock_guard lock(mu_);
    return generation_;
  }

 private:
  mutable std::mutex mu_;
  std::string payload_;      // guarded by mu_
  uint64_t generation_ = 0;  // guarded by mu_
};

struct MeshConfig {
  std::array<uint8_t, 32> psk{};            // crypto::noise_psk(network secret)
  std::array<uint8_t, 32> static_secret{};  // X25519 secret of this node
  std::array<uint8_t, 32> static_public{};
  std::string payload;  // sent encrypted in the handshake: this node's certificate PEM
  // When set, replaces `payload`: its current value is read at each handshake (renewal).
  std::shared_ptr<PayloadSource> payload_source;
  // Decides whether the authenticated remote may proceed (e.g. its certificate must chain to
  // the network CA and match its static key). Empty = accept any holder of the PSK.
  std::function<Status(const RemotePeer&)> verify_remote;
  std::chrono::milliseconds handshake_timeout{5000};

  // Pins the listener's identity: dial() then runs Noise_IKpsk2 and fails unless the listener
  // proves it holds this static key. Empty: Noise_XXpsk3. Listeners accept both.
  std::optional<std::array<uint8_t, 32>> remote_static;
  // Record layer: each side replaces the key it sends with after this many records, this many
  // plaintext bytes, or this much time, whichever comes first.
  uint64_t rekey_after_records = uint64_t{1} << 20;
  uint64_t rekey_after_bytes = uint64_t{1} << 30;
  std::chrono::milliseconds rekey_after_time{120000};
  // Listener admission control. Connections beyond max_half_open handshakes in progress, or
  // beyond the per-source-IP token bucket (IPv6: per /64), are reset before anything is read.
  // Above cookie_threshold handshakes in progress, a first message without a valid cookie MAC
  // gets a cookie reply instead of the handshake (dial() retries with it on its own).
  size_t max_half_open = 64;
  size_t cookie_threshold = 16;
  double handshake_rate_per_ip = 20;  // per second; <= 0 disables the limit
  double handshake_burst_per_ip = 40;
};

class MeshSession {
 public:
  virtual ~MeshSession() = default;
  // Sends one message (<= kMaxMessageSize).
  virtual Status send(std::string_view message) = 0;
  // Receives one message; kErrClosed after the peer's orderly close; kErrProtocol on any
  // tampered, replayed, reordered, truncated or oversize record (the session is then closed).
  virtual Result<std::string> recv(std::chrono::milliseconds timeout) = 0;
  // Sends a close record and shuts the socket down. Idempotent; unblocks a pending recv.
  virtual void close() = 0;
  virtual const RemotePeer& remote() const = 0;
};

// Connects to host:port and runs the handshake as initiator. With a wrong PSK the responder
// drops the connection: reported as kErrHandshake, "handshake with H:P refused (wrong network
// key, or not a Starling node)"; with config.remote_static set and a listener that does not
// hold that key, kErrHandshake too ("... refused (wrong network key, the node does not hold the
// expected static key, or not a Starling node)"). A listener that resets the connection
// before answering (rate limit, too many handshakes) or keeps refusing our cookie is
// kErrConnect: a transport failure worth retrying later.
Result<std::unique_ptr<MeshSession>> dial(const std::string& host, uint16_t port,
                                          const MeshConfig& config,
                                          std::chrono::milliseconds connect_timeout);

// A listening socket that hands out sessions whose handshake has completed.
class MeshListener {
 public:
  virtual ~MeshListener() = default;
  // Blocks until a handshake completes, or returns an error after close(). Failed
  // handshakes are logged to stderr with the remote address and the reason, and skipped.
  virtual Result<std::unique_ptr<MeshSession>> accept() = 0;
  virtual uint16_t port() const = 0;  // the bound port (useful with port 0)
  virtual void close() = 0;
};

// The payload a handshake made now presents: payload_source's current value, or payload.
inline std::string current_payload(const MeshConfig& config) {
  return config.payload_source ? config.payload_source->get().payload : config.payload;
}

Result<std::unique_ptr<MeshListener>> listen(const std::string& host, uint16_t port,
                                             const MeshConfig& config);

}  // namespace starling::mesh

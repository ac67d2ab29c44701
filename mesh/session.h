// Encrypted, mutually authenticated control links over TCP (ARCHITECTURE §2).
//
// A MeshSession is a TCP connection that has completed a Noise handshake
// (Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b; the PSK derives from the network secret) and then
// carries messages of up to kMaxMessageSize bytes, split into AEAD records of at most 64 KiB.
// There is no plaintext path. Blocking I/O: one thread uses a session at a time for sending
// and one for receiving (send and recv may run concurrently on two threads).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace starling::mesh {

inline constexpr char kErrConnect[] = "mesh.connect";              // TCP connect failed
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

struct MeshConfig {
  std::array<uint8_t, 32> psk{};            // crypto::noise_psk(network secret)
  std::array<uint8_t, 32> static_secret{};  // X25519 secret of this node
  std::array<uint8_t, 32> static_public{};
  std::string payload;  // sent encrypted in the handshake: this node's certificate PEM
  // Decides whether the authenticated remote may proceed (e.g. its certificate must chain to
  // the network CA and match its static key). Empty = accept any holder of the PSK.
  std::function<Status(const RemotePeer&)> verify_remote;
  std::chrono::milliseconds handshake_timeout{5000};
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
// key, or not a Starling node)".
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

Result<std::unique_ptr<MeshListener>> listen(const std::string& host, uint16_t port,
                                             const MeshConfig& config);

}  // namespace starling::mesh

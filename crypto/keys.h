// Node and network keys (ARCHITECTURE §2). libsodium underneath; no OpenSSL here.
// Threading: every function is safe to call from any thread (no shared mutable state).
//
// Files written here hold secrets: they are created 0600, written to a temp file in the same
// directory, fsynced and renamed, so a crash never leaves a half-written key.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/hex.h"
#include "common/ids.h"
#include "common/result.h"

namespace starling::crypto {

inline constexpr char kErrKeyFile[] = "crypto.key_file";      // a key/secret file: I/O or format
inline constexpr char kErrKeyFormat[] = "crypto.key_format";  // a PEM key that does not parse
inline constexpr char kErrKeyAgreement[] = "crypto.key_agreement";  // X25519 with a low-order point

using PublicKey = std::array<uint8_t, 32>;  // Ed25519 public key
using X25519Key = std::array<uint8_t, 32>;

// Must be called once before any other function here (idempotent; aborts if libsodium fails).
void init();

struct Ed25519KeyPair {
  PublicKey public_key{};
  std::array<uint8_t, 64> secret_key{};  // libsodium layout: seed || public key
};

Ed25519KeyPair generate_ed25519();
// The Noise static key pair of a node is its Ed25519 key converted to X25519.
X25519Key x25519_public_from_ed25519(const PublicKey& pk);  // aborts on an invalid point
X25519Key x25519_secret_from_ed25519(const Ed25519KeyPair& kp);
// X25519 Diffie-Hellman. `their_public` is untrusted: a low-order point (all-zero shared
// secret) is refused with kErrKeyAgreement instead of returning a predictable key.
Result<X25519Key> x25519(const X25519Key& our_secret, const X25519Key& their_public);

// NodeId = lowercase hex of the Ed25519 public key.
NodeId node_id_of(const PublicKey& pk);

// PEM forms that OpenSSL (and libtorrent's SSL context) read: PKCS#8 private, SPKI public.
std::string ed25519_private_key_pem(const Ed25519KeyPair& kp);
Result<Ed25519KeyPair> ed25519_from_private_key_pem(const std::string& pem);

// Writes `contents` to `path` with mode 0600 atomically (temp + fsync + rename).
Status write_secret_file(const std::string& path, const std::string& contents);
// Writes a non-secret file (0644) atomically.
Status write_public_file(const std::string& path, const std::string& contents);
// Reads a whole file. For secret files, refuses one readable by group or others.
Result<std::string> read_file(const std::string& path, bool secret);

// The node's identity key, a PEM file at `path`: loaded if present, created 0600 if not.
Result<Ed25519KeyPair> load_or_create_node_key(const std::string& path);

// The 32-byte network secret (stored as 64 hex characters and a newline).
struct NetworkSecret {
  std::array<uint8_t, 32> bytes{};
};
NetworkSecret generate_network_secret();
Status save_network_secret(const std::string& path, const NetworkSecret& secret);
Result<NetworkSecret> load_network_secret(const std::string& path);
// The Noise PSK: keyed BLAKE2b-256 of the secret under the label "starling/noise-psk/v1"
// (crypto_generichash with key = the label, message = the 32 secret bytes).
std::array<uint8_t, 32> noise_psk(const NetworkSecret& secret);

}  // namespace starling::crypto

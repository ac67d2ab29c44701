// The network CA and node certificates (ARCHITECTURE §2): X.509 with Ed25519 keys, leaves
// signed directly by the network CA (libtorrent accepts no intermediates). OpenSSL inside;
// no OpenSSL types in this header.
#pragma once

#include <cstdint>
#include <string>

#include "common/ids.h"
#include "common/result.h"
#include "crypto/keys.h"

namespace starling::crypto {

inline constexpr char kErrCertificate[] = "crypto.certificate";

enum class Role { kSupernode, kPeer, kAdmin };
const char* role_name(Role role);  // "supernode", "peer", "admin"

// A self-signed CA certificate for a new network, valid from `now` for `validity_seconds`.
// Subject CN = "Starling network <name>".
Result<std::string> make_network_ca(const Ed25519KeyPair& ca_key, const std::string& name,
                                    int64_t now, int64_t validity_seconds);

// A leaf for `subject`: CN = node id (hex of the Ed25519 key), OU = role name, SAN DNS "*"
// (libtorrent matches the SAN against the torrent name or "*"), not a CA, signed by the CA.
Result<std::string> issue_leaf(const Ed25519KeyPair& ca_key, const std::string& ca_cert_pem,
                               const PublicKey& subject, Role role, int64_t now,
                               int64_t validity_seconds);

struct CertInfo {
  NodeId node;
  Role role = Role::kPeer;
  PublicKey public_key{};
  int64_t not_before = 0;
  int64_t not_after = 0;
};

// Parses `leaf_pem` (untrusted bytes; never crashes) and checks it: signed by the CA in
// `ca_cert_pem`, valid at `now`, Ed25519 key, CN equal to the key's node id, a known role.
// Error messages name the failed check ("certificate not issued by the network CA").
Result<CertInfo> verify_leaf(const std::string& ca_cert_pem, const std::string& leaf_pem,
                             int64_t now);

// The certificate a node presented in a mesh handshake: verify_leaf, and the certificate's
// Ed25519 key, converted to X25519, must be the Noise static key the session was made with
// ("the certificate is not for the key this session was made with"). Never crashes on any
// bytes.
Result<CertInfo> verify_session_certificate(const std::string& ca_cert_pem,
                                            const std::string& leaf_pem,
                                            const X25519Key& session_static_key, int64_t now);

// What `starling mesh init DIR` creates: network.secret (0600), ca.key (0600), ca.pem.
struct NetworkFiles {
  std::string secret_path;
  std::string ca_key_path;
  std::string ca_cert_path;
};
NetworkFiles network_files(const std::string& dir);
// Creates DIR (0700) and the three files; refuses to overwrite an existing network.
Result<NetworkFiles> init_network(const std::string& dir, const std::string& name, int64_t now);

}  // namespace starling::crypto

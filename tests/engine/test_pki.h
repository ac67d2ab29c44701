// Test certificates for engine tests, issued by crypto/x509.h exactly as a network does: an
// Ed25519 network CA and leaves it signs directly (SAN DNS "*").
#pragma once

#include <ctime>
#include <stdexcept>
#include <string>

#include "crypto/keys.h"
#include "crypto/x509.h"

namespace starling::peer::testing {

struct TestCa {
  crypto::Ed25519KeyPair key;
  std::string cert_pem;
};

struct TestLeaf {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8 PEM
};

inline int64_t now_seconds() { return static_cast<int64_t>(std::time(nullptr)); }

inline TestCa make_ca(const std::string& name) {
  crypto::init();
  TestCa ca{crypto::generate_ed25519(), {}};
  auto pem = crypto::make_network_ca(ca.key, name, now_seconds() - 60, 3600);
  if (!pem.ok()) throw std::runtime_error("make_network_ca: " + pem.error().message);
  ca.cert_pem = *pem;
  return ca;
}

inline TestLeaf make_leaf(const TestCa& ca) {
  const crypto::Ed25519KeyPair kp = crypto::generate_ed25519();
  auto pem = crypto::issue_leaf(ca.key, ca.cert_pem, kp.public_key, crypto::Role::kPeer,
                                now_seconds() - 60, 3600);
  if (!pem.ok()) throw std::runtime_error("issue_leaf: " + pem.error().message);
  return TestLeaf{*pem, crypto::ed25519_private_key_pem(kp)};
}

}  // namespace starling::peer::testing

// Untrusted certificate and key bytes: verify_leaf and the PEM key parser must never crash,
// hang or leak, and must never accept anything the fixed network CA did not sign.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "crypto/keys.h"
#include "crypto/x509.h"

namespace {

constexpr int64_t kNow = 1'700'000'000;

struct Fixture {
  starling::crypto::Ed25519KeyPair ca_key;
  std::string ca_pem;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    starling::crypto::init();
    Fixture out;
    out.ca_key = starling::crypto::generate_ed25519();
    auto ca = starling::crypto::make_network_ca(out.ca_key, "fuzz", kNow - 3600, 3600 * 24);
    if (!ca) std::abort();
    out.ca_pem = *ca;
    return out;
  }();
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Fixture& f = fixture();
  std::string bytes(reinterpret_cast<const char*>(data), size);

  auto info = starling::crypto::verify_leaf(f.ca_pem, bytes, kNow);
  if (info) {
    // Nobody here issued a leaf and the CA key never leaves this process: accepting
    // anything means a forged signature or a check skipped. (The CA itself is a CA.)
    std::abort();
  }
  if (info.error().message.empty()) std::abort();

  auto kp = starling::crypto::ed25519_from_private_key_pem(bytes);
  if (kp) {
    // A key we accept must survive our own encoding unchanged.
    auto again = starling::crypto::ed25519_from_private_key_pem(
        starling::crypto::ed25519_private_key_pem(*kp));
    if (!again || again->public_key != kp->public_key) std::abort();
  }
  return 0;
}

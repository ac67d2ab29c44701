// --cert-lifetime values (crypto::parse_cert_lifetime): never crashes, and whatever it accepts
// is within the documented bounds and prints back to the same number of seconds.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "crypto/renewal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto lifetime = starling::crypto::parse_cert_lifetime(text);
  if (!lifetime) {
    if (lifetime.error().message.empty()) std::abort();
    return 0;
  }
  if (*lifetime < starling::crypto::kMinCertLifetime ||
      *lifetime > starling::crypto::kMaxCertLifetime) {
    std::abort();
  }
  auto again = starling::crypto::parse_cert_lifetime(std::to_string(lifetime->count()) + "s");
  if (!again || *again != *lifetime) std::abort();
  // The schedule of a leaf with that lifetime stays inside it.
  const int64_t start = 1'700'000'000;
  const int64_t at = starling::crypto::renew_at(start, start + lifetime->count());
  if (at < start || at >= start + lifetime->count()) std::abort();
  return 0;
}

// Request targets a container runtime (or anyone on the mirror's port) sends `starling
// mirror` (mirror/route.h): never crash; a routed request has a valid repository name and, for
// a blob, a lowercase sha256 digest, and nothing routed contains a dot segment or a '%'.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mirror/route.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace starling::mirror;
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  const RoutedRequest r = route(target);
  if (r.route == Route::kNotFound || r.route == Route::kBase) {
    if (!r.name.empty() || !r.reference.empty()) std::abort();
    return 0;
  }
  if (!valid_repository_name(r.name)) std::abort();
  if (r.name.find("..") != std::string::npos || target.find('%') != std::string_view::npos) {
    std::abort();
  }
  if (r.route == Route::kBlob &&
      (r.reference.size() != 71 || !r.reference.starts_with("sha256:") ||
       r.reference.find_first_not_of("0123456789abcdef", 7) != std::string::npos)) {
    std::abort();
  }
  if (r.route == Route::kManifest && r.reference.empty()) std::abort();
  return 0;
}

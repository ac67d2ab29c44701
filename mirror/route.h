// Which registry API v2 request a mirror request is (the pure core of `starling mirror`):
// blob GETs become peer-to-peer tasks keyed by their digest; manifests, tags and the base
// endpoint go to the upstream registry. Pure: no I/O.
#pragma once

#include <string>
#include <string_view>

namespace starling::mirror {

enum class Route {
  kBase,      // GET /v2/ (the API version check, and where clients learn about auth)
  kBlob,      // /v2/NAME/blobs/sha256:HEX
  kManifest,  // /v2/NAME/manifests/REFERENCE (a tag or a digest)
  kTags,      // /v2/NAME/tags/list[?n=N&last=TAG]
  kNotFound,  // anything else: not served (a mirror is read-only)
};

struct RoutedRequest {
  Route route = Route::kNotFound;
  std::string name;       // repository name, e.g. "library/debian"
  std::string reference;  // blob: "sha256:<64 lowercase hex>"; manifest: the tag or digest
};

// The route of a request target (path and query). Repository names follow the distribution
// spec's grammar (lowercase components of [a-z0-9] joined by '.', '_', '__' or '-', separated
// by '/', at most 255 characters); tags are [A-Za-z0-9_][A-Za-z0-9._-]{0,127}; blob digests
// only sha256 (hex in any case, normalised to lowercase). A query is allowed only on tags/list.
// Anything else, including percent-encoding and dot segments, is kNotFound.
RoutedRequest route(std::string_view target);

bool valid_repository_name(std::string_view name);

}  // namespace starling::mirror

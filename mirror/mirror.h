// `starling mirror`: a read-only registry API v2 mirror for docker, containerd and podman in
// front of one upstream registry. Blob GETs become peer-to-peer tasks of the local peer daemon
// keyed by their digest (so each layer leaves the registry once for the whole swarm), and are
// streamed to the client segment by segment as they complete; manifests, tags and the base
// endpoint are proxied to the upstream with the client's Accept and Authorization headers.
// Boost and libcurl stay in mirror.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

namespace starling::mirror {

inline constexpr char kErrMirror[] = "mirror.start";

struct MirrorConfig {
  std::string upstream;  // "http://HOST:PORT" or "https://HOST", no path
  std::string host = "127.0.0.1";
  uint16_t port = 65001;  // 0 = any free port
  std::string socket;     // the peer daemon's local API socket
};

class Mirror {
 public:
  // Checks the upstream URL's form (not that it answers) and listens.
  static Result<std::unique_ptr<Mirror>> start(const MirrorConfig& config);
  virtual ~Mirror() = default;  // stops accepting, closes connections, joins
  virtual uint16_t port() const = 0;
};

}  // namespace starling::mirror

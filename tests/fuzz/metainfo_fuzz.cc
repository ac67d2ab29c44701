// check_metainfo on arbitrary bytes: a torrent arrives from the swarm registry and from peers,
// so the parser must never crash, hang or leak on any input.
#include <cstddef>
#include <cstdint>
#include <string>

#include "peer/engine/torrent_engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto r = starling::peer::check_metainfo(bytes);
  if (r.ok() && *r <= 0) __builtin_trap();  // an accepted torrent always describes bytes
  return 0;
}

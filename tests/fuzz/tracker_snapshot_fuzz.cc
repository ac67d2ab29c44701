// Fuzzes the tracker snapshot decoder (supernode/tracker/snapshot_codec.h): the state a Raft
// leader sends a follower that fell behind. Any bytes must decode or fail with
// kErrBadSnapshot, never crash or allocate from an untrusted count; the format is canonical,
// so whatever decodes must re-encode to exactly the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "supernode/tracker/snapshot_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace starling::tracker;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = decode_snapshot(bytes);
  if (!decoded.ok()) {
    if (decoded.error().code != kErrBadSnapshot) std::abort();
    return 0;
  }
  if (encode_snapshot(*decoded) != bytes) std::abort();
  return 0;
}

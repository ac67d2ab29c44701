// Fuzzes the Raft wire codec (supernode/raft/codec.h), which parses batches of Raft messages
// from other supernodes: any bytes must decode to a batch or kErrBadMessage, never crash or
// allocate what a forged length claims; the encoding is canonical, so whatever decodes must
// re-encode to exactly the input bytes. Entry data is also fed to decode_conf_change.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "supernode/raft/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = starling::raft::decode_messages(bytes);
  if (!decoded.ok()) {
    if (decoded.error().code != starling::raft::kErrBadMessage) std::abort();
    return 0;
  }
  if (starling::raft::encode_messages(*decoded) != bytes) std::abort();
  // Entry data reaches decode_conf_change (the driver applies committed membership changes,
  // whose context is a member's address): total, and canonical too.
  for (const auto& m : *decoded) {
    for (const auto& e : m.entries) {
      if (auto cc = starling::raft::decode_conf_change(e.data)) {
        if (starling::raft::encode_conf_change(*cc) != e.data) std::abort();
      }
    }
  }
  return 0;
}

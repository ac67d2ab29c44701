// Fuzzes the tracker proposal decoder (supernode/tracker/command.h): the bytes of every
// committed Raft entry. Any bytes must decode to a Proposal or an error, never crash; whatever
// decodes must pass validate_proposal and re-encode and decode to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "supernode/tracker/command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace starling::tracker;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = decode_proposal(bytes);
  if (!decoded.ok()) {
    if (decoded.error().code != kErrBadCommand) std::abort();
    return 0;
  }
  if (!validate_proposal(*decoded).ok()) std::abort();
  auto again = decode_proposal(encode_proposal(*decoded));
  // Strings with invalid UTF-8 cannot come out of the JSON parser, so the round trip is exact.
  if (!again.ok() || !(*again == *decoded)) std::abort();
  return 0;
}

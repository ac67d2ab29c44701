// Fuzzes the tracker command decoder (supernode/tracker/command.h): any bytes must decode to
// a Command or an error, never crash; whatever decodes must re-encode and decode to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "supernode/tracker/command.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto decoded = starling::tracker::decode_command(bytes);
  if (!decoded.ok()) return 0;
  auto again = starling::tracker::decode_command(starling::tracker::encode_command(*decoded));
  // Strings with invalid UTF-8 cannot come out of the JSON parser, so the round trip is exact.
  if (!again.ok() || !(*again == *decoded)) std::abort();
  return 0;
}

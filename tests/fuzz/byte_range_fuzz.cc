// The origin's Range header parser on arbitrary bytes: never crashes, and a partial range it
// returns always lies inside the file.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "origin/http_origin.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  uint64_t file_size = 0;
  std::memcpy(&file_size, data, 8);
  file_size %= (uint64_t{1} << 40);
  const std::string_view header(reinterpret_cast<const char*>(data + 8), size - 8);
  const auto r = starling::origin::parse_byte_range(header, file_size);
  if (r.kind == starling::origin::ByteRange::Kind::kPartial &&
      (r.first > r.last || r.last >= file_size)) {
    std::abort();
  }
  return 0;
}

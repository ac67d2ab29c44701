// parse_get_task on arbitrary JSON text: the GetTask answer comes from a supernode over the
// network, so the parser must never crash, hang or throw on any input, and what it accepts
// must keep the segment rules the daemon relies on.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "peer/segments.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto r = starling::peer::parse_get_task(j);
  if (!r.ok()) return 0;
  int64_t next = 0;
  for (const auto& s : r->segments) {
    if (s.size <= 0 || s.size > r->segment_size || s.offset != s.index * r->segment_size) {
      __builtin_trap();
    }
    if (r->state == "ready" && s.index != next) __builtin_trap();
    ++next;
  }
  if (r->state == "ready" && !starling::peer::all_segments_known(*r)) __builtin_trap();
  if (r->seed &&
      (r->seed->port == 0 || r->seed->ip.empty() || r->seed->ip.find('\0') != std::string::npos)) {
    __builtin_trap();
  }
  return 0;
}

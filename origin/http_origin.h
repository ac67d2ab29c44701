// A small static-file HTTP/1.1 origin for the demo and the tests (`starling origin`): GET and
// HEAD with single-range Range support, and a request counter, so a test can assert that the
// origin served a file exactly once. Not a production web server.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace starling::origin {

struct OriginConfig {
  std::string root_dir;  // files are served from here; no path escapes it
  std::string host = "127.0.0.1";
  uint16_t port = 0;          // 0 = any free port
  bool range_support = true;  // false: ignore Range and always send 200 with the whole file
};

struct OriginStats {
  int64_t requests = 0;    // GET/HEAD requests for files (not /_stats)
  int64_t bytes_sent = 0;  // body bytes sent
};

// How a Range header value applies to a file of `size` bytes (RFC 9110 §14, one range only).
struct ByteRange {
  enum class Kind {
    kWhole,          // no usable Range (absent, malformed, several ranges): send 200 and all
    kPartial,        // send 206 with bytes [first, last]
    kUnsatisfiable,  // send 416 with "Content-Range: bytes */size"
  };
  Kind kind = Kind::kWhole;
  uint64_t first = 0;  // inclusive; meaningful for kPartial
  uint64_t last = 0;   // inclusive; meaningful for kPartial
};

// Parses "bytes=a-b", "bytes=a-" and "bytes=-n". Never fails on any input: anything it does
// not understand is kWhole, as RFC 9110 allows a server to ignore Range.
ByteRange parse_byte_range(std::string_view header_value, uint64_t size);

// GET /_stats answers {"requests": N, "bytes_sent": N} as JSON.
class HttpOrigin {
 public:
  static Result<std::unique_ptr<HttpOrigin>> start(const OriginConfig& config);
  virtual ~HttpOrigin() = default;  // stops and joins
  virtual uint16_t port() const = 0;
  virtual OriginStats stats() const = 0;
};

}  // namespace starling::origin

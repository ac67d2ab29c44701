// RPC message parsers on arbitrary bytes. Whatever parses must re-encode and parse again to
// the same value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mesh/rpc.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace starling::mesh;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto req = parse_request(in); req.ok()) {
    auto again = parse_request(encode_request(*req));
    if (!again.ok() || again->id != req->id || again->method != req->method ||
        again->params != req->params) {
      __builtin_trap();
    }
  }
  if (auto resp = parse_response(in); resp.ok()) {
    auto again = parse_response(encode_response(*resp));
    if (!again.ok() || again->id != resp->id || again->result.ok() != resp->result.ok()) {
      __builtin_trap();
    }
  }
  return 0;
}

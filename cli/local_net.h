// Small loopback helpers shared by `starling demo` and the integration tests, which both start
// several Starling processes on 127.0.0.x and wait for them.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace starling::cli {

// A TCP port that is free on `ip` right now (bind to port 0, read it, release it).
Result<uint16_t> free_port(const std::string& ip);
// True when something accepts TCP connections at ip:port.
bool tcp_ready(const std::string& ip, uint16_t port);
// The body of a plain HTTP GET (5 s limit), e.g. the origin's /_stats.
Result<std::string> http_get(const std::string& url);

}  // namespace starling::cli

// Small network helpers: loopback ones shared by `starling demo` and the integration tests,
// which both start several Starling processes on 127.0.0.x and wait for them, and the address
// choice of `get`'s one-shot peer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace starling::cli {

// The local address this host would send from to reach host:port (a connected UDP socket's
// own address; nothing is sent), numeric. Errors name the host and the reason.
Result<std::string> local_address_towards(const std::string& host, uint16_t port);
// A TCP port that is free on `ip` right now (bind to port 0, read it, release it).
Result<uint16_t> free_port(const std::string& ip);
// True when something accepts TCP connections at ip:port.
bool tcp_ready(const std::string& ip, uint16_t port);
// Starts `program ARGS...` with stdin from /dev/null and stdout and stderr appended to `log`.
// With `own_process_group` the child leads a new process group, so a terminal's Ctrl-C reaches
// only the caller, which then stops its children in its own order.
Result<pid_t> spawn_logged(const std::string& program, const std::vector<std::string>& args,
                           const std::string& log, bool own_process_group);

// The body of a plain HTTP GET (5 s limit), e.g. the origin's /_stats.
Result<std::string> http_get(const std::string& url);

}  // namespace starling::cli

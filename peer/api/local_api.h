// The peer daemon's local API transport: HTTP/1.1 over a unix socket (ARCHITECTURE §6), so
// `curl --unix-socket PATH http://localhost/v1/...` works. JSON bodies. Routing and meaning
// live in the daemon; this is only the transport (server with Beast, client with libcurl).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/result.h"

namespace starling::peer {

inline constexpr char kErrLocalApi[] = "local_api.unavailable";
// Nothing listens at the socket path (no file, or a stale socket): no daemon is running.
inline constexpr char kErrNoDaemon[] = "local_api.no_daemon";

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// Called on a connection thread, one call per request; must be thread-safe.
using LocalApiHandler = std::function<HttpReply(
    const std::string& method, const std::string& target, const std::string& body)>;

class LocalApiServer {
 public:
  // Removes a stale socket file (one nobody listens on), binds, sets mode 0600, serves each
  // connection on its own thread (keep-alive supported). Malformed HTTP gets a 400 and a close.
  static Result<std::unique_ptr<LocalApiServer>> start(const std::string& socket_path,
                                                       LocalApiHandler handler);
  virtual ~LocalApiServer() = default;  // stops, joins threads, removes the socket file
};

// One request to the daemon. kErrNoDaemon when nothing listens at socket_path: "no peer
// daemon at PATH (start one with `starling peer`)"; kErrLocalApi for any other transport
// failure.
Result<HttpReply> local_api_call(const std::string& socket_path, const std::string& method,
                                 const std::string& target, const std::string& body,
                                 std::chrono::milliseconds timeout);

}  // namespace starling::peer

// Request/response RPC over mesh sessions. Messages are JSON objects:
//   request  {"id": <uint>, "method": "<name>", "params": {...}}
//   response {"id": <uint>, "result": {...}}  or  {"id": <uint>, "error": {"code", "message"}}
// Parsing never throws on untrusted bytes (see parse_request / parse_response).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "mesh/session.h"

namespace starling::mesh {

inline constexpr char kErrBadMessage[] = "rpc.bad_message";
inline constexpr char kErrUnknownMethod[] = "rpc.unknown_method";

struct RpcRequest {
  uint64_t id = 0;
  std::string method;
  nlohmann::json params;  // always an object
};
struct RpcResponse {
  uint64_t id = 0;
  Result<nlohmann::json> result = nlohmann::json::object();
};

Result<RpcRequest> parse_request(std::string_view bytes);
Result<RpcResponse> parse_response(std::string_view bytes);
std::string encode_request(const RpcRequest& r);
std::string encode_response(const RpcResponse& r);

// Called on the session's thread for each request; the return value is the response.
using RpcHandler = std::function<Result<nlohmann::json>(
    const RemotePeer& from, const std::string& method, const nlohmann::json& params)>;

// Accepts sessions from a listener and serves each on its own thread until stop().
class RpcServer {
 public:
  virtual ~RpcServer() = default;
  virtual uint16_t port() const = 0;
  virtual void stop() = 0;  // closes the listener and every session, joins all threads
};
std::unique_ptr<RpcServer> serve(std::unique_ptr<MeshListener> listener, RpcHandler handler);

// One session to one server; calls are serialised (thread-safe).
//
// A client dialled with a MeshConfig::payload_source remembers which payload (certificate) its
// session presented. Once the source has been set() to a newer one, the session is retired:
// call() closes it without sending anything and returns kErrClosed ("session with H:P was made
// with a replaced certificate; dial again"), a transport error on which every caller redials.
// A server re-checks the caller's certificate on every request, so a session kept with an old
// certificate would start failing when that certificate expires.
class RpcClient {
 public:
  static Result<std::unique_ptr<RpcClient>> connect(const std::string& host, uint16_t port,
                                                    const MeshConfig& config,
                                                    std::chrono::milliseconds timeout);
  explicit RpcClient(std::unique_ptr<MeshSession> session);
  // Errors from the server come back as the server's Error; transport failures as mesh errors.
  Result<nlohmann::json> call(const std::string& method, const nlohmann::json& params,
                              std::chrono::milliseconds timeout);
  const RemotePeer& remote() const;
  // True once the payload source it was dialled with has moved on (see above).
  bool outdated() const;

 private:
  std::mutex mu_;
  std::unique_ptr<MeshSession> session_;
  uint64_t next_id_ = 1;
  std::shared_ptr<PayloadSource> source_;  // set by connect(); may be null
  uint64_t generation_ = 0;                // of source_ when the session was made
};

}  // namespace starling::mesh

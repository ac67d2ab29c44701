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

 private:
  std::mutex mu_;
  std::unique_ptr<MeshSession> session_;
  uint64_t next_id_ = 1;
};

}  // namespace starling::mesh

#include "mesh/rpc.h"

#include <exception>
#include <list>
#include <thread>

namespace starling::mesh {
namespace {

using json = nlohmann::json;
constexpr size_t kMaxMethodLength = 256;

Error bad(std::string message) { return make_error(kErrBadMessage, std::move(message)); }

json parse_json(std::string_view bytes) {
  return json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
}

// Never throws: invalid UTF-8 from a handler is replaced rather than raising.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Result<uint64_t> parse_id(const json& j) {
  auto it = j.find("id");
  if (it == j.end()) return bad("missing \"id\"");
  if (!it->is_number_unsigned()) return bad("\"id\" must be an unsigned integer");
  return it->get<uint64_t>();
}

}  // namespace

Result<RpcRequest> parse_request(std::string_view bytes) {
  json j = parse_json(bytes);
  if (j.is_discarded()) return bad("request is not valid JSON");
  if (!j.is_object()) return bad("request is not a JSON object");
  for (const auto& item : j.items()) {
    if (item.key() != "id" && item.key() != "method" && item.key() != "params") {
      return bad("request has unknown field \"" + item.key() + "\"");
    }
  }
  RpcRequest r;
  auto id = parse_id(j);
  if (!id) return id.error();
  r.id = *id;
  auto m = j.find("method");
  if (m == j.end() || !m->is_string()) return bad("request needs a string \"method\"");
  r.method = m->get<std::string>();
  if (r.method.empty() || r.method.size() > kMaxMethodLength) {
    return bad("request \"method\" must be 1 to 256 characters");
  }
  auto p = j.find("params");
  if (p == j.end()) {
    r.params = json::object();
  } else if (p->is_object()) {
    r.params = std::move(*p);
  } else {
    return bad("request \"params\" must be an object");
  }
  return r;
}

Result<RpcResponse> parse_response(std::string_view bytes) {
  json j = parse_json(bytes);
  if (j.is_discarded()) return bad("response is not valid JSON");
  if (!j.is_object()) return bad("response is not a JSON object");
  for (const auto& item : j.items()) {
    if (item.key() != "id" && item.key() != "result" && item.key() != "error") {
      return bad("response has unknown field \"" + item.key() + "\"");
    }
  }
  RpcResponse r;
  auto id = parse_id(j);
  if (!id) return id.error();
  r.id = *id;
  auto res = j.find("result");
  auto err = j.find("error");
  if ((res == j.end()) == (err == j.end())) {
    return bad("response needs exactly one of \"result\" and \"error\"");
  }
  if (res != j.end()) {
    r.result = std::move(*res);
    return r;
  }
  if (!err->is_object() || err->size() != 2) {
    return bad("response \"error\" must be {\"code\", \"message\"}");
  }
  auto code = err->find("code");
  auto message = err->find("message");
  if (code == err->end() || !code->is_string() || message == err->end() || !message->is_string()) {
    return bad("response \"error\" needs string \"code\" and \"message\"");
  }
  if (code->get_ref<const std::string&>().empty()) return bad("response error code is empty");
  r.result = make_error(code->get<std::string>(), message->get<std::string>());
  return r;
}

std::string encode_request(const RpcRequest& r) {
  json j = json::object();
  j["id"] = r.id;
  j["method"] = r.method;
  j["params"] = r.params.is_object() ? r.params : json::object();
  return dump(j);
}

std::string encode_response(const RpcResponse& r) {
  json j = json::object();
  j["id"] = r.id;
  if (r.result.ok()) {
    j["result"] = *r.result;
  } else {
    j["error"] = {{"code", r.result.error().code}, {"message", r.result.error().message}};
  }
  return dump(j);
}

// ---- server ----

namespace {

class RpcServerImpl final : public RpcServer {
 public:
  RpcServerImpl(std::unique_ptr<MeshListener> listener, RpcHandler handler)
      : listener_(std::move(listener)), handler_(std::move(handler)), port_(listener_->port()) {
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~RpcServerImpl() override { stop(); }

  uint16_t port() const override { return port_; }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    listener_->close();  // unblocks accept()
    if (acceptor_.joinable()) acceptor_.join();
    std::list<Connection> conns;
    {
      std::lock_guard lock(mu_);
      conns.swap(conns_);
    }
    for (auto& c : conns) c.session->close();  // unblocks recv()
    for (auto& c : conns) c.thread.join();
  }

 private:
  struct Connection {
    std::shared_ptr<MeshSession> session;
    std::thread thread;
    bool done = false;  // guarded by mu_
  };

  void accept_loop() {
    for (;;) {
      auto s = listener_->accept();
      if (!s) return;  // closed
      std::lock_guard lock(mu_);
      for (auto it = conns_.begin(); it != conns_.end();) {
        if (it->done) {
          it->thread.join();
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
      if (stopped_) return;
      conns_.emplace_back();
      auto it = std::prev(conns_.end());
      it->session = std::shared_ptr<MeshSession>(std::move(*s));
      it->thread = std::thread([this, it, session = it->session] {
        serve_session(*session);
        std::lock_guard l(mu_);
        it->done = true;
      });
    }
  }

  void serve_session(MeshSession& session) {
    for (;;) {
      auto msg = session.recv(std::chrono::hours(1));
      if (!msg) {
        if (msg.error().code == kErrTimeout) continue;
        return;  // closed or broken: the session is done
      }
      RpcResponse response;
      auto req = parse_request(*msg);
      if (!req) {
        // Echo the id when the message has a usable one, so the caller is not left waiting.
        json j = parse_json(*msg);
        if (j.is_object()) {
          auto id = parse_id(j);
          if (id) response.id = *id;
        }
        response.result = req.error();
      } else {
        response.id = req->id;
        response.result = invoke(session.remote(), *req);
      }
      if (!session.send(encode_response(response))) return;
    }
  }

  Result<json> invoke(const RemotePeer& from, const RpcRequest& req) {
    if (!handler_) return make_error(kErrUnknownMethod, "unknown method \"" + req.method + "\"");
    try {
      return handler_(from, req.method, req.params);
    } catch (const std::exception& e) {  // a handler bug must not take the server down
      return make_error("rpc.internal", req.method + ": " + e.what());
    }
  }

  std::unique_ptr<MeshListener> listener_;
  RpcHandler handler_;
  const uint16_t port_;
  std::thread acceptor_;
  std::mutex mu_;
  std::list<Connection> conns_;  // guarded by mu_
  bool stopped_ = false;         // guarded by mu_
};

}  // namespace

std::unique_ptr<RpcServer> serve(std::unique_ptr<MeshListener> listener, RpcHandler handler) {
  return std::make_unique<RpcServerImpl>(std::move(listener), std::move(handler));
}

// ---- client ----

Result<std::unique_ptr<RpcClient>> RpcClient::connect(const std::string& host, uint16_t port,
                                                      const MeshConfig& config,
                                                      std::chrono::milliseconds timeout) {
  if (!config.payload_source) {
    auto s = dial(host, port, config, timeout);
    if (!s) return s.error();
    return std::make_unique<RpcClient>(std::move(*s));
  }
  // Dial with one snapshot of the source, so the generation remembered is the payload sent.
  const PayloadSource::Snapshot snapshot = config.payload_source->get();
  MeshConfig fixed = config;
  fixed.payload = snapshot.payload;
  fixed.payload_source = nullptr;
  auto s = dial(host, port, fixed, timeout);
  if (!s) return s.error();
  auto client = std::make_unique<RpcClient>(std::move(*s));
  client->source_ = config.payload_source;
  client->generation_ = snapshot.generation;
  return client;
}

bool RpcClient::outdated() const { return source_ && source_->generation() != generation_; }

RpcClient::RpcClient(std::unique_ptr<MeshSession> session) : session_(std::move(session)) {}

const RemotePeer& RpcClient::remote() const { return session_->remote(); }

Result<nlohmann::json> RpcClient::call(const std::string& method, const nlohmann::json& params,
                                       std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  if (outdated()) {
    session_->close();
    return make_error(kErrClosed, "session with " + session_->remote().address +
                                      " was made with a replaced certificate; dial again");
  }
  RpcRequest req;
  req.id = next_id_++;
  req.method = method;
  req.params = params;
  auto st = session_->send(encode_request(req));
  if (!st) return st.error();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) left = std::chrono::milliseconds(0);
    auto msg = session_->recv(left);
    if (!msg) return msg.error();
    auto resp = parse_response(*msg);
    if (!resp) return resp.error();
    if (resp->id != req.id) continue;  // a late answer to an earlier call that timed out
    return std::move(resp->result);
  }
}

}  // namespace starling::mesh

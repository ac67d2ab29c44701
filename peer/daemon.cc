#include "peer/daemon.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "common/task_id.h"
#include "crypto/base64.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/mesh_auth.h"
#include "crypto/x509.h"
#include "peer/api/local_api.h"
#include "peer/engine/torrent_engine.h"

namespace starling::peer {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kAnnounceWhileDownloading = 1s;
constexpr auto kAnnounceWhileSeeding = 5s;
// A member may not know a task yet right after another one answered its RegisterTask: its
// state machine applies the registration a little later. Until then task.unknown means "not
// yet", not "no such task".
constexpr auto kUnknownTaskGrace = 10s;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json error_json(const Error& e) { return {{"code", e.code}, {"message", e.message}}; }

// What the local API reports for a task. States: registering → fetching (the supernode is
// fetching from the origin) → downloading → verifying → done, or failed.
struct Task {
  TaskId id;
  std::string url;
  std::optional<Digest> digest;
  std::vector<std::string> headers;
  std::string tag;
  std::vector<std::string> filter;

  std::chrono::steady_clock::time_point registered_at;
  std::string state = "registering";
  std::optional<Error> error;
  std::string sha256;  // of the whole content, as published by the supernode
  std::string path;    // the cached content, once done
  int64_t total_bytes = 0;
  TorrentProgress progress;
};

json task_json(const Task& t) {
  json j = {{"task_id", t.id.get()},
            {"url", t.url},
            {"state", t.state},
            {"total_bytes", t.total_bytes},
            {"done_bytes", t.progress.done_bytes},
            {"downloaded_bytes", t.progress.downloaded_bytes},
            {"uploaded_bytes", t.progress.uploaded_bytes},
            {"peers", t.progress.num_peers}};
  if (!t.sha256.empty()) j["sha256"] = t.sha256;
  if (!t.path.empty()) j["path"] = t.path;
  if (t.error) j["error"] = error_json(*t.error);
  return j;
}

HttpReply reply(int status, const json& body) {
  return HttpReply{status, "application/json", body.dump()};
}

HttpReply error_reply(int status, const Error& e) {
  return reply(status, {{"error", error_json(e)}});
}

class Daemon final : public PeerDaemon {
 public:
  explicit Daemon(PeerConfig config) : config_(std::move(config)) {}

  ~Daemon() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (pool_) pool_->stop();  // calls waiting for a supernode give up
    api_.reset();              // no new tasks
    std::vector<std::thread> workers;
    {
      std::lock_guard lock(mu_);
      workers.swap(workers_);
    }
    for (auto& w : workers) w.join();
    engine_.reset();
  }

  Status init() {
    crypto::init();
    const auto files = crypto::network_files(config_.network_dir);
    auto secret = crypto::load_network_secret(files.secret_path);
    if (!secret) return secret.error();
    auto ca = crypto::read_file(files.ca_cert_path, false);
    if (!ca) return ca.error();
    ca_pem_ = *ca;
    std::error_code ec;
    fs::create_directories(config_.data_dir, ec);
    if (ec) {
      return make_error(kErrTask,
                        "cannot create data directory " + config_.data_dir + ": " + ec.message());
    }
    auto key = crypto::load_or_create_node_key(config_.data_dir + "/node.key");
    if (!key) return key.error();
    key_ = *key;
    node_id_ = crypto::node_id_of(key_.public_key);

    if (config_.supernodes.empty()) return make_error(kErrTask, "no supernode configured");
    mesh::MeshConfig mesh;
    mesh.psk = crypto::noise_psk(*secret);
    mesh.static_secret = crypto::x25519_secret_from_ed25519(key_);
    mesh.static_public = crypto::x25519_public_from_ed25519(key_.public_key);
    // Each supernode must prove it is one: a supernode certificate from the network CA whose
    // key is the one it did the handshake with.
    mesh.verify_remote = crypto::require_role(ca_pem_, crypto::Role::kSupernode);
    pool_ = std::make_unique<SupernodePool>(config_.supernodes, std::move(mesh),
                                            config_.supernode_options);

    // Enrolment: prove we hold the network key (the handshake) and get a certificate, from
    // whichever member answers. One round over the members: `starling peer` decides whether
    // to wait and try again (is_retryable).
    auto enrolled = pool_->call("Enroll", {{"public_key", node_id_.get()}, {"role", "peer"}},
                                std::chrono::milliseconds(0));
    if (!enrolled) return enrolled.error();
    if (!enrolled->contains("cert_pem") || !(*enrolled)["cert_pem"].is_string()) {
      return make_error(kErrTask, "supernode sent no certificate");
    }
    cert_pem_ = (*enrolled)["cert_pem"].get<std::string>();
    if (auto info = crypto::verify_leaf(ca_pem_, cert_pem_, unix_now()); !info) {
      return make_error(kErrTask,
                        "certificate from the supernode is invalid: " + info.error().message);
    }
    // Every later call (RegisterTask, GetTask, Announce) needs the certificate as this
    // node's handshake payload: the pool redials every member with it.
    pool_->set_payload(cert_pem_);

    EngineConfig engine_config;
    engine_config.listen_ip = config_.listen_ip;
    engine_config.ssl_port = config_.data_port;
    engine_config.cert_pem = cert_pem_;
    engine_config.key_pem = crypto::ed25519_private_key_pem(key_);
    auto engine = TorrentEngine::start(engine_config);
    if (!engine) return engine.error();
    engine_ = std::move(*engine);

    auto api = LocalApiServer::start(
        config_.socket_path,
        [this](const std::string& method, const std::string& target, const std::string& body) {
          return handle(method, target, body);
        });
    if (!api) return api.error();
    api_ = std::move(*api);
    std::cerr << "peer: node " << node_id_.get().substr(0, 16) << " enrolled with supernode "
              << pool_->current().str() << " (cluster " << supernode_list() << "); data "
              << config_.listen_ip << ":" << engine_->ssl_port() << "; api " << config_.socket_path
              << "\n";
    return {};
  }

 private:
  // "A:P,B:P,C:P": every member, as configured.
  std::string supernode_list() const {
    std::string list;
    for (const auto& m : pool_->members()) list += (list.empty() ? "" : ",") + m.str();
    return list;
  }

  HttpReply handle(const std::string& method, const std::string& target, const std::string& body) {
    if (method == "POST" && target == "/v1/tasks") return create_task(body);
    if (method == "GET" && target == "/v1/tasks") {
      std::lock_guard lock(mu_);
      json list = json::array();
      for (const auto& [id, t] : tasks_) list.push_back(task_json(*t));
      return reply(200, {{"tasks", list}});
    }
    if (method == "GET" && target.starts_with("/v1/tasks/")) {
      const std::string id = target.substr(10);
      std::lock_guard lock(mu_);
      auto it = tasks_.find(id);
      if (it == tasks_.end()) {
        return error_reply(404, make_error(kErrUnknownTask, "no task " + id));
      }
      return reply(200, task_json(*it->second));
    }
    if (method == "GET" && target == "/v1/status") {
      std::lock_guard lock(mu_);
      json members = json::array();
      for (const auto& m : pool_->members()) members.push_back(m.str());
      return reply(200, {{"node_id", node_id_.get()},
                         {"supernode", pool_->current().str()},  // the member in use
                         {"supernodes", members},
                         {"data_port", engine_->ssl_port()},
                         {"tasks", tasks_.size()}});
    }
    return error_reply(404,
                       make_error("local_api.not_found", method + " " + target + " not found"));
  }

  HttpReply create_task(const std::string& body) {
    const json req = json::parse(body, nullptr, false);
    if (req.is_discarded() || !req.is_object() || !req.contains("url") || !req["url"].is_string()) {
      return error_reply(400, make_error("local_api.bad_request", "body must be {\"url\": ...}"));
    }
    auto task = std::make_shared<Task>();
    task->url = req["url"].get<std::string>();
    json params = {{"url", task->url}};
    try {
      if (req.contains("digest")) {
        auto d = parse_digest(req["digest"].get<std::string>());
        if (!d) return error_reply(400, d.error());
        task->digest = *d;
        params["digest"] = d->str();
      }
      if (req.contains("headers")) task->headers = req["headers"].get<std::vector<std::string>>();
      if (req.contains("tag")) task->tag = req["tag"].get<std::string>();
      if (req.contains("filter")) task->filter = req["filter"].get<std::vector<std::string>>();
    } catch (const json::exception&) {
      return error_reply(400, make_error("local_api.bad_request", "malformed task fields"));
    }
    params["headers"] = task->headers;
    params["tag"] = task->tag;
    params["filter"] = task->filter;
    if (auto ok = validate_url(task->url); !ok) return error_reply(400, ok.error());

    auto registered = pool_->call("RegisterTask", params);
    if (!registered) return error_reply(502, registered.error());
    if (!registered->contains("task_id") || !(*registered)["task_id"].is_string()) {
      return error_reply(502, make_error(kErrTask, "supernode answered without a task id"));
    }
    task->id = TaskId((*registered)["task_id"].get<std::string>());
    task->registered_at = std::chrono::steady_clock::now();

    std::lock_guard lock(mu_);
    if (stopping_) return error_reply(503, make_error(kErrTask, "daemon is stopping"));
    auto it = tasks_.find(task->id.get());
    if (it != tasks_.end() && it->second->state != "failed") {
      return reply(200, {{"task_id", task->id.get()}});  // already running or done: share it
    }
    tasks_[task->id.get()] = task;
    workers_.emplace_back([this, task] { run_task(task); });
    return reply(200, {{"task_id", task->id.get()}});
  }

  // Sleeps for `d` unless the daemon stops first; returns false when stopping.
  bool wait(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stopping_; });
  }

  void fail(const std::shared_ptr<Task>& task, Error e) {
    if (e.code == kErrPoolStopped) return;  // the daemon is stopping, not the task failing
    std::cerr << "peer: task " << task->id.get().substr(0, 16) << " failed: " << e.message << "\n";
    std::lock_guard lock(mu_);
    task->state = "failed";
    task->error = std::move(e);
  }

  void run_task(const std::shared_ptr<Task>& task) {
    const std::string id = task->id.get();
    // 1. Wait until the supernode has fetched, hashed and is seeding the content.
    json info;
    while (true) {
      auto got = pool_->call("GetTask", {{"task_id", id}});
      if (!got && got.error().code == kErrUnknownTask &&
          std::chrono::steady_clock::now() - task->registered_at < kUnknownTaskGrace) {
        if (!wait(200ms)) return;  // the member that answered is behind: ask again
        continue;
      }
      if (!got) return fail(task, got.error());
      info = *got;
      const std::string state = info.value("state", "");
      if (state == "ready") break;
      if (state == "failed") {
        const json e = info.value("error", json::object());
        return fail(task,
                    make_error(e.value("code", kErrTask),
                               e.value("message", "the supernode could not fetch " + task->url)));
      }
      {
        std::lock_guard lock(mu_);
        task->state = "fetching";
      }
      if (!wait(200ms)) return;
    }

    // 2. Download the torrent the supernode published.
    auto metainfo = crypto::base64_decode(info.value("metainfo", ""));
    if (!metainfo) {
      return fail(task, make_error(kErrTask, "supernode sent metainfo that is not base64"));
    }
    auto size = check_metainfo(*metainfo);
    if (!size) return fail(task, size.error());
    const std::string dir = config_.data_dir + "/tasks/" + id;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail(task, make_error(kErrTask, "cannot create " + dir + ": " + ec.message()));
    const std::string content = dir + "/content";
    {
      std::lock_guard lock(mu_);
      task->state = "downloading";
      task->total_bytes = *size;
      task->sha256 = info.value("sha256", "");
    }
    if (auto added = engine_->add_download(task->id, *metainfo, content); !added) {
      return fail(task, added.error());
    }

    // 3. Announce and connect to the peers the scheduler suggests until complete.
    std::set<std::pair<std::string, uint16_t>> connected;
    bool complete = false;
    auto next_announce = std::chrono::steady_clock::now();
    while (true) {
      auto progress = engine_->progress(task->id);
      if (!progress) return fail(task, progress.error());
      if (progress->state == TorrentState::kError) {
        return fail(task, make_error(kErrTask, "download failed: " + progress->error));
      }
      {
        std::lock_guard lock(mu_);
        task->progress = *progress;
      }
      const bool done = progress->state == TorrentState::kSeeding;
      if (std::chrono::steady_clock::now() >= next_announce || (done && !complete)) {
        announce(task, *progress, connected);
        next_announce = std::chrono::steady_clock::now() +
                        (done ? kAnnounceWhileSeeding : kAnnounceWhileDownloading);
      }
      if (done && !complete) {
        complete = true;
        if (!verify(task, content)) return;
      }
      if (!wait(200ms)) return;
    }
  }

  void announce(const std::shared_ptr<Task>& task, const TorrentProgress& p,
                std::set<std::pair<std::string, uint16_t>>& connected) {
    // Every supernode keeps its own swarm registry: announce to all, connect to the union.
    auto peers = pool_->call_all("Announce", {{"task_id", task->id.get()},
                                              {"node_id", node_id_.get()},
                                              {"ip", config_.listen_ip},
                                              {"port", engine_->ssl_port()},
                                              {"done_bytes", p.done_bytes},
                                              {"total_bytes", p.total_bytes},
                                              {"uploaded_bytes", p.uploaded_bytes}});
    if (!peers) {
      if (peers.error().code != kErrPoolStopped) {
        std::cerr << "peer: announce failed: " << peers.error().message << "\n";
      }
      return;  // the swarm keeps going; retried at the next interval
    }
    if (!peers->contains("peers") || !(*peers)["peers"].is_array()) return;
    for (const auto& entry : (*peers)["peers"]) {
      if (!entry.is_object()) continue;
      const std::string ip = entry.value("ip", "");
      const auto port = entry.value("port", 0);
      if (ip.empty() || port <= 0 || port > 65535) continue;
      auto key = std::make_pair(ip, static_cast<uint16_t>(port));
      if (!connected.insert(key).second) continue;
      (void)engine_->connect_peer(task->id, Endpoint{ip, key.second});
    }
  }

  // End-to-end check of the whole content against what the supernode hashed at the origin
  // (and so against --digest, which the supernode enforced).
  bool verify(const std::shared_ptr<Task>& task, const std::string& content) {
    {
      std::lock_guard lock(mu_);
      task->state = "verifying";
    }
    auto sum = crypto::sha256_file(content);
    if (!sum) {
      fail(task, sum.error());
      return false;
    }
    if (*sum != task->sha256 || (task->digest && task->digest->hex != *sum)) {
      fail(task, make_error(kErrTask, "content hash sha256:" + *sum +
                                          " differs from the origin's sha256:" + task->sha256));
      return false;
    }
    std::lock_guard lock(mu_);
    task->state = "done";
    task->path = content;
    std::cerr << "peer: task " << task->id.get().substr(0, 16) << " done (" << task->total_bytes
              << " bytes)\n";
    return true;
  }

  PeerConfig config_;
  crypto::Ed25519KeyPair key_;
  NodeId node_id_;
  std::string ca_pem_;
  std::string cert_pem_;

  std::unique_ptr<SupernodePool> pool_;  // set by init(); thread-safe
  std::unique_ptr<TorrentEngine> engine_;
  std::unique_ptr<LocalApiServer> api_;

  std::mutex mu_;  // guards everything below and every Task's fields
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Task>> tasks_;
  std::vector<std::thread> workers_;
};

}  // namespace

Result<std::unique_ptr<PeerDaemon>> PeerDaemon::start(const PeerConfig& config) {
  auto daemon = std::make_unique<Daemon>(config);
  if (auto ok = daemon->init(); !ok) return ok.error();
  return std::unique_ptr<PeerDaemon>(std::move(daemon));
}

}  // namespace starling::peer

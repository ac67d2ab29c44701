#include "peer/daemon.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "common/task_id.h"
#include "crypto/base64.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/mesh_auth.h"
#include "crypto/renewal.h"
#include "crypto/x509.h"
#include "peer/api/local_api.h"
#include "peer/engine/torrent_engine.h"
#include "peer/segments.h"

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
// Enroll's answer for a revoked node (supernode/service.h kErrEnrollRevoked): renewal is over.
constexpr char kErrEnrollRevoked[] = "enroll.revoked";
// While the supernode is still fetching, GetTask is polled this often so each new segment is
// added as soon as it is published (pipelining); polling stops once the task is ready.
constexpr auto kPollWhileFetching = 300ms;
// How often the worker looks at its torrents (completion, errors, progress for the API).
constexpr auto kWorkerTick = 100ms;
// How long a newly published segment waits for the Announce that lists it before it is added
// with the seed alone (README "New segments").
constexpr auto kHoldForPeers = 250ms;
// With segments already downloading, GetTask failing this long in a row (no member can
// answer) fails the task; a shorter outage (a leader election) only delays new segments.
constexpr auto kSupernodeOutage = 120s;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An Announce answer without peers.
const json kNoPeers = json::array();

json error_json(const Error& e) { return {{"code", e.code}, {"message", e.message}}; }

// One log line for stderr, written whole when it goes out of scope (several threads log), or
// dropped when the daemon is quiet (a one-shot peer inside `starling get`).
class LogLine {
 public:
  explicit LogLine(bool quiet) : quiet_(quiet) {}
  ~LogLine() {
    if (!quiet_) std::cerr << text_.str();
  }
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  template <class T>
  LogLine& operator<<(const T& value) {
    if (!quiet_) text_ << value;
    return *this;
  }

 private:
  bool quiet_;
  std::ostringstream text_;
};

// One segment of a task as the API shows it.
struct SegmentState {
  int64_t index = 0;
  int64_t size = 0;
  int64_t done_bytes = 0;
  bool complete = false;
  std::string path;             // once complete: the file holding the segment's bytes
  std::string last_peer_error;  // while incomplete: why the last peer connection failed
};

// What the local API reports for a task. States: registering → fetching (the supernode is
// fetching from the origin, no segment published yet) → downloading (segments are being
// downloaded, possibly while the supernode still fetches later ones) → verifying → done, or
// failed; "removing" after DELETE until the worker has cleaned up.
struct Task {
  TaskId id;
  std::string url;
  std::optional<Digest> digest;
  std::vector<std::string> headers;
  std::string tag;
  std::vector<std::string> filter;

  std::chrono::steady_clock::time_point registered_at;
  std::string state = "registering";
  std::string source_state;  // the supernode's task state at the last GetTask answer
  std::optional<Error> error;
  std::string sha256;              // of the whole content, as published by the supernode
  std::vector<std::string> parts;  // once done: the segment files, whose concatenation is it
  int64_t total_bytes = 0;         // the content's size once known, else the published segments'
  TorrentProgress progress;        // summed over the segments (num_peers: the most of any segment)
  std::vector<SegmentState> segments;
  bool removed = false;  // DELETE asked the worker to drop the task
  int answers = 0;       // supernode calls made beside the worker that have ended (wakes it)
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
  if (t.state == "done") j["parts"] = t.parts;  // empty for empty content
  if (t.error) j["error"] = error_json(*t.error);
  if (!t.source_state.empty()) j["source_state"] = t.source_state;
  json segments = json::array();
  for (const auto& s : t.segments) {
    segments.push_back({{"index", s.index},
                        {"size", s.size},
                        {"done_bytes", s.done_bytes},
                        {"complete", s.complete}});
    if (s.complete) segments.back()["path"] = s.path;
    if (!s.complete && !s.last_peer_error.empty()) {
      segments.back()["last_peer_error"] = s.last_peer_error;
    }
  }
  j["segments"] = std::move(segments);
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
    if (renewer_.joinable()) renewer_.join();
    api_.reset();  // no new tasks
    std::vector<std::thread> workers;
    {
      std::lock_guard lock(mu_);
      workers.swap(workers_);
    }
    for (auto& w : workers) w.join();
    // Supernode calls that outlived their workers; the stopped pool ends them at once.
    std::vector<std::future<Result<json>>> calls;
    {
      std::lock_guard lock(mu_);
      calls.swap(abandoned_calls_);
    }
    calls.clear();
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
    } else {
      cert_not_before_ = info->not_before;
      cert_not_after_ = info->not_after;
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
    log() << "peer: node " << node_id_.get().substr(0, 16) << " enrolled with supernode "
          << pool_->current().str() << " (cluster " << supernode_list() << "); data "
          << config_.listen_ip << ":" << engine_->ssl_port() << "; api " << config_.socket_path
          << "\n";
    renewer_ = std::thread([this] { renew_certificates(); });
    return {};
  }

 private:
  LogLine log() const { return LogLine(config_.quiet); }
  // Certificate renewal (issue 5 item 1), on renewer_. Re-enrols with the same key when two
  // thirds of the leaf's validity have passed (crypto::renew_at), and retries with backoff
  // (crypto::renewal_retry_delay) while that fails; Enroll needs no valid certificate, so it
  // goes on after expiry too. A new leaf goes to the pool (new sessions present it; sessions
  // made with the old one are dropped before their next use, so no call runs on a leaf about
  // to expire) and to the engine (new data connections). A refusal (the node was revoked) is
  // final: logged once, and the node keeps working until its leaf expires.
  void renew_certificates() {
    int failures = 0;
    int64_t due = 0, not_after = 0;
    {
      std::lock_guard lock(mu_);
      due = crypto::renew_at(cert_not_before_, cert_not_after_);
      not_after = cert_not_after_;
    }
    while (sleep_until_unix(due)) {
      auto renewed = renew_certificate();
      const int64_t now = unix_now();
      std::lock_guard lock(mu_);
      if (renewed) {
        failures = 0;
        due = crypto::renew_at(cert_not_before_, cert_not_after_);
        not_after = cert_not_after_;
        continue;
      }
      if (renewed.error().code == kErrPoolStopped) return;
      if (renewed.error().code == kErrEnrollRevoked) {
        renewal_refused_ = renewed.error();
        log() << "peer: certificate renewal refused: " << renewed.error().message
              << "; this node's calls and data connections stop when its certificate "
              << (now < not_after ? "expires in " + std::to_string(not_after - now) + " s"
                                  : "has expired")
              << "\n";
        return;
      }
      ++failures;
      log() << "peer: certificate renewal failed (attempt " << failures
            << "): " << renewed.error().message << "\n";
      due = now + crypto::renewal_retry_delay(failures, now, not_after).count();
    }
  }

  // One re-enrolment with any member; on success every user of the leaf has the new one.
  Status renew_certificate() {
    auto enrolled = pool_->call("Enroll", {{"public_key", node_id_.get()}, {"role", "peer"}});
    if (!enrolled) return enrolled.error();
    if (!enrolled->contains("cert_pem") || !(*enrolled)["cert_pem"].is_string()) {
      return make_error(kErrTask, "supernode sent no certificate");
    }
    std::string cert = (*enrolled)["cert_pem"].get<std::string>();
    auto info = crypto::verify_leaf(ca_pem_, cert, unix_now());
    if (!info) {
      return make_error(
          kErrTask, "renewed certificate from the supernode is invalid: " + info.error().message);
    }
    if (info->node.get() != node_id_.get()) {
      return make_error(kErrTask, "renewed certificate is for node " + info->node.get());
    }
    pool_->set_payload(cert);
    if (auto st = engine_->set_certificate(cert, crypto::ed25519_private_key_pem(key_)); !st) {
      return st.error();
    }
    std::lock_guard lock(mu_);
    cert_pem_ = std::move(cert);
    cert_not_before_ = info->not_before;
    cert_not_after_ = info->not_after;
    log() << "peer: certificate renewed, valid for " << info->not_after - info->not_before
          << " s\n";
    return {};
  }

  // Sleeps until unix time `t` (re-reading the wall clock at least every minute); false when
  // the daemon stops first.
  bool sleep_until_unix(int64_t t) {
    std::unique_lock lock(mu_);
    return crypto::sleep_until_unix(lock, cv_, stopping_, t);
  }

  // A supernode refused this node's certificate after its renewal was refused: say why, since
  // "enrol first (certificate expired)" alone would not.
  Error with_renewal_context(Error e) {
    std::lock_guard lock(mu_);
    if (renewal_refused_ && e.code == "rpc.unauthenticated" &&
        e.message.find("revoked") == std::string::npos) {
      e.message += "; certificate renewal refused: " + renewal_refused_->message;
    }
    return e;
  }

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
    if (method == "DELETE" && target.starts_with("/v1/tasks/"))
      return remove_task(target.substr(10));
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
    if (!registered) return error_reply(502, with_renewal_context(registered.error()));
    if (!registered->contains("task_id") || !(*registered)["task_id"].is_string()) {
      return error_reply(502, make_error(kErrTask, "supernode answered without a task id"));
    }
    task->id = TaskId((*registered)["task_id"].get<std::string>());
    task->registered_at = std::chrono::steady_clock::now();

    std::lock_guard lock(mu_);
    if (stopping_) return error_reply(503, make_error(kErrTask, "daemon is stopping"));
    auto it = tasks_.find(task->id.get());
    if (it != tasks_.end() && it->second->state == "removing") {
      return error_reply(
          409, make_error(kErrTask, "task " + task->id.get() + " is being removed; try again"));
    }
    if (it != tasks_.end() && it->second->state != "failed") {
      return reply(200, {{"task_id", task->id.get()}});  // already running or done: share it
    }
    tasks_[task->id.get()] = task;
    workers_.emplace_back([this, task] { run_task(task); });
    return reply(200, {{"task_id", task->id.get()}});
  }

  // DELETE /v1/tasks/<id>: drops the task, its torrents and its files. A running worker does
  // the cleanup (it owns the torrents); a failed task's worker has ended, so it is done here.
  HttpReply remove_task(const std::string& id) {
    std::shared_ptr<Task> task;
    {
      std::lock_guard lock(mu_);
      auto it = tasks_.find(id);
      if (it == tasks_.end()) return error_reply(404, make_error(kErrUnknownTask, "no task " + id));
      task = it->second;
      if (task->state != "failed") {
        task->removed = true;
        task->state = "removing";
        cv_.notify_all();
        return reply(200, {{"task_id", id}, {"removed", true}});
      }
      tasks_.erase(it);
    }
    std::error_code ec;
    fs::remove_all(task_dir(task->id), ec);
    return reply(200, {{"task_id", id}, {"removed", true}});
  }

  // Keeps a worker's supernode call that is still running when the worker ends (the
  // destructor waits for them, after stopping the pool); drops those that have finished.
  void abandon_call(std::future<Result<json>> call) {
    std::lock_guard lock(mu_);
    std::erase_if(abandoned_calls_, [](const std::future<Result<json>>& f) {
      return f.wait_for(0s) == std::future_status::ready;
    });
    abandoned_calls_.push_back(std::move(call));
  }

  std::string task_dir(const TaskId& id) const { return config_.data_dir + "/tasks/" + id.get(); }

  // Sleeps for `d` unless the daemon stops first; returns false when stopping.
  bool wait(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stopping_; });
  }

  // Sleeps for `d` unless the daemon stops, the task is removed, or a call made beside the
  // worker ends (Task::answers is no longer `seen`).
  void wait_tick(const Task& task, std::chrono::milliseconds d, int seen) {
    std::unique_lock lock(mu_);
    (void)cv_.wait_for(lock, d, [&] { return stopping_ || task.removed || task.answers != seen; });
  }

  // Makes `call` on a thread of its own; its end wakes the task's worker (wait_tick).
  std::future<Result<json>> beside(const std::shared_ptr<Task>& task,
                                   std::function<Result<json>()> call) {
    return std::async(std::launch::async, [this, task, call = std::move(call)] {
      Result<json> r = call();
      {
        std::lock_guard lock(mu_);
        ++task->answers;
      }
      cv_.notify_all();
      return r;
    });
  }

  void fail(const std::shared_ptr<Task>& task, Error e) {
    if (e.code == kErrPoolStopped) return;  // the daemon is stopping, not the task failing
    log() << "peer: task " << task->id.get().substr(0, 16) << " failed: " << e.message << "\n";
    std::lock_guard lock(mu_);
    task->state = "failed";
    task->error = std::move(e);
  }

  // One segment this node downloads and then seeds (engine key segment_torrent_id(task, i),
  // file tasks/<task>/seg-<i>). Owned by the task's worker thread.
  struct SegmentDownload {
    int64_t index = 0;
    int64_t size = 0;
    TaskId torrent;
    std::string path;
    TorrentProgress progress;
    bool complete = false;
  };
  using Segments = std::map<int64_t, SegmentDownload>;
  // Which segment torrents each announced data endpoint has been connected to.
  using Connected = std::map<std::pair<std::string, uint16_t>, std::set<int64_t>>;

  // The task's worker: polls GetTask while the supernode fetches, adds every newly published
  // segment at once, announces and connects peers per segment, verifies the
  // content (the segments in order) once the task is ready and every one is complete, then keeps
  // seeding.
  void run_task(const std::shared_ptr<Task>& task) {
    const std::string id = task->id.get();
    const std::string dir = task_dir(task->id);
    Segments segments;
    Connected connected;
    std::optional<PublishedTask> ready;  // the answer that said "ready": the final segment list
    auto last_answer = std::chrono::steady_clock::now();
    auto next_poll = last_answer;
    auto next_announce = last_answer;
    bool announce_now = false;
    bool done = false;
    bool outage_logged = false;
    PartsHasher hashed;  // segments 0, 1, ... hashed.count() - 1, in order
    // Published segments not added yet: each waits for the Announce that lists it, whose answer
    // names the peers that added it before us, so that they are dialed with the seed when it
    // is added (README "New segments"), or for kHoldForPeers.
    struct Held {
      PublishedSegment segment;
      std::chrono::steady_clock::time_point since;
      bool announced = false;  // listed in the Announce in flight
    };
    std::map<int64_t, Held> held;
    std::optional<Endpoint> seed;  // the seeder's data endpoint, from the latest GetTask answer
    // The supernode calls (the GetTask poll, the Announce to every member) run beside the loop
    // (beside()), one of each at a time, and their answers are handled at the loop's next turn,
    // which their end starts at once: without a leader (an election) or a majority, a
    // consistent read waits up to the pool's deadline (30 s), and a member that hangs instead
    // of refusing holds an Announce for its call timeout (10 s); meanwhile the loop must go on
    // reporting progress, adding segments, hashing and noticing a DELETE. A call still running
    // when the worker ends goes to the daemon, which waits for it when it stops.
    std::future<Result<json>> poll;
    std::future<Result<json>> announcing;
    struct HandOver {
      Daemon& daemon;
      std::future<Result<json>>& call;
      ~HandOver() {
        if (call.valid()) daemon.abandon_call(std::move(call));
      }
    } hand_over_poll{*this, poll}, hand_over_announce{*this, announcing};
    const auto answered = [](const std::future<Result<json>>& f) {
      return f.valid() && f.wait_for(0s) == std::future_status::ready;
    };
    int seen = 0;  // Task::answers at the start of the loop's turn
    auto give_up = [&](Error e) {
      drop_segments(segments);
      fail(task, std::move(e));
    };
    while (true) {
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        if (task->removed) break;
        seen = task->answers;
      }
      const auto now = std::chrono::steady_clock::now();
      // 1. Learn newly published segments (pipelining) until the task is ready.
      if (!ready && !poll.valid() && now >= next_poll) {
        next_poll = now + kPollWhileFetching;
        // Only what was published since (the supernode lists every segment once ready).
        int64_t known = 0;
        while (segments.count(known) != 0 || held.count(known) != 0) ++known;
        poll = beside(task, [pool = pool_.get(), id, known] {
          return pool->call("GetTask", {{"task_id", id}, {"from_segment", known}});
        });
      }
      if (answered(poll)) {
        auto got = poll.get();
        if (!got) {
          const Error& e = got.error();
          if (e.code == kErrPoolStopped) return;
          const bool young = now - task->registered_at < kUnknownTaskGrace;
          const bool outage = !(segments.empty() && held.empty()) && is_retryable(e) &&
                              now - last_answer < kSupernodeOutage;
          if (!(e.code == kErrUnknownTask && young) && !outage) return give_up(e);
          if (outage && !outage_logged) {
            outage_logged = true;
            log() << "peer: task " << id.substr(0, 16)
                  << ": no supernode answers GetTask, segments keep downloading: " << e.message
                  << "\n";
          }
        } else {
          last_answer = now;
          outage_logged = false;
          auto info = parse_get_task(*got);
          if (!info) return give_up(info.error());
          if (info->error) return give_up(*info->error);
          if (info->seed) seed = info->seed;
          for (const auto& s : info->segments) {
            if (segments.count(s.index) != 0 || held.count(s.index) != 0) continue;
            held.emplace(s.index, Held{s, now, false});
            announce_now = true;  // tell who has it and learn who else does, at once
          }
          std::lock_guard lock(mu_);
          task->source_state = info->state;
          if (task->state == "registering" || task->state == "fetching") {
            task->state = segments.empty() && held.empty() && info->state != "ready"
                              ? "fetching"
                              : "downloading";
          }
          if (info->state == "ready") {
            task->sha256 = info->sha256;
            ready = std::move(*info);
          }
        }
      }

      // 2. An Announce's answer: its peers are connected, and a held segment is added once the
      //    Announce that listed it has answered (with the peers that list it), or after
      //    kHoldForPeers with the seed alone. Before 3., which must see every added segment:
      //    the task is verified (6.) only when every one is complete.
      std::optional<Result<json>> answer;
      if (answered(announcing)) answer = announcing.get();
      const json& entries = answer ? answer_peers(*answer) : kNoPeers;
      for (auto it = held.begin(); it != held.end();) {
        const bool listed = answer && it->second.announced;
        if (!listed && now - it->second.since < kHoldForPeers) {
          ++it;
          continue;
        }
        auto added =
            add_segment(*task, dir, it->second.segment, peers_with(entries, it->first, seed));
        if (!added) return give_up(added.error());
        segments.emplace(it->first, std::move(*added));
        it = held.erase(it);
      }
      if (answer) connect_peers(*answer, segments, connected);

      // 3. Progress of every segment torrent.
      TorrentProgress sum;
      sum.state = TorrentState::kDownloading;
      std::vector<SegmentState> shown;
      bool all_complete = true;
      for (auto& [index, seg] : segments) {
        auto p = engine_->progress(seg.torrent);
        if (!p) return give_up(p.error());
        if (p->state == TorrentState::kError) {
          return give_up(make_error(
              kErrTask, "download of segment " + std::to_string(index) + " failed: " + p->error));
        }
        seg.progress = *p;
        if (p->state == TorrentState::kSeeding && !seg.complete) {
          seg.complete = true;
          announce_now = true;  // peers may fetch it from us now
        }
        all_complete = all_complete && seg.complete;
        sum.total_bytes += seg.size;
        sum.done_bytes += seg.complete ? seg.size : p->done_bytes;
        sum.downloaded_bytes += p->downloaded_bytes;
        sum.uploaded_bytes += p->uploaded_bytes;
        sum.num_peers = std::max(sum.num_peers, p->num_peers);
        shown.push_back({index, seg.size, seg.complete ? seg.size : p->done_bytes, seg.complete,
                         seg.complete ? seg.path : std::string(), p->last_peer_error});
      }
      {
        std::lock_guard lock(mu_);
        task->progress = sum;
        task->total_bytes = ready ? *ready->size : sum.total_bytes;
        task->segments = std::move(shown);
      }

      // 4. Announce (every peer learns which segments we have, and those held).
      if (!announcing.valid() && !(segments.empty() && held.empty()) &&
          (announce_now || now >= next_announce)) {
        std::vector<int64_t> have;
        for (const auto& [index, seg] : segments) have.push_back(index);
        for (auto& [index, h] : held) {
          have.push_back(index);
          h.announced = true;
        }
        announcing =
            beside(task, [pool = pool_.get(), params = announce_params(*task, std::move(have), sum,
                                                                       ready ? *ready->size : 0)] {
              return pool->call_all("Announce", params);
            });
        announce_now = false;
        next_announce = now + (done ? kAnnounceWhileSeeding : kAnnounceWhileDownloading);
      }

      // 5. The next segment in order, once complete, goes into the content's hash, so that the
      //    check at the end reads only what completed last (one per tick: the loop stays live).
      if (!done) {
        auto next = segments.find(static_cast<int64_t>(hashed.count()));
        if (next != segments.end() && next->second.complete) {
          if (Status st = hashed.add(next->second.path); !st) return give_up(st.error());
        }
      }

      // 6. Ready and every segment here: the content, checked end to end.
      if (ready && held.empty() && all_complete && !done) {
        done = true;
        if (!finish(task, segments, hashed, *ready)) return drop_segments(segments);
        next_announce = std::chrono::steady_clock::now();
      }
      wait_tick(*task, kWorkerTick, seen);  // the loop head decides what ended it
    }

    // DELETE: the torrents and the files go; the task leaves the table.
    drop_segments(segments);
    std::error_code ec;
    fs::remove_all(dir, ec);
    std::lock_guard lock(mu_);
    auto it = tasks_.find(id);
    if (it != tasks_.end() && it->second == task) tasks_.erase(it);
    log() << "peer: task " << id.substr(0, 16) << " removed\n";
  }

  // Adds segment `s` to the engine as a download into tasks/<task>/seg-<i>, `peers` dialed as
  // soon as libtorrent has checked it. A torrent already in the engine under that key (this
  // task registered again after a failure) is kept.
  Result<SegmentDownload> add_segment(const Task& task, const std::string& dir,
                                      const PublishedSegment& s,
                                      const std::vector<Endpoint>& peers) {
    auto size = check_metainfo(s.metainfo);
    if (!size) return size.error();
    if (*size != s.size) {
      return make_error(kErrTask, "segment " + std::to_string(s.index) + " metainfo holds " +
                                      std::to_string(*size) + " bytes, not " +
                                      std::to_string(s.size));
    }
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return make_error(kErrTask, "cannot create " + dir + ": " + ec.message());
    SegmentDownload seg{s.index,
                        s.size,
                        segment_torrent_id(task.id, s.index),
                        dir + "/seg-" + std::to_string(s.index),
                        {},
                        false};
    // libtorrent removes torrents asynchronously: right after a failed run's removal the same
    // torrent may still be there for a moment ("duplicate torrent").
    for (int attempt = 0;; ++attempt) {
      Status added = engine_->add_download(seg.torrent, s.metainfo, seg.path, peers);
      if (added) return seg;
      if (engine_->progress(seg.torrent)) return seg;  // already ours
      if (attempt == 20 || !wait(100ms)) return added.error();
    }
  }

  void drop_segments(const Segments& segments) {
    for (const auto& [index, seg] : segments) (void)engine_->remove(seg.torrent);
  }

  // What this node tells every supernode about the task (Announce): every supernode keeps its
  // own swarm registry, so the worker announces to all and connects to the union.
  // total_bytes stays 0 until the size is known, so nobody takes us for a whole seed early.
  json announce_params(const Task& task, std::vector<int64_t> have, const TorrentProgress& p,
                       int64_t total_bytes) const {
    return {{"task_id", task.id.get()},
            {"node_id", node_id_.get()},
            {"ip", config_.listen_ip},
            {"port", engine_->ssl_port()},
            {"done_bytes", p.done_bytes},
            {"total_bytes", total_bytes},
            {"uploaded_bytes", p.uploaded_bytes},
            {"segments", std::move(have)}};
  }

  // The data endpoint of one peer of an Announce answer, if it names a usable one.
  static std::optional<Endpoint> entry_endpoint(const json& entry) {
    if (!entry.is_object()) return std::nullopt;
    auto ip = entry.find("ip");
    auto port = entry.find("port");
    if (ip == entry.end() || !ip->is_string() || ip->get<std::string>().empty()) {
      return std::nullopt;
    }
    if (port == entry.end() || !port->is_number_integer()) return std::nullopt;
    const auto n = port->get<int64_t>();
    if (n <= 0 || n > 65535) return std::nullopt;
    return Endpoint{ip->get<std::string>(), static_cast<uint16_t>(n)};
  }

  // The entries of an Announce answer (none for a failed call or a malformed answer).
  static const json& answer_peers(const Result<json>& answer) {
    if (!answer || !answer->is_object()) return kNoPeers;
    auto it = answer->find("peers");
    return it != answer->end() && it->is_array() ? *it : kNoPeers;
  }

  // The seed and those of an Announce answer's `entries` that list segment `index` (or list
  // no segments): whom a new segment torrent dials when it is added.
  static std::vector<Endpoint> peers_with(const json& entries, int64_t index,
                                          const std::optional<Endpoint>& seed) {
    std::vector<Endpoint> out;
    if (seed) out.push_back(*seed);
    for (const auto& entry : entries) {
      auto endpoint = entry_endpoint(entry);
      if (!endpoint) continue;
      auto listed = entry.find("segments");
      bool has = listed == entry.end() || !listed->is_array();
      for (size_t i = 0; !has && i < listed->size(); ++i) {
        has = (*listed)[i].is_number_integer() && (*listed)[i].get<int64_t>() == index;
      }
      const bool known = std::any_of(out.begin(), out.end(), [&](const Endpoint& e) {
        return e.ip == endpoint->ip && e.port == endpoint->port;
      });
      if (has && !known) out.push_back(*endpoint);
    }
    return out;
  }

  // Connects the peers of an Announce answer to the segment torrents they and we share.
  void connect_peers(const Result<json>& peers, const Segments& segments, Connected& connected) {
    if (!peers) {
      if (peers.error().code != kErrPoolStopped) {
        log() << "peer: announce failed: " << peers.error().message << "\n";
      }
      return;  // the swarm keeps going; retried at the next interval
    }
    for (const auto& entry : answer_peers(peers)) {
      auto endpoint = entry_endpoint(entry);
      if (!endpoint) continue;
      auto& done_with = connected[{endpoint->ip, endpoint->port}];
      auto listed = entry.find("segments");
      auto connect = [&](const SegmentDownload& seg) {
        // A segment we still lack: (re)connect on every announce (libtorrent ignores a peer it
        // is connected to; one that dropped, e.g. a seeder that moved, is tried again). One we
        // have: once, so the peer can take it from us even before it dials us itself.
        if (seg.complete && !done_with.insert(seg.index).second) return;
        (void)engine_->connect_peer(seg.torrent, *endpoint);
      };
      if (listed == entry.end() || !listed->is_array()) {
        for (const auto& [index, seg] : segments) connect(seg);  // no segment list: try all
        continue;
      }
      for (const auto& v : *listed) {
        if (!v.is_number_integer()) continue;
        auto it = segments.find(v.get<int64_t>());
        if (it != segments.end()) connect(it->second);
      }
    }
  }

  // Checks the finished segments end to end, in place, against what the supernode hashed at
  // the origin (and so against --digest, which it enforced) and against the user's digest.
  // `hashed` holds the segments hashed while later ones downloaded; the rest are read now.
  // The segment files are the content: `get` reads them in order (no copy into one file).
  bool finish(const std::shared_ptr<Task>& task, const Segments& segments, PartsHasher& hashed,
              const PublishedTask& info) {
    {
      std::lock_guard lock(mu_);
      task->state = "verifying";
    }
    std::vector<std::string> parts;
    for (const auto& [index, seg] : segments) parts.push_back(seg.path);
    for (size_t i = hashed.count(); i < parts.size(); ++i) {
      if (Status st = hashed.add(parts[i]); !st) {
        fail(task, st.error());
        return false;
      }
    }
    const PartsDigest sum = hashed.finish();
    if (sum.size != *info.size) {
      fail(task,
           make_error(kErrTask, "the segments hold " + std::to_string(sum.size) +
                                    " bytes, the origin's content " + std::to_string(*info.size)));
      return false;
    }
    if (sum.sha256 != info.sha256 || (task->digest && task->digest->hex != sum.sha256)) {
      fail(task, make_error(kErrTask, "content hash sha256:" + sum.sha256 +
                                          " differs from the origin's sha256:" + info.sha256));
      return false;
    }
    std::lock_guard lock(mu_);
    task->state = "done";
    task->parts = std::move(parts);
    log() << "peer: task " << task->id.get().substr(0, 16) << " done (" << *info.size << " bytes, "
          << segments.size() << " segments)\n";
    return true;
  }

  PeerConfig config_;
  crypto::Ed25519KeyPair key_;
  NodeId node_id_;
  std::string ca_pem_;
  std::string cert_pem_;                  // guarded by mu_ once renewer_ runs
  int64_t cert_not_before_ = 0;           // guarded by mu_ once renewer_ runs
  int64_t cert_not_after_ = 0;            // guarded by mu_ once renewer_ runs
  std::optional<Error> renewal_refused_;  // guarded by mu_
  std::thread renewer_;                   // renew_certificates(); joined by the destructor

  std::unique_ptr<SupernodePool> pool_;  // set by init(); thread-safe
  std::unique_ptr<TorrentEngine> engine_;
  std::unique_ptr<LocalApiServer> api_;

  std::mutex mu_;  // guards everything below and every Task's fields
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Task>> tasks_;
  std::vector<std::thread> workers_;
  std::vector<std::future<Result<json>>> abandoned_calls_;  // see abandon_call()
};

}  // namespace

Result<std::unique_ptr<PeerDaemon>> PeerDaemon::start(const PeerConfig& config) {
  auto daemon = std::make_unique<Daemon>(config);
  if (auto ok = daemon->init(); !ok) return ok.error();
  return std::unique_ptr<PeerDaemon>(std::move(daemon));
}

}  // namespace starling::peer

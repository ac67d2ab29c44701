#include "supernode/supernode.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <thread>

#include "crypto/keys.h"
#include "crypto/mesh_auth.h"
#include "crypto/renewal.h"
#include "crypto/x509.h"
#include "mesh/rpc.h"
#include "mesh/session.h"
#include "peer/engine/torrent_engine.h"
#include "supernode/cluster_log.h"
#include "supernode/service.h"
#include "supernode/tracker/state_machine.h"

namespace starling::supernode {

namespace fs = std::filesystem;

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string utc_text(int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

// This supernode's own leaf, re-signed with the CA key at two thirds of its life (issue 5
// item 1). The new leaf goes to `source` (read by every new mesh handshake: the listener, the
// Raft transport and the forwarding sessions; sessions made with the old leaf are retired by
// mesh::RpcClient) and to the engine. One thread, stopped and joined by stop().
class OwnLeafRenewer {
 public:
  OwnLeafRenewer(crypto::Ed25519KeyPair ca_key, std::string ca_pem, crypto::Ed25519KeyPair node_key,
                 std::chrono::seconds lifetime, std::shared_ptr<mesh::PayloadSource> source,
                 peer::TorrentEngine& engine, int64_t not_before, int64_t not_after)
      : ca_key_(std::move(ca_key)),
        ca_pem_(std::move(ca_pem)),
        node_key_(std::move(node_key)),
        lifetime_(lifetime),
        source_(std::move(source)),
        engine_(engine),
        not_before_(not_before),
        not_after_(not_after) {
    thread_ = std::thread([this] { run(); });
  }
  ~OwnLeafRenewer() { stop(); }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  // Sleeps until unix time `t` (re-reading the wall clock at least every minute); false when
  // stopping.
  bool sleep_until(int64_t t) {
    std::unique_lock lock(mu_);
    return crypto::sleep_until_unix(lock, cv_, stopping_, t);
  }

  void run() {
    int failures = 0;
    int64_t due = crypto::renew_at(not_before_, not_after_);
    while (sleep_until(due)) {
      const int64_t now = unix_now();
      auto leaf = crypto::issue_leaf(ca_key_, ca_pem_, node_key_.public_key,
                                     crypto::Role::kSupernode, now, lifetime_.count());
      if (!leaf.ok()) {
        ++failures;
        std::fprintf(stderr, "supernode: renewing its own certificate failed: %s\n",
                     leaf.error().message.c_str());
        due = now + crypto::renewal_retry_delay(failures, now, not_after_).count();
        continue;
      }
      failures = 0;
      source_->set(*leaf);
      if (auto st = engine_.set_certificate(*leaf, crypto::ed25519_private_key_pem(node_key_));
          !st.ok()) {
        std::fprintf(stderr, "supernode: engine refused the renewed certificate: %s\n",
                     st.error().message.c_str());
      }
      not_before_ = now;
      not_after_ = now + lifetime_.count();
      due = crypto::renew_at(not_before_, not_after_);
      std::fprintf(stderr, "supernode: renewed its own certificate, valid until %s\n",
                   utc_text(not_after_).c_str());
    }
  }

  const crypto::Ed25519KeyPair ca_key_;
  const std::string ca_pem_;
  const crypto::Ed25519KeyPair node_key_;
  const std::chrono::seconds lifetime_;
  const std::shared_ptr<mesh::PayloadSource> source_;
  peer::TorrentEngine& engine_;
  int64_t not_before_, not_after_;  // of the current leaf; the renewal thread's own
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

// Declared in the order they start; destroyed in reverse (the destructor also stops the
// server and the service explicitly first, so no RPC runs while the rest goes away).
struct Supernode::Parts {
  std::unique_ptr<tracker::TrackerStateMachine> tracker;
  std::unique_ptr<ClusterLog> log;
  std::unique_ptr<peer::TorrentEngine> engine;
  std::unique_ptr<SupernodeService> service;
  std::unique_ptr<mesh::RpcServer> server;
  std::unique_ptr<OwnLeafRenewer> renewer;  // uses the engine
  uint16_t data_port = 0;
};

Supernode::Supernode(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Supernode::~Supernode() {
  parts_->renewer.reset();
  if (parts_->server) parts_->server->stop();
  if (parts_->service) parts_->service->stop();
  if (parts_->log) parts_->log->stop();
  parts_->server.reset();
  parts_->service.reset();
  parts_->log.reset();
  parts_->engine.reset();
  parts_->tracker.reset();
}

uint16_t Supernode::mesh_port() const { return parts_->server->port(); }
uint16_t Supernode::data_port() const { return parts_->data_port; }
const NodeId& Supernode::node_id() const { return parts_->service->node_id(); }

Result<std::unique_ptr<Supernode>> Supernode::start(const SupernodeConfig& config) {
  crypto::init();
  auto files = crypto::network_files(config.network_dir);
  auto secret = crypto::load_network_secret(files.secret_path);
  if (!secret.ok()) return secret.error();
  auto ca_pem = crypto::read_file(files.ca_cert_path, /*secret=*/false);
  if (!ca_pem.ok()) return ca_pem.error();
  auto ca_key_pem = crypto::read_file(files.ca_key_path, /*secret=*/true);
  if (!ca_key_pem.ok()) return ca_key_pem.error();
  auto ca_key = crypto::ed25519_from_private_key_pem(*ca_key_pem);
  if (!ca_key.ok()) return ca_key.error();

  std::error_code ec;
  fs::create_directories(config.data_dir, ec);
  if (ec) {
    return make_error("supernode.data_dir",
                      "cannot create data dir " + config.data_dir + ": " + ec.message());
  }
  fs::path data(config.data_dir);
  auto node_key = crypto::load_or_create_node_key((data / "node.key").string());
  if (!node_key.ok()) return node_key.error();
  const int64_t lifetime = config.cert_lifetime.count();
  if (config.cert_lifetime < crypto::kMinCertLifetime ||
      config.cert_lifetime > crypto::kMaxCertLifetime) {
    return make_error(crypto::kErrLifetime,
                      "certificate lifetime of " + std::to_string(lifetime) + " s is out of range");
  }
  const int64_t now = unix_now();
  auto leaf = crypto::issue_leaf(*ca_key, *ca_pem, node_key->public_key, crypto::Role::kSupernode,
                                 now, lifetime);
  if (!leaf.ok()) return leaf.error();
  // Every handshake this supernode makes or answers presents the current leaf.
  auto leaf_source = std::make_shared<mesh::PayloadSource>(*leaf);

  auto parts = std::make_unique<Parts>();
  auto tracker = tracker::open_sqlite_tracker((data / "tracker.db").string());
  if (!tracker.ok()) return tracker.error();
  parts->tracker = std::move(tracker).value();

  mesh::MeshConfig mesh_config;
  mesh_config.psk = crypto::noise_psk(*secret);
  mesh_config.static_secret = crypto::x25519_secret_from_ed25519(*node_key);
  mesh_config.static_public = crypto::x25519_public_from_ed25519(node_key->public_key);
  mesh_config.payload_source = leaf_source;

  ClusterConfig cluster;
  cluster.id = config.id;
  cluster.members = config.members;
  cluster.join = config.join;
  if (cluster.members.empty() && !config.join) {
    cluster.members.push_back(Member{config.id, config.listen_ip, config.mesh_port});
  }
  cluster.raft_path = (data / "raft.db").string();
  cluster.mesh = mesh_config;
  // Sessions to other members: believe only a supernode certificate from this network.
  cluster.mesh.verify_remote = crypto::require_role(*ca_pem, crypto::Role::kSupernode);
  cluster.tick = config.raft_tick;
  cluster.election_tick = config.election_tick;
  cluster.snapshot_entries = config.snapshot_entries;
  auto log = ClusterLog::start(std::move(cluster), *parts->tracker);
  if (!log.ok()) return log.error();
  parts->log = std::move(log).value();

  peer::EngineConfig engine_config;
  engine_config.listen_ip = config.listen_ip;
  engine_config.ssl_port = config.data_port;
  engine_config.cert_pem = *leaf;
  engine_config.key_pem = crypto::ed25519_private_key_pem(*node_key);
  auto engine = peer::TorrentEngine::start(engine_config);
  if (!engine.ok()) return engine.error();
  parts->engine = std::move(engine).value();
  parts->data_port = parts->engine->ssl_port();

  ServiceConfig service_config{config.data_dir, config.listen_ip, *node_key,
                               *ca_key,         *ca_pem,          lifetime};
  service_config.segment_size = config.segment_size;
  service_config.seed_lease_timeout = config.seed_lease_timeout;
  parts->service = std::make_unique<SupernodeService>(std::move(service_config), *parts->log,
                                                      *parts->tracker, *parts->engine);
  // Any PSK holder completes the handshake: Enroll is how a node gets (or renews, once its
  // leaf has expired) its certificate, so it must stay open to callers without a valid one.
  // Every other method checks the caller's certificate, its key and its role per request in
  // SupernodeService::handle.
  mesh_config.verify_remote = nullptr;
  auto listener = mesh::listen(config.listen_ip, config.mesh_port, mesh_config);
  if (!listener.ok()) return listener.error();
  SupernodeService* service = parts->service.get();
  parts->server = mesh::serve(
      std::move(listener).value(),
      [service](const mesh::RemotePeer& from, const std::string& method,
                const nlohmann::json& params) { return service->handle(from, method, params); });
  parts->service->resume();
  parts->renewer =
      std::make_unique<OwnLeafRenewer>(*ca_key, *ca_pem, *node_key, config.cert_lifetime,
                                       leaf_source, *parts->engine, now, now + lifetime);
  auto node = std::unique_ptr<Supernode>(new Supernode(std::move(parts)));
  std::fprintf(stderr, "supernode: node %s (member %llu) listening on %s mesh %u data %u\n",
               node->node_id().get().c_str(), static_cast<unsigned long long>(config.id.get()),
               config.listen_ip.c_str(), node->mesh_port(), node->data_port());
  return node;
}

}  // namespace starling::supernode

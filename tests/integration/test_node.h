// A node run by a test itself: its own Ed25519 key and, once enrolled, a real leaf; raw mesh RPC
// to any supernode and a real torrent engine. Tests use it for a node that behaves as an
// attacker holding the network key would (e.g. keeps using a revoked or expired leaf).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include <gtest/gtest.h>

#include "common/result.h"
#include "common/task_id.h"
#include "crypto/keys.h"
#include "mesh/rpc.h"
#include "peer/engine/torrent_engine.h"
#include "tests/integration/process.h"

namespace starling::testing {

// ("mallory" in the tests): stands for a revoked node that kept its last certificate and knows
// a peer's data endpoint.
struct TestNode {
  crypto::Ed25519KeyPair key = crypto::generate_ed25519();
  std::string cert;
  mesh::MeshConfig mesh;
  std::string ip;

  // `listen_ip`: where its torrent engine listens (an address of this host).
  TestNode(const std::string& network_dir, std::string listen_ip) : ip(std::move(listen_ip)) {
    auto secret = crypto::load_network_secret(network_dir + "/network.secret");
    EXPECT_TRUE(secret.ok());
    if (secret) mesh.psk = crypto::noise_psk(*secret);
    mesh.static_secret = crypto::x25519_secret_from_ed25519(key);
    mesh.static_public = crypto::x25519_public_from_ed25519(key.public_key);
  }
  std::string node() const { return crypto::node_id_of(key.public_key).get(); }

  Result<nlohmann::json> call(const std::string& address, const std::string& method,
                              const nlohmann::json& params) {
    mesh::MeshConfig config = mesh;
    config.payload = cert;
    const auto colon = address.rfind(':');
    auto client = mesh::RpcClient::connect(
        address.substr(0, colon), static_cast<uint16_t>(std::stoi(address.substr(colon + 1))),
        config, std::chrono::seconds(5));
    if (!client) return client.error();
    return (*client)->call(method, params, std::chrono::seconds(20));
  }

  // Downloads `metainfo` from `from` only, into `path`; returns the engine's final progress
  // after `patience` or on completion.
  peer::TorrentProgress download(const std::string& metainfo, const TaskId& task,
                                 const peer::Endpoint& from, const std::string& path,
                                 std::chrono::seconds patience, std::string* connection_error) {
    peer::EngineConfig config;
    config.listen_ip = ip;
    config.cert_pem = cert;
    config.key_pem = crypto::ed25519_private_key_pem(key);
    auto engine = peer::TorrentEngine::start(config);
    EXPECT_TRUE(engine.ok()) << engine.error().message;
    if (!engine) return {};
    EXPECT_TRUE((*engine)->add_download(task, metainfo, path, {}).ok());
    EXPECT_TRUE((*engine)->connect_peer(task, from).ok());
    peer::TorrentProgress last;
    eventually(
        [&] {
          auto p = (*engine)->progress(task);
          if (p) last = *p;
          return p && p->state == peer::TorrentState::kSeeding;
        },
        patience);
    *connection_error = (*engine)->last_connection_error();
    return last;
  }
};

}  // namespace starling::testing

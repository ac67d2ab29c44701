// A replaceable handshake payload (mesh::PayloadSource, issue 5 item 1): after set(), new
// handshakes on both sides (dialer and listener) present the new payload, and an RpcClient made
// with the old one retires its session instead of calling on it.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "mesh/rpc.h"
#include "tests/mesh/mesh_test_util.h"

namespace starling::mesh {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using testing::node_config;

constexpr milliseconds kTimeout{5000};

Result<json> whoami(const RemotePeer& from, const std::string&, const json&) {
  return json{{"payload", from.payload}};
}

TEST(PayloadSource, GenerationCountsReplacements) {
  PayloadSource source("leaf-1");
  EXPECT_EQ(source.get().payload, "leaf-1");
  EXPECT_EQ(source.generation(), 0u);
  source.set("leaf-2");
  EXPECT_EQ(source.get().payload, "leaf-2");
  EXPECT_EQ(source.get().generation, 1u);
  MeshConfig fixed;
  fixed.payload = "fixed";
  EXPECT_EQ(current_payload(fixed), "fixed");
  fixed.payload_source = std::make_shared<PayloadSource>("from-source");
  EXPECT_EQ(current_payload(fixed), "from-source");
}

TEST(PayloadSource, NewHandshakesPresentTheNewPayloadOldClientsRetire) {
  auto server_source = std::make_shared<PayloadSource>("server-leaf-1");
  MeshConfig server_cfg = node_config("ignored");
  server_cfg.payload_source = server_source;
  auto listener = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(listener.ok()) << listener.error().message;
  auto server = serve(std::move(*listener), whoami);

  auto client_source = std::make_shared<PayloadSource>("client-leaf-1");
  MeshConfig client_cfg = node_config("ignored");
  client_cfg.payload_source = client_source;
  const MeshConfig copy = client_cfg;  // copies share the source, as ClusterLog's do
  auto old_client = RpcClient::connect("127.0.0.1", server->port(), copy, kTimeout);
  ASSERT_TRUE(old_client.ok()) << old_client.error().message;
  EXPECT_EQ((*old_client)->remote().payload, "server-leaf-1");
  auto who = (*old_client)->call("whoami", json::object(), kTimeout);
  ASSERT_TRUE(who.ok()) << who.error().message;
  EXPECT_EQ((*who)["payload"], "client-leaf-1");
  EXPECT_FALSE((*old_client)->outdated());

  // Both sides renew.
  client_source->set("client-leaf-2");
  server_source->set("server-leaf-2");
  EXPECT_TRUE((*old_client)->outdated());
  auto retired = (*old_client)->call("whoami", json::object(), kTimeout);
  ASSERT_FALSE(retired.ok());
  EXPECT_EQ(retired.error().code, kErrClosed);
  EXPECT_NE(retired.error().message.find("made with a replaced certificate; dial again"),
            std::string::npos)
      << retired.error().message;

  auto new_client = RpcClient::connect("127.0.0.1", server->port(), copy, kTimeout);
  ASSERT_TRUE(new_client.ok()) << new_client.error().message;
  EXPECT_EQ((*new_client)->remote().payload, "server-leaf-2");
  who = (*new_client)->call("whoami", json::object(), kTimeout);
  ASSERT_TRUE(who.ok()) << who.error().message;
  EXPECT_EQ((*who)["payload"], "client-leaf-2");
  EXPECT_FALSE((*new_client)->outdated());
  server->stop();
}

TEST(PayloadSource, SetRacesWithHandshakes) {
  auto source = std::make_shared<PayloadSource>("leaf-0");
  MeshConfig server_cfg = node_config("server");
  auto listener = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(listener.ok());
  auto server = serve(std::move(*listener), whoami);
  MeshConfig client_cfg = node_config("ignored");
  client_cfg.payload_source = source;
  std::atomic<bool> done{false};
  std::thread renewer([&] {
    for (int i = 1; !done.load(); ++i) source->set("leaf-" + std::to_string(i));
  });
  for (int i = 0; i < 20; ++i) {
    auto c = RpcClient::connect("127.0.0.1", server->port(), client_cfg, kTimeout);
    ASSERT_TRUE(c.ok()) << c.error().message;
    auto who = (*c)->call("whoami", json::object(), kTimeout);
    // Either answered with some leaf, or already retired by a newer one.
    if (who.ok()) {
      EXPECT_EQ((*who)["payload"].get<std::string>().rfind("leaf-", 0), 0u);
    } else {
      EXPECT_EQ(who.error().code, kErrClosed);
    }
  }
  done = true;
  renewer.join();
  server->stop();
}

}  // namespace
}  // namespace starling::mesh

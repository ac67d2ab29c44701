#include "mesh/rpc.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "tests/mesh/mesh_test_util.h"

namespace starling::mesh {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using testing::node_config;

constexpr milliseconds kTimeout{5000};

Result<json> test_handler(const RemotePeer& from, const std::string& method, const json& params) {
  if (method == "echo") return params;
  if (method == "whoami") return json{{"payload", from.payload}};
  if (method == "fail") return make_error("test.failure", "it broke: " + params.dump());
  return make_error(kErrUnknownMethod, "unknown method \"" + method + "\"");
}

struct Fixture {
  MeshConfig server_cfg = node_config("server-cert");
  MeshConfig client_cfg = node_config("client-cert");
  std::unique_ptr<RpcServer> server;
  std::unique_ptr<RpcClient> client;

  Fixture() {
    auto lis = listen("127.0.0.1", 0, server_cfg);
    EXPECT_TRUE(lis.ok());
    server = serve(std::move(*lis), test_handler);
    auto c = RpcClient::connect("127.0.0.1", server->port(), client_cfg, kTimeout);
    EXPECT_TRUE(c.ok());
    if (c) client = std::move(*c);
  }
};

TEST(Rpc, CallAndResponse) {
  Fixture f;
  ASSERT_TRUE(f.client);
  json params = {{"a", 1}, {"b", {1, 2, 3}}, {"s", "x"}};
  auto r = f.client->call("echo", params, kTimeout);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, params);
  auto who = f.client->call("whoami", json::object(), kTimeout);
  ASSERT_TRUE(who.ok());
  EXPECT_EQ((*who)["payload"], "client-cert");
  EXPECT_EQ(f.client->remote().payload, "server-cert");
  f.server->stop();
}

TEST(Rpc, ServerErrorPropagatesCodeAndMessage) {
  Fixture f;
  ASSERT_TRUE(f.client);
  auto r = f.client->call("fail", json{{"k", 1}}, kTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "test.failure");
  EXPECT_EQ(r.error().message, "it broke: {\"k\":1}");
}

TEST(Rpc, UnknownMethod) {
  Fixture f;
  ASSERT_TRUE(f.client);
  auto r = f.client->call("no_such_method", json::object(), kTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrUnknownMethod);
  EXPECT_EQ(r.error().message, "unknown method \"no_such_method\"");
}

TEST(Rpc, ConcurrentCallersOnOneClientAndManyClients) {
  Fixture f;
  ASSERT_TRUE(f.client);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto r = f.client->call("echo", json{{"t", t}, {"i", i}}, kTimeout);
        ASSERT_TRUE(r.ok());
        EXPECT_EQ((*r)["t"], t);
        EXPECT_EQ((*r)["i"], i);
      }
    });
  }
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      auto c = RpcClient::connect("127.0.0.1", f.server->port(), f.client_cfg, kTimeout);
      ASSERT_TRUE(c.ok());
      for (int i = 0; i < 20; ++i) ASSERT_TRUE((*c)->call("echo", json::object(), kTimeout).ok());
    });
  }
  for (auto& th : threads) th.join();
}

TEST(Rpc, StopClosesSessionsAndClientSeesClosed) {
  Fixture f;
  ASSERT_TRUE(f.client);
  ASSERT_TRUE(f.client->call("echo", json::object(), kTimeout).ok());
  f.server->stop();
  f.server->stop();  // idempotent
  auto r = f.client->call("echo", json::object(), kTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().code == kErrClosed || r.error().code == kErrProtocol) << r.error().code;
}

TEST(Rpc, MalformedRequestOverTheWireGetsError) {
  Fixture f;
  ASSERT_TRUE(f.server);
  auto s = dial("127.0.0.1", f.server->port(), f.client_cfg, kTimeout);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->send(R"({"id": 7, "method": 3})").ok());
  auto m = (*s)->recv(kTimeout);
  ASSERT_TRUE(m.ok());
  auto resp = parse_response(*m);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->id, 7u);
  ASSERT_FALSE(resp->result.ok());
  EXPECT_EQ(resp->result.error().code, kErrBadMessage);
  ASSERT_TRUE((*s)->send("\xff\xfe not json").ok());
  m = (*s)->recv(kTimeout);
  ASSERT_TRUE(m.ok());
  resp = parse_response(*m);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->id, 0u);
}

TEST(RpcParse, RequestRoundTrip) {
  RpcRequest r;
  r.id = 18446744073709551615ull;
  r.method = "register_task";
  r.params = {{"url", "http://x/\xc3\xa9"}};
  auto p = parse_request(encode_request(r));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->id, r.id);
  EXPECT_EQ(p->method, r.method);
  EXPECT_EQ(p->params, r.params);
  auto q = parse_request(R"({"id":1,"method":"m"})");  // params may be omitted
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->params.is_object());
}

TEST(RpcParse, ResponseRoundTrip) {
  RpcResponse ok;
  ok.id = 5;
  ok.result = json{{"x", 1}};
  auto p = parse_response(encode_response(ok));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->id, 5u);
  ASSERT_TRUE(p->result.ok());
  EXPECT_EQ(*p->result, (json{{"x", 1}}));
  RpcResponse err;
  err.id = 6;
  err.result = make_error("a.b", "bad \xff utf8 replaced");  // must not throw
  auto q = parse_response(encode_response(err));
  ASSERT_TRUE(q.ok());
  ASSERT_FALSE(q->result.ok());
  EXPECT_EQ(q->result.error().code, "a.b");
}

TEST(RpcParse, MalformedRequestsRejected) {
  const char* cases[] = {
      "",
      "{",
      "null",
      "[]",
      "\"str\"",
      "{}",
      R"({"method":"m","params":{}})",
      R"({"id":-1,"method":"m","params":{}})",
      R"({"id":1.5,"method":"m","params":{}})",
      R"({"id":"1","method":"m","params":{}})",
      R"({"id":1,"params":{}})",
      R"({"id":1,"method":"","params":{}})",
      R"({"id":1,"method":7,"params":{}})",
      R"({"id":1,"method":"m","params":[]})",
      R"({"id":1,"method":"m","params":null})",
      R"({"id":1,"method":"m","params":{},"extra":1})",
      R"({"id":99999999999999999999999,"method":"m","params":{}})",
      "{\"id\":1,\"method\":\"m\xff\",\"params\":{}}",
      R"({"id":1,"method":"m","params":{}} trailing)",
  };
  for (const char* c : cases) {
    auto r = parse_request(c);
    EXPECT_FALSE(r.ok()) << c;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, kErrBadMessage);
    }
  }
  EXPECT_FALSE(parse_request(std::string(300, 'x')).ok());
  EXPECT_FALSE(parse_request(R"({"id":1,"method":")" + std::string(300, 'm') + R"("})").ok());
  // Deep nesting must not crash.
  EXPECT_FALSE(parse_request(std::string(100000, '[')).ok());
  std::string deep = R"({"id":1,"method":"m","params":{"a":)" + std::string(20000, '[') +
                     std::string(20000, ']') + "}}";
  EXPECT_TRUE(parse_request(deep).ok());
}

TEST(RpcParse, MalformedResponsesRejected) {
  const char* cases[] = {
      "",
      "[1]",
      R"({"result":{}})",
      R"({"id":1})",
      R"({"id":1,"result":{},"error":{"code":"a","message":"b"}})",
      R"({"id":1,"error":"x"})",
      R"({"id":1,"error":{}})",
      R"({"id":1,"error":{"code":"a"}})",
      R"({"id":1,"error":{"code":1,"message":"b"}})",
      R"({"id":1,"error":{"code":"","message":"b"}})",
      R"({"id":1,"error":{"code":"a","message":"b","x":1}})",
      R"({"id":-3,"result":{}})",
      R"({"id":1,"result":{},"junk":0})",
  };
  for (const char* c : cases) {
    auto r = parse_response(c);
    EXPECT_FALSE(r.ok()) << c;
  }
}

}  // namespace
}  // namespace starling::mesh

// Mesh sessions over real TCP on 127.0.0.1, port 0.
#include "mesh/session.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>

#include "tests/mesh/mesh_test_util.h"

namespace starling::mesh {
namespace {

using std::chrono::milliseconds;
using testing::fake_certificate;
using testing::node_config;
using testing::raw_connect;

constexpr milliseconds kTimeout{5000};

struct Link {
  std::unique_ptr<MeshListener> listener;
  std::unique_ptr<MeshSession> client;
  std::unique_ptr<MeshSession> server;
};

Link connect_pair(const MeshConfig& server_cfg, const MeshConfig& client_cfg) {
  Link l;
  auto lis = listen("127.0.0.1", 0, server_cfg);
  EXPECT_TRUE(lis.ok());
  if (!lis) return l;
  l.listener = std::move(*lis);
  auto c = dial("127.0.0.1", l.listener->port(), client_cfg, kTimeout);
  EXPECT_TRUE(c.ok()) << c.error().code << ": " << c.error().message;
  if (!c) return l;
  l.client = std::move(*c);
  auto s = l.listener->accept();
  EXPECT_TRUE(s.ok());
  if (s) l.server = std::move(*s);
  return l;
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& ch : s) ch = static_cast<char>(rng());
  return s;
}

TEST(MeshSession, HandshakeExchangesStaticKeysAndPayloads) {
  auto server_cfg = node_config(fake_certificate("server"));
  auto client_cfg = node_config(fake_certificate("client"));
  ASSERT_GT(server_cfg.payload.size(), 650u);
  Link l = connect_pair(server_cfg, client_cfg);
  ASSERT_TRUE(l.client && l.server);
  EXPECT_EQ(l.client->remote().static_key, server_cfg.static_public);
  EXPECT_EQ(l.client->remote().payload, server_cfg.payload);
  EXPECT_EQ(l.client->remote().address, "127.0.0.1:" + std::to_string(l.listener->port()));
  EXPECT_EQ(l.server->remote().static_key, client_cfg.static_public);
  EXPECT_EQ(l.server->remote().payload, client_cfg.payload);
  EXPECT_EQ(l.server->remote().address.rfind("127.0.0.1:", 0), 0u);

  ASSERT_TRUE(l.client->send("ping").ok());
  auto m = l.server->recv(kTimeout);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, "ping");
  ASSERT_TRUE(l.server->send("").ok());  // empty messages are messages too
  auto e = l.client->recv(kTimeout);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, "");
}

TEST(MeshSession, WrongPskIsRefusedWithClearMessageAndLogged) {
  auto server_cfg = node_config("server", 0x01);
  auto client_cfg = node_config("client", 0x02);
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  const uint16_t port = (*lis)->port();
  ::testing::internal::CaptureStderr();
  auto c = dial("127.0.0.1", port, client_cfg, kTimeout);
  // The listener logs before it hangs up, so the line is there once dial has returned.
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kErrHandshake);
  EXPECT_EQ(c.error().message, "handshake with 127.0.0.1:" + std::to_string(port) +
                                   " refused (wrong network key, or not a Starling node)");
  EXPECT_NE(log.find("mesh: handshake from 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("failed: wrong network key or corrupted message"), std::string::npos) << log;
}

TEST(MeshSession, ListenerVerifyRejectsDialer) {
  auto server_cfg = node_config("server");
  auto client_cfg = node_config("client");
  std::atomic<int> calls{0};
  server_cfg.verify_remote = [&](const RemotePeer& p) -> Status {
    ++calls;
    EXPECT_EQ(p.payload, "client");
    return make_error("test.bad_cert", "certificate not signed by the network CA");
  };
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  ::testing::internal::CaptureStderr();
  auto c = dial("127.0.0.1", (*lis)->port(), client_cfg, kTimeout);
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kErrPeerRejected) << c.error().message;
  EXPECT_EQ(calls.load(), 1);
  EXPECT_NE(log.find("certificate not signed by the network CA"), std::string::npos) << log;
}

TEST(MeshSession, DialerVerifyRejectsListener) {
  auto server_cfg = node_config("server");
  auto client_cfg = node_config("client");
  client_cfg.verify_remote = [&](const RemotePeer& p) -> Status {
    EXPECT_EQ(p.static_key, server_cfg.static_public);
    return make_error("test.bad_cert", "wrong role");
  };
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  ::testing::internal::CaptureStderr();
  auto c = dial("127.0.0.1", (*lis)->port(), client_cfg, kTimeout);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kErrPeerRejected);
  EXPECT_NE(c.error().message.find("wrong role"), std::string::npos);
  (*lis)->close();
  ::testing::internal::GetCapturedStderr();
}

TEST(MeshSession, TenMiBMessageRoundTrip) {
  Link l = connect_pair(node_config("s"), node_config("c"));
  ASSERT_TRUE(l.client && l.server);
  const std::string big = random_bytes(10 * 1024 * 1024, 1);
  auto sender = std::async(std::launch::async, [&] { return l.client->send(big); });
  auto got = l.server->recv(kTimeout * 4);
  ASSERT_TRUE(sender.get().ok());
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_TRUE(*got == big);
  // And back.
  auto back = std::async(std::launch::async, [&] { return l.server->send(*got); });
  auto echoed = l.client->recv(kTimeout * 4);
  ASSERT_TRUE(back.get().ok());
  ASSERT_TRUE(echoed.ok());
  EXPECT_TRUE(*echoed == big);
}

TEST(MeshSession, OversizeMessageRefusedBySender) {
  Link l = connect_pair(node_config("s"), node_config("c"));
  ASSERT_TRUE(l.client);
  auto st = l.client->send(std::string(kMaxMessageSize + 1, 'x'));
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(l.client->send("still fine").ok());
}

TEST(MeshSession, ConcurrentSendAndRecvOnOneSession) {
  Link l = connect_pair(node_config("s"), node_config("c"));
  ASSERT_TRUE(l.client && l.server);
  constexpr int kMessages = 200;
  // Both sides send and receive at the same time, each on two threads; messages are large
  // enough that socket buffers fill and both directions must progress together.
  auto run_side = [&](MeshSession& s, uint32_t seed) {
    std::thread tx([&] {
      for (int i = 0; i < kMessages; ++i) {
        ASSERT_TRUE(s.send(random_bytes(70000, seed + static_cast<uint32_t>(i))).ok());
      }
    });
    int received = 0;
    const uint32_t peer_seed = seed == 100 ? 200 : 100;
    for (int i = 0; i < kMessages; ++i) {
      auto m = s.recv(kTimeout * 4);
      ASSERT_TRUE(m.ok()) << m.error().message;
      ASSERT_TRUE(*m == random_bytes(70000, peer_seed + static_cast<uint32_t>(i)));
      ++received;
    }
    tx.join();
    EXPECT_EQ(received, kMessages);
  };
  std::thread a([&] { run_side(*l.client, 100); });
  std::thread b([&] { run_side(*l.server, 200); });
  a.join();
  b.join();
}

TEST(MeshSession, RecvAfterPeerCloseIsClosed) {
  Link l = connect_pair(node_config("s"), node_config("c"));
  ASSERT_TRUE(l.client && l.server);
  ASSERT_TRUE(l.client->send("last words").ok());
  l.client->close();
  l.client->close();  // idempotent
  auto m = l.server->recv(kTimeout);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, "last words");
  auto end = l.server->recv(kTimeout);
  ASSERT_FALSE(end.ok());
  EXPECT_EQ(end.error().code, kErrClosed);
  EXPECT_EQ(l.client->send("x").error().code, kErrClosed);
}

TEST(MeshSession, RecvTimeoutLeavesSessionUsable) {
  Link l = connect_pair(node_config("s"), node_config("c"));
  ASSERT_TRUE(l.client && l.server);
  auto t = l.server->recv(milliseconds(50));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, kErrTimeout);
  ASSERT_TRUE(l.client->send("after timeout").ok());
  auto m = l.server->recv(kTimeout);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, "after timeout");
}

TEST(MeshSession, LocalCloseUnblocksRecvAndAccept) {
  Link l = connect_pair(node_config("s"), node_config("c"));
  ASSERT_TRUE(l.client && l.server);
  auto pending =
      std::async(std::launch::async, [&] { return l.client->recv(milliseconds(60000)); });
  std::this_thread::sleep_for(milliseconds(50));
  l.client->close();
  auto r = pending.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrClosed);

  auto acc = std::async(std::launch::async, [&] { return l.listener->accept(); });
  std::this_thread::sleep_for(milliseconds(50));
  l.listener->close();
  auto a = acc.get();
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, kErrClosed);
}

TEST(MeshSession, GarbageClientDoesNotHurtListener) {
  auto server_cfg = node_config("server");
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  const uint16_t port = (*lis)->port();
  ::testing::internal::CaptureStderr();
  for (uint32_t seed = 0; seed < 20; ++seed) {
    int fd = raw_connect(port);
    ASSERT_GE(fd, 0);
    std::string junk = random_bytes(1 + seed * 97, seed);
    if (seed % 4 == 0) junk = std::string("\x00\x20", 2) + std::string(32, '\0');  // zero key
    if (seed % 4 == 1) junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)!::write(fd, junk.data(), junk.size());
    ::close(fd);
  }
  auto c = dial("127.0.0.1", port, node_config("client"), kTimeout);
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto s = (*lis)->accept();
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*c)->send("still alive").ok());
  auto m = (*s)->recv(kTimeout);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, "still alive");
  (*lis)->close();
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("mesh: handshake from 127.0.0.1:"), std::string::npos);
}

TEST(MeshSession, SilentClientDoesNotBlockOtherHandshakes) {
  auto server_cfg = node_config("server");
  server_cfg.handshake_timeout = milliseconds(30000);
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  const uint16_t port = (*lis)->port();
  int silent = raw_connect(port);
  ASSERT_GE(silent, 0);
  std::this_thread::sleep_for(milliseconds(50));  // let the listener pick it up first
  auto c = dial("127.0.0.1", port, node_config("client"), kTimeout);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE((*lis)->accept().ok());
  // The silent connection is still pending (not dropped), so the dial did not wait for it.
  pollfd p{silent, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  ::testing::internal::CaptureStderr();
  (*lis)->close();  // aborts the pending handshake promptly
  ::testing::internal::GetCapturedStderr();
  ::close(silent);
}

TEST(MeshSession, SilentClientTimesOut) {
  auto server_cfg = node_config("server");
  server_cfg.handshake_timeout = milliseconds(200);
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  ::testing::internal::CaptureStderr();
  int silent = raw_connect((*lis)->port());
  ASSERT_GE(silent, 0);
  char buf[1];
  // The listener gives up and hangs up: the raw client sees EOF.
  pollfd p{silent, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);
  EXPECT_EQ(::read(silent, buf, 1), 0);
  ::close(silent);
  (*lis)->close();
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("failed: timed out"), std::string::npos) << log;
}

TEST(MeshSession, DialNobodyListeningIsConnectError) {
  auto lis = listen("127.0.0.1", 0, node_config("x"));
  ASSERT_TRUE(lis.ok());
  const uint16_t port = (*lis)->port();
  lis->reset();  // closed: the port now refuses
  auto c = dial("127.0.0.1", port, node_config("c"), kTimeout);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kErrConnect);
}

}  // namespace
}  // namespace starling::mesh

// Mesh sessions over real TCP on 127.0.0.1, port 0.
#include "mesh/session.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <cstring>
#include <future>
#include <random>
#include <thread>

#include "mesh/admission.h"
#include "mesh/noise.h"
#include "tests/mesh/mesh_test_util.h"

namespace starling::mesh {
namespace {

using std::chrono::milliseconds;
using testing::Answer;
using testing::fake_certificate;
using testing::FrameRelay;
using testing::node_config;
using testing::raw_connect;
using testing::raw_connect_from;
using testing::read_answer;
using testing::write_fully;

constexpr milliseconds kTimeout{5000};
constexpr size_t kMinRecordLengthForTest = 8 + 1 + 16;  // counter, type, tag

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

// ---- rekeying, tampering and replay through a man in the middle ----

// Frame numbers on the client-to-server stream of an XX session: 0 = first frame,
// 1 = message 3, 2... = the client's records.
constexpr size_t kFirstClientRecord = 2;

size_t record_length(const std::string& frame) {
  return (size_t{static_cast<uint8_t>(frame[0])} << 8) | static_cast<uint8_t>(frame[1]);
}

TEST(MeshSession, RekeyRecordsOnTheWireAndMessagesIntact) {
  auto server_cfg = node_config("s");
  auto client_cfg = node_config("c");
  client_cfg.rekey_after_records = 2;
  server_cfg.rekey_after_records = 3;
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  std::atomic<int> empty_records{0};
  FrameRelay relay((*lis)->port(), [&](size_t i, std::string f) {
    // No empty message is sent, so every record with the minimum length is a kRekey.
    if (i >= kFirstClientRecord && record_length(f) == kMinRecordLengthForTest) ++empty_records;
    return std::vector<std::string>{f};
  });
  ASSERT_NE(relay.port(), 0);
  auto c = dial("127.0.0.1", relay.port(), client_cfg, kTimeout);
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto s = (*lis)->accept();
  ASSERT_TRUE(s.ok());
  for (uint32_t i = 0; i < 30; ++i) {
    const std::string m = random_bytes(1 + (i * 7919) % 150000, i);
    auto sender = std::async(std::launch::async, [&] { return (*c)->send(m); });
    auto got = (*s)->recv(kTimeout);
    ASSERT_TRUE(sender.get().ok());
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_TRUE(*got == m) << i;
    ASSERT_TRUE((*s)->send(m).ok());
    auto back = (*c)->recv(kTimeout);
    ASSERT_TRUE(back.ok()) << back.error().message;
    ASSERT_TRUE(*back == m) << i;
  }
  (*c)->close();
  // 30 messages of 1 to 3 records each, a rekey every 2 records.
  EXPECT_GE(empty_records.load(), 15);
}

TEST(MeshSession, TamperedRecordClosesSessionWithProtocolError) {
  auto lis = listen("127.0.0.1", 0, node_config("s"));
  ASSERT_TRUE(lis.ok());
  FrameRelay relay((*lis)->port(), [](size_t i, std::string f) {
    if (i == kFirstClientRecord + 1) f[f.size() / 2] = static_cast<char>(f[f.size() / 2] ^ 0x04);
    return std::vector<std::string>{f};
  });
  auto c = dial("127.0.0.1", relay.port(), node_config("c"), kTimeout);
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto s = (*lis)->accept();
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*c)->send("first, intact").ok());
  ASSERT_TRUE((*c)->send("second, tampered in transit").ok());
  auto m = (*s)->recv(kTimeout);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, "first, intact");
  auto bad = (*s)->recv(kTimeout);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, kErrProtocol);
  EXPECT_NE(bad.error().message.find("authentication failed"), std::string::npos)
      << bad.error().message;
  auto after = (*s)->recv(kTimeout);  // the session stays closed
  EXPECT_FALSE(after.ok());
}

TEST(MeshSession, ReplayedRecordClosesSessionWithProtocolError) {
  auto lis = listen("127.0.0.1", 0, node_config("s"));
  ASSERT_TRUE(lis.ok());
  FrameRelay relay((*lis)->port(), [](size_t i, std::string f) {
    if (i == kFirstClientRecord + 1) return std::vector<std::string>{f, f};
    return std::vector<std::string>{f};
  });
  auto c = dial("127.0.0.1", relay.port(), node_config("c"), kTimeout);
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto s = (*lis)->accept();
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*c)->send("one").ok());
  ASSERT_TRUE((*c)->send("two").ok());
  EXPECT_EQ((*s)->recv(kTimeout).value(), "one");
  EXPECT_EQ((*s)->recv(kTimeout).value(), "two");
  auto bad = (*s)->recv(kTimeout);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, kErrProtocol);
  EXPECT_NE(bad.error().message.find("replayed"), std::string::npos) << bad.error().message;
}

// ---- admission control ----

// A genuine XXpsk3 first frame for `psk`, as dial() would send it.
Bytes first_frame(const noise::Key& psk, const std::optional<admission::Cookie>& cookie = {}) {
  noise::HandshakeConfig hc;
  hc.role = noise::Role::kInitiator;
  hc.prologue = {'s', 't', 'a', 'r', 'l', 'i', 'n', 'g', '-', 'm', 'e', 's', 'h', '/', '1'};
  hc.local_static = noise::generate_key_pair();
  hc.local_ephemeral = noise::generate_key_pair();
  hc.psk = psk;
  noise::HandshakeState hs(hc);
  auto m1 = hs.write_message({});
  admission::AdmissionKeys keys;
  admission::derive_keys(psk, keys);
  return admission::encode_first_frame(admission::PatternId::kXXpsk3, *m1, keys, cookie);
}

TEST(MeshSession, FirstMessageWithoutTheKeyGetsNoReplyAndNoStaticKey) {
  auto server_cfg = node_config("server", 0x01);
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  ::testing::internal::CaptureStderr();
  noise::Key wrong;
  wrong.fill(0x02);
  const Bytes bad = first_frame(wrong);
  int fd = raw_connect((*lis)->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(write_fully(fd, bad.data(), bad.size()));
  std::string got;
  // An orderly close without a single byte: in particular no message 2, which would carry
  // (encrypted only under keys a scanner can compute) the listener's static key.
  EXPECT_EQ(read_answer(fd, &got), Answer::kEof) << got.size();
  ::close(fd);
  // With the key, the same exchange gets message 2 (kind 1, e || enc(s) || enc(empty)).
  noise::Key right;
  right.fill(0x01);
  const Bytes good = first_frame(right);
  fd = raw_connect((*lis)->port());
  ASSERT_TRUE(write_fully(fd, good.data(), good.size()));
  ASSERT_EQ(read_answer(fd, &got), Answer::kData);
  ASSERT_GE(got.size(), 3u);
  EXPECT_EQ(got[2], 1);
  EXPECT_EQ(got.size(), 2u + 1 + 32 + 48 + 16);
  ::close(fd);
  (*lis)->close();
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("failed: wrong network key or corrupted message (bad mac1)"),
            std::string::npos)
      << log;
}

TEST(MeshSession, FloodFromOneSourceIsCutOffAndOthersStillDial) {
  auto server_cfg = node_config("server");
  // A refill rate so low that the test never sees a refill: exactly `burst` get through.
  server_cfg.handshake_rate_per_ip = 0.001;
  server_cfg.handshake_burst_per_ip = 5;
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  const uint16_t port = (*lis)->port();
  noise::Key wrong;
  wrong.fill(0x99);
  const Bytes bad = first_frame(wrong);
  ::testing::internal::CaptureStderr();
  const auto started = std::chrono::steady_clock::now();
  int read_then_dropped = 0, reset = 0, other = 0;
  for (int i = 0; i < 60; ++i) {
    // The connect itself is not under test (the limit acts after accept); under a loaded CI
    // run it failed once (ASan build, other tests binding 127.0.0.2): try it again then.
    int fd = -1;
    for (int attempt = 0; attempt < 3 && fd < 0; ++attempt)
      fd = raw_connect_from("127.0.0.2", port);
    ASSERT_GE(fd, 0) << "connect from 127.0.0.2: " << std::strerror(errno);
    // A reset can arrive before our write (which then fails) or after it (the read fails).
    if (!write_fully(fd, bad.data(), bad.size())) {
      ++reset;
      ::close(fd);
      continue;
    }
    switch (read_answer(fd)) {
      case Answer::kEof:
        ++read_then_dropped;  // admitted, read, failed mac1: no reply
        break;
      case Answer::kReset:
        ++reset;  // refused by the rate limit before anything was read
        break;
      default:
        ++other;
    }
    ::close(fd);
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(read_then_dropped, 5);
  EXPECT_EQ(reset, 55);
  EXPECT_EQ(other, 0);
  // A dialer at another address is not affected.
  auto c = dial("127.0.0.1", port, node_config("client"), kTimeout);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_TRUE((*lis)->accept().ok());
  std::string log = ::testing::internal::GetCapturedStderr();
  size_t lines = 0;
  for (size_t at = 0;
       (at = log.find("handshake rate limit for 127.0.0.2", at)) != std::string::npos; ++at) {
    ++lines;
  }
  EXPECT_GE(lines, 1u);
  EXPECT_LE(static_cast<double>(lines), elapsed + 1) << log;  // at most one line per second
  // Once 127.0.0.1 has spent its own burst, a dial from it is reported as busy (a transport
  // failure to retry), not as a wrong network key.
  for (int i = 0; i < 4; ++i) {
    int fd = raw_connect(port);
    (void)write_fully(fd, bad.data(), bad.size());
    (void)read_answer(fd);
    ::close(fd);
  }
  ::testing::internal::CaptureStderr();
  auto limited = dial("127.0.0.1", port, node_config("client"), kTimeout);
  ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.error().code, kErrConnect) << limited.error().message;
  EXPECT_NE(limited.error().message.find("rate-limits"), std::string::npos)
      << limited.error().message;
}

TEST(MeshSession, TooManyHalfOpenHandshakesAreReset) {
  auto server_cfg = node_config("server");
  server_cfg.max_half_open = 2;
  server_cfg.handshake_timeout = milliseconds(30000);
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  ::testing::internal::CaptureStderr();
  int silent1 = raw_connect((*lis)->port());
  int silent2 = raw_connect((*lis)->port());
  ASSERT_GE(silent1, 0);
  ASSERT_GE(silent2, 0);
  // The acceptor takes connections in order, so these two hold both slots by now.
  auto c = dial("127.0.0.1", (*lis)->port(), node_config("client"), kTimeout);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kErrConnect) << c.error().message;
  ::close(silent1);
  ::close(silent2);
  (*lis)->close();
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("too many pending handshakes"), std::string::npos) << log;
}

TEST(MeshSession, UnderLoadFirstMessageGetsACookieAndTheDialStillCompletes) {
  auto server_cfg = node_config("server", 0x05);
  server_cfg.cookie_threshold = 0;  // every handshake counts as "under load"
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  const uint16_t port = (*lis)->port();
  ::testing::internal::CaptureStderr();
  admission::AdmissionKeys keys;
  admission::derive_keys(server_cfg.psk, keys);

  // A first frame without mac2 gets a cookie reply, sealed for this frame's mac1.
  const Bytes frame = first_frame(server_cfg.psk);
  int fd = raw_connect(port);
  ASSERT_TRUE(write_fully(fd, frame.data(), frame.size()));
  std::string got;
  ASSERT_EQ(read_answer(fd, &got), Answer::kData);
  ::close(fd);
  ASSERT_EQ(got.size(), 3 + admission::kCookieReplyLen);
  EXPECT_EQ(got[2], static_cast<char>(admission::ReplyKind::kCookie));
  admission::Mac mac1;
  std::memcpy(mac1.data(), frame.data() + frame.size() - 32, 16);
  auto cookie = admission::open_cookie_reply(
      noise::ByteView(reinterpret_cast<const uint8_t*>(got.data()) + 3, got.size() - 3), mac1,
      keys);
  ASSERT_TRUE(cookie.ok()) << cookie.error().message;

  // The same kind of frame with mac2 made from that cookie gets message 2.
  const Bytes with_cookie = first_frame(server_cfg.psk, *cookie);
  fd = raw_connect(port);
  ASSERT_TRUE(write_fully(fd, with_cookie.data(), with_cookie.size()));
  ASSERT_EQ(read_answer(fd, &got), Answer::kData);
  ::close(fd);
  EXPECT_EQ(got[2], static_cast<char>(admission::ReplyKind::kHandshake));

  // A cookie for another source address does not count.
  auto other_src = raw_connect_from("127.0.0.3", port);
  ASSERT_TRUE(write_fully(other_src, with_cookie.data(), with_cookie.size()));
  ASSERT_EQ(read_answer(other_src, &got), Answer::kData);
  ::close(other_src);
  EXPECT_EQ(got[2], static_cast<char>(admission::ReplyKind::kCookie));

  // dial() does the round trip on its own.
  auto client_cfg = node_config("client", 0x05);
  auto c = dial("127.0.0.1", port, client_cfg, kTimeout);
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto s = (*lis)->accept();
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*c)->send("through the cookie").ok());
  EXPECT_EQ((*s)->recv(kTimeout).value(), "through the cookie");
  (*lis)->close();
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("under load"), std::string::npos) << log;
}

// ---- IKpsk2 ----

TEST(MeshSession, IkDialWithTheListenersKnownStaticKey) {
  auto server_cfg = node_config(fake_certificate("server"));
  auto client_cfg = node_config(fake_certificate("client"));
  client_cfg.remote_static = server_cfg.static_public;
  std::atomic<int> calls{0};
  server_cfg.verify_remote = [&](const RemotePeer& p) -> Status {
    ++calls;
    EXPECT_EQ(p.static_key, client_cfg.static_public);
    EXPECT_EQ(p.payload, client_cfg.payload);
    return {};
  };
  Link l = connect_pair(server_cfg, client_cfg);
  ASSERT_TRUE(l.client && l.server);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(l.client->remote().static_key, server_cfg.static_public);
  EXPECT_EQ(l.client->remote().payload, server_cfg.payload);
  EXPECT_EQ(l.server->remote().static_key, client_cfg.static_public);
  EXPECT_EQ(l.server->remote().payload, client_cfg.payload);
  const std::string big = random_bytes(300000, 9);
  auto tx = std::async(std::launch::async, [&] { return l.client->send(big); });
  auto got = l.server->recv(kTimeout);
  ASSERT_TRUE(tx.get().ok());
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == big);
  ASSERT_TRUE(l.server->send("pong").ok());
  EXPECT_EQ(l.client->recv(kTimeout).value(), "pong");
}

TEST(MeshSession, IkWithAWrongExpectedKeyFailsCleanly) {
  auto server_cfg = node_config("server");
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  const uint16_t port = (*lis)->port();
  auto client_cfg = node_config("client");
  client_cfg.remote_static = noise::generate_key_pair().public_key;  // somebody else
  ::testing::internal::CaptureStderr();
  auto c = dial("127.0.0.1", port, client_cfg, kTimeout);
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kErrHandshake);
  EXPECT_EQ(c.error().message, "handshake with 127.0.0.1:" + std::to_string(port) +
                                   " refused (wrong network key, the node does not hold the "
                                   "expected static key, or not a Starling node)");
  EXPECT_NE(log.find("initiator expects another static key for this node"), std::string::npos)
      << log;
  // The same listener still serves both patterns.
  client_cfg.remote_static = server_cfg.static_public;
  auto ik = dial("127.0.0.1", port, client_cfg, kTimeout);
  ASSERT_TRUE(ik.ok()) << ik.error().message;
  client_cfg.remote_static.reset();
  auto xx = dial("127.0.0.1", port, client_cfg, kTimeout);
  ASSERT_TRUE(xx.ok()) << xx.error().message;
}

TEST(MeshSession, IkWrongPskAndVerifyRejections) {
  auto server_cfg = node_config("server", 0x11);
  auto lis = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis.ok());
  ::testing::internal::CaptureStderr();
  auto intruder = node_config("intruder", 0x12);
  intruder.remote_static = server_cfg.static_public;
  auto c = dial("127.0.0.1", (*lis)->port(), intruder, kTimeout);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, kErrHandshake);
  (*lis)->close();

  server_cfg.verify_remote = [](const RemotePeer&) -> Status {
    return make_error("test.bad_cert", "not in the network");
  };
  auto lis2 = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis2.ok());
  auto member = node_config("member", 0x11);
  member.remote_static = server_cfg.static_public;
  auto r = dial("127.0.0.1", (*lis2)->port(), member, kTimeout);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrPeerRejected);
  (*lis2)->close();

  server_cfg.verify_remote = nullptr;
  auto lis3 = listen("127.0.0.1", 0, server_cfg);
  ASSERT_TRUE(lis3.ok());
  member.verify_remote = [](const RemotePeer&) -> Status {
    return make_error("test.bad_cert", "wrong role");
  };
  auto d = dial("127.0.0.1", (*lis3)->port(), member, kTimeout);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, kErrPeerRejected);
  EXPECT_NE(d.error().message.find("wrong role"), std::string::npos);
  (*lis3)->close();
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("bad mac1"), std::string::npos) << log;
  EXPECT_NE(log.find("not in the network"), std::string::npos) << log;
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

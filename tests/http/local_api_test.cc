#include "peer/api/local_api.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/http/http_test_util.h"

namespace starling::peer {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// A raw unix-socket client: connects and returns the descriptor (or -1).
int connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Reads until the peer closes (or `until` appears when not empty).
std::string read_until(int fd, const std::string& until = "") {
  std::string got;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    if (!until.empty() && got.find(until) != std::string::npos) break;
  }
  return got;
}

HttpReply echo(const std::string& method, const std::string& target, const std::string& body) {
  nlohmann::json j{{"method", method}, {"target", target}, {"body", body}};
  return HttpReply{200, "application/json", j.dump()};
}

class LocalApiTest : public ::testing::Test {
 protected:
  std::string sock() const { return dir_ / "api.sock"; }
  TempDir dir_;
};

TEST_F(LocalApiTest, RoundTripMethodTargetBody) {
  auto server = LocalApiServer::start(sock(), echo);
  ASSERT_TRUE(server.ok()) << server.error().message;
  struct Case {
    std::string method, target, body;
  };
  const Case cases[] = {
      {"GET", "/v1/tasks?state=running", ""},
      {"POST", "/v1/tasks", R"({"url":"http://o/f"})"},
      {"DELETE", "/v1/tasks/abc", ""},
      {"PUT", "/v1/config", "{}"},
      {"POST", "/v1/big", std::string(512 * 1024, 'x')},
  };
  for (const auto& c : cases) {
    auto r = local_api_call(sock(), c.method, c.target, c.body, 5000ms);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->content_type, "application/json");
    auto j = nlohmann::json::parse(r->body);
    EXPECT_EQ(j["method"], c.method);
    EXPECT_EQ(j["target"], c.target);
    EXPECT_EQ(j["body"], c.body);
  }
}

TEST_F(LocalApiTest, StatusAndContentTypeComeBack) {
  auto server =
      LocalApiServer::start(sock(), [](const std::string&, const std::string&, const std::string&) {
        return HttpReply{404, "text/plain", "no such task\n"};
      });
  ASSERT_TRUE(server.ok()) << server.error().message;
  auto r = local_api_call(sock(), "GET", "/v1/tasks/x", "", 5000ms);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->content_type, "text/plain");
  EXPECT_EQ(r->body, "no such task\n");
}

TEST_F(LocalApiTest, HandlerExceptionIs500) {
  auto server = LocalApiServer::start(
      sock(), [](const std::string&, const std::string&, const std::string&) -> HttpReply {
        throw std::runtime_error("boom");
      });
  ASSERT_TRUE(server.ok());
  auto r = local_api_call(sock(), "GET", "/v1/x", "", 5000ms);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 500);
}

TEST_F(LocalApiTest, SocketModeIs0600) {
  auto server = LocalApiServer::start(sock(), echo);
  ASSERT_TRUE(server.ok());
  struct stat st {};
  ASSERT_EQ(::stat(sock().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(LocalApiTest, StaleSocketIsReplaced) {
  {
    // A socket file nobody listens on, as a crashed daemon leaves it.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, sock().c_str(), sock().size() + 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
    ASSERT_TRUE(std::filesystem::exists(sock()));
  }
  auto server = LocalApiServer::start(sock(), echo);
  ASSERT_TRUE(server.ok()) << server.error().message;
  auto r = local_api_call(sock(), "GET", "/v1/ping", "", 5000ms);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST_F(LocalApiTest, SecondServerOnLiveSocketIsRefused) {
  auto first = LocalApiServer::start(sock(), echo);
  ASSERT_TRUE(first.ok());
  auto second = LocalApiServer::start(sock(), echo);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, kErrLocalApi);
  EXPECT_EQ(second.error().message, "another daemon is listening on " + sock());
  // The first one still works and still owns the file.
  auto r = local_api_call(sock(), "GET", "/v1/ping", "", 5000ms);
  ASSERT_TRUE(r.ok()) << r.error().message;
}

TEST_F(LocalApiTest, RegularFileAtPathIsNotRemoved) {
  testing::write_file(sock(), "precious");
  auto server = LocalApiServer::start(sock(), echo);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(testing::read_file(sock()), "precious");
}

TEST_F(LocalApiTest, NoDaemonHasExactMessage) {
  auto r = local_api_call(sock(), "GET", "/v1/ping", "", 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrNoDaemon);
  EXPECT_EQ(r.error().message, "no peer daemon at " + sock() + " (start one with `starling peer`)");
  {
    // Stale socket file: refused, same message.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, sock().c_str(), sock().size() + 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  r = local_api_call(sock(), "GET", "/v1/ping", "", 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "no peer daemon at " + sock() + " (start one with `starling peer`)");
}

TEST_F(LocalApiTest, MalformedRequestGets400AndClose) {
  auto server = LocalApiServer::start(sock(), echo);
  ASSERT_TRUE(server.ok());
  int fd = connect_unix(sock());
  ASSERT_GE(fd, 0);
  send_all(fd, "NOT HTTP AT ALL\x01\r\n\r\n");
  std::string got = read_until(fd);  // returns at close
  ::close(fd);
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
}

TEST_F(LocalApiTest, OversizedBodyIsRejected) {
  bool called = false;
  auto server = LocalApiServer::start(
      sock(), [&](const std::string&, const std::string&, const std::string&) {
        called = true;
        return HttpReply{};
      });
  ASSERT_TRUE(server.ok());
  auto r = local_api_call(sock(), "POST", "/v1/x", std::string(1024 * 1024 + 1, 'y'), 5000ms);
  // Either a 413 arrives or the server closed mid-upload; the handler never runs.
  if (r.ok()) {
    EXPECT_EQ(r->status, 413);
  }
  EXPECT_FALSE(called);
}

TEST_F(LocalApiTest, KeepAliveConnectionServesSeveralRequests) {
  auto server = LocalApiServer::start(sock(), echo);
  ASSERT_TRUE(server.ok());
  int fd = connect_unix(sock());
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 3; ++i) {
    send_all(fd, "GET /v1/n" + std::to_string(i) + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    std::string got = read_until(fd, "}");
    EXPECT_NE(got.find("/v1/n" + std::to_string(i)), std::string::npos) << got;
  }
  ::close(fd);
}

TEST_F(LocalApiTest, DestructionWithIdleKeepAliveClientReturnsPromptly) {
  auto server = LocalApiServer::start(sock(), echo);
  ASSERT_TRUE(server.ok());
  int fd = connect_unix(sock());
  ASSERT_GE(fd, 0);
  send_all(fd, "GET /v1/ping HTTP/1.1\r\nHost: localhost\r\n\r\n");
  std::string got = read_until(fd, "}");
  ASSERT_NE(got.find("200"), std::string::npos);
  // A second client connected that never sends anything.
  int silent = connect_unix(sock());
  ASSERT_GE(silent, 0);
  std::this_thread::sleep_for(50ms);

  auto t0 = std::chrono::steady_clock::now();
  server->reset();
  auto elapsed = std::chrono::steady_clock::now() - t0;
  // Generous bound: the point is that it does not wait for the clients to hang up.
  EXPECT_LT(elapsed, 5s);
  EXPECT_FALSE(std::filesystem::exists(sock()));
  EXPECT_EQ(read_until(fd), "");  // the server closed the kept-alive connection
  ::close(fd);
  ::close(silent);
}

}  // namespace
}  // namespace starling::peer

// Test helpers for fetches that take a while: a throttled one-file origin (with or without
// Range support) and a peer daemon's local API as JSON.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "peer/api/local_api.h"

namespace starling::testing {

// A one-file HTTP/1.1 origin on `ip` that sends its body at `bytes_per_second`, so a test can
// act while a fetch runs. With `ranges`, "Range: bytes=N-" is honoured (206), so a resumed
// fetch works; without, every request gets 200 and the whole body (an origin without Range
// support). Counts requests and body bytes sent. Any path serves the one body.
class SlowOrigin {
 public:
  SlowOrigin(std::string ip, std::string body, int64_t bytes_per_second, bool ranges = true)
      : body_(std::move(body)), rate_(bytes_per_second), ranges_(ranges) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    accept_ = std::thread([this] { accept_loop(); });
  }
  ~SlowOrigin() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    accept_.join();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      for (int c : conns_) ::shutdown(c, SHUT_RDWR);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }
  uint16_t port() const { return port_; }
  int64_t requests() const { return requests_; }
  int64_t bytes_sent() const { return bytes_sent_; }
  // When the last body byte was sent (epoch if not yet).
  std::chrono::steady_clock::time_point finished_at() const {
    std::lock_guard lock(mu_);
    return finished_at_;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::lock_guard lock(mu_);
      conns_.push_back(c);
      threads_.emplace_back([this, c] {
        serve(c);
        ::close(c);
      });
    }
  }
  void serve(int c) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    ++requests_;
    const bool head = req.rfind("HEAD ", 0) == 0;
    size_t first = 0;
    std::string status = "200 OK";
    std::string extra;
    for (const char* name : {"\r\nRange: bytes=", "\r\nrange: bytes="}) {
      if (!ranges_) break;
      const auto at = req.find(name);
      if (at == std::string::npos) continue;
      first = std::stoull(req.substr(at + std::strlen(name)));
      if (first >= body_.size()) first = body_.size();
      status = "206 Partial Content";
      extra = "Content-Range: bytes " + std::to_string(first) + "-" +
              std::to_string(body_.size() - 1) + "/" + std::to_string(body_.size()) + "\r\n";
    }
    const std::string header =
        "HTTP/1.1 " + status + "\r\nContent-Length: " + std::to_string(body_.size() - first) +
        "\r\n" + extra + (ranges_ ? "Accept-Ranges: bytes\r\n" : "") + "Connection: close\r\n\r\n";
    if (!send_all(c, header.data(), header.size()) || head) return;
    constexpr size_t kChunk = 64 * 1024;
    const auto start = std::chrono::steady_clock::now();
    for (size_t off = first; off < body_.size() && !stop_; off += kChunk) {
      const size_t n = std::min(kChunk, body_.size() - off);
      if (!send_all(c, body_.data() + off, n)) return;
      bytes_sent_ += static_cast<int64_t>(n);
      const auto due = start + std::chrono::microseconds(static_cast<int64_t>(off + n - first) *
                                                         1000000 / rate_);
      std::this_thread::sleep_until(due);
    }
    std::lock_guard lock(mu_);
    finished_at_ = std::chrono::steady_clock::now();
  }
  static bool send_all(int c, const char* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(c, p, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  const std::string body_;
  const int64_t rate_;
  const bool ranges_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> bytes_sent_{0};
  std::thread accept_;
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point finished_at_;  // guarded by mu_
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
};

// A call to a peer daemon's local API: the JSON answer with "http_status" added, or null when
// the call or the parse failed.
inline nlohmann::json peer_api(const std::string& socket, const std::string& method,
                               const std::string& target) {
  using nlohmann::json;
  auto r = peer::local_api_call(socket, method, target, "", std::chrono::seconds(10));
  if (!r.ok()) return json();
  auto j = json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return json();
  j["http_status"] = r->status;
  return j;
}

}  // namespace starling::testing

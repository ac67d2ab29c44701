// Shared helpers for the mesh tests: node configs with fresh keys, raw TCP clients and a
// frame-editing man-in-the-middle relay.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "mesh/noise.h"
#include "mesh/session.h"

namespace starling::mesh::testing {

inline MeshConfig node_config(const std::string& payload, uint8_t psk_byte = 0x42) {
  MeshConfig c;
  c.psk.fill(psk_byte);
  auto kp = noise::generate_key_pair();
  c.static_secret = kp.secret;
  c.static_public = kp.public_key;
  c.payload = payload;
  return c;
}

// A certificate-sized payload (~700 bytes), as the handshake carries in production.
inline std::string fake_certificate(const std::string& who) {
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (int i = 0; i < 10; ++i) pem += std::string(64, static_cast<char>('A' + i)) + "\n";
  pem += who + "\n-----END CERTIFICATE-----\n";
  return pem;
}

// A plain TCP connection to 127.0.0.1:port (no handshake), or -1.
inline int raw_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A plain TCP connection from src_ip (any 127/8 address is local) to 127.0.0.1:port, or -1.
inline int raw_connect_from(const char* src_ip, uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, src_ip, &src.sin_addr);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    const int e = errno;  // for the caller's message
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

inline bool write_fully(int fd, const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// How a listener answered a raw client: with bytes, an orderly close, or a reset.
enum class Answer { kData, kEof, kReset, kTimeout };
inline Answer read_answer(int fd, std::string* data = nullptr, int timeout_ms = 10000) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return Answer::kTimeout;
  char buf[4096];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n > 0) {
    if (data) data->assign(buf, static_cast<size_t>(n));
    return Answer::kData;
  }
  if (n == 0) return Answer::kEof;
  return errno == ECONNRESET ? Answer::kReset : Answer::kEof;
}

// A TCP man in the middle on 127.0.0.1: accepts one connection, connects it to
// 127.0.0.1:target and forwards both ways. The client-to-server bytes are cut into u16-length
// frames (handshake frames and records alike, numbered from 0) and passed through `edit`,
// whose returned frames are sent instead (so it can change, drop or repeat a frame).
class FrameRelay {
 public:
  using Edit = std::function<std::vector<std::string>(size_t index, std::string frame)>;
  FrameRelay(uint16_t target, Edit edit) : target_(target), edit_(std::move(edit)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 4) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FrameRelay() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }
  uint16_t port() const { return port_; }  // 0 if the relay could not start

 private:
  bool wait_readable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) == 1) return true;
    }
    return false;
  }
  void run() {
    if (!wait_readable(listen_fd_)) return;
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    const int server = raw_connect(target_);
    if (client < 0 || server < 0) {
      if (client >= 0) ::close(client);
      if (server >= 0) ::close(server);
      return;
    }
    std::string pending;
    size_t index = 0;
    bool client_open = true, server_open = true;
    char buf[65536];
    while (!stop_ && (client_open || server_open)) {
      pollfd p[2] = {{client, static_cast<short>(client_open ? POLLIN : 0), 0},
                     {server, static_cast<short>(server_open ? POLLIN : 0), 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      if (p[0].revents != 0) {
        ssize_t n = ::recv(client, buf, sizeof buf, 0);
        if (n <= 0) {
          client_open = false;
          ::shutdown(server, SHUT_WR);
        } else {
          pending.append(buf, static_cast<size_t>(n));
          while (pending.size() >= 2) {
            size_t len =
                (size_t{static_cast<uint8_t>(pending[0])} << 8) | static_cast<uint8_t>(pending[1]);
            if (pending.size() < 2 + len) break;
            for (const auto& f : edit_(index++, pending.substr(0, 2 + len))) {
              write_fully(server, f.data(), f.size());
            }
            pending.erase(0, 2 + len);
          }
        }
      }
      if (p[1].revents != 0) {
        ssize_t n = ::recv(server, buf, sizeof buf, 0);
        if (n <= 0) {
          server_open = false;
          ::shutdown(client, SHUT_WR);
        } else {
          write_fully(client, buf, static_cast<size_t>(n));
        }
      }
    }
    ::close(client);
    ::close(server);
  }

  uint16_t target_;
  Edit edit_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace starling::mesh::testing

// Helpers for the http tests: a temp dir, a raw Beast client (sends targets verbatim, so
// traversal attempts reach the server unnormalised) and a tiny scripted HTTP server.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "tests/temp_dir.h"

namespace starling::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

inline std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Reply {
  int status = 0;
  std::string body;
  http::fields headers;
  std::string header(http::field f) const {
    auto it = headers.find(f);
    return it == headers.end() ? std::string() : std::string(it->value());
  }
};

// One keep-alive connection to 127.0.0.1:port.
class Client {
 public:
  explicit Client(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  // Throws on a transport error (a test failure, reported by gtest).
  Reply request(http::verb method, const std::string& target,
                std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::request<http::empty_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (auto& [k, v] : headers) req.set(k, v);
    http::write(socket_, req);
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    if (method == http::verb::head) parser.skip(true);
    http::read(socket_, buffer_, parser);
    Reply r;
    r.status = static_cast<int>(parser.get().result_int());
    r.body = parser.get().body();
    for (const auto& f : parser.get()) r.headers.insert(f.name_string(), f.value());
    return r;
  }
  tcp::socket& socket() { return socket_; }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

inline Reply http_get(uint16_t port, const std::string& target,
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
  Client c(port);
  return c.request(http::verb::get, target, std::move(headers));
}

// A scripted HTTP server on 127.0.0.1: serves connections one at a time on one thread and
// hands each request to `handler`, which writes whatever it wants to the socket.
class ScriptedServer {
 public:
  using Handler =
      std::function<void(tcp::socket&, const http::request<http::string_body>&, ScriptedServer&)>;
  explicit ScriptedServer(Handler handler)
      : handler_(std::move(handler)),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedServer() {
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    int fd = current_fd_.load();
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  bool stopping() const { return stopping_.load(); }

 private:
  void run() {
    while (!stopping_) {
      tcp::socket s(io_);
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stopping_) return;
      current_fd_ = s.native_handle();
      beast::flat_buffer buf;
      for (;;) {
        http::request<http::string_body> req;
        http::read(s, buf, req, ec);
        if (ec) break;
        handler_(s, req, *this);
        if (!req.keep_alive() || stopping_) break;
      }
      current_fd_ = -1;
    }
  }

  Handler handler_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> current_fd_{-1};
  std::thread thread_;
};

inline void write_response(tcp::socket& s, unsigned status, const std::string& body,
                           std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  for (auto& [k, v] : headers) res.set(k, v);
  res.body() = body;
  res.prepare_payload();
  boost::system::error_code ec;
  http::write(s, res, ec);
}

}  // namespace starling::testing

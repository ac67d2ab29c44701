// The accept loop the synchronous HTTP servers share (the origin, the peer daemon's local API,
// the registry mirror): one thread accepts, each connection is served on a thread of its own,
// finished threads are reaped as new connections arrive, and stop() wakes every blocked
// accept, read and write with shutdown(2) and joins them all. Header-only and free of Asio
// includes (Acceptor is any Asio acceptor type); only .cc files that use Asio include it.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include <boost/system/error_code.hpp>

namespace starling {

template <class Acceptor>
class ThreadPerConnection {
 public:
  using Socket = typename Acceptor::protocol_type::socket;

  // `serve` runs on the connection's thread and must be thread-safe; the socket is closed
  // after it returns. `acceptor` must be listening and outlive this object.
  ThreadPerConnection(Acceptor& acceptor, std::function<void(Socket&)> serve)
      : acceptor_(acceptor), serve_(std::move(serve)) {}
  ~ThreadPerConnection() { stop(); }
  ThreadPerConnection(const ThreadPerConnection&) = delete;
  ThreadPerConnection& operator=(const ThreadPerConnection&) = delete;

  void start() {
    accept_thread_ = std::thread([this] { accept_loop(); });
  }

  // Idempotent. Returns once no thread of this object runs; the acceptor stays open.
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      // Wakes the blocked accept() (Linux returns EINVAL) and every blocked read or write.
      if (acceptor_.is_open()) ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
      for (auto& [id, fd] : open_fds_) ::shutdown(fd, SHUT_RDWR);
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    for (auto& c : connections_) c.thread.join();
    connections_.clear();
  }

 private:
  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void accept_loop() {
    uint64_t next_id = 0;
    for (;;) {
      Socket socket(acceptor_.get_executor());
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      std::lock_guard lock(mu_);
      if (stopping_) return;
      // Reap finished connections so a long run does not accumulate threads.
      for (auto it = connections_.begin(); it != connections_.end();) {
        if (it->done.load()) {
          it->thread.join();
          it = connections_.erase(it);
        } else {
          ++it;
        }
      }
      if (ec) {
        const int err = ec.value();
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
          // Out of descriptors or memory: back off instead of spinning.
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        continue;
      }
      const uint64_t id = next_id++;
      open_fds_[id] = socket.native_handle();
      Connection& c = connections_.emplace_back();
      c.thread = std::thread([this, id, &c, s = std::move(socket)]() mutable {
        serve_(s);
        {
          std::lock_guard inner(mu_);
          open_fds_.erase(id);
        }
        boost::system::error_code ignored;
        s.close(ignored);
        c.done.store(true);
      });
    }
  }

  Acceptor& acceptor_;
  std::function<void(Socket&)> serve_;
  std::thread accept_thread_;

  std::mutex mu_;  // guards the members below
  bool stopping_ = false;
  std::map<uint64_t, int> open_fds_;
  std::list<Connection> connections_;  // list: a running thread holds a reference to its entry
};

}  // namespace starling

// Shell: POSIX TCP sockets (non-blocking, waited on with poll) around the Noise and record
// cores. See mesh/README.md for the wire format.
#include "mesh/session.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <thread>

#include "mesh/noise.h"
#include "mesh/record_codec.h"

namespace starling::mesh {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kPrologue[] = "starling-mesh/1";
constexpr size_t kMaxPendingHandshakes = 64;
constexpr milliseconds kCloseFlushTimeout{1000};

// A deadline; Clock::time_point::max() means none.
struct Deadline {
  Clock::time_point at = Clock::time_point::max();
  static Deadline after(milliseconds d) {
    Deadline r;
    auto now = Clock::now();
    if (d < Clock::time_point::max() - now) r.at = now + d;
    return r;
  }
  int poll_ms() const {
    if (at == Clock::time_point::max()) return -1;
    auto left = std::chrono::ceil<milliseconds>(at - Clock::now()).count();
    if (left <= 0) return 0;
    return left > INT_MAX ? INT_MAX : static_cast<int>(left);
  }
};

std::string errno_text(int e) { return std::strerror(e); }

std::string format_address(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "?";
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return format_address(reinterpret_cast<sockaddr*>(&ss));
}

void tune_socket(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Waits for `events` on fd. Errors: kErrTimeout.
Status wait_fd(int fd, short events, const Deadline& deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, deadline.poll_ms());
    if (r > 0) return {};  // readable/writable, or HUP/ERR: the next syscall reports it
    if (r == 0) return make_error(kErrTimeout, "timed out");
    if (errno != EINTR) return make_error(kErrProtocol, "poll: " + errno_text(errno));
  }
}

// Errors: kErrClosed (EPIPE, reset), kErrTimeout.
Status write_all(int fd, const uint8_t* data, size_t size, const Deadline& deadline) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto st = wait_fd(fd, POLLOUT, deadline);
      if (!st) return st;
      continue;
    }
    return make_error(kErrClosed, "send: " + errno_text(n < 0 ? errno : EPIPE));
  }
  return {};
}

// Reads up to `cap` bytes once data is available. 0 = orderly EOF. Errors: kErrTimeout,
// kErrClosed (connection reset).
Result<size_t> read_some(int fd, uint8_t* buf, size_t cap, const Deadline& deadline) {
  for (;;) {
    ssize_t n = ::recv(fd, buf, cap, 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      auto st = wait_fd(fd, POLLIN, deadline);
      if (!st) return st.error();
      continue;
    }
    return make_error(kErrClosed, "recv: " + errno_text(errno));
  }
}

// Reads exactly `size` bytes; EOF before that is kErrClosed.
Status read_exact(int fd, uint8_t* buf, size_t size, const Deadline& deadline) {
  while (size > 0) {
    auto n = read_some(fd, buf, size, deadline);
    if (!n) return n.error();
    if (*n == 0) return make_error(kErrClosed, "connection closed");
    buf += *n;
    size -= *n;
  }
  return {};
}

// Handshake messages travel as u16 big-endian length || message.
Status write_handshake_frame(int fd, const Bytes& msg, const Deadline& deadline) {
  Bytes frame(2 + msg.size());
  frame[0] = static_cast<uint8_t>(msg.size() >> 8);
  frame[1] = static_cast<uint8_t>(msg.size());
  std::copy(msg.begin(), msg.end(), frame.begin() + 2);
  return write_all(fd, frame.data(), frame.size(), deadline);
}

Result<Bytes> read_handshake_frame(int fd, const Deadline& deadline) {
  uint8_t len[2];
  auto st = read_exact(fd, len, 2, deadline);
  if (!st) return st.error();
  Bytes msg((size_t{len[0]} << 8) | len[1]);
  st = read_exact(fd, msg.data(), msg.size(), deadline);
  if (!st) return st.error();
  return msg;
}

noise::HandshakeConfig handshake_config(const MeshConfig& config, noise::Role role) {
  noise::HandshakeConfig hc;
  hc.pattern = noise::Pattern::kXXpsk3;
  hc.role = role;
  hc.prologue.assign(kPrologue, kPrologue + sizeof kPrologue - 1);
  hc.local_static.secret = config.static_secret;
  hc.local_static.public_key = config.static_public;
  hc.local_ephemeral = noise::generate_key_pair();
  hc.psk = config.psk;
  return hc;
}

class TcpSession final : public MeshSession {
 public:
  TcpSession(int fd, RecordSealer sealer, RecordOpener opener, RemotePeer remote)
      : fd_(fd),
        sealer_(std::move(sealer)),
        opener_(std::move(opener)),
        remote_(std::move(remote)) {}
  ~TcpSession() override {
    close();
    ::close(fd_);
  }

  Status send(std::string_view message) override {
    if (message.size() > kMaxMessageSize) {
      return make_error(kErrProtocol, "message of " + std::to_string(message.size()) +
                                          " bytes exceeds the limit of " +
                                          std::to_string(kMaxMessageSize));
    }
    std::lock_guard lock(send_mu_);
    if (closed_) return make_error(kErrClosed, "session with " + remote_.address + " is closed");
    std::string out;
    auto st = sealer_.seal_message(message, out);
    if (!st) return st;
    st = write_all(fd_, reinterpret_cast<const uint8_t*>(out.data()), out.size(), Deadline{});
    if (!st) {
      return make_error(kErrClosed, "send to " + remote_.address + ": " + st.error().message);
    }
    return {};
  }

  Result<std::string> recv(milliseconds timeout) override {
    const Deadline deadline = Deadline::after(timeout);
    for (;;) {
      if (auto m = opener_.pop_message()) return std::move(*m);
      if (opener_.failed()) return protocol_error(opener_.feed({}).error());
      if (opener_.close_received()) {
        return make_error(kErrClosed, remote_.address + " closed the session");
      }
      if (closed_) return make_error(kErrClosed, "session with " + remote_.address + " closed");
      auto n = read_some(fd_, buf_.data(), buf_.size(), deadline);
      if (!n && n.error().code == kErrTimeout) {
        return make_error(kErrTimeout, "recv from " + remote_.address + " timed out");
      }
      if (closed_) return make_error(kErrClosed, "session with " + remote_.address + " closed");
      if (!n || *n == 0) {
        // EOF or reset: orderly only if the close record arrived first.
        auto st = opener_.finish();
        if (st) return make_error(kErrClosed, remote_.address + " closed the session");
        return protocol_error(st.error());
      }
      auto st = opener_.feed(std::string_view(reinterpret_cast<const char*>(buf_.data()), *n));
      if (!st && !opener_.has_message()) return protocol_error(st.error());
      // On error with complete messages queued, deliver those first; the error follows.
    }
  }

  void close() override {
    if (closed_.exchange(true)) return;
    // Best effort close record: wait briefly for an in-flight send, never block forever.
    // (A try_lock loop rather than timed_mutex: ThreadSanitizer misreads glibc's clocklock.)
    if (lock_send_within(kCloseFlushTimeout)) {
      std::string out;
      if (sealer_.seal_close(out)) {
        (void)write_all(fd_, reinterpret_cast<const uint8_t*>(out.data()), out.size(),
                        Deadline::after(kCloseFlushTimeout));
      }
      send_mu_.unlock();
    }
    ::shutdown(fd_, SHUT_RDWR);  // wakes a recv or send blocked in poll on another thread
  }

  const RemotePeer& remote() const override { return remote_; }

 private:
  bool lock_send_within(milliseconds limit) {
    const auto until = Clock::now() + limit;
    while (!send_mu_.try_lock()) {
      if (Clock::now() >= until) return false;
      std::this_thread::sleep_for(milliseconds(1));
    }
    return true;
  }

  Error protocol_error(const Error& e) {
    closed_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    return make_error(kErrProtocol, "session with " + remote_.address + ": " + e.message);
  }

  const int fd_;
  std::mutex send_mu_;
  RecordSealer sealer_;                                         // guarded by send_mu_
  RecordOpener opener_;                                         // used by the receiving thread only
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(64 * 1024);  // receiving thread only
  std::atomic<bool> closed_{false};
  RemotePeer remote_;
};

// ---- responder side (listener) ----

// Runs the responder handshake on fd. Every failure is logged here, before anything more is
// written to or closed on the socket, so the log line exists by the time the dialer learns
// the outcome.
Result<std::unique_ptr<MeshSession>> respond(int fd, const MeshConfig& config,
                                             const std::string& address) {
  const Deadline deadline = Deadline::after(config.handshake_timeout);
  auto fail = [&](const char* code, const std::string& reason) {
    std::fprintf(stderr, "mesh: handshake from %s failed: %s\n", address.c_str(), reason.c_str());
    return make_error(code, reason);
  };
  auto io_reason = [](const Error& e) {
    if (e.code == kErrTimeout) return std::string("timed out");
    return "connection closed during handshake (" + e.message + ")";
  };
  noise::HandshakeState hs(handshake_config(config, noise::Role::kResponder));
  auto m1 = read_handshake_frame(fd, deadline);
  if (!m1) return fail(kErrHandshake, io_reason(m1.error()));
  auto p1 = hs.read_message(*m1);
  if (!p1) return fail(kErrHandshake, "malformed first message: " + p1.error().message);
  // Message 2 carries no payload: with XXpsk3 the PSK enters only at message 3, so anything
  // sent here would reach a scanner without the network key. The certificate goes in the
  // verdict record instead, after the initiator has proven the PSK.
  auto m2 = hs.write_message({});
  if (!m2) return fail(kErrHandshake, "cannot write message 2: " + m2.error().message);
  auto st = write_handshake_frame(fd, *m2, deadline);
  if (!st) return fail(kErrHandshake, io_reason(st.error()));
  auto m3 = read_handshake_frame(fd, deadline);
  if (!m3) return fail(kErrHandshake, io_reason(m3.error()));
  auto p3 = hs.read_message(*m3);
  if (!p3) {
    if (p3.error().code == noise::kErrDecrypt) {
      return fail(kErrHandshake, "wrong network key or corrupted message");
    }
    return fail(kErrHandshake, "malformed third message: " + p3.error().message);
  }
  RemotePeer remote;
  remote.static_key = *hs.remote_static();
  remote.payload.assign(p3->begin(), p3->end());
  remote.address = address;
  auto [c1, c2] = hs.split();
  RecordSealer sealer(c2.key());
  RecordOpener opener(c1.key());
  // The responder's first record tells the initiator the outcome: a message carrying the
  // responder's payload (its certificate) = accepted, a close record = rejected.
  Status verdict = config.verify_remote ? config.verify_remote(remote) : Status{};
  std::string out;
  if (!verdict) {
    auto e = fail(kErrPeerRejected, "peer rejected: " + verdict.error().message);
    (void)sealer.seal_close(out);
    (void)write_all(fd, reinterpret_cast<const uint8_t*>(out.data()), out.size(), deadline);
    return e;
  }
  st = sealer.seal_message(config.payload, out);
  if (st) st = write_all(fd, reinterpret_cast<const uint8_t*>(out.data()), out.size(), deadline);
  if (!st) return fail(kErrHandshake, io_reason(st.error()));
  return std::unique_ptr<MeshSession>(
      new TcpSession(fd, std::move(sealer), std::move(opener), std::move(remote)));
}

class TcpListener final : public MeshListener {
 public:
  TcpListener(int fd, uint16_t port, const MeshConfig& config, int wake_read, int wake_write)
      : fd_(fd), port_(port), config_(config), wake_read_(wake_read), wake_write_(wake_write) {
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TcpListener() override {
    close();
    ::close(fd_);
    ::close(wake_read_);
    ::close(wake_write_);
  }

  Result<std::unique_ptr<MeshSession>> accept() override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !ready_.empty(); });
    if (closed_) return make_error(kErrClosed, "listener closed");
    auto s = std::move(ready_.front());
    ready_.pop_front();
    return s;
  }

  uint16_t port() const override { return port_; }

  void close() override {
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      for (auto& h : handshakes_) {
        if (h.fd >= 0) ::shutdown(h.fd, SHUT_RDWR);  // abort handshakes in progress
      }
    }
    cv_.notify_all();
    char c = 1;
    (void)!::write(wake_write_, &c, 1);
    if (acceptor_.joinable()) acceptor_.join();
    // The acceptor has stopped adding handshakes; join the rest outside the lock.
    std::list<Handshake> pending;
    {
      std::lock_guard lock(mu_);
      pending.swap(handshakes_);
    }
    for (auto& h : pending) h.thread.join();
    std::lock_guard lock(mu_);
    ready_.clear();
  }

 private:
  struct Handshake {
    std::thread thread;
    int fd = -1;  // guarded by mu_; -1 once the handshake thread has handed it on or closed it
    bool done = false;
  };

  void accept_loop() {
    for (;;) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) return;
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      int cfd =
          ::accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
          std::this_thread::sleep_for(milliseconds(50));  // out of fds: back off, keep serving
        }
        continue;
      }
      tune_socket(cfd);
      std::string address = format_address(reinterpret_cast<sockaddr*>(&ss));
      std::lock_guard lock(mu_);
      reap_locked();
      if (closed_) {
        ::close(cfd);
        return;
      }
      if (handshakes_.size() >= kMaxPendingHandshakes) {
        std::fprintf(stderr, "mesh: handshake from %s failed: too many pending handshakes\n",
                     address.c_str());
        ::close(cfd);
        continue;
      }
      handshakes_.emplace_back();
      auto it = std::prev(handshakes_.end());
      it->fd = cfd;
      it->thread = std::thread([this, it, cfd, address] { handshake(it, cfd, address); });
    }
  }

  void handshake(std::list<Handshake>::iterator it, int cfd, const std::string& address) {
    auto session = respond(cfd, config_, address);
    std::lock_guard lock(mu_);
    it->fd = -1;
    it->done = true;
    if (!session) {
      ::close(cfd);  // respond() has logged the reason
      return;
    }
    if (closed_) return;  // the session's destructor closes cfd
    ready_.push_back(std::move(*session));
    cv_.notify_one();
  }

  // Joins finished handshake threads. REQUIRES: mu_ held.
  void reap_locked() {
    for (auto it = handshakes_.begin(); it != handshakes_.end();) {
      if (it->done) {
        it->thread.join();  // done is set as the thread's last action under mu_
        it = handshakes_.erase(it);
      } else {
        ++it;
      }
    }
  }

  const int fd_;
  const uint16_t port_;
  const MeshConfig config_;
  const int wake_read_;
  const int wake_write_;
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<MeshSession>> ready_;  // guarded by mu_
  std::list<Handshake> handshakes_;                 // guarded by mu_
  bool closed_ = false;                             // guarded by mu_
};

Result<int> connect_tcp(const std::string& host, uint16_t port, milliseconds timeout,
                        const std::string& hp) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (gai != 0) return make_error(kErrConnect, "resolve " + hp + ": " + gai_strerror(gai));
  const Deadline deadline = Deadline::after(timeout);
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = errno_text(errno);
      continue;
    }
    int r = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (r != 0 && errno == EINPROGRESS) {
      auto st = wait_fd(fd, POLLOUT, deadline);
      if (!st) {
        ::close(fd);
        ::freeaddrinfo(res);
        return make_error(kErrTimeout, "connect to " + hp + " timed out");
      }
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      r = err == 0 ? 0 : -1;
      errno = err;
    }
    if (r == 0) {
      ::freeaddrinfo(res);
      tune_socket(fd);
      return fd;
    }
    last = errno_text(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return make_error(kErrConnect, "connect to " + hp + ": " + last);
}

}  // namespace

Result<std::unique_ptr<MeshSession>> dial(const std::string& host, uint16_t port,
                                          const MeshConfig& config, milliseconds connect_timeout) {
  const std::string hp = host + ":" + std::to_string(port);
  auto fd_or = connect_tcp(host, port, connect_timeout, hp);
  if (!fd_or) return fd_or.error();
  const int fd = *fd_or;
  struct FdGuard {
    int fd;
    bool armed = true;
    ~FdGuard() {
      if (armed) ::close(fd);
    }
  } guard{fd};
  const Deadline deadline = Deadline::after(config.handshake_timeout);
  const Error refused =
      make_error(kErrHandshake,
                 "handshake with " + hp + " refused (wrong network key, or not a Starling node)");
  auto io_error = [&](const Error& e) {
    if (e.code == kErrTimeout)
      return make_error(kErrTimeout, "handshake with " + hp + " timed out");
    return refused;
  };

  noise::HandshakeState hs(handshake_config(config, noise::Role::kInitiator));
  auto m1 = hs.write_message({});
  if (!m1) return make_error(kErrHandshake, "handshake with " + hp + ": " + m1.error().message);
  auto st = write_handshake_frame(fd, *m1, deadline);
  if (!st) return io_error(st.error());
  auto m2 = read_handshake_frame(fd, deadline);
  if (!m2) return io_error(m2.error());
  auto p2 = hs.read_message(*m2);
  if (!p2) return refused;
  RemotePeer remote;
  remote.static_key = *hs.remote_static();
  remote.address = peer_address(fd);
  // Message 3 mixes in the PSK, so our certificate is readable only by holders of the network
  // key. The responder's certificate arrives in its verdict record below.
  auto m3 = hs.write_message(noise::as_bytes(config.payload));
  if (!m3) return make_error(kErrHandshake, "handshake with " + hp + ": " + m3.error().message);
  st = write_handshake_frame(fd, *m3, deadline);
  if (!st) return io_error(st.error());

  // Wait for the responder's verdict: its first record (see respond()).
  auto [c1, c2] = hs.split();
  RecordSealer sealer(c1.key());
  RecordOpener opener(c2.key());
  std::vector<uint8_t> buf(4096);
  for (;;) {
    if (opener.close_received()) {
      return make_error(kErrPeerRejected, hp + " rejected this node's certificate");
    }
    if (auto m = opener.pop_message()) {
      remote.payload.assign(m->begin(), m->end());
      break;
    }
    auto n = read_some(fd, buf.data(), buf.size(), deadline);
    if (!n) return io_error(n.error());
    if (*n == 0) return refused;  // wrong PSK: the responder failed message 3 and hung up
    st = opener.feed(std::string_view(reinterpret_cast<const char*>(buf.data()), *n));
    if (!st && !opener.has_message()) return refused;
  }
  if (config.verify_remote) {
    if (auto verdict = config.verify_remote(remote); !verdict) {
      std::string out;
      if (sealer.seal_close(out)) {
        (void)write_all(fd, reinterpret_cast<const uint8_t*>(out.data()), out.size(), deadline);
      }
      return make_error(kErrPeerRejected, "rejected " + hp + ": " + verdict.error().message);
    }
  }
  guard.armed = false;
  return std::unique_ptr<MeshSession>(
      new TcpSession(fd, std::move(sealer), std::move(opener), std::move(remote)));
}

Result<std::unique_ptr<MeshListener>> listen(const std::string& host, uint16_t port,
                                             const MeshConfig& config) {
  const std::string hp = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(),
                          &hints, &res);
  if (gai != 0) return make_error(kErrConnect, "resolve " + hp + ": " + gai_strerror(gai));
  int fd =
      ::socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
  if (fd < 0) {
    ::freeaddrinfo(res);
    return make_error(kErrConnect, "socket: " + errno_text(errno));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
    int e = errno;
    ::freeaddrinfo(res);
    ::close(fd);
    return make_error(kErrConnect, "listen on " + hp + ": " + errno_text(e));
  }
  ::freeaddrinfo(res);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  uint16_t bound = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(fd);
    return make_error(kErrConnect, "pipe: " + errno_text(errno));
  }
  return std::unique_ptr<MeshListener>(new TcpListener(fd, bound, config, wake[0], wake[1]));
}

}  // namespace starling::mesh

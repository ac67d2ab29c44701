// Shell: POSIX TCP sockets (non-blocking, waited on with poll) around the Noise and record
// cores. See mesh/README.md for the wire format.
#include "mesh/session.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
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

#include "mesh/admission.h"
#include "mesh/noise.h"
#include "mesh/record_codec.h"

namespace starling::mesh {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kPrologue[] = "starling-mesh/1";
constexpr milliseconds kCloseFlushTimeout{1000};
constexpr size_t kKeptSendBuffer = 1 << 20;
// How many cookie replies dial() accepts before it gives up on a busy listener.
constexpr int kMaxCookieRetries = 2;
// Internal I/O outcome: the peer reset the connection (or it was already gone when we wrote).
constexpr char kIoReset[] = "mesh.io_reset";
// Internal outcome of respond(): a cookie reply went out instead of message 2.
constexpr char kCookieSent[] = "mesh.cookie_sent";

using admission::AdmissionKeys;
using admission::PatternId;
using admission::ReplyKind;

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

// Errors: kIoReset (EPIPE, reset), kErrClosed, kErrTimeout.
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
    const int e = n < 0 ? errno : EPIPE;
    return make_error(e == ECONNRESET || e == EPIPE ? kIoReset : kErrClosed,
                      "send: " + errno_text(e));
  }
  return {};
}

// Reads up to `cap` bytes once data is available. 0 = orderly EOF. Errors: kErrTimeout,
// kIoReset (connection reset), kErrClosed.
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
    return make_error(errno == ECONNRESET ? kIoReset : kErrClosed, "recv: " + errno_text(errno));
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

// Handshake messages travel as u16 big-endian length || message (the first frame and the reply
// to it add a pattern id / reply kind and MACs: see mesh/admission.h).
Status write_handshake_frame(int fd, const Bytes& msg, const Deadline& deadline) {
  Bytes frame(2 + msg.size());
  frame[0] = static_cast<uint8_t>(msg.size() >> 8);
  frame[1] = static_cast<uint8_t>(msg.size());
  std::copy(msg.begin(), msg.end(), frame.begin() + 2);
  return write_all(fd, frame.data(), frame.size(), deadline);
}

// Reads one u16-length frame. with_length: keep the two length bytes in the result.
Result<Bytes> read_handshake_frame(int fd, const Deadline& deadline, bool with_length = false) {
  uint8_t len[2];
  auto st = read_exact(fd, len, 2, deadline);
  if (!st) return st.error();
  const size_t n = (size_t{len[0]} << 8) | len[1];
  const size_t skip = with_length ? 2 : 0;
  Bytes msg(skip + n);
  if (with_length) std::copy(len, len + 2, msg.begin());
  st = read_exact(fd, msg.data() + skip, n, deadline);
  if (!st) return st.error();
  return msg;
}

Status write_bytes(int fd, const std::string& s, const Deadline& deadline) {
  return write_all(fd, reinterpret_cast<const uint8_t*>(s.data()), s.size(), deadline);
}

noise::HandshakeConfig handshake_config(const MeshConfig& config, noise::Pattern pattern,
                                        noise::Role role) {
  noise::HandshakeConfig hc;
  hc.pattern = pattern;
  hc.role = role;
  hc.prologue.assign(kPrologue, kPrologue + sizeof kPrologue - 1);
  hc.local_static.secret = config.static_secret;
  hc.local_static.public_key = config.static_public;
  hc.local_ephemeral = noise::generate_key_pair();
  if (role == noise::Role::kInitiator && pattern == noise::Pattern::kIKpsk2) {
    hc.remote_static = config.remote_static;
  }
  hc.psk = config.psk;
  return hc;
}

RekeyPolicy rekey_policy(const MeshConfig& config) {
  RekeyPolicy p;
  p.max_records = config.rekey_after_records;
  p.max_bytes = config.rekey_after_bytes;
  p.max_age = config.rekey_after_time;
  return p;
}

// Reads records into `opener` until it holds a message or a close record. Errors: those of
// read_some, kErrClosed on EOF, kErrProtocol from the opener.
Status read_first_record(int fd, RecordOpener& opener, const Deadline& deadline) {
  std::vector<uint8_t> buf(4096);
  while (!opener.has_message() && !opener.close_received()) {
    auto n = read_some(fd, buf.data(), buf.size(), deadline);
    if (!n) return n.error();
    if (*n == 0) return make_error(kErrClosed, "connection closed");
    auto st = opener.feed(std::string_view(reinterpret_cast<const char*>(buf.data()), *n));
    if (!st && !opener.has_message()) return st;
  }
  return {};
}

// Hard close: the peer sees a reset, not an orderly end (used for connections refused before
// the handshake, so a dialer can tell "busy, try later" from "wrong network key").
void reset_close(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

// The source of a connection: its IP (cookies are bound to it) and the key its handshake rate
// is limited under (the IP; for IPv6 its /64, which one host usually has whole).
struct Source {
  std::string ip;
  std::string rate_key;
};

Source source_of(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = {};
  Source s;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    s.ip = ip;
    s.rate_key = ip;
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, ip, sizeof ip);
      s.ip = ip;
      s.rate_key = ip;
    } else {
      inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
      s.ip = ip;
      in6_addr prefix = a->sin6_addr;
      std::memset(prefix.s6_addr + 8, 0, 8);
      inet_ntop(AF_INET6, &prefix, ip, sizeof ip);
      s.rate_key = std::string(ip) + "/64";
    }
  }
  return s;
}

void random_bytes(std::span<uint8_t> out) { randombytes_buf(out.data(), out.size()); }

// What a listener shares between its acceptor and handshake threads for admission control.
struct ListenerAdmission {
  explicit ListenerAdmission(const MeshConfig& config)
      : cookies(random_bytes),
        limiter(config.handshake_rate_per_ip, config.handshake_burst_per_ip) {
    admission::derive_keys(config.psk, keys);
  }
  AdmissionKeys keys;                  // immutable after construction
  std::atomic<size_t> in_progress{0};  // handshake threads running
  std::mutex mu;
  admission::CookieMaker cookies;   // guarded by mu
  admission::LogThrottle load_log;  // guarded by mu
  // Used by the acceptor thread only.
  admission::SourceRateLimiter limiter;
  admission::LogThrottle refuse_log;
};

// Cookies this process has received, per listener "host:port" (dialers on any thread).
struct DialerCookies {
  std::mutex mu;
  admission::CookieJar jar;  // guarded by mu
};
DialerCookies& dialer_cookies() {
  static DialerCookies c;
  return c;
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
    std::string& out = send_buf_;
    out.clear();
    auto st = sealer_.seal_message(message, Clock::now(), out);
    if (!st) return st;
    st = write_all(fd_, reinterpret_cast<const uint8_t*>(out.data()), out.size(), Deadline{});
    // Keep a buffer for the next message, but not a big one: sessions are many and mostly idle.
    if (out.capacity() > kKeptSendBuffer) std::string().swap(out);
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
      if (sealer_.seal_close(Clock::now(), out)) {
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
  std::string send_buf_;                                        // guarded by send_mu_
  RecordOpener opener_;                                         // used by the receiving thread only
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(64 * 1024);  // receiving thread only
  std::atomic<bool> closed_{false};
  RemotePeer remote_;
};

// ---- responder side (listener) ----

// Runs the responder handshake on fd. Every failure is logged here, before anything more is
// written to or closed on the socket, so the log line exists by the time the dialer learns
// the outcome. Order of the checks: the first frame's mac1 (no DH yet, nothing sent), then
// under load its mac2 (a cookie reply instead of message 2), then the Noise handshake.
Result<std::unique_ptr<MeshSession>> respond(int fd, const MeshConfig& config,
                                             const std::string& address, const Source& source,
                                             ListenerAdmission& adm) {
  const Deadline deadline = Deadline::after(config.handshake_timeout);
  auto fail = [&](const char* code, const std::string& reason) {
    std::fprintf(stderr, "mesh: handshake from %s failed: %s\n", address.c_str(), reason.c_str());
    return make_error(code, reason);
  };
  auto io_reason = [](const Error& e) {
    if (e.code == kErrTimeout) return std::string("timed out");
    return "connection closed during handshake (" + e.message + ")";
  };
  auto frame1 = read_handshake_frame(fd, deadline, /*with_length=*/true);
  if (!frame1) return fail(kErrHandshake, io_reason(frame1.error()));
  auto first = admission::parse_first_frame(*frame1);
  if (!first) return fail(kErrHandshake, "malformed first message: " + first.error().message);
  if (!admission::mac1_valid(*first, adm.keys)) {
    // Not a holder of the network key (or a corrupted frame): hang up without a word and
    // without any DH. In particular no message 2, which would show our static key.
    return fail(kErrHandshake, "wrong network key or corrupted message (bad mac1)");
  }
  const size_t load = adm.in_progress.load();
  if (load > config.cookie_threshold) {
    Bytes reply;
    {
      std::lock_guard lock(adm.mu);
      const auto now = Clock::now();
      if (!adm.cookies.mac2_valid(*first, source.ip, now)) {
        reply = adm.cookies.reply(*first, source.ip, adm.keys, now);
        if (auto suppressed = adm.load_log.allow(now)) {
          std::fprintf(stderr,
                       "mesh: under load (%zu handshakes in progress): answering first "
                       "messages with cookies (%llu lines suppressed)\n",
                       load, static_cast<unsigned long long>(*suppressed));
        }
      }
    }
    if (!reply.empty()) {
      auto frame = admission::encode_reply_frame(ReplyKind::kCookie, reply);
      (void)write_all(fd, frame.data(), frame.size(), deadline);
      return make_error(kCookieSent, "cookie reply sent");
    }
  }

  const bool ik = first->pattern == PatternId::kIKpsk2;
  noise::HandshakeState hs(handshake_config(
      config, ik ? noise::Pattern::kIKpsk2 : noise::Pattern::kXXpsk3, noise::Role::kResponder));
  auto p1 = hs.read_message(first->noise_message);
  if (!p1) {
    if (ik && p1.error().code == noise::kErrDecrypt) {
      return fail(kErrHandshake,
                  "initiator expects another static key for this node, or corrupted message");
    }
    return fail(kErrHandshake, "malformed first message: " + p1.error().message);
  }
  // Message 2 carries no payload. XX: the PSK enters only at message 3, so anything sent here
  // would be readable by whoever replays a first frame. IK: the initiator has not yet proven
  // the PSK with its keys (only its mac1 did). The certificates go in records, below.
  auto m2 = hs.write_message({});
  if (!m2) return fail(kErrHandshake, "cannot write message 2: " + m2.error().message);
  auto reply = admission::encode_reply_frame(ReplyKind::kHandshake, *m2);
  auto st = write_all(fd, reply.data(), reply.size(), deadline);
  if (!st) return fail(kErrHandshake, io_reason(st.error()));

  RemotePeer remote;
  remote.address = address;
  std::optional<RecordSealer> sealer;
  std::optional<RecordOpener> opener;
  auto start_records = [&] {
    auto [c1, c2] = hs.split();
    sealer.emplace(c2.key(), Clock::now(), rekey_policy(config));
    opener.emplace(c1.key());
  };
  if (!ik) {
    auto m3 = read_handshake_frame(fd, deadline);
    if (!m3) return fail(kErrHandshake, io_reason(m3.error()));
    auto p3 = hs.read_message(*m3);
    if (!p3) {
      if (p3.error().code == noise::kErrDecrypt) {
        return fail(kErrHandshake, "wrong network key or corrupted message");
      }
      return fail(kErrHandshake, "malformed third message: " + p3.error().message);
    }
    remote.payload.assign(p3->begin(), p3->end());
    start_records();
  } else {
    // IK: the initiator's payload is its first record, sealed with keys that include the PSK.
    start_records();
    st = read_first_record(fd, *opener, deadline);
    if (!st) {
      if (st.error().code == kErrProtocol) {
        return fail(kErrHandshake, "wrong network key or corrupted message");
      }
      return fail(kErrHandshake, io_reason(st.error()));
    }
    auto m = opener->pop_message();
    if (!m) return fail(kErrHandshake, "initiator closed before sending its payload");
    remote.payload = std::move(*m);
  }
  remote.static_key = *hs.remote_static();
  // The responder's first record tells the initiator the outcome: a message carrying the
  // responder's payload (its certificate) = accepted, a close record = rejected.
  Status verdict = config.verify_remote ? config.verify_remote(remote) : Status{};
  std::string out;
  if (!verdict) {
    auto e = fail(kErrPeerRejected, "peer rejected: " + verdict.error().message);
    (void)sealer->seal_close(Clock::now(), out);
    (void)write_bytes(fd, out, deadline);
    return e;
  }
  st = sealer->seal_message(current_payload(config), Clock::now(), out);
  if (st) st = write_bytes(fd, out, deadline);
  if (!st) return fail(kErrHandshake, io_reason(st.error()));
  return std::unique_ptr<MeshSession>(
      new TcpSession(fd, std::move(*sealer), std::move(*opener), std::move(remote)));
}

class TcpListener final : public MeshListener {
 public:
  TcpListener(int fd, uint16_t port, const MeshConfig& config, int wake_read, int wake_write)
      : fd_(fd),
        port_(port),
        config_(config),
        wake_read_(wake_read),
        wake_write_(wake_write),
        admission_(config) {
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
      Source source = source_of(ss);
      // Per-source rate limit first: nothing is read from a refused connection, no thread
      // is started, and the reset tells a genuine dialer to try again later.
      if (!admission_.limiter.admit(source.rate_key, Clock::now())) {
        refuse(cfd, address, "handshake rate limit for " + source.rate_key);
        continue;
      }
      std::lock_guard lock(mu_);
      reap_locked();
      if (closed_) {
        ::close(cfd);
        return;
      }
      if (handshakes_.size() >= config_.max_half_open) {
        refuse(cfd, address, "too many pending handshakes");
        continue;
      }
      handshakes_.emplace_back();
      auto it = std::prev(handshakes_.end());
      it->fd = cfd;
      admission_.in_progress.fetch_add(1);
      it->thread = std::thread([this, it, cfd, address, source = std::move(source)] {
        handshake(it, cfd, address, source);
      });
    }
  }

  // Resets a connection refused before its handshake; logs at most one line per second.
  void refuse(int cfd, const std::string& address, const std::string& why) {
    reset_close(cfd);
    if (auto suppressed = admission_.refuse_log.allow(Clock::now())) {
      std::string more;
      if (*suppressed > 0) more = " (" + std::to_string(*suppressed) + " more since the last line)";
      std::fprintf(stderr, "mesh: handshake from %s failed: %s%s\n", address.c_str(), why.c_str(),
                   more.c_str());
    }
  }

  void handshake(std::list<Handshake>::iterator it, int cfd, const std::string& address,
                 const Source& source) {
    auto session = respond(cfd, config_, address, source, admission_);
    admission_.in_progress.fetch_sub(1);
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
  ListenerAdmission admission_;
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
    if (errno == ECONNRESET) {  // accepted, then reset at once: a listener refusing us
      ::close(fd);
      ::freeaddrinfo(res);
      return make_error(kIoReset, "connect to " + hp + ": connection reset");
    }
    last = errno_text(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return make_error(kErrConnect, "connect to " + hp + ": " + last);
}

}  // namespace

namespace {

// Owns a descriptor until release().
struct FdGuard {
  FdGuard() = default;
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  ~FdGuard() { reset(); }
  void reset(int new_fd = -1) {
    if (fd >= 0) ::close(fd);
    fd = new_fd;
  }
  int release() { return std::exchange(fd, -1); }
  int fd = -1;
};

}  // namespace

Result<std::unique_ptr<MeshSession>> dial(const std::string& host, uint16_t port,
                                          const MeshConfig& config, milliseconds connect_timeout) {
  const std::string hp = host + ":" + std::to_string(port);
  const bool ik = config.remote_static.has_value();
  const Error refused = make_error(
      kErrHandshake, "handshake with " + hp +
                         (ik ? " refused (wrong network key, the node does not hold the expected "
                               "static key, or not a Starling node)"
                             : " refused (wrong network key, or not a Starling node)"));
  const Error busy = make_error(kErrConnect, "handshake with " + hp +
                                                 ": connection reset before the handshake (the "
                                                 "node is busy or rate-limits this address)");
  auto io_error = [&](const Error& e) {
    if (e.code == kErrTimeout) {
      return make_error(kErrTimeout, "handshake with " + hp + " timed out");
    }
    return refused;
  };

  AdmissionKeys keys;
  admission::derive_keys(config.psk, keys);
  noise::HandshakeState hs(handshake_config(
      config, ik ? noise::Pattern::kIKpsk2 : noise::Pattern::kXXpsk3, noise::Role::kInitiator));
  auto m1 = hs.write_message({});
  if (!m1) return make_error(kErrHandshake, "handshake with " + hp + ": " + m1.error().message);

  // The listener answers the first frame with message 2, or (under load) with a cookie; then
  // the same message 1 goes again on a new connection, with mac2 made from the cookie. The
  // listener keeps no state between the two connections, so the handshake simply continues.
  FdGuard guard;
  std::optional<Deadline> deadline;
  Bytes reply_body;
  for (int attempt = 0;; ++attempt) {
    if (attempt > kMaxCookieRetries) {
      return make_error(kErrConnect, "handshake with " + hp +
                                         ": the node is under load and keeps asking for "
                                         "a cookie (is this host behind a changing NAT?)");
    }
    auto fd_or = connect_tcp(host, port, connect_timeout, hp);
    if (!fd_or) return fd_or.error().code == kIoReset ? busy : fd_or.error();
    guard.reset(*fd_or);
    if (!deadline) deadline = Deadline::after(config.handshake_timeout);
    std::optional<admission::Cookie> cookie;
    {
      auto& dc = dialer_cookies();
      std::lock_guard lock(dc.mu);
      cookie = dc.jar.find(hp, Clock::now());
    }
    const Bytes frame1 = admission::encode_first_frame(ik ? PatternId::kIKpsk2 : PatternId::kXXpsk3,
                                                       *m1, keys, cookie);
    auto st = write_all(guard.fd, frame1.data(), frame1.size(), *deadline);
    if (!st) return st.error().code == kIoReset ? busy : io_error(st.error());
    auto reply = read_handshake_frame(guard.fd, *deadline);
    if (!reply) return reply.error().code == kIoReset ? busy : io_error(reply.error());
    auto parsed = admission::parse_reply_frame(*reply);
    if (!parsed) return refused;
    if (parsed->kind == ReplyKind::kHandshake) {
      reply_body.assign(parsed->body.begin(), parsed->body.end());
      break;
    }
    admission::Mac mac1;
    std::memcpy(mac1.data(), frame1.data() + frame1.size() - 2 * admission::kMacLen,
                admission::kMacLen);
    auto fresh = admission::open_cookie_reply(parsed->body, mac1, keys);
    if (!fresh) return refused;
    auto& dc = dialer_cookies();
    std::lock_guard lock(dc.mu);
    dc.jar.store(hp, *fresh, Clock::now());
  }
  const int fd = guard.fd;

  auto p2 = hs.read_message(reply_body);
  if (!p2) return refused;
  RemotePeer remote;
  remote.static_key = *hs.remote_static();  // IK: the key we asked for, now proven
  remote.address = peer_address(fd);
  std::optional<RecordSealer> sealer;
  std::optional<RecordOpener> opener;
  auto start_records = [&] {
    auto [c1, c2] = hs.split();
    sealer.emplace(c1.key(), Clock::now(), rekey_policy(config));
    opener.emplace(c2.key());
  };
  if (!ik) {
    // Message 3 mixes in the PSK, so our certificate is readable only by holders of the
    // network key. The responder's certificate arrives in its verdict record below.
    const std::string payload = current_payload(config);
    auto m3 = hs.write_message(noise::as_bytes(payload));
    if (!m3) return make_error(kErrHandshake, "handshake with " + hp + ": " + m3.error().message);
    auto st = write_handshake_frame(fd, *m3, *deadline);
    if (!st) return io_error(st.error());
    start_records();
  } else {
    // IK: message 2 proved the listener holds the expected static key and the PSK; our
    // certificate goes in our first record.
    start_records();
    std::string out;
    auto st = sealer->seal_message(current_payload(config), Clock::now(), out);
    if (st) st = write_bytes(fd, out, *deadline);
    if (!st) return io_error(st.error());
  }

  // Wait for the responder's verdict: its first record (see respond()).
  auto st = read_first_record(fd, *opener, *deadline);
  if (!st) {
    if (st.error().code == kErrTimeout) return io_error(st.error());
    return refused;  // XX with a wrong PSK: the responder failed message 3 and hung up
  }
  if (opener->close_received() && !opener->has_message()) {
    return make_error(kErrPeerRejected, hp + " rejected this node's certificate");
  }
  auto m = opener->pop_message();
  if (!m) return refused;
  remote.payload = std::move(*m);
  if (config.verify_remote) {
    if (auto verdict = config.verify_remote(remote); !verdict) {
      std::string out;
      if (sealer->seal_close(Clock::now(), out)) (void)write_bytes(fd, out, *deadline);
      return make_error(kErrPeerRejected, "rejected " + hp + ": " + verdict.error().message);
    }
  }
  guard.release();
  return std::unique_ptr<MeshSession>(
      new TcpSession(fd, std::move(*sealer), std::move(*opener), std::move(remote)));
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

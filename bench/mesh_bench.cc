// Mesh record throughput against raw TCP on loopback, and handshakes per CPU-second.
//   build/release/bench/mesh_bench [MiB per size, default 256]
//
// Throughput: for each message size, one thread sends MiB of messages and another receives
// them, over (a) a raw TCP connection carrying u32-length-prefixed messages (the baseline) and
// (b) a mesh session (Noise keys, ChaCha20-Poly1305 records, rekeying at the defaults), in the
// same run; best of 3 rounds each. Prints MiB/s for both, mesh / raw, and the CPU-seconds
// per GiB both threads spent (set-up included, so small for raw TCP, plus the mesh handshake).
// Handshakes: (c) the Noise computation alone (both roles in one thread), XXpsk3 and IKpsk2;
// (d) complete dial() + accept() over loopback (sockets, threads, framing, mac1, certificates
// of 700 bytes), one dialer at a time. Both report handshakes per CPU-second of this process
// (user + system), which counts the initiator's and the responder's work together.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "mesh/noise.h"
#include "mesh/session.h"

namespace {

using namespace starling;
using namespace starling::mesh;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "mesh_bench: %s\n", what.c_str());
  std::exit(1);
}

MeshConfig node(const std::string& payload) {
  MeshConfig c;
  c.psk.fill(0x42);
  auto kp = noise::generate_key_pair();
  c.static_secret = kp.secret;
  c.static_public = kp.public_key;
  c.payload = payload;
  c.handshake_rate_per_ip = 0;  // the bench dials loopback thousands of times
  return c;
}

std::string certificate_sized(char fill) { return std::string(700, fill); }

// ---- raw TCP baseline ----

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool recv_all(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

std::pair<int, int> tcp_pair() {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 1) != 0 ||
      ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    die("raw tcp listen failed");
  }
  int c = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("raw tcp connect failed");
  int s = ::accept(lfd, nullptr, nullptr);
  ::close(lfd);
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as the mesh sets it
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return {c, s};
}

double raw_seconds(const std::string& msg, size_t count) {
  auto [c, s] = tcp_pair();
  auto t0 = Clock::now();
  std::thread rx([&, s = s] {
    std::string buf(msg.size(), '\0');
    for (size_t i = 0; i < count; ++i) {
      uint32_t n = 0;
      if (!recv_all(s, reinterpret_cast<char*>(&n), 4) || ntohl(n) != msg.size() ||
          !recv_all(s, buf.data(), buf.size())) {
        die("raw tcp receive failed");
      }
    }
  });
  const uint32_t n = htonl(static_cast<uint32_t>(msg.size()));
  for (size_t i = 0; i < count; ++i) {
    if (!send_all(c, reinterpret_cast<const char*>(&n), 4) ||
        !send_all(c, msg.data(), msg.size())) {
      die("raw tcp send failed");
    }
  }
  rx.join();
  double t = seconds_since(t0);
  ::close(c);
  ::close(s);
  return t;
}

// ---- mesh ----

double mesh_seconds(const std::string& msg, size_t count) {
  auto lis = listen("127.0.0.1", 0, node(certificate_sized('s')));
  if (!lis) die("listen: " + lis.error().message);
  auto client = dial("127.0.0.1", (*lis)->port(), node(certificate_sized('c')), milliseconds(5000));
  if (!client) die("dial: " + client.error().message);
  auto server = (*lis)->accept();
  if (!server) die("accept: " + server.error().message);
  auto t0 = Clock::now();
  std::thread rx([&] {
    for (size_t i = 0; i < count; ++i) {
      auto m = (*server)->recv(milliseconds(60000));
      if (!m || m->size() != msg.size()) die("mesh receive failed");
    }
  });
  for (size_t i = 0; i < count; ++i) {
    if (!(*client)->send(msg)) die("mesh send failed");
  }
  rx.join();
  double t = seconds_since(t0);
  (*client)->close();
  (*lis)->close();
  return t;
}

// Wall and CPU seconds of one transfer; the best (fastest) run is kept.
struct Run {
  double wall;
  double cpu;
  void keep_best(const Run& r) {
    if (r.wall < wall) *this = r;
  }
};

template <class F>
Run measure(F transfer) {
  const double c0 = cpu_seconds();
  const double wall = transfer();  // excludes connection set-up
  return Run{wall, cpu_seconds() - c0};
}

// ---- handshakes ----

double noise_handshakes_per_cpu_second(noise::Pattern pattern, int n) {
  const auto init_s = noise::generate_key_pair();
  const auto resp_s = noise::generate_key_pair();
  noise::Key psk;
  psk.fill(1);
  const double c0 = cpu_seconds();
  for (int i = 0; i < n; ++i) {
    noise::HandshakeConfig ic, rc;
    ic.pattern = rc.pattern = pattern;
    ic.role = noise::Role::kInitiator;
    rc.role = noise::Role::kResponder;
    ic.local_static = init_s;
    rc.local_static = resp_s;
    ic.local_ephemeral = noise::generate_key_pair();
    rc.local_ephemeral = noise::generate_key_pair();
    ic.psk = rc.psk = psk;
    if (pattern == noise::Pattern::kIKpsk2) ic.remote_static = resp_s.public_key;
    noise::HandshakeState a(ic), b(rc);
    noise::HandshakeState* turn[2] = {&a, &b};
    for (int m = 0; !a.is_complete(); ++m) {
      auto msg = turn[m % 2]->write_message({});
      if (!msg || !turn[(m + 1) % 2]->read_message(*msg)) die("noise handshake failed");
    }
  }
  return n / (cpu_seconds() - c0);
}

struct DialRate {
  double per_cpu_second;
  double per_wall_second;
};

DialRate dials_per_cpu_second(bool ik, int n) {
  auto server_cfg = node(certificate_sized('s'));
  auto lis = listen("127.0.0.1", 0, server_cfg);
  if (!lis) die("listen: " + lis.error().message);
  auto client_cfg = node(certificate_sized('c'));
  if (ik) client_cfg.remote_static = server_cfg.static_public;
  std::thread acceptor([&] {
    for (int i = 0; i < n; ++i) {
      auto s = (*lis)->accept();
      if (!s) die("accept: " + s.error().message);
    }
  });
  const double c0 = cpu_seconds();
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    auto c = dial("127.0.0.1", (*lis)->port(), client_cfg, milliseconds(5000));
    if (!c) die("dial: " + c.error().message);
  }
  acceptor.join();
  DialRate r{n / (cpu_seconds() - c0), n / seconds_since(t0)};
  (*lis)->close();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int mib = argc > 1 ? std::atoi(argv[1]) : 256;
  if (mib <= 0) return 2;
  std::printf("mesh record throughput vs raw TCP on loopback, %d MiB per size, best of 3\n", mib);
  std::printf("  %10s  %10s  %10s  %9s  %14s  %14s\n", "message", "raw MiB/s", "mesh MiB/s",
              "mesh/raw", "raw CPU s/GiB", "mesh CPU s/GiB");
  for (size_t size : {size_t{1024}, size_t{16 * 1024}, size_t{64 * 1024}, size_t{1024 * 1024}}) {
    const std::string msg(size, 'x');
    const size_t count = std::max<size_t>(1, size_t(mib) * 1024 * 1024 / size);
    Run raw{1e18, 1e18}, mesh{1e18, 1e18};
    for (int round = 0; round < 3; ++round) {
      raw.keep_best(measure([&] { return raw_seconds(msg, count); }));
      mesh.keep_best(measure([&] { return mesh_seconds(msg, count); }));
    }
    const double gib = static_cast<double>(count * size) / (1024.0 * 1024.0 * 1024.0);
    std::printf("  %8zu B  %10.0f  %10.0f  %9.2f  %14.2f  %14.2f\n", size, gib * 1024 / raw.wall,
                gib * 1024 / mesh.wall, raw.wall / mesh.wall, raw.cpu / gib, mesh.cpu / gib);
  }
  std::printf("handshakes per CPU-second (initiator + responder work, this process)\n");
  std::printf("  Noise only, XXpsk3              %8.0f\n",
              noise_handshakes_per_cpu_second(noise::Pattern::kXXpsk3, 2000));
  std::printf("  Noise only, IKpsk2              %8.0f\n",
              noise_handshakes_per_cpu_second(noise::Pattern::kIKpsk2, 2000));
  auto xx = dials_per_cpu_second(false, 1000);
  auto ik = dials_per_cpu_second(true, 1000);
  std::printf("  dial+accept over loopback, XX   %8.0f   (%.0f per wall-second, 1 dialer)\n",
              xx.per_cpu_second, xx.per_wall_second);
  std::printf("  dial+accept over loopback, IK   %8.0f   (%.0f per wall-second, 1 dialer)\n",
              ik.per_cpu_second, ik.per_wall_second);
  return 0;
}

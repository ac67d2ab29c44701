// Data-plane TLS throughput against plain libtorrent on loopback, with CPU-seconds per GiB
// (issue 5 item 8).
//   build/release/bench/tls_bench [--size-mib 1024] [--reps 3] [--dir /dev/shm]
//                                 [--piece-kib 0] [--perf-dir DIR] [--keep]
//
// One random file (a fixed-seed generator) in a fresh temp dir under --dir. Each transfer is
// one seeding process and one downloading process (this binary re-executed in a role), so
// getrusage(RUSAGE_SELF) of each counts every libtorrent thread of that side, and nothing of
// the other. Per repetition, in alternating order so background load hits both alike:
//   (a) plain: an lt::session with the engine's own settings (engine_session_settings(), the
//       function TorrentEngine uses) and disk I/O (make_inline_disk_io) but a plain listener,
//       and a normal torrent: the same metainfo without `ssl-cert`;
//   (b) tls: Starling's data plane, TorrentEngine itself: the SSL torrent of build_metainfo()
//       with the CA embedded, both leaves issued by that CA (crypto/x509.h), mutual TLS;
//   (c) tls-noshare: (b) without the seed's half of seed sharing (EngineConfig::seed_share):
//       the seed shows its one downloader every piece at once, as plain libtorrent does, so
//       (c) against (a) is TLS alone and (b) against (c) is what seed sharing costs one
//       downloader.
// Timing: from "connect" to the downloader seeing every piece verified (the seeder is already
// listening with the torrent added in seed mode; the downloader has the torrent added). CPU:
// user + system of each process over the same interval. The downloader hashes every piece
// (SHA-1) in both modes; the seeder never does (seed mode).
// The negotiated TLS version, cipher and key-exchange group come from an OpenSSL client with
// default settings (as libtorrent's own client context: asio `context::tls`, no cipher list)
// presenting the downloader's leaf to the seeder's SSL listener, SNI = info-hash.
// --perf-dir: `perf record -g` on both processes during every transfer (slows them down; use
// for profiles, not for the table).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/bdecode.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/entry.hpp>
#include <libtorrent/extensions/smart_ban.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/torrent_flags.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/torrent_status.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crypto/keys.h"
#include "crypto/x509.h"
#include "peer/engine/inline_disk_io.h"
#include "peer/engine/session_settings.h"
#include "peer/engine/torrent_engine.h"

namespace {

namespace fs = std::filesystem;
namespace lt = libtorrent;
using namespace starling;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tls_bench: %s\n", what.c_str());
  std::exit(1);
}

// User + system CPU seconds of this process (every thread) and its context switches
// (voluntary + involuntary): the threads handing work to each other.
struct Usage {
  double cpu = 0;
  double switches = 0;
};

Usage usage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return {tv(ru.ru_utime) + tv(ru.ru_stime), static_cast<double>(ru.ru_nvcsw + ru.ru_nivcsw)};
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) die("cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) die("cannot write " + p.string());
}

std::string load_average() {
  std::string s = read_file("/proc/loadavg");
  std::istringstream in(s);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ---- the two kinds of node a child process runs ----

struct NodeProgress {
  bool complete = false;
  std::string error;
  int64_t downloaded = 0;
};

class BenchNode {
 public:
  virtual ~BenchNode() = default;
  virtual uint16_t port() const = 0;
  virtual void add(const std::string& metainfo, const std::string& path, bool seed) = 0;
  virtual void connect(uint16_t port) = 0;
  virtual NodeProgress progress() = 0;
};

// Plain libtorrent: the engine's session settings with a plain TCP listener, smart-ban as the
// engine adds it, torrents added with the engine's flags, alerts drained by a thread.
class PlainNode final : public BenchNode {
 public:
  PlainNode() {
    peer::EngineConfig config;  // listen_ip 127.0.0.1, port 0
    lt::settings_pack s = peer::engine_session_settings(config);
    s.set_str(lt::settings_pack::listen_interfaces, config.listen_ip + ":0");
    lt::session_params params(std::move(s), {});
    params.disk_io_constructor = peer::make_inline_disk_io;  // the engine's disk I/O too
    session_ = std::make_unique<lt::session>(std::move(params));
    session_->add_extension(&lt::create_smart_ban_plugin);
    drain_ = std::thread([this] {
      std::vector<lt::alert*> alerts;
      while (!stop_.load()) {
        if (session_->wait_for_alert(std::chrono::milliseconds(100)) != nullptr) {
          session_->pop_alerts(&alerts);
        }
      }
    });
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (session_->listen_port() == 0) {
      if (Clock::now() > deadline) die("plain session: no listener after 10 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~PlainNode() override {
    stop_.store(true);
    drain_.join();
  }
  uint16_t port() const override { return session_->listen_port(); }
  void add(const std::string& metainfo, const std::string& path, bool seed) override {
    lt::add_torrent_params atp;
    lt::error_code ec;
    atp.ti = std::make_shared<lt::torrent_info>(
        lt::span<const char>(metainfo.data(), static_cast<std::ptrdiff_t>(metainfo.size())), ec,
        lt::from_span);
    if (ec) die("plain metainfo: " + ec.message());
    fs::path p(path);
    atp.save_path = p.parent_path().string();
    atp.renamed_files[lt::file_index_t{0}] = p.filename().string();
    atp.flags &= ~(lt::torrent_flags::auto_managed | lt::torrent_flags::paused);
    if (seed) {
      atp.flags |= lt::torrent_flags::seed_mode;
      atp.verified_pieces.resize(atp.ti->num_pieces(), true);
    }
    handle_ = session_->add_torrent(std::move(atp), ec);
    if (ec) die("plain add_torrent: " + ec.message());
  }
  void connect(uint16_t port) override {
    handle_.connect_peer(lt::tcp::endpoint(lt::make_address("127.0.0.1"), port));
  }
  NodeProgress progress() override {
    lt::torrent_status st = handle_.status();
    NodeProgress p;
    p.complete = st.total_wanted > 0 && st.total_wanted_done == st.total_wanted;
    if (st.errc) p.error = st.errc.message();
    p.downloaded = st.all_time_download;
    return p;
  }

 private:
  std::unique_ptr<lt::session> session_;
  lt::torrent_handle handle_;
  std::thread drain_;
  std::atomic<bool> stop_{false};
};

// Starling's data plane: TorrentEngine itself.
class EngineNode final : public BenchNode {
 public:
  EngineNode(const fs::path& cert, const fs::path& key, bool seed_share) {
    peer::EngineConfig config;
    config.cert_pem = read_file(cert);
    config.key_pem = read_file(key);
    config.seed_share = seed_share;
    auto engine = peer::TorrentEngine::start(config);
    if (!engine) die("engine: " + engine.error().message);
    engine_ = std::move(*engine);
  }
  uint16_t port() const override { return engine_->ssl_port(); }
  void add(const std::string& metainfo, const std::string& path, bool seed) override {
    Status st = seed ? engine_->add_seed(task_, metainfo, path)
                     : engine_->add_download(task_, metainfo, path, {});
    if (!st) die("engine add: " + st.error().message);
  }
  void connect(uint16_t port) override {
    if (Status st = engine_->connect_peer(task_, {"127.0.0.1", port}); !st) {
      die("engine connect: " + st.error().message);
    }
  }
  NodeProgress progress() override {
    auto p = engine_->progress(task_);
    if (!p) die("engine progress: " + p.error().message);
    NodeProgress out;
    out.complete = p->total_bytes > 0 && p->done_bytes == p->total_bytes;
    if (p->state == peer::TorrentState::kError) out.error = p->error;
    out.downloaded = p->downloaded_bytes;
    return out;
  }

 private:
  std::unique_ptr<peer::TorrentEngine> engine_;
  TaskId task_{"tls-bench"};
};

// The modes, in the order of odd repetitions (even ones run them in reverse): plain
// libtorrent; TorrentEngine without the seed's half of seed sharing (TLS alone); TorrentEngine
// as Starling runs it.
constexpr int kModes = 3;
constexpr const char* kMode[kModes] = {"plain", "tls-noshare", "tls"};
constexpr const char* kModeName[kModes] = {"plain libtorrent", "TorrentEngine, no seed sharing",
                                           "Starling TLS (TorrentEngine)"};

// A child: `--role seed|fetch --mode plain|tls-noshare|tls --work DIR`. Talks on stdin/stdout, one
// line per message: it prints "port P" (seed) or "ready" (fetch); then answers "cpu" with "cpu
// SECONDS SWITCHES"; a fetcher given "go PORT" connects, polls every 5 ms and prints "done CPU
// SWITCHES DOWNLOADED" or "error WHAT"; "quit" ends the process.
int run_child(const std::string& role, const std::string& mode, const fs::path& work) {
  const bool seed = role == "seed";
  std::unique_ptr<BenchNode> node;
  if (mode == "plain") {
    node = std::make_unique<PlainNode>();
  } else {
    node =
        std::make_unique<EngineNode>(work / (role + ".crt"), work / (role + ".key"), mode == "tls");
  }
  const std::string metainfo =
      read_file(work / (mode == "plain" ? "plain.torrent" : "tls.torrent"));
  node->add(metainfo, (work / (seed ? "content" : "download")).string(), seed);
  if (seed) {
    std::printf("port %u\n", node->port());
  } else {
    std::printf("ready\n");
  }
  std::fflush(stdout);
  char line[256];
  while (std::fgets(line, sizeof line, stdin) != nullptr) {
    std::string cmd(line);
    if (cmd.rfind("cpu", 0) == 0) {
      const Usage u = usage();
      std::printf("cpu %.6f %.0f\n", u.cpu, u.switches);
    } else if (cmd.rfind("go ", 0) == 0) {
      node->connect(static_cast<uint16_t>(std::stoi(cmd.substr(3))));
      for (;;) {
        NodeProgress p = node->progress();
        if (!p.error.empty()) {
          std::printf("error %s\n", p.error.c_str());
          break;
        }
        if (p.complete) {
          const Usage u = usage();
          std::printf("done %.6f %.0f %lld\n", u.cpu, u.switches,
                      static_cast<long long>(p.downloaded));
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    } else if (cmd.rfind("quit", 0) == 0) {
      break;
    }
    std::fflush(stdout);
  }
  return 0;
}

// ---- the coordinator ----

struct Child {
  pid_t pid = -1;
  FILE* in = nullptr;   // its stdin
  FILE* out = nullptr;  // its stdout
};

Child spawn(const std::vector<std::string>& args) {
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) die("pipe failed");
  pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[0]);
    close(to_child[1]);
    close(from_child[0]);
    close(from_child[1]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  return Child{pid, fdopen(to_child[1], "w"), fdopen(from_child[0], "r")};
}

void say(const Child& c, const std::string& line) {
  std::fprintf(c.in, "%s\n", line.c_str());
  std::fflush(c.in);
}

std::string hear(const Child& c) {
  char buf[512];
  if (std::fgets(buf, sizeof buf, c.out) == nullptr) die("a child process ended early");
  std::string s(buf);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

Usage ask_usage(const Child& c) {
  say(c, "cpu");
  std::string r = hear(c);
  if (r.rfind("cpu ", 0) != 0) die("unexpected answer: " + r);
  std::istringstream in(r.substr(4));
  Usage u;
  in >> u.cpu >> u.switches;
  return u;
}

void finish(Child& c) {
  say(c, "quit");
  std::fclose(c.in);
  std::fclose(c.out);
  int status = 0;
  waitpid(c.pid, &status, 0);
}

pid_t start_perf(const fs::path& out, pid_t target) {
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::string p = std::to_string(target), o = out.string();
    execlp("perf", "perf", "record", "-g", "-F", "999", "-o", o.c_str(), "-p", p.c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let perf attach
  return pid;
}

void stop_perf(pid_t pid) {
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
}

struct Transfer {
  std::string mode;
  int rep = 0;
  double seconds = 0;
  double seed_cpu = 0;
  double fetch_cpu = 0;
  double seed_switches = 0;
  double fetch_switches = 0;
  std::string load;
};

struct Options {
  int64_t size_mib = 1024;
  int reps = 3;
  std::string dir = "/dev/shm";
  int piece_kib = 0;
  std::string perf_dir;
  bool keep = false;
};

Transfer transfer(const std::string& self, const fs::path& work, const std::string& mode, int rep,
                  const Options& opt, std::string* tls_info, const std::string& info_hash);

std::string tls_probe(uint16_t port, const std::string& sni, const fs::path& work);

std::string strip_ssl_cert(const std::string& metainfo) {
  lt::error_code ec;
  lt::bdecode_node n = lt::bdecode(
      lt::span<const char>(metainfo.data(), static_cast<std::ptrdiff_t>(metainfo.size())), ec);
  if (ec) die("metainfo: " + ec.message());
  lt::entry e(n);
  e["info"].dict().erase("ssl-cert");
  std::string out;
  lt::bencode(std::back_inserter(out), e);
  return out;
}

void make_content(const fs::path& p, int64_t bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  std::vector<uint64_t> buf(512 * 1024);  // 4 MiB
  uint64_t x = 0x9e3779b97f4a7c15ULL;     // splitmix64, fixed seed: incompressible, repeatable
  int64_t left = bytes;
  while (left > 0) {
    for (auto& w : buf) {
      uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      w = z ^ (z >> 31);
    }
    auto n = static_cast<std::streamsize>(
        std::min<int64_t>(left, static_cast<int64_t>(buf.size() * sizeof(uint64_t))));
    out.write(reinterpret_cast<const char*>(buf.data()), n);
    left -= n;
  }
  if (!out) die("cannot write " + p.string());
}

std::string fs_type(const std::string& dir) {
  struct statfs s {};
  if (statfs(dir.c_str(), &s) != 0) return "?";
  if (s.f_type == 0x01021994) return "tmpfs";
  if (s.f_type == 0xEF53) return "ext4";
  if (s.f_type == 0x794c7630) return "overlayfs";
  char hex[32];
  std::snprintf(hex, sizeof hex, "fs 0x%lx", static_cast<unsigned long>(s.f_type));
  return hex;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int run_coordinator(const std::string& self, const Options& opt) {
  std::string tmpl = (fs::path(opt.dir) / "tls_bench.XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) die("mkdtemp in " + opt.dir + " failed");
  const fs::path work(tmpl);
  const int64_t bytes = opt.size_mib * 1024 * 1024;
  std::printf(
      "# tls_bench: %lld MiB file in %s (%s), piece %s, %d repetitions\n",
      static_cast<long long>(opt.size_mib), work.c_str(), fs_type(opt.dir).c_str(),
      opt.piece_kib == 0 ? "engine default" : (std::to_string(opt.piece_kib) + " KiB").c_str(),
      opt.reps);
  std::printf("# load average at start: %s\n", load_average().c_str());
  std::fflush(stdout);

  make_content(work / "content", bytes);
  crypto::init();
  const auto now = static_cast<int64_t>(std::time(nullptr));
  const crypto::Ed25519KeyPair ca_key = crypto::generate_ed25519();
  auto ca = crypto::make_network_ca(ca_key, "tls-bench", now - 60, 24 * 3600);
  if (!ca) die("make_network_ca: " + ca.error().message);
  write_file(work / "ca.pem", *ca);
  for (const char* role : {"seed", "fetch"}) {
    const crypto::Ed25519KeyPair kp = crypto::generate_ed25519();
    auto leaf =
        crypto::issue_leaf(ca_key, *ca, kp.public_key, crypto::Role::kPeer, now - 60, 24 * 3600);
    if (!leaf) die("issue_leaf: " + leaf.error().message);
    write_file(work / (std::string(role) + ".crt"), *leaf);
    write_file(work / (std::string(role) + ".key"), crypto::ed25519_private_key_pem(kp));
  }
  auto metainfo = peer::build_metainfo((work / "content").string(), *ca, opt.piece_kib * 1024);
  if (!metainfo) die("build_metainfo: " + metainfo.error().message);
  write_file(work / "tls.torrent", *metainfo);
  write_file(work / "plain.torrent", strip_ssl_cert(*metainfo));
  lt::torrent_info ti(
      lt::span<const char>(metainfo->data(), static_cast<std::ptrdiff_t>(metainfo->size())),
      lt::from_span);
  std::ostringstream ih;
  ih << ti.info_hashes().v1;
  std::printf("# piece size %d KiB, %d pieces\n", ti.piece_length() / 1024, ti.num_pieces());

  std::vector<Transfer> results;
  std::string tls_info;
  for (int rep = 1; rep <= opt.reps; ++rep) {
    const bool plain_first = rep % 2 == 1;
    for (int k = 0; k < kModes; ++k) {
      const std::string mode = kMode[plain_first ? k : kModes - 1 - k];
      Transfer t = transfer(self, work, mode, rep, opt, &tls_info, ih.str());
      const double gib = static_cast<double>(bytes) / (1024.0 * 1024 * 1024);
      std::printf(
          "rep %d %-11s %8.1f MB/s  %6.3f s  seeder %5.2f CPU-s/GiB  downloader %5.2f "
          "CPU-s/GiB  switches/GiB %.0fk %.0fk  load %s\n",
          rep, mode.c_str(), static_cast<double>(bytes) / t.seconds / 1e6, t.seconds,
          t.seed_cpu / gib, t.fetch_cpu / gib, t.seed_switches / gib / 1e3,
          t.fetch_switches / gib / 1e3, t.load.c_str());
      std::fflush(stdout);
      results.push_back(t);
    }
  }

  const double gib = static_cast<double>(bytes) / (1024.0 * 1024 * 1024);
  std::printf("\n# TLS (libtorrent's SSL listener, OpenSSL default client): %s\n",
              tls_info.c_str());
  std::printf("# load average at end: %s\n\n", load_average().c_str());
  std::printf(
      "| mode | MB/s min | MB/s median | MB/s max | seeder CPU-s/GiB median | "
      "downloader CPU-s/GiB median | both CPU-s/GiB median | context switches/GiB "
      "seeder, downloader |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  std::vector<double> rates[kModes];
  for (int m = 0; m < kModes; ++m) {
    const std::string mode = kMode[m];
    std::vector<double> mbs, sc, fc, both, ss, fs_;
    for (const auto& t : results) {
      if (t.mode != mode) continue;
      mbs.push_back(static_cast<double>(bytes) / t.seconds / 1e6);
      sc.push_back(t.seed_cpu / gib);
      fc.push_back(t.fetch_cpu / gib);
      both.push_back((t.seed_cpu + t.fetch_cpu) / gib);
      ss.push_back(t.seed_switches / gib);
      fs_.push_back(t.fetch_switches / gib);
    }
    rates[m] = mbs;
    std::printf("| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.0fk, %.0fk |\n", kModeName[m],
                *std::min_element(mbs.begin(), mbs.end()), median(mbs),
                *std::max_element(mbs.begin(), mbs.end()), median(sc), median(fc), median(both),
                median(ss) / 1e3, median(fs_) / 1e3);
  }
  // Ratios of the transfers of each repetition (run back to back) to plain's.
  std::printf("\n");
  for (int m = 1; m < kModes; ++m) {
    std::vector<double> ratio;
    for (size_t i = 0; i < rates[0].size() && i < rates[m].size(); ++i) {
      ratio.push_back(rates[m][i] / rates[0][i]);
    }
    std::printf("%s / plain throughput per repetition: min %.2f, median %.2f, max %.2f\n", kMode[m],
                *std::min_element(ratio.begin(), ratio.end()), median(ratio),
                *std::max_element(ratio.begin(), ratio.end()));
  }
  if (!opt.keep) {
    fs::remove_all(work);
  } else {
    std::printf("kept %s\n", work.c_str());
  }
  return 0;
}

Transfer transfer(const std::string& self, const fs::path& work, const std::string& mode, int rep,
                  const Options& opt, std::string* tls_info, const std::string& info_hash) {
  fs::remove(work / "download");
  Transfer t;
  t.mode = mode;
  t.rep = rep;
  Child seeder = spawn({self, "--role", "seed", "--mode", mode, "--work", work.string()});
  std::string r = hear(seeder);
  if (r.rfind("port ", 0) != 0) die("seeder said: " + r);
  const std::string port = r.substr(5);
  Child fetcher = spawn({self, "--role", "fetch", "--mode", mode, "--work", work.string()});
  if ((r = hear(fetcher)) != "ready") die("downloader said: " + r);
  pid_t perf_seed = -1, perf_fetch = -1;
  const std::string tag = mode + "-r" + std::to_string(rep);
  if (!opt.perf_dir.empty()) {
    perf_seed = start_perf(fs::path(opt.perf_dir) / (tag + "-seed.data"), seeder.pid);
    perf_fetch = start_perf(fs::path(opt.perf_dir) / (tag + "-fetch.data"), fetcher.pid);
  }
  t.load = load_average();
  const Usage seed0 = ask_usage(seeder);
  const Usage fetch0 = ask_usage(fetcher);
  const auto t0 = Clock::now();
  say(fetcher, "go " + port);
  r = hear(fetcher);
  const auto t1 = Clock::now();
  if (r.rfind("done ", 0) != 0) die(mode + " transfer failed: " + r);
  const Usage seed1 = ask_usage(seeder);
  std::istringstream done(r.substr(5));
  Usage fetch1;
  long long downloaded = 0;
  done >> fetch1.cpu >> fetch1.switches >> downloaded;
  if (perf_seed > 0) stop_perf(perf_seed);
  if (perf_fetch > 0) stop_perf(perf_fetch);
  if (mode != "plain" && tls_info->empty()) {
    *tls_info = tls_probe(static_cast<uint16_t>(std::stoi(port)), info_hash, work);
  }
  t.seconds = std::chrono::duration<double>(t1 - t0).count();
  t.seed_cpu = seed1.cpu - seed0.cpu;
  t.fetch_cpu = fetch1.cpu - fetch0.cpu;
  t.seed_switches = seed1.switches - seed0.switches;
  t.fetch_switches = fetch1.switches - fetch0.switches;
  finish(fetcher);
  finish(seeder);
  // The downloader reported complete only once libtorrent had SHA-1-verified every piece.
  // (`downloaded`, libtorrent's all-time payload counter, is updated once a second: not
  // checked.)
  (void)downloaded;
  if (fs::file_size(work / "download") != fs::file_size(work / "content")) {
    die(mode + ": downloaded file has the wrong size");
  }
  fs::remove(work / "download");
  return t;
}

// One handshake against libtorrent's SSL listener, as a libtorrent client makes it: the
// downloader's leaf, the CA as the only trust anchor, SNI = the torrent's info-hash in hex.
std::string tls_probe(uint16_t port, const std::string& sni, const fs::path& work) {
  auto pem_x509 = [](const std::string& pem) {
    BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    return x;
  };
  const std::string key_pem = read_file(work / "fetch.key");
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  X509* leaf = pem_x509(read_file(work / "fetch.crt"));
  X509* ca = pem_x509(read_file(work / "ca.pem"));
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  std::string result = "handshake failed";
  if (ctx != nullptr && leaf != nullptr && ca != nullptr && key != nullptr &&
      SSL_CTX_use_certificate(ctx, leaf) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1 &&
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca) == 1) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      SSL* ssl = SSL_new(ctx);
      SSL_set_fd(ssl, fd);
      SSL_set_tlsext_host_name(ssl, sni.c_str());
      if (SSL_connect(ssl) == 1) {
        const int group = static_cast<int>(SSL_get_negotiated_group(ssl));
        result = std::string(SSL_get_version(ssl)) + ", " + SSL_get_cipher_name(ssl) +
                 ", key exchange " + (group != 0 ? OBJ_nid2sn(group & ~TLSEXT_nid_unknown) : "?");
        SSL_shutdown(ssl);
      } else {
        char err[256];
        ERR_error_string_n(ERR_get_error(), err, sizeof err);
        result += std::string(": ") + err;
      }
      SSL_free(ssl);
    }
    close(fd);
  }
  EVP_PKEY_free(key);
  X509_free(leaf);
  X509_free(ca);
  SSL_CTX_free(ctx);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string role, mode, work;
  Options opt;
  for (size_t i = 0; i < args.size(); ++i) {
    auto next = [&]() -> std::string {
      if (i + 1 >= args.size()) die(args[i] + " needs a value");
      return args[++i];
    };
    const std::string& a = args[i];
    if (a == "--role") {
      role = next();
    } else if (a == "--mode") {
      mode = next();
    } else if (a == "--work") {
      work = next();
    } else if (a == "--size-mib") {
      opt.size_mib = std::stoll(next());
    } else if (a == "--reps") {
      opt.reps = std::stoi(next());
    } else if (a == "--dir") {
      opt.dir = next();
    } else if (a == "--piece-kib") {
      opt.piece_kib = std::stoi(next());
    } else if (a == "--perf-dir") {
      opt.perf_dir = next();
    } else if (a == "--keep") {
      opt.keep = true;
    } else {
      die("unknown argument " + a +
          " (usage: tls_bench [--size-mib N] [--reps N] [--dir D] [--piece-kib K] "
          "[--perf-dir D] [--keep])");
    }
  }
  if (!role.empty()) return run_child(role, mode, work);
  if (opt.size_mib <= 0 || opt.reps <= 0) die("--size-mib and --reps must be positive");
  return run_coordinator(fs::read_symlink("/proc/self/exe").string(), opt);
}

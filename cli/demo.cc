// `starling demo`: the whole system on one machine. An origin, a supernode and N peer daemons
// run as separate processes of this binary on 127.0.0.x; N `starling get` processes download
// one generated file at once; the demo shows progress per peer, where the bytes came from,
// verifies every output and removes everything it started, also on Ctrl-C.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/get.h"
#include "cli/local_net.h"
#include "cli/progress.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "peer/api/local_api.h"

namespace starling::cli {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

volatile sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

Result<json> http_get_json(const std::string& url) {
  auto body = http_get(url);
  if (!body) return body.error();
  json j = json::parse(*body, nullptr, false);
  if (j.is_discarded()) return make_error("demo.http", url + ": not JSON");
  return j;
}

// A child process of this binary with its output in a log file.
struct Child {
  std::string name;
  pid_t pid = -1;
  int exit_code = -1;  // once reaped
};

class Processes {
 public:
  explicit Processes(std::string exe) : exe_(std::move(exe)) {}
  ~Processes() { stop_all(); }

  Result<size_t> spawn(const std::string& name, const std::vector<std::string>& args,
                       const std::string& log) {
    // Children get their own process group: Ctrl-C reaches only the demo, which then stops
    // them in order (peers, supernode, origin) instead of all at once.
    auto pid = spawn_logged(exe_, args, log, /*own_process_group=*/true);
    if (!pid) return make_error("demo.spawn", "cannot start " + name + ": " + pid.error().message);
    children_.push_back(Child{name, *pid});
    return children_.size() - 1;
  }

  // Reaps `index` if it exited; returns true when it has.
  bool exited(size_t index) {
    Child& c = children_[index];
    if (c.pid < 0) return true;
    int status = 0;
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      c.pid = -1;
      return true;
    }
    return false;
  }

  const Child& child(size_t index) const { return children_[index]; }

  // SIGTERM in reverse start order, SIGKILL after 5 s.
  void stop_all() {
    for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
      if (it->pid > 0) ::kill(it->pid, SIGTERM);
    }
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (size_t i = children_.size(); i-- > 0;) {
      while (!exited(i) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
      if (children_[i].pid > 0) {
        ::kill(children_[i].pid, SIGKILL);
        ::waitpid(children_[i].pid, nullptr, 0);
        children_[i].pid = -1;
      }
    }
  }

 private:
  std::string exe_;
  std::vector<Child> children_;
};

// Writes `size` pseudo-random bytes (xorshift64*, fixed seed) and returns their SHA-256.
Result<std::string> generate_file(const std::string& path, int64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error("demo.file", "cannot create " + path + ": " + std::strerror(errno));
  crypto::Sha256 hash;
  std::vector<uint64_t> buf(1 << 17);  // 1 MiB
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (int64_t left = size; left > 0;) {
    for (auto& w : buf) {
      x ^= x >> 12;
      x ^= x << 25;
      x ^= x >> 27;
      w = x * 0x2545f4914f6cdd1dULL;
    }
    const size_t n = static_cast<size_t>(std::min<int64_t>(left, 1 << 20));
    hash.update(buf.data(), n);
    if (::write(fd, buf.data(), n) != static_cast<ssize_t>(n)) {
      ::close(fd);
      return make_error("demo.file", "cannot write " + path + ": " + std::strerror(errno));
    }
    left -= static_cast<int64_t>(n);
  }
  ::close(fd);
  return hash.finish_hex();
}

bool wait_until(const std::function<bool()>& ready, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!g_interrupted && std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

struct PeerView {
  std::string ip;
  std::string socket;
  std::string output;
  size_t daemon = 0;
  size_t get = 0;
  json task = json::object();  // the last status seen
};

std::string bar(double fraction, int width) {
  const int filled = static_cast<int>(fraction * width);
  return "[" + std::string(static_cast<size_t>(filled), '#') +
         std::string(static_cast<size_t>(width - filled), '.') + "]";
}

class Demo {
 public:
  Demo(std::string exe, int64_t size, int peers, bool keep)
      : processes_(std::move(exe)), size_(size), npeers_(peers), keep_(keep) {}

  ~Demo() {
    processes_.stop_all();
    if (!dir_.empty()) {
      if (keep_) {
        std::cout << "kept " << dir_ << " (logs in " << dir_ << "/logs)\n";
      } else {
        std::error_code ec;
        fs::remove_all(dir_, ec);
      }
    }
  }

  int run() {
    char tmpl[] = "/tmp/starling-demo-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return fail("cannot create a working directory");
    dir_ = tmpl;
    for (const char* sub : {"www", "logs", "out"}) fs::create_directories(dir_ + "/" + sub);

    std::cout << "starling demo: " << npeers_ << " peers download one " << mib(size_)
              << " file at once\n  working directory " << dir_ << "\n";
    std::cout << "generating the file at the origin...\n";
    auto sum = generate_file(dir_ + "/www/blob", size_);
    if (!sum) return fail(sum.error().message);
    sha256_ = *sum;

    auto net = crypto::init_network(dir_ + "/net", "demo", std::time(nullptr));
    if (!net) return fail(net.error().message);

    if (int rc = start_processes(); rc != 0) return rc;
    return download();
  }

 private:
  int fail(const std::string& message) {
    std::cerr << "starling demo: " << message << "\n";
    return 1;
  }

  int start_processes() {
    const std::string origin_ip = "127.0.0.2";
    const std::string super_ip = "127.0.0.3";
    auto origin_port = free_port(origin_ip);
    auto mesh_port = free_port(super_ip);
    auto super_data = free_port(super_ip);
    if (!origin_port || !mesh_port || !super_data) return fail("no free port on 127.0.0.x");
    origin_url_ = "http://" + origin_ip + ":" + std::to_string(*origin_port);
    const std::string logs = dir_ + "/logs/";

    auto origin = processes_.spawn("origin",
                                   {"origin", "--root", dir_ + "/www", "--listen", origin_ip,
                                    "--port", std::to_string(*origin_port)},
                                   logs + "origin.log");
    if (!origin) return fail(origin.error().message);
    if (!wait_until([&] { return tcp_ready(origin_ip, *origin_port); }, 10s)) {
      return fail("the origin did not start (see " + logs + "origin.log)");
    }

    auto super =
        processes_.spawn("supernode",
                         {"supernode", "--network", dir_ + "/net", "--data", dir_ + "/supernode",
                          "--listen", super_ip, "--port", std::to_string(*mesh_port), "--data-port",
                          std::to_string(*super_data)},
                         logs + "supernode.log");
    if (!super) return fail(super.error().message);
    if (!wait_until([&] { return tcp_ready(super_ip, *mesh_port); }, 20s)) {
      return fail("the supernode did not start (see " + logs + "supernode.log)");
    }
    supernode_ = super_ip + ":" + std::to_string(*mesh_port);

    for (int i = 0; i < npeers_; ++i) {
      PeerView p;
      p.ip = "127.0.0." + std::to_string(10 + i);
      p.socket = dir_ + "/peer" + std::to_string(i + 1) + ".sock";
      p.output = dir_ + "/out/peer" + std::to_string(i + 1);
      auto data_port = free_port(p.ip);
      if (!data_port) return fail(data_port.error().message);
      auto daemon = processes_.spawn(
          "peer" + std::to_string(i + 1),
          {"peer", "--network", dir_ + "/net", "--data", dir_ + "/peer" + std::to_string(i + 1),
           "--supernode", supernode_, "--listen", p.ip, "--data-port", std::to_string(*data_port),
           "--socket", p.socket},
          logs + "peer" + std::to_string(i + 1) + ".log");
      if (!daemon) return fail(daemon.error().message);
      p.daemon = *daemon;
      peers_.push_back(p);
    }
    for (auto& p : peers_) {
      const bool up = wait_until(
          [&] {
            if (processes_.exited(p.daemon)) return false;
            auto r = peer::local_api_call(p.socket, "GET", "/v1/status", "", 1s);
            return r.ok() && r->status == 200;
          },
          20s);
      if (!up) {
        return fail("peer daemon " + processes_.child(p.daemon).name + " did not start (see " +
                    logs + processes_.child(p.daemon).name + ".log)");
      }
    }
    std::cout << "started origin " << origin_url_ << ", supernode " << supernode_ << ", " << npeers_
              << " peer daemons on 127.0.0.10-" << 9 + npeers_ << "\n";
    return 0;
  }

  int download() {
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < peers_.size(); ++i) {
      auto& p = peers_[i];
      auto get = processes_.spawn(
          "get" + std::to_string(i + 1),
          {"get", origin_url_ + "/blob", "-o", p.output, "--socket", p.socket, "--quiet"},
          dir_ + "/logs/get" + std::to_string(i + 1) + ".log");
      if (!get) return fail(get.error().message);
      p.get = *get;
    }
    const bool tty = ::isatty(STDOUT_FILENO) == 1;
    auto last_print = std::chrono::steady_clock::now() - 10s;
    bool drawn = false;
    while (!g_interrupted) {
      bool all_exited = true;
      for (auto& p : peers_) {
        if (!processes_.exited(p.get)) all_exited = false;
        auto r = peer::local_api_call(p.socket, "GET", "/v1/tasks", "", 1s);
        if (r && r->status == 200) {
          json j = json::parse(r->body, nullptr, false);
          if (!j.is_discarded() && j.contains("tasks") && !j["tasks"].empty()) {
            p.task = j["tasks"][0];
          }
        }
      }
      const auto now = std::chrono::steady_clock::now();
      if (tty || now - last_print >= 5s || all_exited) {
        if (tty && drawn) std::cout << "\033[" << peers_.size() + 1 << "A";
        draw(std::chrono::duration<double>(now - start).count(), tty);
        drawn = true;
        last_print = now;
      }
      if (all_exited) break;
      std::this_thread::sleep_for(500ms);
    }
    if (g_interrupted) {
      std::cout << "\ninterrupted: stopping every process and removing " << dir_ << "\n";
      return 130;
    }
    return summarize(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  void draw(double seconds, bool tty) {
    const char* clear = tty ? "\033[K" : "";
    std::ostringstream o;
    o << clear << "  t=" << static_cast<int>(seconds) << "s\n";
    for (size_t i = 0; i < peers_.size(); ++i) {
      const json& t = peers_[i].task;
      // Against the file's size: the daemon's total_bytes is only the published segments' size
      // until the origin fetch ends.
      const double total = static_cast<double>(size_);
      const double done = static_cast<double>(t.value("done_bytes", int64_t{0}));
      const double fraction = total > 0 ? std::min(1.0, done / total) : 0.0;
      o << clear << "  peer" << i + 1 << " " << bar(fraction, 30) << " "
        << std::string(4 - std::min<size_t>(4, std::to_string(int(fraction * 100)).size()), ' ')
        << static_cast<int>(fraction * 100) << "%  " << t.value("state", std::string("starting"))
        << "  down " << mib(t.value("downloaded_bytes", int64_t{0})) << "  up "
        << mib(t.value("uploaded_bytes", int64_t{0})) << "\n";
    }
    std::cout << o.str() << std::flush;
  }

  int summarize(double seconds) {
    bool ok = true;
    std::cout << "\nresults after " << static_cast<int>(seconds) << " s:\n";
    int64_t received = 0;
    int64_t peer_uploaded = 0;
    for (size_t i = 0; i < peers_.size(); ++i) {
      const auto& p = peers_[i];
      const int code = processes_.child(p.get).exit_code;
      auto sum = crypto::sha256_file(p.output);
      const bool same = sum.ok() && *sum == sha256_;
      ok = ok && code == 0 && same;
      received += p.task.value("downloaded_bytes", int64_t{0});
      peer_uploaded += p.task.value("uploaded_bytes", int64_t{0});
      std::cout << "  peer" << i + 1 << ": get exit " << code << ", output "
                << (same ? "identical to the origin's file" : "DIFFERS or missing") << "\n";
      if (code != 0) {
        std::cout << "    see " << dir_ << "/logs/get" << i + 1 << ".log\n";
        keep_ = true;
      }
    }
    auto stats = http_get_json(origin_url_ + "/_stats");
    const int64_t requests = stats ? stats->value("requests", int64_t{-1}) : -1;
    const int64_t origin_bytes = stats ? stats->value("bytes_sent", int64_t{0}) : 0;
    const int64_t from_seed = std::max(int64_t{0}, received - peer_uploaded);
    std::cout << "  origin:    " << requests << " request(s), " << mib(origin_bytes) << " sent ("
              << (size_ > 0 ? static_cast<double>(origin_bytes) / static_cast<double>(size_) : 0.0)
              << " x the file size)\n"
              << "  peers received " << mib(received) << " in all: " << mib(from_seed)
              << " from the supernode's seed, " << mib(peer_uploaded) << " from each other\n";
    if (requests != 1) ok = false;
    std::cout
        << (ok ? "demo OK: every output is byte-identical and the origin served the file once\n"
               : "demo FAILED\n");
    return ok ? 0 : 1;
  }

  Processes processes_;
  int64_t size_;
  int npeers_;
  bool keep_;
  std::string dir_;
  std::string sha256_;
  std::string origin_url_;
  std::string supernode_;
  std::vector<PeerView> peers_;
};

}  // namespace

int run_demo(const ParsedArgs& args, const std::string& self_exe) {
  int64_t size_mib = 0;
  int peers = 0;
  try {
    size_mib = std::stoll(args.get("size-mib", "256"));
    peers = std::stoi(args.get("peers", "4"));
  } catch (const std::exception&) {
    std::cerr
        << "starling: demo: --size-mib and --peers take numbers (see 'starling demo --help')\n";
    return 2;
  }
  if (size_mib < 1 || size_mib > 65536 || peers < 1 || peers > 16) {
    std::cerr << "starling: demo: --size-mib must be 1..65536 and --peers 1..16\n";
    return 2;
  }
  crypto::init();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  Demo demo(self_exe, size_mib * 1024 * 1024, peers, args.has("keep"));
  return demo.run();
}

}  // namespace starling::cli

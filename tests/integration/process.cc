#include "tests/integration/process.h"

#include "cli/local_net.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace starling::testing {

std::string starling_binary() { return STARLING_BINARY; }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Process::Process(const std::vector<std::string>& args, std::string log)
    : Process(starling_binary(), args, std::move(log)) {}

Process::Process(const std::string& program, const std::vector<std::string>& args, std::string log)
    : log_(std::move(log)) {
  std::vector<std::string> full = {program};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  int rc = posix_spawn(&pid_, full[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + full[0] + ": " + std::strerror(rc));
}

Process::~Process() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

bool Process::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return false;
  }
  return true;
}

int Process::wait(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return code_;
}

void Process::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

RunResult run_starling(const std::vector<std::string>& args, const std::string& log,
                       std::chrono::milliseconds limit) {
  std::filesystem::remove(log);
  Process p(args, log);
  RunResult r;
  r.code = p.wait(limit);
  r.output = p.output();
  return r;
}

uint16_t free_port(const std::string& ip) {
  auto port = cli::free_port(ip);
  if (!port) throw std::runtime_error(port.error().message);
  return *port;
}

bool tcp_ready(const std::string& ip, uint16_t port) { return cli::tcp_ready(ip, port); }

TempDir::TempDir() {
  char tmpl[] = "/tmp/starling-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_random_file(const std::string& path, size_t size, uint64_t seed) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::vector<uint64_t> buf(1 << 16);
  uint64_t x = seed | 1;
  for (size_t left = size; left > 0;) {
    for (auto& w : buf) {
      x ^= x >> 12;
      x ^= x << 25;
      x ^= x >> 27;
      w = x * 0x2545f4914f6cdd1dULL;
    }
    const size_t n = std::min(left, buf.size() * sizeof(uint64_t));
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n));
    left -= n;
  }
}

}  // namespace starling::testing

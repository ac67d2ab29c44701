#include "tests/integration/process.h"

#include "cli/local_net.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

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
  auto pid = cli::spawn_logged(program, args, log_, /*own_process_group=*/false);
  if (!pid) throw std::runtime_error(pid.error().message);
  pid_ = *pid;
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

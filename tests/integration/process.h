// Real processes of the `starling` binary for integration tests: spawn with output captured
// in a log file, wait with a bound, kill, and read what they printed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/temp_dir.h"

namespace starling::testing {

std::string starling_binary();
std::string read_text(const std::string& path);

class Process {
 public:
  // Starts `starling ARGS...` with stdout and stderr appended to `log`.
  Process(const std::vector<std::string>& args, std::string log);
  // Starts any program (absolute path) the same way.
  Process(const std::string& program, const std::vector<std::string>& args, std::string log);
  ~Process();  // SIGKILL if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Exit code, or -1 on timeout. A death by signal N gives 128 + N.
  int wait(std::chrono::milliseconds limit);
  bool running();
  void signal(int sig);
  std::string output() const { return read_text(log_); }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int code_ = -1;
  std::string log_;
};

struct RunResult {
  int code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `starling ARGS...` to completion (bounded by `limit`).
RunResult run_starling(const std::vector<std::string>& args, const std::string& log,
                       std::chrono::milliseconds limit = std::chrono::seconds(120));

// A free TCP port on `ip` (bind to port 0 and release).
uint16_t free_port(const std::string& ip);
bool tcp_ready(const std::string& ip, uint16_t port);
// Polls `pred` every 50 ms until it holds or `limit` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit);

// Writes `size` deterministic pseudo-random bytes derived from `seed`.
void write_random_file(const std::string& path, size_t size, uint64_t seed);

}  // namespace starling::testing

#include <thread>

template <class Pred>
bool starling::testing::eventually(Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

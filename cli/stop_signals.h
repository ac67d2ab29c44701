// SIGINT and SIGTERM as events, not asynchronous deaths: a command blocks them before it starts
// any thread (threads inherit the mask), then waits for them where it can stop in order
// (`starling supernode` and `peer` until they arrive; `get` between its polls, so that Ctrl-C
// removes its temp file and its one-shot peer's directories).
#pragma once

#include <signal.h>

namespace starling::cli {

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards.
inline sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

inline void wait_for_stop_signal(const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
}

// The stop signal that arrived within `ms` milliseconds, or 0.
inline int stop_signal_within(const sigset_t& set, long ms) {
  timespec pause{ms / 1000, (ms % 1000) * 1000000};
  const int sig = sigtimedwait(&set, nullptr, &pause);
  return sig > 0 ? sig : 0;
}

}  // namespace starling::cli

#include "cli/progress.h"

#include <algorithm>
#include <cstdio>

namespace starling::cli {

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string progress_line(const std::string& state, int64_t done, int64_t total, int64_t peers,
                          bool size_final) {
  if (state != "downloading" || total <= 0) return state + "…";
  done = std::clamp<int64_t>(done, 0, total);
  std::string line = "downloading " + mib(done);
  if (size_final) {
    // done * 100 could overflow only beyond 92 PB; divide first for such sizes.
    const int64_t percent = total > INT64_MAX / 100 ? done / (total / 100) : done * 100 / total;
    line += " / " + mib(total) + " (" + std::to_string(percent) + "%)";
  } else {
    line += " of at least " + mib(total);
  }
  return line + ", " + std::to_string(peers) + (peers == 1 ? " peer" : " peers");
}

}  // namespace starling::cli

// The progress line `starling get` shows while the peer daemon works on a task. Pure.
#pragma once

#include <cstdint>
#include <string>

namespace starling::cli {

// "12.0 MiB" (one decimal).
std::string mib(int64_t bytes);

// From the daemon's task fields: `state`, `done` (done_bytes), `total` (total_bytes), `peers`,
// and whether the content's size is final (source_state "ready"). Until it is, total_bytes is
// only the size of the segments published so far: a lower bound, so no percentage is shown.
//   "downloading 60.0 MiB / 256.0 MiB (23%), 3 peers"
//   "downloading 60.0 MiB of at least 64.0 MiB, 1 peer"
//   "fetching…" (any other state, or nothing to count yet)
std::string progress_line(const std::string& state, int64_t done, int64_t total, int64_t peers,
                          bool size_final);

}  // namespace starling::cli

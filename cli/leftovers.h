// What a `starling get` leaves when it cannot clean up (kill -9, a crash, a power cut): the temp
// output `.FILE.starling-XXXXXX` and a one-shot peer's data directory
// `.FILE.starling-peer-XXXXXX` beside the output (segment files: as large as the content), and
// the one-shot peer's socket directory `starling-get-XXXXXX` under $TMPDIR.
//
// A running get holds an flock on each of them (OwnerLock) for as long as it runs; the kernel
// drops it when the process dies, however it dies. The next get of the same output sweeps:
// a leftover nobody holds and nobody touched for kLeftoverMinAge is removed. The age closes the
// moment between mkstemp/mkdtemp and the flock of a get starting beside it.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace starling::cli {

inline constexpr std::chrono::seconds kLeftoverMinAge{10};

// Pure: is `name` (a directory entry) get's temp output or one-shot data directory for the
// output file named `output_name`? The random part is mkstemp's: exactly six of [A-Za-z0-9].
bool is_output_leftover_name(std::string_view name, std::string_view output_name);
// Pure: is `name` a one-shot peer's socket directory (under $TMPDIR)?
bool is_socket_dir_leftover_name(std::string_view name);

// An exclusive flock on a file or directory, held until destroyed (or the process dies).
class OwnerLock {
 public:
  OwnerLock() = default;
  static Result<OwnerLock> take(const std::string& path);
  OwnerLock(OwnerLock&& other) noexcept;
  OwnerLock& operator=(OwnerLock&& other) noexcept;
  OwnerLock(const OwnerLock&) = delete;
  OwnerLock& operator=(const OwnerLock&) = delete;
  ~OwnerLock();

 private:
  int fd_ = -1;
};

// $TMPDIR, or /tmp when it is unset or empty.
std::string temp_root();

// Removes the leftovers of gets that no longer run: those for `output` beside it and every
// socket directory in `tmp_dir`, unless locked or younger than `min_age`. Returns what it
// removed; what it cannot inspect or remove it leaves.
std::vector<std::string> sweep_leftovers(const std::string& output, const std::string& tmp_dir,
                                         std::chrono::seconds min_age = kLeftoverMinAge);

}  // namespace starling::cli

// A small linearizability checker for key/value histories (Wing & Gong's search with
// Lowe's memoization, partitioned by key as Porcupine does). Test-only.
//
// A history is a set of completed or pending operations with real-time intervals. A write
// whose outcome the client never learned (timeout, crash) has ret = kNever: it may take
// effect at any point after its call, or never. Reads that never returned are left out by
// the caller (they have no effect).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace starling::raft::testing {

inline constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

struct KvOp {
  enum class Kind { kPut, kGet };
  Kind kind = Kind::kGet;
  int client = 0;
  std::string key;
  std::optional<std::string>
      value;  // put: the value written; get: what was read (nullopt = absent)
  uint64_t call = 0;
  uint64_t ret = kNever;  // kNever: a put with unknown outcome
};

struct LinearizabilityResult {
  bool ok = true;
  std::string key;          // the key whose sub-history has no linearization
  std::string explanation;  // that sub-history, one op per line
};

// Every key starts absent. REQUIRES: call < ret for each op; all call/ret values distinct.
// Gives up (ok=true, explanation="search budget exhausted") after `budget` search states.
LinearizabilityResult check_linearizable(const std::vector<KvOp>& history,
                                         uint64_t budget = 5'000'000);

std::string describe(const KvOp& op);

}  // namespace starling::raft::testing

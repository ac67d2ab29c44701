// A small linearizability checker for key/value histories (Wing & Gong's search with
// Lowe's memoization, partitioned by key as Porcupine does). Test-only.
//
// A history is a set of completed or pending operations with real-time intervals. A write
// whose outcome the client never learned (timeout, crash) has ret = kNever: it may take
// effect at any point after its call, or never; if nobody read its value, it can still
// explain a refused cas. Reads that never returned have no effect (left out by the caller,
// or ignored).
//
// Operations on one key (each key starts absent):
//  - put(v): the key becomes v.
//  - get -> v: the key is v (nullopt = absent) at the linearization point.
//  - cas(expected -> v): compare-and-set. Succeeded (failed = false, ret known): the key was
//    `expected` and becomes v. Failed (failed = true): the key was NOT `expected` and stays as
//    it was, i.e. a read of "anything but expected". Unknown (ret = kNever): if it takes effect
//    where the key is `expected` it writes v, elsewhere it changes nothing.
//    A store whose cas compares a version number (e.g. a modify index) maps onto this when
//    every write stores a unique value: "index N" then means "the value written at N".
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace starling::raft::testing {

inline constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

struct KvOp {
  enum class Kind { kPut, kGet, kCas };
  Kind kind = Kind::kGet;
  int client = 0;
  std::string key;
  // put: the value written; get: what was read (nullopt = absent); cas: the new value.
  std::optional<std::string> value;
  uint64_t call = 0;
  uint64_t ret = kNever;  // kNever: a put or cas with unknown outcome
  // cas only: the value it compared against (nullopt = "only if absent").
  std::optional<std::string> expected = std::nullopt;
  // cas only: refused because the key was not `expected` (REQUIRES ret != kNever).
  bool failed = false;
};

struct LinearizabilityResult {
  bool ok = true;
  // The search budget ran out on some key before a verdict (ok is then true for that key):
  // no anomaly was found, but none was ruled out either.
  bool inconclusive = false;
  std::string key;  // the key whose sub-history has no linearization
  // On failure: how far the search got (the longest linearizable prefix, the state after it,
  // the op that could not follow), then that sub-history, one op per line (for long
  // histories only the ops around the stuck one). Otherwise notes such as "search budget
  // exhausted".
  std::string explanation;
};

// Every key starts absent. REQUIRES: call < ret for each op; all call/ret values distinct.
// Gives up on a key (see `inconclusive`) after `budget` search steps on it.
LinearizabilityResult check_linearizable(const std::vector<KvOp>& history,
                                         uint64_t budget = 5'000'000);

std::string describe(const KvOp& op);

}  // namespace starling::raft::testing

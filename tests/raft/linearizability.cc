#include "tests/raft/linearizability.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace starling::raft::testing {
namespace {

using Bits = std::vector<uint64_t>;

struct Search {
  const std::vector<KvOp>& ops;
  std::set<std::pair<Bits, std::optional<std::string>>> seen;  // (linearized set, state)
  uint64_t budget;
  uint64_t visited = 0;
  bool exhausted = false;
  size_t must_total = 0;  // ops that returned: all must be linearized

  bool has(const Bits& b, size_t i) const { return (b[i / 64] >> (i % 64)) & 1; }
  void set(Bits& b, size_t i) const { b[i / 64] |= uint64_t{1} << (i % 64); }

  bool dfs(Bits& done, size_t must_done, const std::optional<std::string>& state) {
    if (must_done == must_total) return true;
    if (++visited > budget) {
      exhausted = true;
      return true;
    }
    if (!seen.insert({done, state}).second) return false;
    // An op may go next only if no other pending op returned before it was called.
    uint64_t min_ret = kNever;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (!has(done, i)) min_ret = std::min(min_ret, ops[i].ret);
    }
    for (size_t i = 0; i < ops.size(); ++i) {
      if (has(done, i) || ops[i].call > min_ret) continue;
      const KvOp& op = ops[i];
      std::optional<std::string> next = state;
      if (op.kind == KvOp::Kind::kGet) {
        if (op.value != state) continue;
      } else {
        next = op.value;
      }
      set(done, i);
      bool found = dfs(done, must_done + (op.ret != kNever ? 1 : 0), next);
      done[i / 64] &= ~(uint64_t{1} << (i % 64));
      if (found) return true;
    }
    return false;
  }
};

}  // namespace

std::string describe(const KvOp& op) {
  std::string s = "client " + std::to_string(op.client) + " ";
  s += op.kind == KvOp::Kind::kPut ? "put(" : "get(";
  s += op.key;
  if (op.kind == KvOp::Kind::kPut) s += ", " + op.value.value_or("<absent>");
  s += ")";
  if (op.kind == KvOp::Kind::kGet) s += " -> " + op.value.value_or("<absent>");
  s += " [" + std::to_string(op.call) + ", " +
       (op.ret == kNever ? std::string("never") : std::to_string(op.ret)) + "]";
  return s;
}

LinearizabilityResult check_linearizable(const std::vector<KvOp>& history, uint64_t budget) {
  std::map<std::string, std::vector<KvOp>> by_key;
  // A write of unknown outcome whose value nobody read can be assumed never to have happened:
  // linearizing it could only make later reads fail. Dropping it keeps the search small.
  std::set<std::pair<std::string, std::string>> read;
  for (const KvOp& op : history) {
    if (op.kind == KvOp::Kind::kGet && op.value) read.insert({op.key, *op.value});
  }
  for (const KvOp& op : history) {
    if (op.kind == KvOp::Kind::kPut && op.ret == kNever && !read.count({op.key, *op.value})) {
      continue;
    }
    by_key[op.key].push_back(op);
  }
  LinearizabilityResult result;
  for (auto& [key, ops] : by_key) {
    std::sort(ops.begin(), ops.end(), [](const KvOp& a, const KvOp& b) { return a.call < b.call; });
    Search s{ops, {}, budget};
    for (const KvOp& op : ops) s.must_total += op.ret != kNever ? 1 : 0;
    Bits done((ops.size() + 63) / 64, 0);
    bool ok = s.dfs(done, 0, std::nullopt);
    if (s.exhausted) {
      result.explanation += "key " + key + ": search budget exhausted\n";
      continue;
    }
    if (!ok) {
      result.ok = false;
      result.key = key;
      for (const KvOp& op : ops) result.explanation += describe(op) + "\n";
      return result;
    }
  }
  return result;
}

}  // namespace starling::raft::testing

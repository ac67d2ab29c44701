#include "tests/raft/linearizability.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <unordered_set>
#include <utility>

namespace starling::raft::testing {
namespace {

using Bits = std::vector<uint64_t>;

// The key's value, or "some value written by an anonymous write" (see Entry).
struct State {
  bool unobserved = false;
  std::optional<std::string> value;  // when !unobserved; nullopt = absent
  bool operator==(const State& o) const { return unobserved == o.unobserved && value == o.value; }
  bool is(const std::optional<std::string>& v) const { return !unobserved && value == v; }
};

std::string show(const std::optional<std::string>& v) { return v.value_or("<absent>"); }
std::string show(const State& s) { return s.unobserved ? "<a value nobody read>" : show(s.value); }

// One op of a key's sub-history. An ANONYMOUS op is a write of unknown outcome whose value
// nobody read: if it took effect, the key held a value no read saw, which only a refused cas
// can have met (as "not the expected value") before the next write. Anonymous ops of one
// group (all puts; cas of one expected value) are interchangeable, except for their call
// times, so the search only ever tries the earliest-called unused one of a group.
struct Entry {
  KvOp op;
  bool anonymous = false;
  size_t group = 0;
};

// Whether `e` may take effect in `state`, and the state after it. A cas of unknown outcome is
// tried only where it would succeed: where it would fail it is the same as never happening.
bool step(const Entry& e, const State& state, State& next) {
  const KvOp& op = e.op;
  next = state;
  State written;
  written.unobserved = e.anonymous;
  if (!e.anonymous) written.value = op.value;
  switch (op.kind) {
    case KvOp::Kind::kGet:
      return state.is(op.value);
    case KvOp::Kind::kPut:
      next = written;
      return true;
    case KvOp::Kind::kCas:
      if (op.failed) return !state.is(op.expected);
      if (!state.is(op.expected)) return false;
      next = written;
      return true;
  }
  return false;
}

struct Memo {
  Bits bits;
  State state;
  bool operator==(const Memo& o) const { return bits == o.bits && state == o.state; }
};
struct MemoHash {
  size_t operator()(const Memo& m) const {
    uint64_t h = m.state.unobserved ? 0x51afd7ed558ccd1ULL
                 : m.state.value    ? std::hash<std::string>()(*m.state.value)
                                    : 0x9e3779b97f4a7c15ULL;
    for (uint64_t w : m.bits) h = (h ^ w) * 0x100000001b3ULL + (h >> 29);
    return static_cast<size_t>(h);
  }
};

// Porcupine's formulation of Wing & Gong: the call and return events of one key's ops in one
// time-ordered doubly linked list. Linearizing an op lifts both of its events out of the list;
// the scan may try any call that comes before the first remaining return (that op must be
// linearized before anything called after its return). An op of unknown outcome returns
// "at infinity" and need not be linearized at all: the search is done when every op that
// returned is.
class Search {
 public:
  Search(const std::vector<Entry>& ops, size_t groups, uint64_t budget)
      : ops_(ops), budget_(budget), group_members_(groups), group_used_(groups, 0) {
    const size_t n = ops.size();
    struct Event {
      uint64_t time;
      size_t op;
      bool call;
    };
    std::vector<Event> events;
    for (size_t i = 0; i < n; ++i) {
      events.push_back({ops[i].op.call, i, true});
      events.push_back({ops[i].op.ret, i, false});
      if (ops[i].op.ret != kNever) ++remaining_;
      if (ops[i].anonymous) group_members_[ops[i].group].push_back(i);  // ops are in call order
    }
    std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
      return a.time < b.time;  // kNever returns tie and keep call order
    });
    // Node 0 is the list head; event k is node k + 1.
    const size_t nodes = events.size() + 1;
    next_.assign(nodes, 0);
    prev_.assign(nodes, 0);
    op_of_.assign(nodes, 0);
    is_call_.assign(nodes, false);
    match_.assign(nodes, 0);
    std::vector<size_t> call_node(n, 0);
    for (size_t k = 0; k < events.size(); ++k) {
      const size_t node = k + 1;
      op_of_[node] = events[k].op;
      is_call_[node] = events[k].call;
      if (events[k].call) {
        call_node[events[k].op] = node;
      } else {
        match_[call_node[events[k].op]] = node;
      }
      prev_[node] = node - 1;
      next_[node - 1] = node;
    }
    next_[nodes - 1] = 0;  // 0 = end of list
    prev_[0] = nodes - 1;
  }

  // True when a linearization exists (or the budget ran out: see exhausted()).
  bool run() {
    const size_t n = ops_.size();
    Bits done((n + 63) / 64, 0);
    State state;
    struct Frame {
      size_t node;
      State before;
    };
    std::vector<Frame> stack;
    std::unordered_set<Memo, MemoHash> seen;
    size_t entry = next_[0];
    while (remaining_ > 0) {
      if (++visited_ > budget_) {
        exhausted_ = true;
        return true;
      }
      if (entry != 0 && is_call_[entry]) {
        const size_t i = op_of_[entry];
        const Entry& e = ops_[i];
        State after;
        if (eligible(e, i) && step(e, state, after)) {
          done[i / 64] |= uint64_t{1} << (i % 64);
          if (seen.insert(Memo{done, after}).second) {
            stack.push_back({entry, std::move(state)});
            state = std::move(after);
            lift(entry);
            entry = next_[0];
            continue;
          }
          done[i / 64] &= ~(uint64_t{1} << (i % 64));
        }
        entry = next_[entry];
        continue;
      }
      // A return of an op not yet linearized: nothing after it may go first. Back up.
      if (entry != 0 && stack.size() >= best_depth_) {
        best_depth_ = stack.size();
        stuck_op_ = op_of_[entry];
        stuck_state_ = state;
      }
      if (stack.empty()) return false;
      Frame f = std::move(stack.back());
      stack.pop_back();
      const size_t i = op_of_[f.node];
      done[i / 64] &= ~(uint64_t{1} << (i % 64));
      state = std::move(f.before);
      unlift(f.node);
      entry = next_[f.node];
    }
    return true;
  }

  bool exhausted() const { return exhausted_; }
  size_t best_depth() const { return best_depth_; }
  size_t stuck_op() const { return stuck_op_; }
  const State& stuck_state() const { return stuck_state_; }

 private:
  bool eligible(const Entry& e, size_t i) const {
    if (!e.anonymous) return true;
    const auto& members = group_members_[e.group];
    const size_t used = group_used_[e.group];
    return used < members.size() && members[used] == i;
  }
  void unlink(size_t node) {
    next_[prev_[node]] = next_[node];
    prev_[next_[node]] = prev_[node];
  }
  void relink(size_t node) {
    next_[prev_[node]] = node;
    prev_[next_[node]] = node;
  }
  void lift(size_t call) {
    unlink(call);
    unlink(match_[call]);
    const Entry& e = ops_[op_of_[call]];
    if (e.op.ret != kNever) --remaining_;
    if (e.anonymous) ++group_used_[e.group];
  }
  void unlift(size_t call) {  // the reverse order of lift()
    const Entry& e = ops_[op_of_[call]];
    if (e.op.ret != kNever) ++remaining_;
    if (e.anonymous) --group_used_[e.group];
    relink(match_[call]);
    relink(call);
  }

  const std::vector<Entry>& ops_;
  uint64_t budget_;
  uint64_t visited_ = 0;
  bool exhausted_ = false;
  size_t remaining_ = 0;  // ops that returned and are not linearized yet
  std::vector<size_t> next_, prev_, op_of_, match_;
  std::vector<bool> is_call_;
  std::vector<std::vector<size_t>> group_members_;  // anonymous ops per group, in call order
  std::vector<size_t> group_used_;                  // how many of them are linearized
  size_t best_depth_ = 0;
  size_t stuck_op_ = 0;
  State stuck_state_;
};

}  // namespace

std::string describe(const KvOp& op) {
  std::string s = "client " + std::to_string(op.client) + " ";
  switch (op.kind) {
    case KvOp::Kind::kPut:
      s += "put(" + op.key + ", " + show(op.value) + ")";
      break;
    case KvOp::Kind::kGet:
      s += "get(" + op.key + ") -> " + show(op.value);
      break;
    case KvOp::Kind::kCas:
      s += "cas(" + op.key + ", " + show(op.expected) + " -> " + show(op.value) + ") " +
           (op.ret == kNever ? "unknown"
            : op.failed      ? "failed"
                             : "ok");
      break;
  }
  s += " [" + std::to_string(op.call) + ", " +
       (op.ret == kNever ? std::string("never") : std::to_string(op.ret)) + "]";
  return s;
}

LinearizabilityResult check_linearizable(const std::vector<KvOp>& history, uint64_t budget) {
  // Values some get returned, and keys with refused cas ops.
  std::set<std::pair<std::string, std::string>> read;
  std::set<std::string> refused_cas;
  for (const KvOp& op : history) {
    if (op.kind == KvOp::Kind::kGet && op.ret != kNever && op.value) {
      read.insert({op.key, *op.value});
    }
    if (op.kind == KvOp::Kind::kCas && op.ret != kNever && op.failed) refused_cas.insert(op.key);
  }
  std::map<std::string, std::vector<Entry>> by_key;
  for (const KvOp& op : history) {
    Entry e{op};
    if (op.ret == kNever) {
      if (op.kind == KvOp::Kind::kGet || !op.value) continue;  // a read without an answer
      // A write of unknown outcome that nobody read is anonymous; where no cas was refused,
      // nothing can have met its value, and it is simply assumed never to have happened.
      e.anonymous = read.count({op.key, *op.value}) == 0;
      if (e.anonymous && !refused_cas.count(op.key)) continue;
    }
    by_key[op.key].push_back(std::move(e));
  }
  LinearizabilityResult result;
  for (auto& [key, ops] : by_key) {
    std::sort(ops.begin(), ops.end(),
              [](const Entry& a, const Entry& b) { return a.op.call < b.op.call; });
    // Groups of interchangeable anonymous ops: 0 = puts, then one per expected value of a cas.
    std::map<std::optional<std::string>, size_t> cas_groups;
    for (Entry& e : ops) {
      if (!e.anonymous || e.op.kind != KvOp::Kind::kCas) continue;
      e.group = cas_groups.emplace(e.op.expected, cas_groups.size() + 1).first->second;
    }
    Search s(ops, cas_groups.size() + 1, budget);
    const bool ok = s.run();
    if (s.exhausted()) {
      result.inconclusive = true;
      result.explanation += "key " + key + ": search budget exhausted\n";
      continue;
    }
    if (ok) continue;
    result.ok = false;
    result.key = key;
    const KvOp& stuck = ops[s.stuck_op()].op;
    result.explanation = "key " + key + " (" + std::to_string(ops.size()) + " ops): at most " +
                         std::to_string(s.best_depth()) + " ops linearize, leaving the key " +
                         show(s.stuck_state()) +
                         ", and then this op cannot take effect: " + describe(stuck) + "\n";
    // The whole sub-history when it is short; otherwise the ops around the stuck one.
    constexpr size_t kContext = 40;
    const size_t at = s.stuck_op();
    const size_t from = ops.size() <= 2 * kContext ? 0 : at > kContext ? at - kContext : 0;
    const size_t to = ops.size() <= 2 * kContext ? ops.size() : std::min(ops.size(), at + kContext);
    if (from > 0) result.explanation += "... " + std::to_string(from) + " earlier ops\n";
    for (size_t i = from; i < to; ++i) result.explanation += describe(ops[i].op) + "\n";
    if (to < ops.size()) {
      result.explanation += "... " + std::to_string(ops.size() - to) + " later ops\n";
    }
    return result;
  }
  return result;
}

}  // namespace starling::raft::testing

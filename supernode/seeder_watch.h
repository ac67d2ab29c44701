// SeederWatch: which ready tasks the Raft leader re-seeds because their seeder went silent.
// Pure soft state: no I/O, no clock of its own (every call is given the time).
//
// A ready task's content lives on its seeder (the supernode that fetched it) and on the peers
// that downloaded it. When the seeder dies before every segment reached some peer, nobody else
// can serve the rest. Fetching tasks have a seed lease for this (renewed through the log); a
// ready task must not need a log entry per renewal for as long as it is seeded, so the leader
// judges the seeder by its Raft traffic instead: every live member answers the leader's
// heartbeats (about every 100 ms), each answer a "Raft" RPC over a mesh session authenticated
// by the member's certificate, whose node id is the one recorded as the task's seeder.
//
// The leader calls heard() for each such RPC, lead() when it becomes leader, and silent() to
// pick the tasks to re-seed. Silence is counted from the later of the last RPC heard and the
// start of this leadership (a new leader gives every seeder a whole timeout, as the seed lease
// watch does for fetching tasks). The leader never picks its own tasks.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ids.h"

namespace starling::supernode {

struct SeededTask {
  TaskId task;
  std::string seeder;  // node id (64 lowercase hex)
  uint64_t epoch = 0;  // the task's lease epoch (ReseedTask's expected_epoch)
  bool operator==(const SeededTask&) const = default;
};

class SeederWatch {
 public:
  using Clock = std::chrono::steady_clock;

  explicit SeederWatch(Clock::duration timeout) : timeout_(timeout) {}

  // A Raft RPC from `node` arrived at `at`.
  void heard(const std::string& node, Clock::time_point at);
  // This member became the leader at `at`.
  void lead(Clock::time_point at);
  // The tasks of `ready` (in their order) not seeded by `self` whose seeder has been silent
  // for at least the timeout at `now`. REQUIRES: lead() was called.
  std::vector<SeededTask> silent(const std::vector<SeededTask>& ready, const std::string& self,
                                 Clock::time_point now) const;

 private:
  Clock::duration timeout_;
  Clock::time_point leading_since_{};
  std::unordered_map<std::string, Clock::time_point> heard_;
};

}  // namespace starling::supernode

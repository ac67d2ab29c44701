// LocalLog: the single-member stand-in for Raft. It assigns consecutive LogIndex values to
// proposed commands and applies each one immediately to the state machine, through the same
// encode/decode path a replicated log entry will take. When Raft arrives, `propose` becomes
// "append on the leader, wait until committed and applied"; callers do not change.
#pragma once

#include <mutex>

#include "common/result.h"
#include "supernode/tracker/command.h"
#include "supernode/tracker/state_machine.h"

namespace starling::tracker {

// Thread-safe: proposals are serialised, so indexes are assigned and applied in one order.
class LocalLog {
 public:
  // Continues after the state machine's applied_index(). `machine` must outlive the log.
  explicit LocalLog(TrackerStateMachine& machine);

  // Appends and applies `command`. Returns the index it was applied at, or the state
  // machine's error (a rejected command still consumes its index; see
  // TrackerStateMachine::apply).
  Result<LogIndex> propose(const Command& command);

 private:
  std::mutex mu_;
  TrackerStateMachine& machine_;
  uint64_t next_index_;  // guarded by mu_
};

}  // namespace starling::tracker

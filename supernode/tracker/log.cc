#include "supernode/tracker/log.h"

namespace starling::tracker {

LocalLog::LocalLog(TrackerStateMachine& machine)
    : machine_(machine), next_index_(machine.applied_index().get() + 1) {}

Result<LogIndex> LocalLog::propose(const Command& command) {
  // Round-trip through the log encoding, as a Raft follower would see the entry.
  std::string entry = encode_command(command);
  auto decoded = decode_command(entry);
  if (!decoded.ok()) return decoded.error();

  std::lock_guard lock(mu_);
  LogIndex index(next_index_);
  Status st = machine_.apply(index, *decoded);
  // A storage failure applied nothing: the index is reused by the next proposal.
  if (!st.ok() && st.error().code == kErrStorage) return st.error();
  ++next_index_;
  if (!st.ok()) return st.error();
  return index;
}

}  // namespace starling::tracker

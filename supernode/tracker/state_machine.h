// The tracker: the replicated task registry (ARCHITECTURE §5). TrackerStateMachine is the seam
// between the log (LocalLog today, Raft later) and the store: the log decides the order and
// the index of each Command; the state machine applies them deterministically.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "supernode/tracker/command.h"

namespace starling::tracker {

// Position of an entry in the replicated log; 0 = nothing applied yet.
using LogIndex = StrongId<struct LogIndexTag, uint64_t>;

inline constexpr char kErrStorage[] = "tracker.storage";         // disk / SQLite failure
inline constexpr char kErrTaskExists[] = "tracker.task_exists";  // CreateTask of a known task
inline constexpr char kErrTaskUnknown[] = "task.unknown";        // command for an unknown task
inline constexpr char kErrBadTransition[] = "tracker.bad_transition";

enum class TaskState { kFetching, kReady, kFailed };
const char* task_state_name(TaskState state);  // "fetching", "ready", "failed"

struct TaskRecord {
  TaskId task_id;
  std::string url;
  std::optional<std::string> digest;
  int64_t created_at = 0;
  TaskState state = TaskState::kFetching;
  // Set when state == kReady.
  int64_t size = 0;
  std::string sha256;
  std::string metainfo;  // raw bencoded bytes
  // Set when state == kFailed.
  std::optional<Error> error;
  LogIndex updated_index;  // index of the last command that changed this task
};

// Applies commands in log order. Transitions:
//   CreateTask      unknown task          -> fetching
//   MarkTaskReady   fetching              -> ready
//   MarkTaskFailed  fetching or ready     -> failed   (ready -> failed: the seed lost its content)
//   RestartTask     failed                -> fetching
//
// Thread-safety: implementations serialise calls internally; any thread may call.
class TrackerStateMachine {
 public:
  virtual ~TrackerStateMachine() = default;

  // Applies `command` at `index`.
  //  - index <= applied_index(): nothing happens, returns OK (re-applying after a crash is
  //    harmless).
  //  - a command the current state does not allow (see the table above) is rejected
  //    deterministically: the state is unchanged, applied_index() becomes `index`, and the
  //    error (kErrTaskExists, kErrTaskUnknown, kErrBadTransition) is returned.
  //  - kErrStorage: nothing was applied and applied_index() is unchanged.
  // Indexes must increase but may skip (entries that are not tracker commands).
  virtual Status apply(LogIndex index, const Command& command) = 0;
  // The last applied index; persisted atomically with the effect of that command.
  virtual LogIndex applied_index() const = 0;
  virtual Result<std::optional<TaskRecord>> get_task(const TaskId& task) const = 0;
  // Every task, ordered by creation (created_at, then task id).
  virtual Result<std::vector<TaskRecord>> list_tasks() const = 0;
};

// SQLite at `path` (created if absent): WAL, synchronous=FULL, one transaction per apply that
// also stores applied_index, prepared statements. The file belongs to this object alone.
Result<std::unique_ptr<TrackerStateMachine>> open_sqlite_tracker(const std::string& path);

}  // namespace starling::tracker

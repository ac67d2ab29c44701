// Tracker commands: the entries of the replicated log (ARCHITECTURE §5). Pure: no I/O, no
// SQLite, no clock. Today LocalLog (log.h) feeds them straight to the state machine; with Raft
// the encoded bytes become the payload of a log entry, so the encoding is versioned and its
// decoder is strict and total (it never throws and never crashes on any bytes; fuzzed by
// tests/fuzz/command_fuzz.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/ids.h"
#include "common/result.h"

namespace starling::tracker {

inline constexpr char kErrBadCommand[] = "tracker.bad_command";

// The encoding version written by encode_command; decode_command accepts only this one.
inline constexpr int kCommandVersion = 1;

// A new task in state "fetching". `created_at` is unix seconds chosen by the proposer (the
// state machine never reads a clock, so every replica applies the same value).
struct CreateTask {
  TaskId task_id;
  std::string url;
  std::optional<std::string> digest;  // "sha256:<hex>" when the caller gave one
  int64_t created_at = 0;
  bool operator==(const CreateTask&) const = default;
};

// The origin fetch of a fetching task finished: its size, SHA-256 (lowercase hex) and the
// metainfo (bencoded .torrent, raw bytes) the seeder serves it under.
struct MarkTaskReady {
  TaskId task_id;
  int64_t size = 0;
  std::string sha256;
  std::string metainfo;
  bool operator==(const MarkTaskReady&) const = default;
};

// The task failed; `code`/`message` are the Error shown to users by GetTask.
struct MarkTaskFailed {
  TaskId task_id;
  std::string code;
  std::string message;
  bool operator==(const MarkTaskFailed&) const = default;
};

// A failed task goes back to "fetching" (a new origin fetch starts).
struct RestartTask {
  TaskId task_id;
  bool operator==(const RestartTask&) const = default;
};

using Command = std::variant<CreateTask, MarkTaskReady, MarkTaskFailed, RestartTask>;

// "CreateTask", "MarkTaskReady", ... (for logs).
const char* command_name(const Command& command);

// JSON: {"v":1,"type":"CreateTask",...}; metainfo is hex. Strings that are not valid UTF-8
// are encoded with U+FFFD replacements rather than throwing.
std::string encode_command(const Command& command);

// Strict: the version must be kCommandVersion, the type known, every required field present
// with the right JSON type, no unknown field, task ids 64 lowercase hex, sizes >= 0.
// Any other input gives kErrBadCommand. Never throws.
Result<Command> decode_command(std::string_view bytes);

}  // namespace starling::tracker

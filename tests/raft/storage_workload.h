// The deterministic log written by raft_storage_writer and checked by the kill -9 test: the
// entry at index i always has the same term and data, so the test can tell a correct entry
// from a lost, stale or torn one without talking to the writer.
#pragma once

#include <cstdint>
#include <string>

#include "supernode/raft/types.h"

namespace starling::raft::testing {

inline Term workload_term(LogIndex i) { return Term{1 + i.get() / 100}; }

// 20..300 bytes, naming the index so a misplaced row is caught too.
inline Entry workload_entry(LogIndex i) {
  std::string data = "entry " + std::to_string(i.get()) + " ";
  data.append(20 + (i.get() * 7919) % 280, static_cast<char>('a' + i.get() % 26));
  return Entry{workload_term(i), i, EntryType::kNormal, std::move(data)};
}

inline std::string workload_snapshot_data(LogIndex i) {
  return "application state at " + std::to_string(i.get());
}

}  // namespace starling::raft::testing

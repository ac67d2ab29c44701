// RaftLog: the log as the core sees it — what Storage holds (durable) plus the unstable tail
// (entries and possibly a snapshot not yet handed to the driver or not yet acknowledged by
// advance()). Internal to the core; owned by RawNode, same strand.
#pragma once

#include <optional>
#include <vector>

#include "common/result.h"
#include "supernode/raft/storage.h"
#include "supernode/raft/types.h"

namespace starling::raft {

class RaftLog {
 public:
  explicit RaftLog(const Storage& storage);

  LogIndex first_index() const;
  LogIndex last_index() const;
  // kErrCompacted / kErrUnavailable as Storage::term.
  Result<Term> term(LogIndex i) const;
  Term term_or_zero(LogIndex i) const;
  Term last_term() const { return term_or_zero(last_index()); }
  bool match_term(LogIndex i, Term t) const;
  // §5.4.1: is a log ending at (last_index, last_term) at least as up to date as ours?
  bool is_up_to_date(LogIndex last_index, Term last_term) const;

  // The follower's side of AppendEntries. Returns the index of the last new entry, or nullopt
  // when (index, log_term) does not match. Aborts if it would truncate a committed entry.
  std::optional<LogIndex> maybe_append(LogIndex index, Term log_term, LogIndex committed,
                                       const std::vector<Entry>& ents);
  // Appends after truncating any conflicting tail. Returns the new last index.
  LogIndex append(const std::vector<Entry>& ents);
  // The largest index <= `index` whose term is <= `term` (0 if none is known).
  LogIndex find_conflict_by_term(LogIndex index, Term term) const;

  // [lo, last]: kErrCompacted if lo < first_index().
  Result<std::vector<Entry>> entries(LogIndex lo, uint64_t max_bytes) const;
  Result<std::vector<Entry>> slice(LogIndex lo, LogIndex hi, uint64_t max_bytes) const;
  Result<Snapshot> snapshot() const;

  LogIndex committed() const { return committed_; }
  LogIndex applied() const { return applied_; }
  void commit_to(LogIndex i);
  void applied_to(LogIndex i);
  // Committed entries not yet applied (none while a snapshot is pending).
  std::vector<Entry> next_committed_entries() const;
  bool has_next_committed_entries() const;

  // The last index whose entry is durable (in Storage) and still part of this log: entries
  // after it are in the unstable tail; 0 while a snapshot is pending.
  LogIndex stable_last_index() const;
  const std::vector<Entry>& unstable_entries() const { return unstable_; }
  const std::optional<Snapshot>& unstable_snapshot() const { return unstable_snap_; }
  // The driver persisted entries up to (i, t) / the snapshot at i.
  void stable_to(LogIndex i, Term t);
  void stable_snap_to(LogIndex i);
  // Replaces the log with `snap` (unstable until the driver persists it).
  void restore(Snapshot snap);

 private:
  void truncate_and_append(const std::vector<Entry>& ents);

  const Storage& storage_;
  std::optional<Snapshot> unstable_snap_;
  std::vector<Entry> unstable_;  // consecutive, starting at offset_
  LogIndex offset_;
  LogIndex committed_;
  LogIndex applied_;
};

}  // namespace starling::raft

// The log storage the Raft core reads, and MemoryStorage, its in-memory implementation (tests,
// the simulation, and the cache in front of the SQLite store later).
//
// The core only reads through Storage. The driver writes: after ready(), it applies the
// snapshot, appends the entries and sets the hard state (in that order, atomically for a
// durable store), and only then sends the Ready's messages.
#pragma once

#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "common/result.h"
#include "supernode/raft/types.h"

namespace starling::raft {

inline constexpr char kErrCompacted[] = "raft.compacted";      // index below the first entry
inline constexpr char kErrUnavailable[] = "raft.unavailable";  // index beyond the last entry
inline constexpr char kErrSnapshotOutOfDate[] = "raft.snapshot_out_of_date";
inline constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

class Storage {
 public:
  virtual ~Storage() = default;
  // The persisted hard state and membership, read once when a RawNode starts.
  virtual std::pair<HardState, ConfState> initial_state() const = 0;
  // Entries [lo, hi), at least one if lo < hi, then as many as fit in max_bytes of data.
  // kErrCompacted when lo < first_index(); REQUIRES hi <= last_index() + 1.
  virtual Result<std::vector<Entry>> entries(LogIndex lo, LogIndex hi,
                                             uint64_t max_bytes) const = 0;
  // Term of entry i; i may be first_index() - 1 (the snapshot's term).
  // kErrCompacted below that, kErrUnavailable above last_index().
  virtual Result<Term> term(LogIndex i) const = 0;
  // Index of the first entry still in the log (the snapshot's index + 1).
  virtual LogIndex first_index() const = 0;
  virtual LogIndex last_index() const = 0;
  // The latest snapshot.
  virtual Result<Snapshot> snapshot() const = 0;
};

// Not thread-safe: owned by the driver's strand (or a test).
// Invariant: ents_[0] is a dummy entry holding the snapshot's index and term.
class MemoryStorage final : public Storage {
 public:
  MemoryStorage();
  // A fresh group: membership `conf` at index 0 (every initial member calls this).
  explicit MemoryStorage(ConfState conf);

  std::pair<HardState, ConfState> initial_state() const override;
  Result<std::vector<Entry>> entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) const override;
  Result<Term> term(LogIndex i) const override;
  LogIndex first_index() const override;
  LogIndex last_index() const override;
  Result<Snapshot> snapshot() const override;
  // The latest snapshot's metadata, without copying its data (which may be tens of MB).
  const SnapshotMeta& snapshot_meta() const { return snapshot_.meta; }

  void set_hard_state(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }
  // Appends `ents` (consecutive), replacing any existing entries from ents[0].index on.
  // REQUIRES: ents[0].index <= last_index() + 1. Entries below first_index() are skipped.
  void append(const std::vector<Entry>& ents);
  // Replaces the whole log with `snap`. kErrSnapshotOutOfDate if older than the current one.
  Status apply_snapshot(Snapshot snap);
  // Records a snapshot of the application at `i` (<= last_index) with `conf` and `data`,
  // then drops the entries up to i. kErrSnapshotOutOfDate if i <= the current snapshot.
  Status create_snapshot(LogIndex i, ConfState conf, std::string data);
  // Drops entries up to and including `i` (i becomes the dummy holding the snapshot's index
  // and term). kErrCompacted if i < first_index() (nothing to drop). REQUIRES: i <= last_index().
  Status compact(LogIndex i);
  // Records the membership to report from initial_state() (the driver calls this when it
  // applies a ConfChange, so a restart sees it even without a snapshot).
  void set_conf_state(ConfState conf) { conf_ = std::move(conf); }

 private:
  HardState hard_state_;
  ConfState conf_;  // latest applied membership (snapshot's or newer)
  Snapshot snapshot_;
  std::vector<Entry> ents_;
};

}  // namespace starling::raft

// SqliteRaftStorage: the durable Raft log (issue 3 item 2). One SQLite file per node holding
// the log entries, the hard state, the latest snapshot and the applied membership.
//
// Durability: WAL journal, synchronous=FULL; every write method is ONE transaction, and it
// returns only after COMMIT returned, i.e. after the WAL was fsynced. persist(rd) writes a
// Ready's snapshot (replacing the log), entries (truncating any conflicting suffix) and hard
// state together: after a crash either all of them are on disk or none.
//
// Integrity: each entry row carries a CRC-32C over (index, term, type, data); the hard state,
// the snapshot and the membership rows carry one too. open() reads and verifies everything and
// fails with kErrCorruptLog ("raft log idx=42: checksum mismatch") on any mismatch, gap or
// inconsistency. A node whose storage does not open must not start: it must neither vote nor
// lead (its vote and log are untrustworthy). CRC-32C, not a cryptographic hash: the threat is
// disk and filesystem damage (bit flips, torn or misdirected writes), which a CRC detects; an
// attacker who can write the file can recompute any unkeyed hash, and a keyed one would need a
// key kept outside the file for no gain here.
//
// Reads (the Storage interface) are served from an in-memory copy (a MemoryStorage) loaded
// and verified by open() and updated only after each transaction committed, so the RawNode
// never sees a state that is not durable. Memory use is the log between compactions.
//
// Ownership and threading: not thread-safe. One owner — the Raft driver's strand — calls
// every method; the RawNode reads it between the owner's calls. persist() blocks on fsync:
// the driver may run it on a thread pool as long as nothing else touches the node meanwhile.
//
// The driver's contract (see README.md, "Durable storage"):
//  1. persist(rd) before sending rd.messages or applying rd.committed_entries;
//  2. a failed write is fatal: do not send, do not advance(), stop the node; a restart reads
//     the disk again (the failed transaction is either fully there or not at all);
//  3. compact(i, ...) only for i <= applied, and set_conf_state(...) after applying a ConfChange.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "supernode/raft/storage.h"
#include "supernode/raft/types.h"

namespace starling::raft {

inline constexpr char kErrStorageIo[] = "raft.storage_io";    // SQLite failed (disk, locks)
inline constexpr char kErrCorruptLog[] = "raft.corrupt_log";  // checksum or shape mismatch

class SqliteRaftStorage final : public Storage {
 public:
  // Opens (creating if absent) the store at `path`. A new store starts with membership
  // `bootstrap` (every initial member passes the same one; see README "Membership").
  // kErrStorageIo when SQLite fails, kErrCorruptLog when a stored row fails verification.
  static Result<std::unique_ptr<SqliteRaftStorage>> open(const std::string& path,
                                                         const ConfState& bootstrap = {});
  ~SqliteRaftStorage() override;
  SqliteRaftStorage(const SqliteRaftStorage&) = delete;
  SqliteRaftStorage& operator=(const SqliteRaftStorage&) = delete;

  // Storage, served from memory.
  std::pair<HardState, ConfState> initial_state() const override;
  Result<std::vector<Entry>> entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) const override;
  Result<Term> term(LogIndex i) const override;
  LogIndex first_index() const override;
  LogIndex last_index() const override;
  Result<Snapshot> snapshot() const override;
  const HardState& hard_state() const;
  // The index of the entry whose application produced initial_state()'s membership (the
  // snapshot's index, or the set_conf_state index). Entries after it may hold ConfChanges
  // that the driver must re-apply on restart.
  LogIndex conf_index() const;

  // Makes rd.snapshot, rd.entries and rd.hard_state durable in one transaction, in that
  // order: the snapshot replaces the whole log; entries replace the log from
  // rd.entries[0].index on (entries at or below the snapshot are skipped). Nothing else of
  // the Ready is looked at. Returns once committed. kErrSnapshotOutOfDate (nothing written)
  // if the snapshot is not newer than the stored one; kErrStorageIo if SQLite failed (nothing
  // of this Ready is reported by the Storage methods; see the contract above).
  // REQUIRES: rd.entries consecutive, rd.entries[0].index <= last_index() + 1 (after the
  // snapshot); no committed entry is replaced by a different one (aborts: corrupting).
  Status persist(const Ready& rd);
  // Records a snapshot of the application at `i` with membership `conf` and `data`, and drops
  // the entries up to i, in one transaction. kErrSnapshotOutOfDate if i <= the stored
  // snapshot. REQUIRES: i <= last_index() and i <= applied.
  Status compact(LogIndex i, ConfState conf, std::string data);
  // Compaction in two steps, so that writing a large snapshot does not hold up the log:
  // write_snapshot_file() writes `data` (the application at index `i`) durably to a file
  // beside the database (`path` + ".snap-" + i: written to a temporary name, fsynced, renamed,
  // directory fsynced). It touches no storage object, so it may run on any thread while the
  // owner appends. compact_to_file() then, on the owner's thread, records that file as the
  // snapshot at f.index with membership `conf` and drops the entries up to f.index, in one
  // small transaction (`data`: the same bytes, kept in memory for Storage::snapshot()); older
  // snapshot files are removed after it committed; the entries up to f.index are deleted later,
  // a chunk at a time, by persist() (open() skips them). open() verifies the file's size and
  // CRC-32C against the database row (kErrCorruptLog: "raft snapshot file PATH: ...").
  // Same errors and requirements as compact().
  struct SnapshotFile {
    LogIndex index;
    uint64_t size = 0;
    uint32_t crc = 0;
  };
  static Result<SnapshotFile> write_snapshot_file(const std::string& path, LogIndex i,
                                                  const std::string& data);
  Status compact_to_file(const SnapshotFile& f, ConfState conf, std::string data);
  // Records the membership in force after applying the ConfChange entry at `applied`.
  Status set_conf_state(LogIndex applied, ConfState conf);

 private:
  struct Db;  // SQLite connection and statements (sqlite_storage.cc)
  explicit SqliteRaftStorage(std::unique_ptr<Db> db);
  Status load();
  Status check_compaction(LogIndex i) const;
  void record_compaction(LogIndex i, ConfState conf, std::string data);
  void remove_snapshot_files_except(LogIndex keep) const;

  std::unique_ptr<Db> db_;
  MemoryStorage cache_;  // exactly what is committed on disk
  LogIndex conf_index_;
  // Every stored entry row is above this index. Rows from here up to the snapshot's index are
  // leftovers of compact_to_file(), deleted kTrimChunk at a time by persist().
  LogIndex trimmed_upto_;
  static constexpr uint64_t kTrimChunk = 512;
};

// CRC-32C (Castagnoli) of the entry's (index, term, type, data), as stored next to it.
// Exposed for tests that forge rows.
uint32_t entry_checksum(const Entry& e);

}  // namespace starling::raft

// SqliteRaftStorage: real SQLite in a temp dir. Round trips across reopen, truncation,
// corruption detection, and kill -9 of a writer process (nothing acknowledged is lost).
#include "supernode/raft/sqlite_storage.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "supernode/raft/raw_node.h"
#include "tests/raft/network.h"
#include "tests/raft/storage_workload.h"
#include "tests/temp_dir.h"

namespace starling::raft::testing {
namespace {

namespace fs = std::filesystem;

using starling::testing::TempDir;

std::vector<Entry> ents(uint64_t first, std::vector<uint64_t> terms, const std::string& tag = "") {
  std::vector<Entry> out;
  for (uint64_t t : terms) {
    LogIndex i = li(first++);
    out.push_back(Entry{tm(t), i, EntryType::kNormal, "data " + std::to_string(i.get()) + tag});
  }
  return out;
}

std::unique_ptr<SqliteRaftStorage> open_ok(const std::string& path, const ConfState& conf = {}) {
  auto r = SqliteRaftStorage::open(path, conf);
  if (!r.ok()) {
    ADD_FAILURE() << r.error().code << ": " << r.error().message;
    return nullptr;
  }
  return std::move(*r);
}

std::vector<Entry> all_entries(const SqliteRaftStorage& s) {
  return *s.entries(s.first_index(), s.last_index() + 1, kNoLimit);
}

// Runs one SQL statement against the store's file behind its back (the store must be closed).
void tamper(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << msg;
}

// Flips the lowest bit of byte `offset` of entry `i`'s data, rewriting only that column.
void flip_data_bit(const std::string& path, LogIndex i, size_t offset) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT data FROM entries WHERE idx = ?1", -1, &st, nullptr),
            SQLITE_OK);
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(i.get()));
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  std::string data(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                   static_cast<size_t>(sqlite3_column_bytes(st, 0)));
  sqlite3_finalize(st);
  ASSERT_LT(offset, data.size());
  data[offset] = static_cast<char>(data[offset] ^ 1);
  ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE entries SET data = ?2 WHERE idx = ?1", -1, &st, nullptr),
            SQLITE_OK);
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(i.get()));
  sqlite3_bind_blob(st, 2, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
  EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_close(db);
}

const ConfState kConf3{{nid(1), nid(2), nid(3)}, {}, {}};

TEST(SqliteRaftStorage, FreshStoreReportsBootstrapMembership) {
  TempDir dir;
  auto s = open_ok(dir.file("raft.db"), kConf3);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->initial_state().second, kConf3);
  EXPECT_EQ(s->initial_state().first, HardState{});
  EXPECT_EQ(s->first_index(), li(1));
  EXPECT_EQ(s->last_index(), li(0));
  s.reset();
  // The bootstrap is recorded once: a later open with another one does not change it.
  s = open_ok(dir.file("raft.db"), ConfState{{nid(9)}, {}, {}});
  EXPECT_EQ(s->initial_state().second, kConf3);
}

TEST(SqliteRaftStorage, RoundTripAcrossReopen) {
  TempDir dir;
  std::string path = dir.file("raft.db");
  std::vector<Entry> log = ents(1, {1, 1, 1, 2, 2, 2, 2, 3, 3, 3});
  log[4].type = EntryType::kConfChange;
  log[4].data = encode_conf_change(ConfChange{ConfChangeType::kAddLearner, nid(4)});
  log[7].data = std::string("\0\xff binary \0", 11);
  HardState hs{tm(3), nid(2), li(5)};
  {
    auto s = open_ok(path, kConf3);
    ASSERT_TRUE(s);
    Ready rd;
    rd.entries = log;
    rd.hard_state = hs;
    ASSERT_TRUE(s->persist(rd).ok());
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(all_entries(*s), log);
    EXPECT_EQ(s->initial_state().first, hs);
    EXPECT_EQ(s->initial_state().second, kConf3);
    // Compaction: the owner snapshots at 6 (applied).
    ConfState conf4{{nid(1), nid(2), nid(3)}, {nid(4)}, {}};
    ASSERT_TRUE(s->compact(li(6), conf4, "app state @6").ok());
    EXPECT_EQ(s->compact(li(6), conf4, "again").error().code, kErrSnapshotOutOfDate);
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->first_index(), li(7));
    EXPECT_EQ(s->last_index(), li(10));
    EXPECT_EQ(*s->term(li(6)), tm(2));  // the snapshot's term
    EXPECT_EQ(s->term(li(5)).error().code, kErrCompacted);
    EXPECT_EQ(s->entries(li(5), li(8), kNoLimit).error().code, kErrCompacted);
    EXPECT_EQ(all_entries(*s), std::vector<Entry>(log.begin() + 6, log.end()));
    Snapshot snap = *s->snapshot();
    EXPECT_EQ(snap.meta.index, li(6));
    EXPECT_EQ(snap.meta.term, tm(2));
    EXPECT_EQ(snap.data, "app state @6");
    EXPECT_EQ(s->initial_state().second.learners, std::vector<NodeId>{nid(4)});
    EXPECT_EQ(s->conf_index(), li(6));
    EXPECT_EQ(s->initial_state().first, hs);

    // A snapshot from the leader replaces the log; entries after it in the same Ready.
    Ready rd;
    ConfState conf5{{nid(1), nid(2), nid(3), nid(4)}, {}, {}};
    rd.snapshot = Snapshot{SnapshotMeta{li(20), tm(4), conf5}, "leader state @20"};
    rd.entries = ents(21, {4, 4});
    rd.hard_state = HardState{tm(4), kNoNode, li(21)};
    ASSERT_TRUE(s->persist(rd).ok());
    EXPECT_EQ(s->first_index(), li(21));
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->first_index(), li(21));
    EXPECT_EQ(s->last_index(), li(22));
    EXPECT_EQ(all_entries(*s), ents(21, {4, 4}));
    EXPECT_EQ(s->snapshot()->data, "leader state @20");
    EXPECT_EQ(s->initial_state().second.voters.size(), 4u);
    EXPECT_EQ(s->initial_state().first, (HardState{tm(4), kNoNode, li(21)}));
    EXPECT_EQ(s->conf_index(), li(20));
    // Applying a ConfChange at 22 records the new membership with its index.
    ConfState conf6{{nid(1), nid(2), nid(3), nid(4)}, {}, {nid(5)}};
    ASSERT_TRUE(s->set_conf_state(li(22), conf6).ok());
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->initial_state().second.removed, std::vector<NodeId>{nid(5)});
    EXPECT_EQ(s->conf_index(), li(22));
  }
}

// Member addresses (ConfState::addresses) are kept with the bootstrap membership, with every
// recorded membership and with snapshots (compaction and a leader's).
TEST(SqliteRaftStorage, KeepsMemberAddressesWithTheMembership) {
  TempDir dir;
  std::string path = dir.file("raft.db");
  ConfState boot{{nid(1), nid(2)}, {}, {}, {{nid(1), "a:1"}, {nid(2), "b:2"}}};
  ConfState with3{
      {nid(1), nid(2)}, {nid(3)}, {}, {{nid(1), "a:1"}, {nid(2), "b:2"}, {nid(3), "c:3"}}};
  {
    auto s = open_ok(path, boot);
    ASSERT_TRUE(s);
    Ready rd;
    rd.entries = ents(1, {1, 1, 1});
    rd.hard_state = HardState{tm(1), nid(1), li(3)};
    ASSERT_TRUE(s->persist(rd).ok());
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->initial_state().second, boot);
    ASSERT_TRUE(s->set_conf_state(li(2), with3).ok());
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->initial_state().second, with3);
    ASSERT_TRUE(s->compact(li(3), with3, "state @3").ok());
  }
  ConfState from_leader{{nid(2), nid(3)}, {}, {nid(1)}, {{nid(2), "b:2"}, {nid(3), "c:3"}}};
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->snapshot()->meta.conf, with3);
    Ready rd;
    rd.snapshot = Snapshot{SnapshotMeta{li(9), tm(2), from_leader}, "leader @9"};
    rd.hard_state = HardState{tm(2), kNoNode, li(9)};
    ASSERT_TRUE(s->persist(rd).ok());
  }
  auto s = open_ok(path);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->snapshot()->meta.conf, from_leader);
  EXPECT_EQ(s->initial_state().second, from_leader);
}

TEST(SqliteRaftStorage, TruncatesConflictingSuffix) {
  TempDir dir;
  std::string path = dir.file("raft.db");
  {
    auto s = open_ok(path, kConf3);
    ASSERT_TRUE(s);
    Ready rd;
    rd.entries = ents(1, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
    rd.hard_state = HardState{tm(1), nid(1), li(3)};
    ASSERT_TRUE(s->persist(rd).ok());
    // A new leader's entries conflict from 6 on: 6..10 go, 6..7 come, in one transaction.
    Ready conflict;
    conflict.entries = ents(6, {2, 2}, " new");
    conflict.hard_state = HardState{tm(2), nid(2), li(3)};
    ASSERT_TRUE(s->persist(conflict).ok());
    EXPECT_EQ(s->last_index(), li(7));
  }
  auto s = open_ok(path);
  ASSERT_TRUE(s);
  std::vector<Entry> want = ents(1, {1, 1, 1, 1, 1});
  for (const Entry& e : ents(6, {2, 2}, " new")) want.push_back(e);
  EXPECT_EQ(all_entries(*s), want);
  EXPECT_EQ(s->last_index(), li(7));
  EXPECT_EQ(s->term(li(8)).error().code, kErrUnavailable);
  EXPECT_EQ(s->initial_state().first.vote, nid(2));

  // Entries already compacted away are skipped; the rest is appended.
  ASSERT_TRUE(s->compact(li(4), kConf3, "s4").ok());
  Ready rd;
  rd.entries = ents(2, {1, 1, 1, 2, 2, 3});  // 2..4 below the first index, 5..6 same, 7 new
  rd.entries[4].data = "data 6 new";
  rd.entries[5].data = "data 7 newer";
  ASSERT_TRUE(s->persist(rd).ok());
  s.reset();
  s = open_ok(path);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->first_index(), li(5));
  EXPECT_EQ(s->last_index(), li(7));
  EXPECT_EQ(*s->term(li(7)), tm(3));
  EXPECT_EQ(s->entries(li(7), li(8), kNoLimit)->front().data, "data 7 newer");
}

TEST(SqliteRaftStorage, OutOfDateSnapshotWritesNothing) {
  TempDir dir;
  std::string path = dir.file("raft.db");
  auto s = open_ok(path, kConf3);
  ASSERT_TRUE(s);
  Ready rd;
  rd.snapshot = Snapshot{SnapshotMeta{li(10), tm(2), kConf3}, "s10"};
  ASSERT_TRUE(s->persist(rd).ok());
  Ready old;
  old.snapshot = Snapshot{SnapshotMeta{li(5), tm(1), kConf3}, "s5"};
  old.entries = ents(6, {1});
  old.hard_state = HardState{tm(9), nid(1), li(6)};
  EXPECT_EQ(s->persist(old).error().code, kErrSnapshotOutOfDate);
  s.reset();
  s = open_ok(path);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->snapshot()->data, "s10");
  EXPECT_EQ(s->last_index(), li(10));
  EXPECT_EQ(s->initial_state().first, HardState{});
}

int64_t count_rows(const std::string& path, const std::string& where) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return -1;
  sqlite3_stmt* st = nullptr;
  int64_t n = -1;
  const std::string sql = "SELECT count(*) FROM entries WHERE " + where;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    n = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

std::vector<std::string> snapshot_files(const std::string& dir_of) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(fs::path(dir_of).parent_path())) {
    const std::string name = e.path().filename().string();
    if (name.find(".snap-") != std::string::npos) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Compaction through a snapshot file (the driver writes it off its thread): the snapshot and
// the log after it survive reopen, the entries up to it go a chunk at a time with the next
// persists, an older file is removed, and a leader's snapshot supersedes a file.
TEST(SqliteRaftStorage, CompactsThroughASnapshotFile) {
  TempDir dir;
  const std::string path = dir.file("raft.db");
  const std::vector<Entry> log = ents(1, std::vector<uint64_t>(2000, 1));
  ConfState conf{{nid(1), nid(2), nid(3)}, {}, {}, {{nid(1), "a:1"}, {nid(2), "b:2"}}};
  const std::string state1000(300000, 'x');
  {
    auto s = open_ok(path, conf);
    ASSERT_TRUE(s);
    Ready rd;
    rd.entries = log;
    rd.hard_state = HardState{tm(1), nid(1), li(2000)};
    ASSERT_TRUE(s->persist(rd).ok());
    auto f = SqliteRaftStorage::write_snapshot_file(path, li(1000), state1000);
    ASSERT_TRUE(f.ok()) << f.error().message;
    EXPECT_EQ(f->index, li(1000));
    EXPECT_EQ(f->size, state1000.size());
    ASSERT_TRUE(s->compact_to_file(*f, conf, state1000).ok());
    EXPECT_EQ(s->compact_to_file(*f, conf, state1000).error().code, kErrSnapshotOutOfDate);
    EXPECT_EQ(s->first_index(), li(1001));
    EXPECT_EQ(s->snapshot()->data, state1000);
    // The rows up to 1000 are still on disk: the compaction's transaction was small.
    EXPECT_EQ(count_rows(path, "idx <= 1000"), 1000);
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->first_index(), li(1001));
    EXPECT_EQ(s->last_index(), li(2000));
    EXPECT_EQ(all_entries(*s), std::vector<Entry>(log.begin() + 1000, log.end()));
    Snapshot snap = *s->snapshot();
    EXPECT_EQ(snap.meta.index, li(1000));
    EXPECT_EQ(snap.meta.term, tm(1));
    EXPECT_EQ(snap.meta.conf, conf);  // addresses included
    EXPECT_EQ(snap.data, state1000);
    // Each synced persist deletes up to 512 of the leftovers.
    for (uint64_t i = 2001; i <= 2002; ++i) {
      Ready rd;
      rd.entries = ents(i, {1});
      ASSERT_TRUE(s->persist(rd).ok());
    }
    EXPECT_EQ(count_rows(path, "idx <= 1000"), 0);
    EXPECT_EQ(count_rows(path, "idx > 1000"), 1002);
    // A newer file replaces the older one.
    auto f = SqliteRaftStorage::write_snapshot_file(path, li(1500), "state 1500");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(s->compact_to_file(*f, conf, "state 1500").ok());
    EXPECT_EQ(snapshot_files(path), std::vector<std::string>{"raft.db.snap-1500"});
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->snapshot()->data, "state 1500");
    EXPECT_EQ(s->first_index(), li(1501));
    // A leader's snapshot (stored in the database) supersedes the file...
    Ready rd;
    rd.snapshot = Snapshot{SnapshotMeta{li(3000), tm(2), conf}, "leader state 3000"};
    rd.entries = ents(3001, {2, 2});
    ASSERT_TRUE(s->persist(rd).ok());
  }
  {
    auto s = open_ok(path);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->snapshot()->data, "leader state 3000");
    EXPECT_EQ(s->last_index(), li(3002));
    // ...until a newer file supersedes it.
    auto f = SqliteRaftStorage::write_snapshot_file(path, li(3001), "state 3001");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(s->compact_to_file(*f, conf, "state 3001").ok());
  }
  auto s = open_ok(path);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->snapshot()->data, "state 3001");
  EXPECT_EQ(s->first_index(), li(3002));
  EXPECT_EQ(all_entries(*s), ents(3002, {2}));
  EXPECT_EQ(snapshot_files(path), std::vector<std::string>{"raft.db.snap-3001"});
}

// A snapshot file that was damaged or lost makes open() fail with a clear error: the node
// must not vote or lead without the state its log was compacted into.
TEST(SqliteRaftStorage, DamagedOrMissingSnapshotFileFailsOpen) {
  TempDir dir;
  const std::string path = dir.file("raft.db");
  {
    auto s = open_ok(path, kConf3);
    ASSERT_TRUE(s);
    Ready rd;
    rd.entries = ents(1, {1, 1, 1, 1});
    ASSERT_TRUE(s->persist(rd).ok());
    auto f = SqliteRaftStorage::write_snapshot_file(path, li(3), "state at three");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(s->compact_to_file(*f, kConf3, "state at three").ok());
  }
  const std::string file = path + ".snap-3";
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2);
    f.put('Z');
  }
  auto r = SqliteRaftStorage::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrCorruptLog);
  EXPECT_EQ(r.error().message, "raft snapshot file " + file + ": checksum mismatch");
  fs::resize_file(file, 10);
  r = SqliteRaftStorage::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "raft snapshot file " + file + ": holds 10 bytes, expected 14");
  fs::remove(file);
  r = SqliteRaftStorage::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrCorruptLog);
  EXPECT_EQ(r.error().message,
            "raft snapshot file " + file + ": cannot be read: No such file or directory");
}

// One row edited behind the store's back, and the open() error it must produce.
struct Tampering {
  const char* name;
  std::string sql;
  std::string message;
};

TEST(SqliteRaftStorage, CorruptionFailsOpenWithClearError) {
  std::vector<Tampering> cases = {
      // One bit of one byte of entry 42's data (no SQL: flip_data_bit).
      {"flipped data bit", "", "raft log idx=42: checksum mismatch"},
      {"flipped term", "UPDATE entries SET term = term + 1 WHERE idx = 42",
       "raft log idx=42: checksum mismatch"},
      {"flipped type", "UPDATE entries SET type = 1 WHERE idx = 42",
       "raft log idx=42: checksum mismatch"},
      {"moved row", "UPDATE entries SET idx = 1000 WHERE idx = 50",
       "raft log idx=1000: checksum mismatch"},
      {"lost row", "DELETE FROM entries WHERE idx = 42",
       "raft log idx=43: expected idx=42 (gap or entry below the snapshot)"},
      {"hard state", "UPDATE state SET value = zeroblob(24) WHERE key = 'hard_state'",
       "raft hard_state: checksum mismatch"},
      {"snapshot", "UPDATE state SET value = value || x'00' WHERE key = 'snapshot'",
       "raft snapshot: checksum mismatch"},
      {"membership", "UPDATE state SET crc = crc + 1 WHERE key = 'conf'",
       "raft conf: checksum mismatch"},
  };
  for (const Tampering& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    std::string path = dir.file("raft.db");
    {
      auto s = open_ok(path, kConf3);
      ASSERT_TRUE(s);
      Ready rd;
      rd.entries = ents(1, std::vector<uint64_t>(50, 1));
      rd.hard_state = HardState{tm(1), nid(1), li(30)};
      ASSERT_TRUE(s->persist(rd).ok());
      ASSERT_TRUE(s->compact(li(10), kConf3, "s10").ok());
    }
    ASSERT_TRUE(open_ok(path));  // intact before the edit
    if (c.sql.empty()) {
      flip_data_bit(path, li(42), 3);
    } else {
      tamper(path, c.sql);
    }
    auto r = SqliteRaftStorage::open(path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, kErrCorruptLog);
    EXPECT_EQ(r.error().message, c.message);
  }
}

TEST(SqliteRaftStorage, DrivesARawNodeAcrossRestart) {
  TempDir dir;
  std::string path = dir.file("raft.db");
  ConfState solo{{nid(1)}, {}, {}};
  Config cfg;
  cfg.id = nid(1);
  cfg.seed = 7;
  HardState before;
  {
    auto s = open_ok(path, solo);
    ASSERT_TRUE(s);
    RawNode node(cfg, *s);
    node.campaign();
    for (int round = 0; round < 20; ++round) {
      if (node.role() == Role::kLeader && round == 5) {
        ASSERT_TRUE(node.propose("x=1").ok());
        ASSERT_TRUE(node.propose("y=2").ok());
      }
      while (node.has_ready()) {
        Ready rd = node.ready();
        ASSERT_TRUE(s->persist(rd).ok());
        node.advance(rd);
      }
      node.tick();
    }
    ASSERT_EQ(node.role(), Role::kLeader);
    before = node.hard_state();
    EXPECT_EQ(before.commit, li(3));  // the leader's empty entry, then the two proposals
  }
  auto s = open_ok(path);
  ASSERT_TRUE(s);
  RawNode node(cfg, *s);
  EXPECT_EQ(node.hard_state(), before);
  EXPECT_EQ(node.log().last_index(), li(3));
  EXPECT_EQ(s->entries(li(2), li(4), kNoLimit)->back().data, "y=2");
}

// ---- kill -9 ---------------------------------------------------------------------------

struct WriterRun {
  std::vector<uint64_t> acks;  // in the order printed
};

// Starts the writer, reads its acks for `run_for` after the first one, SIGKILLs it, then
// drains whatever it printed before dying (those were acknowledged too).
WriterRun run_writer_and_kill(const std::string& path, uint64_t seed,
                              std::chrono::milliseconds run_for) {
  WriterRun out;
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::string seed_str = std::to_string(seed);
    execl(STARLING_RAFT_STORAGE_WRITER, STARLING_RAFT_STORAGE_WRITER, path.c_str(),
          seed_str.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string buf;
  auto parse = [&] {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("acked ", 0) == 0) out.acks.push_back(std::stoull(line.substr(6)));
    }
  };
  using Clock = std::chrono::steady_clock;
  auto first_ack_deadline = Clock::now() + std::chrono::seconds(10);
  std::optional<Clock::time_point> kill_at;
  char chunk[4096];
  for (;;) {
    auto now = Clock::now();
    if (kill_at ? now >= *kill_at : now >= first_ack_deadline) break;
    auto until = kill_at ? *kill_at : first_ack_deadline;
    pollfd p{fds[0], POLLIN, 0};
    int wait_ms = static_cast<int>(
                      std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count()) +
                  1;
    if (poll(&p, 1, wait_ms) <= 0) continue;
    ssize_t n = read(fds[0], chunk, sizeof chunk);
    if (n <= 0) break;  // the writer died on its own
    buf.append(chunk, static_cast<size_t>(n));
    parse();
    if (!kill_at && !out.acks.empty()) kill_at = Clock::now() + run_for;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ssize_t n;
  while ((n = read(fds[0], chunk, sizeof chunk)) > 0) buf.append(chunk, static_cast<size_t>(n));
  parse();
  close(fds[0]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the writer exited on its own (status " << status << ")";
  return out;
}

TEST(SqliteRaftStorage, NothingAcknowledgedIsLostUnderKill9) {
  uint64_t seed = std::random_device{}();
  if (const char* env = std::getenv("STARLING_RAFT_SEED")) seed = std::stoull(env);
  std::printf("kill -9 test seed %llu (replay with STARLING_RAFT_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  TempDir dir;
  std::string path = dir.file("raft.db");
  uint64_t max_acked = 0;
  int kills_mid_stream = 0;
  for (int round = 0; round < 8; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto run_for = std::chrono::milliseconds(20 + rng() % 250);
    WriterRun run = run_writer_and_kill(path, rng(), run_for);
    ASSERT_FALSE(run.acks.empty()) << "the writer acknowledged nothing";
    for (size_t k = 1; k < run.acks.size(); ++k) ASSERT_GT(run.acks[k], run.acks[k - 1]);
    ASSERT_GT(run.acks.front(), max_acked) << "acks must continue after the last round's";
    max_acked = run.acks.back();

    auto opened = SqliteRaftStorage::open(path);
    ASSERT_TRUE(opened.ok()) << opened.error().code << ": " << opened.error().message;
    SqliteRaftStorage& s = **opened;
    Snapshot snap = *s.snapshot();
    LogIndex first = s.first_index();
    LogIndex last = s.last_index();
    ASSERT_EQ(first, snap.meta.index + 1);
    if (!snap.empty()) {
      EXPECT_EQ(snap.meta.term, workload_term(snap.meta.index));
      EXPECT_EQ(snap.data, workload_snapshot_data(snap.meta.index));
    }
    // Every acknowledged index is covered by the snapshot or present with its term and data.
    ASSERT_GE(last.get(), max_acked);
    ASSERT_LE(first.get(), max_acked) << "compaction keeps 20 entries behind the last ack";
    std::vector<Entry> log = *s.entries(first, last + 1, kNoLimit);
    ASSERT_EQ(log.size(), last - first + 1);
    for (size_t k = 0; k < log.size(); ++k) {
      ASSERT_EQ(log[k].index, first + k) << "log not contiguous";
      if (log[k].index.get() <= max_acked) {
        ASSERT_EQ(log[k], workload_entry(log[k].index)) << "acknowledged entry damaged";
      }
    }
    EXPECT_GE(s.hard_state().commit.get(), max_acked);
    if (last.get() > max_acked) ++kills_mid_stream;
  }
  std::printf("%d rounds, last acked index %llu, %d kills left an unacknowledged tail\n", 8,
              static_cast<unsigned long long>(max_acked), kills_mid_stream);
}

}  // namespace
}  // namespace starling::raft::testing

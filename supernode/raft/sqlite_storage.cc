#include "supernode/raft/sqlite_storage.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

namespace starling::raft {

namespace {

// Rows of `state`: 'hard_state' (term, vote, commit), 'snapshot' (index, term, conf, data),
// 'snapshot_addresses' (index, the snapshot's member addresses), 'conf' (applied index, conf,
// member addresses — absent in rows written before addresses existed), 'snapshot_file' (index,
// term, conf, addresses, size and CRC-32C of the data in the file PATH.snap-INDEX). Each value's
// crc covers key and value, so a row moved to another key fails too.
constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS entries (
  idx  INTEGER PRIMARY KEY,
  term INTEGER NOT NULL,
  type INTEGER NOT NULL,
  data BLOB NOT NULL,
  crc  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
  key   TEXT PRIMARY KEY,
  value BLOB NOT NULL,
  crc   INTEGER NOT NULL
);
)sql";

constexpr char kHardStateKey[] = "hard_state";
constexpr char kSnapshotKey[] = "snapshot";
constexpr char kConfKey[] = "conf";
constexpr char kSnapshotAddressesKey[] = "snapshot_addresses";
// A snapshot whose data is in a file beside the database (compact_to_file): index, term,
// conf, addresses, data size and CRC-32C. load() takes whichever of it and kSnapshotKey has the
// higher index.
constexpr char kSnapshotFileKey[] = "snapshot_file";

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrcTable[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}
uint32_t crc32c(const std::string& s) { return crc32c_extend(0, s.data(), s.size()); }

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

// Total reader over untrusted bytes: every get fails (ok_ = false) past the end.
class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  uint64_t u64() { return uint(8); }
  uint32_t u32() { return static_cast<uint32_t>(uint(4)); }
  std::string take(size_t n) {
    std::string r = s_.substr(pos_, n);
    pos_ += n;
    return r;
  }
  std::string rest() {
    std::string r = s_.substr(pos_);
    pos_ = s_.size();
    return r;
  }
  size_t remaining() const { return s_.size() - pos_; }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == s_.size(); }

 private:
  uint64_t uint(size_t n) {
    if (remaining() < n) {
      ok_ = false;
      pos_ = s_.size();
      return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) {
      v |= static_cast<uint64_t>(static_cast<unsigned char>(s_[pos_ + i])) << (8 * i);
    }
    pos_ += n;
    return v;
  }
  const std::string& s_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void put_ids(std::string& out, const std::vector<NodeId>& ids) {
  put_u32(out, static_cast<uint32_t>(ids.size()));
  for (const NodeId& id : ids) put_u64(out, id.get());
}
bool get_ids(Reader& r, std::vector<NodeId>& ids) {
  uint32_t n = r.u32();
  if (!r.ok() || n > r.remaining() / 8) return false;
  ids.clear();
  for (uint32_t i = 0; i < n; ++i) ids.emplace_back(r.u64());
  return r.ok();
}
void put_conf(std::string& out, const ConfState& c) {
  put_ids(out, c.voters);
  put_ids(out, c.learners);
  put_ids(out, c.removed);
}
bool get_conf(Reader& r, ConfState& c) {
  return get_ids(r, c.voters) && get_ids(r, c.learners) && get_ids(r, c.removed);
}
// Member addresses (ConfState::addresses): u32 count, then u64 id, u32 length, bytes.
void put_addresses(std::string& out, const std::vector<MemberAddress>& addresses) {
  put_u32(out, static_cast<uint32_t>(addresses.size()));
  for (const MemberAddress& a : addresses) {
    put_u64(out, a.node.get());
    put_u32(out, static_cast<uint32_t>(a.address.size()));
    out += a.address;
  }
}
bool get_addresses(Reader& r, std::vector<MemberAddress>& addresses) {
  uint32_t n = r.u32();
  if (!r.ok() || n > r.remaining() / 12) return false;
  addresses.clear();
  for (uint32_t i = 0; i < n; ++i) {
    MemberAddress a;
    a.node = NodeId{r.u64()};
    uint32_t len = r.u32();
    if (!r.ok() || len > r.remaining() || len > kMaxConfContext) return false;
    a.address = r.take(len);
    addresses.push_back(std::move(a));
  }
  return r.ok();
}

std::string encode_hard_state(const HardState& hs) {
  std::string out;
  put_u64(out, hs.term.get());
  put_u64(out, hs.vote.get());
  put_u64(out, hs.commit.get());
  return out;
}
std::string encode_snapshot(const Snapshot& s) {
  std::string out;
  put_u64(out, s.meta.index.get());
  put_u64(out, s.meta.term.get());
  put_conf(out, s.meta.conf);
  out += s.data;
  return out;
}
// Rows written before member addresses existed end after the conf; the addresses follow it.
std::string encode_conf_row(LogIndex applied, const ConfState& c) {
  std::string out;
  put_u64(out, applied.get());
  put_conf(out, c);
  put_addresses(out, c.addresses);
  return out;
}
// The snapshot row keeps its layout (its data runs to the end); the snapshot's member
// addresses go in their own row, written in the same transaction, tagged with its index.
std::string encode_snapshot_addresses(const Snapshot& s) {
  std::string out;
  put_u64(out, s.meta.index.get());
  put_addresses(out, s.meta.conf.addresses);
  return out;
}

uint32_t row_checksum(const char* key, const std::string& value) {
  return crc32c_extend(crc32c_extend(0, key, std::char_traits<char>::length(key) + 1), value.data(),
                       value.size());
}

class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }
  int prepare(sqlite3* db, const char* sql) {
    return sqlite3_prepare_v2(db, sql, -1, &s_, nullptr);
  }
  sqlite3_stmt* get() { return s_; }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

std::string column_blob(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

int bind_blob(sqlite3_stmt* s, int col, const std::string& v) {
  return sqlite3_bind_blob(s, col, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

sqlite3_int64 to_sql(uint64_t v) { return static_cast<sqlite3_int64>(v); }

std::string idx_str(LogIndex i) { return std::to_string(i.get()); }

std::string snapshot_file_name(const std::string& db_path, LogIndex i) {
  return db_path + ".snap-" + idx_str(i);
}

Error corrupt(std::string message) { return make_error(kErrCorruptLog, std::move(message)); }

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "raft sqlite storage: %s\n", message.c_str());
  std::abort();
}

}  // namespace

uint32_t entry_checksum(const Entry& e) {
  std::string head;
  put_u64(head, e.index.get());
  put_u64(head, e.term.get());
  head.push_back(static_cast<char>(e.type));
  return crc32c_extend(crc32c(head), e.data.data(), e.data.size());
}

struct SqliteRaftStorage::Db {
  sqlite3* db = nullptr;
  std::string path;
  Stmt insert_entry;
  Stmt delete_from;  // entries with idx >= ?1
  Stmt delete_upto;  // entries with idx <= ?1
  Stmt delete_all;
  Stmt put_state;
  Stmt get_state;
  Stmt delete_state;
  Stmt list_entries;

  // close_v2 defers the close until the statements (members, destroyed after this body) are
  // finalized.
  ~Db() { sqlite3_close_v2(db); }

  Error io_error(const std::string& what) const {
    return make_error(kErrStorageIo, "raft storage " + path + ": " + what + ": " +
                                         (db ? sqlite3_errmsg(db) : "out of memory"));
  }
  Status exec(const char* sql) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return io_error(sql);
    return {};
  }
  Status step_done(Stmt& s, const char* what) {
    int rc = sqlite3_step(s.get());
    s.reset();
    if (rc != SQLITE_DONE) return io_error(what);
    return {};
  }
  Status put(const char* key, const std::string& value) {
    sqlite3_bind_text(put_state.get(), 1, key, -1, SQLITE_STATIC);
    bind_blob(put_state.get(), 2, value);
    sqlite3_bind_int64(put_state.get(), 3, row_checksum(key, value));
    return step_done(put_state, "write state");
  }
  // nullopt if the row is absent; kErrCorruptLog if its checksum does not match.
  Result<std::optional<std::string>> get(const char* key) {
    Stmt& s = get_state;
    sqlite3_bind_text(s.get(), 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_DONE) {
      s.reset();
      return std::optional<std::string>();
    }
    if (rc != SQLITE_ROW) {
      s.reset();
      return io_error(std::string("read ") + key);
    }
    std::string value = column_blob(s.get(), 0);
    auto crc = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 1));
    s.reset();
    if (crc != row_checksum(key, value)) {
      return corrupt(std::string("raft ") + key + ": checksum mismatch");
    }
    return std::optional<std::string>(std::move(value));
  }
  Status insert(const Entry& e) {
    Stmt& s = insert_entry;
    sqlite3_bind_int64(s.get(), 1, to_sql(e.index.get()));
    sqlite3_bind_int64(s.get(), 2, to_sql(e.term.get()));
    sqlite3_bind_int(s.get(), 3, static_cast<int>(e.type));
    bind_blob(s.get(), 4, e.data);
    sqlite3_bind_int64(s.get(), 5, entry_checksum(e));
    return step_done(s, "insert entry");
  }
  Status delete_entries(Stmt& s, LogIndex i) {
    sqlite3_bind_int64(s.get(), 1, to_sql(i.get()));
    return step_done(s, "delete entries");
  }
  Status erase(const char* key) {
    sqlite3_bind_text(delete_state.get(), 1, key, -1, SQLITE_STATIC);
    return step_done(delete_state, "delete state");
  }
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back if anything failed.
  template <class F>
  Status transaction(F&& body) {
    if (Status st = exec("BEGIN IMMEDIATE;"); !st.ok()) return st;
    Status st = body();
    if (st.ok()) st = exec("COMMIT;");
    if (!st.ok()) (void)exec("ROLLBACK;");
    return st;
  }
};

SqliteRaftStorage::SqliteRaftStorage(std::unique_ptr<Db> db) : db_(std::move(db)) {}
SqliteRaftStorage::~SqliteRaftStorage() = default;

Result<std::unique_ptr<SqliteRaftStorage>> SqliteRaftStorage::open(const std::string& path,
                                                                   const ConfState& bootstrap) {
  auto db = std::make_unique<Db>();
  db->path = path;
  if (sqlite3_open_v2(path.c_str(), &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    return db->io_error("open");
  }
  sqlite3_busy_timeout(db->db, 5000);
  // WAL must really be on: an fsynced WAL append is what makes one Ready one durable commit.
  {
    Stmt s;
    if (s.prepare(db->db, "PRAGMA journal_mode=WAL;") != SQLITE_OK ||
        sqlite3_step(s.get()) != SQLITE_ROW) {
      return db->io_error("journal_mode=WAL");
    }
    std::string mode = column_blob(s.get(), 0);
    if (mode != "wal")
      return make_error(kErrStorageIo,
                        "raft storage " + path + ": journal_mode is " + mode + ", not wal");
  }
  if (Status st = db->exec("PRAGMA synchronous=FULL;"); !st.ok()) return st.error();
  if (Status st = db->exec(kSchema); !st.ok()) return st.error();
  struct {
    Stmt* stmt;
    const char* sql;
  } stmts[] = {
      {&db->insert_entry,
       "INSERT OR REPLACE INTO entries (idx, term, type, data, crc) VALUES (?1, ?2, ?3, ?4, ?5)"},
      {&db->delete_from, "DELETE FROM entries WHERE idx >= ?1"},
      {&db->delete_upto, "DELETE FROM entries WHERE idx <= ?1"},
      {&db->delete_all, "DELETE FROM entries"},
      {&db->put_state, "INSERT OR REPLACE INTO state (key, value, crc) VALUES (?1, ?2, ?3)"},
      {&db->get_state, "SELECT value, crc FROM state WHERE key = ?1"},
      {&db->delete_state, "DELETE FROM state WHERE key = ?1"},
      {&db->list_entries, "SELECT idx, term, type, data, crc FROM entries ORDER BY idx"},
  };
  for (auto& s : stmts) {
    if (s.stmt->prepare(db->db, s.sql) != SQLITE_OK) return db->io_error("prepare");
  }
  // A new store: record the bootstrap membership so every later open sees the same one.
  auto conf_row = db->get(kConfKey);
  if (!conf_row.ok()) return conf_row.error();
  if (!conf_row->has_value()) {
    Db& d = *db;
    Status st = d.transaction([&]() -> Status {
      if (Status s = d.put(kConfKey, encode_conf_row(LogIndex{0}, bootstrap)); !s.ok()) return s;
      return d.put(kHardStateKey, encode_hard_state(HardState{}));
    });
    if (!st.ok()) return st.error();
  }
  std::unique_ptr<SqliteRaftStorage> store(new SqliteRaftStorage(std::move(db)));
  if (Status st = store->load(); !st.ok()) return st.error();
  return store;
}

// Reads and verifies every row, then builds the in-memory copy.
Status SqliteRaftStorage::load() {
  Db& d = *db_;
  auto hs_row = d.get(kHardStateKey);
  if (!hs_row.ok()) return hs_row.error();
  auto snap_row = d.get(kSnapshotKey);
  if (!snap_row.ok()) return snap_row.error();
  auto conf_row = d.get(kConfKey);
  if (!conf_row.ok()) return conf_row.error();
  if (!hs_row->has_value() || !conf_row->has_value()) {
    return corrupt("raft storage " + d.path + ": hard state or membership row missing");
  }

  HardState hs;
  {
    Reader r(**hs_row);
    hs.term = Term{r.u64()};
    hs.vote = NodeId{r.u64()};
    hs.commit = LogIndex{r.u64()};
    if (!r.done()) return corrupt("raft hard_state: malformed");
  }
  LogIndex conf_index;
  ConfState conf;
  {
    Reader r(**conf_row);
    conf_index = LogIndex{r.u64()};
    if (!get_conf(r, conf) || (r.remaining() > 0 && !get_addresses(r, conf.addresses)) ||
        !r.done()) {
      return corrupt("raft conf: malformed");
    }
  }
  Snapshot snap;
  if (snap_row->has_value()) {
    Reader r(**snap_row);
    snap.meta.index = LogIndex{r.u64()};
    snap.meta.term = Term{r.u64()};
    if (!get_conf(r, snap.meta.conf) || !r.ok() || snap.empty()) {
      return corrupt("raft snapshot: malformed");
    }
    snap.data = r.rest();
    auto addr_row = d.get(kSnapshotAddressesKey);
    if (!addr_row.ok()) return addr_row.error();
    if (addr_row->has_value()) {
      Reader ar(**addr_row);
      LogIndex at{ar.u64()};
      std::vector<MemberAddress> addresses;
      if (!get_addresses(ar, addresses) || !ar.done()) {
        return corrupt("raft snapshot addresses: malformed");
      }
      if (at == snap.meta.index) snap.meta.conf.addresses = std::move(addresses);
    }
  }

  auto file_row = d.get(kSnapshotFileKey);
  if (!file_row.ok()) return file_row.error();
  if (file_row->has_value()) {
    Reader r(**file_row);
    Snapshot f;
    f.meta.index = LogIndex{r.u64()};
    f.meta.term = Term{r.u64()};
    if (!get_conf(r, f.meta.conf) || !get_addresses(r, f.meta.conf.addresses)) {
      return corrupt("raft snapshot_file: malformed");
    }
    const uint64_t size = r.u64();
    const uint32_t crc = r.u32();
    if (!r.done() || f.empty()) return corrupt("raft snapshot_file: malformed");
    if (f.meta.index > snap.meta.index) {
      const std::string name = snapshot_file_name(d.path, f.meta.index);
      std::ifstream in(name, std::ios::binary);
      if (!in) {
        return corrupt("raft snapshot file " + name + ": cannot be read: " + std::strerror(errno));
      }
      f.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      if (in.bad()) return corrupt("raft snapshot file " + name + ": read failed");
      if (f.data.size() != size) {
        return corrupt("raft snapshot file " + name + ": holds " + std::to_string(f.data.size()) +
                       " bytes, expected " + std::to_string(size));
      }
      if (crc32c(f.data) != crc)
        return corrupt("raft snapshot file " + name + ": checksum mismatch");
      snap = std::move(f);
    }
  }

  std::vector<Entry> ents;
  LogIndex expect = snap.meta.index + 1;
  std::optional<LogIndex> lowest;  // of the rows stored, leftovers below the snapshot included
  Stmt& s = d.list_entries;
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    Entry e;
    e.index = LogIndex{static_cast<uint64_t>(sqlite3_column_int64(s.get(), 0))};
    e.term = Term{static_cast<uint64_t>(sqlite3_column_int64(s.get(), 1))};
    int type = sqlite3_column_int(s.get(), 2);
    e.type = static_cast<EntryType>(static_cast<uint8_t>(type));
    e.data = column_blob(s.get(), 3);
    auto crc = static_cast<uint64_t>(sqlite3_column_int64(s.get(), 4));
    if (crc != entry_checksum(e) || (type != static_cast<int>(EntryType::kNormal) &&
                                     type != static_cast<int>(EntryType::kConfChange))) {
      s.reset();
      return corrupt("raft log idx=" + idx_str(e.index) + ": checksum mismatch");
    }
    if (!lowest) lowest = e.index;
    // Entries a compaction left for persist() to delete (compact_to_file).
    if (e.index <= snap.meta.index) continue;
    if (e.index != expect) {
      s.reset();
      return corrupt("raft log idx=" + idx_str(e.index) + ": expected idx=" + idx_str(expect) +
                     " (gap or entry below the snapshot)");
    }
    expect = expect + 1;
    ents.push_back(std::move(e));
  }
  s.reset();
  if (rc != SQLITE_DONE) return d.io_error("read entries");
  LogIndex last = expect - 1;
  if (hs.commit > last) {
    return corrupt("raft hard_state: commit=" + idx_str(hs.commit) +
                   " beyond last idx=" + idx_str(last));
  }

  MemoryStorage cache(snap.empty() ? conf : snap.meta.conf);
  if (!snap.empty()) {
    if (Status st = cache.apply_snapshot(snap); !st.ok()) return st;
  }
  cache.append(ents);
  cache.set_hard_state(hs);
  if (conf_index >= snap.meta.index) {
    cache.set_conf_state(conf);
    conf_index_ = conf_index;
  } else {
    conf_index_ = snap.meta.index;
  }
  cache_ = std::move(cache);
  trimmed_upto_ = lowest ? std::min(*lowest - 1, snap.meta.index) : snap.meta.index;
  return {};
}

std::pair<HardState, ConfState> SqliteRaftStorage::initial_state() const {
  return cache_.initial_state();
}
Result<std::vector<Entry>> SqliteRaftStorage::entries(LogIndex lo, LogIndex hi,
                                                      uint64_t max_bytes) const {
  return cache_.entries(lo, hi, max_bytes);
}
Result<Term> SqliteRaftStorage::term(LogIndex i) const { return cache_.term(i); }
LogIndex SqliteRaftStorage::first_index() const { return cache_.first_index(); }
LogIndex SqliteRaftStorage::last_index() const { return cache_.last_index(); }
Result<Snapshot> SqliteRaftStorage::snapshot() const { return cache_.snapshot(); }
const HardState& SqliteRaftStorage::hard_state() const { return cache_.hard_state(); }
LogIndex SqliteRaftStorage::conf_index() const { return conf_index_; }

Status SqliteRaftStorage::persist(const Ready& rd) {
  if (!rd.must_sync()) {
    if (!rd.hard_state) return {};
    // Only the commit index moved: write it without an fsync (synchronous=NORMAL for this
    // one transaction). A crash may lose it, never anything that was synced before it (the
    // WAL is a sequence) — and an older commit index only means re-applying after a restart.
    Db& d = *db_;
    if (Status s = d.exec("PRAGMA synchronous=NORMAL;"); !s.ok()) return s;
    Status st =
        d.transaction([&] { return d.put(kHardStateKey, encode_hard_state(*rd.hard_state)); });
    if (Status s = d.exec("PRAGMA synchronous=FULL;"); !s.ok() && st.ok()) st = s;
    if (!st.ok()) return st;
    cache_.set_hard_state(*rd.hard_state);
    return {};
  }
  const Snapshot* snap = rd.snapshot ? &*rd.snapshot : nullptr;
  const LogIndex current = cache_.snapshot_meta().index;
  if (snap && snap->meta.index <= current && current != LogIndex{0}) {
    return make_error(kErrSnapshotOutOfDate,
                      "raft storage: snapshot idx=" + idx_str(snap->meta.index) +
                          " not newer than idx=" + idx_str(current));
  }
  // The log as it will be after the snapshot, to place the entries.
  LogIndex first = snap ? snap->meta.index + 1 : cache_.first_index();
  LogIndex last = snap ? snap->meta.index : cache_.last_index();
  size_t skip = 0;
  if (!rd.entries.empty()) {
    for (size_t k = 1; k < rd.entries.size(); ++k) {
      if (rd.entries[k].index != rd.entries[k - 1].index + 1) {
        die("persist: entries not consecutive at idx=" + idx_str(rd.entries[k].index));
      }
    }
    if (rd.entries.back().index < first) {
      skip = rd.entries.size();  // all compacted already
    } else if (rd.entries[0].index < first) {
      skip = static_cast<size_t>(first - rd.entries[0].index);
    }
    if (skip < rd.entries.size()) {
      LogIndex start = rd.entries[skip].index;
      if (start > last + 1) {
        die("persist: gap, idx=" + idx_str(start) + " after last idx=" + idx_str(last));
      }
      // A committed entry is never replaced by a different one; doing it would lose it.
      if (!snap) {
        LogIndex commit = cache_.hard_state().commit;
        for (size_t k = skip; k < rd.entries.size(); ++k) {
          const Entry& e = rd.entries[k];
          if (e.index > commit || e.index > last) break;
          if (*cache_.term(e.index) != e.term) {
            die("persist: would replace committed idx=" + idx_str(e.index) + " (commit " +
                idx_str(commit) + ")");
          }
        }
      }
    }
  }

  // Entries a compact_to_file() left below the snapshot go a chunk at a time, in the
  // transactions that are synced anyway.
  const LogIndex snap_index = cache_.snapshot_meta().index;
  const LogIndex trim_to =
      snap ? snap->meta.index : std::min(snap_index, trimmed_upto_ + kTrimChunk);
  Db& d = *db_;
  Status st = d.transaction([&]() -> Status {
    if (!snap && trim_to > trimmed_upto_) {
      if (Status s = d.delete_entries(d.delete_upto, trim_to); !s.ok()) return s;
    }
    if (snap) {
      if (Status s = d.step_done(d.delete_all, "delete entries"); !s.ok()) return s;
      if (Status s = d.put(kSnapshotKey, encode_snapshot(*snap)); !s.ok()) return s;
      if (Status s = d.put(kSnapshotAddressesKey, encode_snapshot_addresses(*snap)); !s.ok()) {
        return s;
      }
    }
    if (skip < rd.entries.size()) {
      LogIndex start = rd.entries[skip].index;
      if (start <= last) {
        if (Status s = d.delete_entries(d.delete_from, start); !s.ok()) return s;
      }
      for (size_t k = skip; k < rd.entries.size(); ++k) {
        if (Status s = d.insert(rd.entries[k]); !s.ok()) return s;
      }
    }
    if (rd.hard_state) return d.put(kHardStateKey, encode_hard_state(*rd.hard_state));
    return {};
  });
  if (!st.ok()) return st;

  // Committed: only now may the core see it.
  trimmed_upto_ = std::max(trimmed_upto_, trim_to);
  if (snap) {
    ConfState conf = cache_.initial_state().second;
    if (Status s = cache_.apply_snapshot(*snap); !s.ok()) die("cache: " + s.error().message);
    if (snap->meta.index >= conf_index_) {
      conf_index_ = snap->meta.index;
    } else {
      cache_.set_conf_state(std::move(conf));
    }
  }
  cache_.append(rd.entries);
  if (rd.hard_state) cache_.set_hard_state(*rd.hard_state);
  return {};
}

Status SqliteRaftStorage::check_compaction(LogIndex i) const {
  const LogIndex snap = cache_.snapshot_meta().index;
  if (i <= snap) {
    return make_error(kErrSnapshotOutOfDate, "raft storage: compact idx=" + idx_str(i) +
                                                 " not after snapshot idx=" + idx_str(snap));
  }
  if (i > cache_.last_index()) {
    die("compact: idx=" + idx_str(i) + " beyond last idx=" + idx_str(cache_.last_index()));
  }
  return {};
}

// After the compaction's transaction committed.
void SqliteRaftStorage::record_compaction(LogIndex i, ConfState conf, std::string data) {
  if (Status s = cache_.create_snapshot(i, conf, std::move(data)); !s.ok()) {
    die("cache: " + s.error().message);
  }
  if (i >= conf_index_) {
    cache_.set_conf_state(std::move(conf));
    conf_index_ = i;
  }
}

Status SqliteRaftStorage::compact(LogIndex i, ConfState conf, std::string data) {
  if (Status st = check_compaction(i); !st.ok()) return st;
  Snapshot snap{SnapshotMeta{i, *cache_.term(i), conf}, std::move(data)};
  Db& d = *db_;
  Status st = d.transaction([&]() -> Status {
    if (Status s = d.delete_entries(d.delete_upto, i); !s.ok()) return s;
    if (Status s = d.put(kSnapshotKey, encode_snapshot(snap)); !s.ok()) return s;
    return d.put(kSnapshotAddressesKey, encode_snapshot_addresses(snap));
  });
  if (!st.ok()) return st;
  trimmed_upto_ = std::max(trimmed_upto_, i);
  record_compaction(i, std::move(conf), std::move(snap.data));
  return {};
}

Result<SqliteRaftStorage::SnapshotFile> SqliteRaftStorage::write_snapshot_file(
    const std::string& path, LogIndex i, const std::string& data) {
  const std::string name = snapshot_file_name(path, i);
  const std::string temp = name + ".tmp";
  auto fail = [&](const std::string& what) -> Error {
    const int err = errno;
    ::unlink(temp.c_str());
    return make_error(kErrStorageIo,
                      "raft snapshot file " + name + ": " + what + ": " + std::strerror(err));
  };
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("create");
  for (size_t off = 0; off < data.size();) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return fail("write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return fail("fsync");
  }
  if (::close(fd) != 0) return fail("close");
  if (::rename(temp.c_str(), name.c_str()) != 0) return fail("rename");
  std::string dir = std::filesystem::path(name).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    if (dfd >= 0) ::close(dfd);
    return fail("fsync of the directory");
  }
  ::close(dfd);
  return SnapshotFile{i, data.size(), crc32c(data)};
}

Status SqliteRaftStorage::compact_to_file(const SnapshotFile& f, ConfState conf, std::string data) {
  const LogIndex i = f.index;
  if (Status st = check_compaction(i); !st.ok()) return st;
  if (data.size() != f.size) {
    die("compact_to_file: the data is not the file's (" + std::to_string(data.size()) + " bytes)");
  }
  const Term term = *cache_.term(i);
  std::string row;
  put_u64(row, i.get());
  put_u64(row, term.get());
  put_conf(row, conf);
  put_addresses(row, conf.addresses);
  put_u64(row, f.size);
  put_u32(row, f.crc);
  Db& d = *db_;
  // The entries up to i stay for now: persist() deletes them a chunk at a time (deleting
  // 10,000 rows here took 20-65 ms and made this commit 40-70 ms).
  Status st = d.transaction([&]() -> Status {
    if (Status s = d.put(kSnapshotFileKey, row); !s.ok()) return s;
    // An older in-database snapshot (installed from a leader) is superseded.
    if (Status s = d.erase(kSnapshotKey); !s.ok()) return s;
    return d.erase(kSnapshotAddressesKey);
  });
  if (!st.ok()) return st;
  record_compaction(i, std::move(conf), std::move(data));
  remove_snapshot_files_except(i);
  return {};
}

// Older snapshot files and temporary files a crash left behind; errors are ignored (a file
// that stays is only disk space: load() reads the one the database names).
void SqliteRaftStorage::remove_snapshot_files_except(LogIndex keep) const {
  const std::filesystem::path db(db_->path);
  const std::string prefix = db.filename().string() + ".snap-";
  const std::string kept =
      std::filesystem::path(snapshot_file_name(db_->path, keep)).filename().string();
  std::error_code ec;
  const std::filesystem::path dir = db.has_parent_path() ? db.parent_path() : ".";
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name != kept) std::filesystem::remove(e.path(), ec);
  }
}

Status SqliteRaftStorage::set_conf_state(LogIndex applied, ConfState conf) {
  if (applied < conf_index_) return {};  // older than what is stored (snapshot or conf row)
  Db& d = *db_;
  Status st = d.transaction([&]() { return d.put(kConfKey, encode_conf_row(applied, conf)); });
  if (!st.ok()) return st;
  cache_.set_conf_state(std::move(conf));
  conf_index_ = applied;
  return {};
}

}  // namespace starling::raft

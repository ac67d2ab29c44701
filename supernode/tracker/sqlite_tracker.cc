// SQLite implementation of TrackerStateMachine. One connection, guarded by a mutex (the
// tracker is the only user of its file; calls are short). Every apply and every restore is one
// transaction that also writes applied_index, so a crash leaves either all of it or none. The
// revoked nodes are also kept in memory (under their own mutex), so the per-RPC revocation
// check never waits behind an apply's fsync.
#include <sqlite3.h>

#include <algorithm>
#include <cassert>
#include <map>
#include <mutex>

#include "supernode/tracker/snapshot_codec.h"
#include "supernode/tracker/state_machine.h"

namespace starling::tracker {
namespace {

// Schema 3: tasks with their seeder, kv, certificates, and the recorded results of
// (client_id, seq). PRAGMA user_version says which schema a file has; schema 1 (LocalLog,
// user_version 0 with tables) was never deployed and is refused rather than migrated; schema 2
// (Raft, before certificates) gains the empty certificates table (kMigrate2To3).
// Schema 4 (issue 4 items 4-5) adds the tasks' segment_size and lease_epoch columns and the
// segments table (kMigrateTo4; the old whole-content metainfo column stays, unused).
constexpr int kSchemaVersion = 4;
constexpr char kMigrateTo4[] = R"sql(
ALTER TABLE tasks ADD COLUMN segment_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
CREATE TABLE segments (
  task_id  TEXT NOT NULL,
  idx      INTEGER NOT NULL,
  off      INTEGER NOT NULL,
  size     INTEGER NOT NULL,
  metainfo BLOB NOT NULL,
  PRIMARY KEY (task_id, idx)
);
UPDATE tasks SET segment_size = 67108864, lease_epoch = updated_index;
UPDATE tasks SET state = 2, error_code = 'supernode.content_missing',
  error_message = 'stored before segments existed; register the task again'
  WHERE state = 1 OR state = 0;
)sql";
constexpr char kCertificatesTable[] = R"sql(
CREATE TABLE certificates (
  node_id       TEXT PRIMARY KEY,
  role          TEXT NOT NULL,
  not_before    INTEGER NOT NULL,
  not_after     INTEGER NOT NULL,
  issued_index  INTEGER NOT NULL,
  revoked       INTEGER NOT NULL DEFAULT 0,
  revoked_at    INTEGER NOT NULL DEFAULT 0,
  reason        TEXT NOT NULL DEFAULT '',
  revoked_index INTEGER NOT NULL DEFAULT 0
);
)sql";
constexpr char kSchema[] = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('applied_index', 0);
CREATE TABLE tasks (
  task_id       TEXT PRIMARY KEY,
  url           TEXT NOT NULL,
  digest        TEXT,
  created_at    INTEGER NOT NULL,
  state         INTEGER NOT NULL,
  seeder        TEXT NOT NULL,
  size          INTEGER NOT NULL DEFAULT 0,
  sha256        TEXT NOT NULL DEFAULT '',
  metainfo      BLOB,
  seed_ip       TEXT NOT NULL DEFAULT '',
  seed_port     INTEGER NOT NULL DEFAULT 0,
  error_code    TEXT,
  error_message TEXT,
  updated_index INTEGER NOT NULL
);
CREATE TABLE kv (
  key          TEXT PRIMARY KEY,
  value        BLOB NOT NULL,
  create_index INTEGER NOT NULL,
  modify_index INTEGER NOT NULL
);
CREATE TABLE results (
  client_id TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  idx       INTEGER NOT NULL,
  ok        INTEGER NOT NULL,
  body      TEXT NOT NULL,
  message   TEXT NOT NULL,
  PRIMARY KEY (client_id, seq)
);
CREATE INDEX results_by_idx ON results (idx);
)sql";

constexpr char kCertificateColumns[] =
    "node_id, role, not_before, not_after, issued_index, revoked, revoked_at, reason, "
    "revoked_index";

constexpr char kTaskColumns[] =
    "task_id, url, digest, created_at, state, seeder, size, sha256, metainfo, seed_ip, "
    "seed_port, error_code, error_message, updated_index, segment_size, lease_epoch";

// A prepared statement, reset after each use.
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
  // Resets and clears bindings so the statement can be reused.
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// Resets a statement when the scope ends, whatever path leaves it.
class ResetGuard {
 public:
  explicit ResetGuard(Stmt& s) : s_(s) {}
  ~ResetGuard() { s_.reset(); }
  ResetGuard(const ResetGuard&) = delete;
  ResetGuard& operator=(const ResetGuard&) = delete;

 private:
  Stmt& s_;
};

std::string column_text(sqlite3_stmt* s, int col) {
  const unsigned char* p = sqlite3_column_text(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

std::string column_blob(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

uint64_t column_u64(sqlite3_stmt* s, int col) {
  return static_cast<uint64_t>(sqlite3_column_int64(s, col));
}

void bind_text(sqlite3_stmt* s, int col, std::string_view v) {
  sqlite3_bind_text(s, col, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

void bind_blob(sqlite3_stmt* s, int col, std::string_view v) {
  // A non-null pointer even for an empty value: a zero-length blob, not NULL.
  static const char kEmpty = 0;
  sqlite3_bind_blob(s, col, v.empty() ? &kEmpty : v.data(), static_cast<int>(v.size()),
                    SQLITE_TRANSIENT);
}

void bind_u64(sqlite3_stmt* s, int col, uint64_t v) {
  sqlite3_bind_int64(s, col, static_cast<sqlite3_int64>(v));
}

std::string put_result(uint64_t index) { return "{\"index\":" + std::to_string(index) + "}"; }
std::string delete_result(bool deleted) {
  return deleted ? "{\"deleted\":true}" : "{\"deleted\":false}";
}
std::string issue_result(uint64_t index) {
  return "{\"issued_index\":" + std::to_string(index) + "}";
}
std::string revoke_result(int64_t revoked_at, bool already) {
  return "{\"revoked_at\":" + std::to_string(revoked_at) +
         (already ? ",\"already_revoked\":true}" : "}");
}

Error revoked_error(const std::string& node, const Revocation& r) {
  return make_error(kErrCertRevoked,
                    "node " + node + " was revoked" +
                        (r.reason.empty() ? " (no reason given)" : ": " + r.reason));
}

// The smallest string greater than every string that starts with `prefix`, or nullopt when
// there is none (prefix empty or all 0xff).
std::optional<std::string> prefix_end(std::string prefix) {
  while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff) prefix.pop_back();
  if (prefix.empty()) return std::nullopt;
  prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
  return prefix;
}

class SqliteTracker final : public TrackerStateMachine {
 public:
  Status open(const std::string& path) {
    path_ = path;
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      return storage_error("open " + path);
    }
    sqlite3_busy_timeout(db_, 5000);
    // synchronous=NORMAL: a commit is atomic but not synced; a power loss may take back the
    // last transactions, never leave half of one. Safe because the Raft log (synchronous=FULL)
    // is the durable record and applied_index is in the same transaction: what is lost is
    // re-applied from the log at restart, or restored from the Raft snapshot, which the
    // driver stores durably when it compacts (README.md "Durability").
    for (const char* pragma : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=NORMAL;"}) {
      if (Status st = exec(pragma); !st.ok()) return st;
    }
    if (Status st = ensure_schema(path); !st.ok()) return st;

    std::string select = std::string("SELECT ") + kTaskColumns + " FROM tasks";
    constexpr char kKvSelect[] = "SELECT key, value, create_index, modify_index FROM kv";
    constexpr char kResultSelect[] = "SELECT client_id, seq, idx, ok, body, message FROM results";
    const std::string cert_select =
        std::string("SELECT ") + kCertificateColumns + " FROM certificates";
    struct {
      Stmt* stmt;
      std::string sql;
    } stmts[] = {
        {&get_meta_, "SELECT value FROM meta WHERE key = 'applied_index'"},
        {&set_meta_, "UPDATE meta SET value = ?1 WHERE key = 'applied_index'"},
        {&get_task_, select + " WHERE task_id = ?1"},
        {&list_tasks_, select + " ORDER BY created_at, task_id"},
        {&all_tasks_, select + " ORDER BY task_id"},
        {&insert_task_,
         "INSERT INTO tasks (task_id, url, digest, created_at, state, seeder, updated_index, "
         "segment_size, lease_epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)"},
        {&restore_task_, std::string("INSERT INTO tasks (") + kTaskColumns +
                             ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                             "?14, ?15, ?16)"},
        {&seg_list_,
         "SELECT idx, off, size, metainfo FROM segments WHERE task_id = ?1 ORDER BY idx"},
        {&seg_insert_,
         "INSERT INTO segments (task_id, idx, off, size, metainfo) VALUES (?1, ?2, ?3, ?4, ?5)"},
        {&seg_clear_, "DELETE FROM segments WHERE task_id = ?1"},
        {&set_published_,
         "UPDATE tasks SET seed_ip = ?2, seed_port = ?3, updated_index = ?4 WHERE task_id = ?1"},
        {&set_renewed_, "UPDATE tasks SET updated_index = ?2 WHERE task_id = ?1"},
        {&set_taken_over_,
         "UPDATE tasks SET seeder = ?2, seed_ip = ?3, seed_port = ?4, lease_epoch = ?5, "
         "updated_index = ?5 WHERE task_id = ?1"},
        {&set_ready_,
         "UPDATE tasks SET state = ?2, size = ?3, sha256 = ?4, seed_ip = ?6, "
         "seed_port = ?7, error_code = NULL, error_message = NULL, updated_index = ?8 "
         "WHERE task_id = ?1"},
        {&set_failed_,
         "UPDATE tasks SET state = ?2, error_code = ?3, error_message = ?4, updated_index = ?5 "
         "WHERE task_id = ?1"},
        {&set_restarted_,
         "UPDATE tasks SET state = ?2, seeder = ?3, error_code = NULL, error_message = NULL, "
         "size = 0, sha256 = '', metainfo = NULL, seed_ip = '', seed_port = 0, "
         "updated_index = ?4, lease_epoch = ?4 WHERE task_id = ?1"},
        {&kv_get_, std::string(kKvSelect) + " WHERE key = ?1"},
        {&kv_list_all_, std::string(kKvSelect) + " ORDER BY key"},
        {&kv_list_from_, std::string(kKvSelect) + " WHERE key >= ?1 ORDER BY key"},
        {&kv_list_range_, std::string(kKvSelect) + " WHERE key >= ?1 AND key < ?2 ORDER BY key"},
        {&kv_count_, "SELECT count(*) FROM kv"},
        {&kv_insert_,
         "INSERT INTO kv (key, value, create_index, modify_index) VALUES (?1, ?2, ?3, ?4)"},
        {&kv_update_, "UPDATE kv SET value = ?2, modify_index = ?3 WHERE key = ?1"},
        {&kv_delete_, "DELETE FROM kv WHERE key = ?1"},
        {&result_get_, std::string(kResultSelect) + " WHERE client_id = ?1 AND seq = ?2"},
        {&result_all_, kResultSelect},
        {&result_insert_,
         "INSERT INTO results (client_id, seq, idx, ok, body, message) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
        {&result_prune_, "DELETE FROM results WHERE idx < ?1"},
        {&cert_get_, cert_select + " WHERE node_id = ?1"},
        {&cert_all_, cert_select + " ORDER BY node_id"},
        {&cert_revoked_, cert_select + " WHERE revoked = 1"},
        {&cert_issue_,
         "INSERT INTO certificates (node_id, role, not_before, not_after, issued_index) "
         "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (node_id) DO UPDATE SET role = excluded.role, "
         "not_before = excluded.not_before, not_after = excluded.not_after, "
         "issued_index = excluded.issued_index"},
        {&cert_revoke_,
         "INSERT INTO certificates (node_id, role, not_before, not_after, issued_index, revoked, "
         "revoked_at, reason, revoked_index) VALUES (?1, '', 0, 0, 0, 1, ?2, ?3, ?4) "
         "ON CONFLICT (node_id) DO UPDATE SET revoked = 1, revoked_at = excluded.revoked_at, "
         "reason = excluded.reason, revoked_index = excluded.revoked_index"},
        {&cert_restore_, std::string("INSERT INTO certificates (") + kCertificateColumns +
                             ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
    };
    for (auto& s : stmts) {
      if (s.stmt->prepare(db_, s.sql.c_str()) != SQLITE_OK) return storage_error("prepare");
    }
    auto applied = read_applied();
    if (!applied.ok()) return applied.error();
    applied_ = *applied;
    auto revoked = read_revoked();
    if (!revoked.ok()) return revoked.error();
    std::lock_guard lock(revoked_mu_);
    revoked_ = std::move(*revoked);
    return {};
  }

  Result<std::string> apply(LogIndex index, const Proposal& p) override {
    std::lock_guard lock(mu_);
    const bool known_client = is_client_id(p.client_id);
    if (index.get() <= applied_) {
      // Replayed after a crash (or a retry that Raft committed twice, already applied).
      if (!known_client) return std::string("{}");
      auto recorded = find_result(p.client_id, p.seq);
      if (!recorded.ok()) return recorded.error();
      if (!*recorded) return std::string("{}");
      return outcome_of(**recorded);
    }

    if (Status st = exec("BEGIN IMMEDIATE;"); !st.ok()) return st.error();
    new_revocation_.reset();
    auto outcome = apply_in_transaction(index, p, known_client);
    if (!outcome.ok() && outcome.error().code == kErrStorage) {
      (void)exec("ROLLBACK;");
      new_revocation_.reset();
      return outcome;
    }
    if (Status st = exec("COMMIT;"); !st.ok()) {
      (void)exec("ROLLBACK;");
      new_revocation_.reset();
      return st.error();
    }
    applied_ = index.get();
    if (new_revocation_) {
      // Only after the commit: a revocation is visible once it is durable, never before.
      std::lock_guard revoked_lock(revoked_mu_);
      revoked_.emplace(std::move(new_revocation_->first), std::move(new_revocation_->second));
      new_revocation_.reset();
    }
    return outcome;
  }

  Result<std::vector<Result<std::string>>> apply_batch(
      const std::vector<BatchEntry>& entries) override {
    std::lock_guard lock(mu_);
    std::vector<Result<std::string>> out;
    out.reserve(entries.size());
    std::vector<std::pair<std::string, Revocation>> revocations;  // made visible after COMMIT
    bool open = false;
    auto abort_batch = [&](Error e) -> Error {
      if (open) (void)exec("ROLLBACK;");
      new_revocation_.reset();
      return e;
    };
    uint64_t last = applied_;
    for (const BatchEntry& b : entries) {
      const Proposal& p = *b.proposal;
      const bool known_client = is_client_id(p.client_id);
      if (b.index.get() <= applied_) {
        // Replayed after a crash: as apply().
        assert(!open);
        if (!known_client) {
          out.push_back(std::string("{}"));
          continue;
        }
        auto recorded = find_result(p.client_id, p.seq);
        if (!recorded.ok()) return abort_batch(recorded.error());
        out.push_back(*recorded ? outcome_of(**recorded) : Result<std::string>(std::string("{}")));
        continue;
      }
      assert(b.index.get() > last);
      if (!open) {
        if (Status st = exec("BEGIN IMMEDIATE;"); !st.ok()) return st.error();
        open = true;
      }
      new_revocation_.reset();
      auto outcome = apply_in_transaction(b.index, p, known_client);
      if (!outcome.ok() && outcome.error().code == kErrStorage) return abort_batch(outcome.error());
      if (new_revocation_) revocations.push_back(std::move(*new_revocation_));
      new_revocation_.reset();
      last = b.index.get();
      out.push_back(std::move(outcome));
    }
    if (!open) return out;
    if (Status st = exec("COMMIT;"); !st.ok()) return abort_batch(st.error());
    applied_ = last;
    if (!revocations.empty()) {
      std::lock_guard revoked_lock(revoked_mu_);
      for (auto& [node, r] : revocations) revoked_.emplace(std::move(node), std::move(r));
    }
    return out;
  }

  LogIndex applied_index() const override {
    std::lock_guard lock(mu_);
    return LogIndex(applied_);
  }

  Result<std::optional<TaskRecord>> get_task(const TaskId& task) const override {
    std::lock_guard lock(mu_);
    return find_task(task);
  }

  Result<std::vector<TaskRecord>> list_tasks() const override {
    std::lock_guard lock(mu_);
    return read_tasks(list_tasks_);
  }

  Result<std::optional<KvRecord>> kv_get(const std::string& key) const override {
    std::lock_guard lock(mu_);
    return find_kv(key);
  }

  Result<std::vector<KvRecord>> kv_list(const std::string& prefix) const override {
    std::lock_guard lock(mu_);
    if (prefix.empty()) return read_kv(kv_list_all_);
    auto end = prefix_end(prefix);
    Stmt& s = end ? kv_list_range_ : kv_list_from_;
    bind_text(s.get(), 1, prefix);
    if (end) bind_text(s.get(), 2, *end);
    return read_kv(s);
  }

  Result<uint64_t> kv_count() const override {
    std::lock_guard lock(mu_);
    Stmt& s = kv_count_;
    ResetGuard guard(s);
    if (sqlite3_step(s.get()) != SQLITE_ROW) return storage_error("count kv");
    return column_u64(s.get(), 0);
  }

  Result<std::optional<Revocation>> revocation(const std::string& node) const override {
    std::lock_guard lock(revoked_mu_);
    auto it = revoked_.find(node);
    if (it == revoked_.end()) return std::optional<Revocation>();
    return std::optional<Revocation>(it->second);
  }

  Result<bool> is_revoked(const std::string& node) const override {
    std::lock_guard lock(revoked_mu_);
    return revoked_.contains(node);
  }

  Result<std::optional<CertificateRecord>> get_certificate(const std::string& node) const override {
    std::lock_guard lock(mu_);
    return find_certificate(node);
  }

  Result<std::vector<CertificateRecord>> list_certificates() const override {
    std::lock_guard lock(mu_);
    return read_certificates(cert_all_);
  }

  Result<std::string> snapshot() const override {
    auto data = read_one_moment();
    if (!data.ok()) return data.error();
    return encode_snapshot(*data);
  }

  std::function<Result<IndexedSnapshot>()> concurrent_snapshot() const override {
    return [path = path_]() -> Result<IndexedSnapshot> {
      // A second connection: in WAL mode its read transaction sees the last commit before it
      // began and never blocks the writer (nor the writer it).
      SqliteTracker reader;
      if (Status st = reader.open(path); !st.ok()) return st.error();
      auto data = reader.read_one_moment();
      if (!data.ok()) return data.error();
      return IndexedSnapshot{data->applied_index, encode_snapshot(*data)};
    };
  }

  Status restore(LogIndex index, std::string_view bytes) override {
    auto data = decode_snapshot(bytes);
    if (!data.ok()) return data.error();
    if (data->applied_index.get() > index.get()) {
      return make_error(kErrBadSnapshot, "tracker snapshot: state at index " +
                                             std::to_string(data->applied_index.get()) +
                                             " offered as index " + std::to_string(index.get()));
    }
    std::lock_guard lock(mu_);
    if (Status st = exec("BEGIN IMMEDIATE;"); !st.ok()) return st;
    Status st = replace_everything(index, *data);
    if (st.ok()) st = exec("COMMIT;");
    if (!st.ok()) {
      (void)exec("ROLLBACK;");
      return st;
    }
    applied_ = index.get();
    std::map<std::string, Revocation> revoked;
    for (const CertificateRecord& c : data->certificates) {
      if (c.revocation) revoked.emplace(c.node_id, *c.revocation);
    }
    std::lock_guard revoked_lock(revoked_mu_);
    revoked_ = std::move(revoked);
    return {};
  }

 private:
  // REQUIRES: mu_ held, inside a write transaction. A kErrStorage result means the caller
  // must roll back; any other result (value or rejection) is to be committed.
  Result<std::string> apply_in_transaction(LogIndex index, const Proposal& p, bool known_client) {
    // Forget results that left the window first, so a retry older than the window is applied
    // again on every replica alike.
    if (index.get() > kResultWindow) {
      Stmt& s = result_prune_;
      bind_u64(s.get(), 1, index.get() - kResultWindow);
      if (Status st = step_done(s, "prune results"); !st.ok()) return st.error();
    }
    std::optional<Result<std::string>> outcome;
    bool record = known_client;
    if (known_client) {
      auto recorded = find_result(p.client_id, p.seq);
      if (!recorded.ok()) return recorded.error();
      if (*recorded) {
        outcome = outcome_of(**recorded);
        record = false;  // already recorded at its first index
      }
    }
    if (!outcome) {
      if (Status st = validate_proposal(p); !st.ok()) {
        outcome = st.error();
      } else {
        outcome = apply_effect(index, p.command);
        if (!outcome->ok() && outcome->error().code == kErrStorage) return *outcome;
      }
    }
    if (record) {
      Stmt& s = result_insert_;
      bind_text(s.get(), 1, p.client_id);
      bind_u64(s.get(), 2, p.seq);
      bind_u64(s.get(), 3, index.get());
      sqlite3_bind_int(s.get(), 4, outcome->ok() ? 1 : 0);
      if (outcome->ok()) {
        bind_text(s.get(), 5, **outcome);
        bind_text(s.get(), 6, "");
      } else {
        bind_text(s.get(), 5, outcome->error().code);
        bind_text(s.get(), 6, outcome->error().message);
      }
      if (Status st = step_done(s, "record result"); !st.ok()) return st.error();
    }
    if (Status st = write_applied(index.get()); !st.ok()) return st.error();
    return *outcome;
  }

  // REQUIRES: mu_ held, inside a transaction, `command` valid. Rejections change nothing.
  Result<std::string> apply_effect(LogIndex index, const Command& command) {
    if (const auto* c = std::get_if<KvPut>(&command)) return kv_put(index, *c);
    if (const auto* c = std::get_if<KvDelete>(&command)) return kv_delete(*c);
    if (const auto* c = std::get_if<IssueCertificate>(&command)) return issue(index, *c);
    if (const auto* c = std::get_if<RevokeCertificate>(&command)) return revoke(index, *c);
    Status st = apply_task_command(index, command);
    if (!st.ok()) return st.error();
    if (std::holds_alternative<CreateTask>(command) ||
        std::holds_alternative<RestartTask>(command) ||
        std::holds_alternative<TakeOverSeed>(command) ||
        std::holds_alternative<ReseedTask>(command)) {
      return "{\"epoch\":" + std::to_string(index.get()) + "}";
    }
    return std::string("{}");
  }

  // REQUIRES: as apply_effect; `command` is a task command.
  Status apply_task_command(LogIndex index, const Command& command) {
    const TaskId* id_ptr = nullptr;
    std::visit(
        [&](const auto& c) {
          if constexpr (requires { c.task_id; }) id_ptr = &c.task_id;
        },
        command);
    assert(id_ptr != nullptr);
    const TaskId& id = *id_ptr;
    auto existing = find_task(id);
    if (!existing.ok()) return existing.error();
    const std::optional<TaskRecord>& task = *existing;
    uint64_t idx = index.get();

    if (const auto* c = std::get_if<CreateTask>(&command)) {
      if (task) return make_error(kErrTaskExists, "task " + id.get() + " already exists");
      Stmt& s = insert_task_;
      bind_text(s.get(), 1, id.get());
      bind_text(s.get(), 2, c->url);
      if (c->digest) bind_text(s.get(), 3, *c->digest);
      sqlite3_bind_int64(s.get(), 4, c->created_at);
      sqlite3_bind_int(s.get(), 5, static_cast<int>(TaskState::kFetching));
      bind_text(s.get(), 6, c->seeder);
      bind_u64(s.get(), 7, idx);
      sqlite3_bind_int64(s.get(), 8, c->segment_size);
      return step_done(s, "insert task");
    }
    if (!task) return make_error(kErrTaskUnknown, "unknown task " + id.get());
    auto transition_error = [&](const char* what) {
      return make_error(kErrBadTransition, std::string(what) + ": task " + id.get() + " is " +
                                               task_state_name(task->state));
    };
    auto stale = [&](const char* what, uint64_t epoch) {
      return make_error(kErrStaleLease, std::string(what) + ": task " + id.get() + ": epoch " +
                                            std::to_string(epoch) +
                                            " is not the current seed lease epoch " +
                                            std::to_string(task->lease_epoch.get()));
    };
    int64_t published = 0;
    for (const SegmentRecord& seg : task->segments) published += seg.size;
    if (const auto* c = std::get_if<PublishSegment>(&command)) {
      if (task->state != TaskState::kFetching) return transition_error("PublishSegment");
      if (c->epoch != task->lease_epoch.get()) return stale("PublishSegment", c->epoch);
      const auto count = static_cast<int64_t>(task->segments.size());
      if (c->index != count || c->offset != published || c->size > task->segment_size ||
          (!task->segments.empty() && task->segments.back().size != task->segment_size)) {
        return make_error(kErrBadTransition,
                          "PublishSegment: task " + id.get() + " expects segment " +
                              std::to_string(count) + " at offset " + std::to_string(published) +
                              " of at most " + std::to_string(task->segment_size) +
                              " bytes after full segments, not segment " +
                              std::to_string(c->index) + " at " + std::to_string(c->offset) +
                              " of " + std::to_string(c->size));
      }
      Stmt& s = seg_insert_;
      bind_text(s.get(), 1, id.get());
      sqlite3_bind_int64(s.get(), 2, c->index);
      sqlite3_bind_int64(s.get(), 3, c->offset);
      sqlite3_bind_int64(s.get(), 4, c->size);
      bind_blob(s.get(), 5, c->metainfo);
      if (Status st = step_done(s, "insert segment"); !st.ok()) return st;
      Stmt& u = set_published_;
      bind_text(u.get(), 1, id.get());
      bind_text(u.get(), 2, c->seed_ip);
      sqlite3_bind_int64(u.get(), 3, c->seed_port);
      bind_u64(u.get(), 4, idx);
      return step_done(u, "publish segment");
    }
    if (const auto* c = std::get_if<RenewSeedLease>(&command)) {
      if (task->state != TaskState::kFetching) return transition_error("RenewSeedLease");
      if (c->epoch != task->lease_epoch.get()) return stale("RenewSeedLease", c->epoch);
      Stmt& s = set_renewed_;
      bind_text(s.get(), 1, id.get());
      bind_u64(s.get(), 2, idx);
      return step_done(s, "renew seed lease");
    }
    // TakeOverSeed (a fetching task) and ReseedTask (a ready one) hand the seed to another
    // member; the state and the published segments stay.
    auto hand_over = [&](const char* what, TaskState from, uint64_t expected_epoch,
                         const std::string& new_seeder, const std::string& seed_ip,
                         int64_t seed_port) -> Status {
      if (task->state != from) return transition_error(what);
      if (expected_epoch != task->lease_epoch.get()) return stale(what, expected_epoch);
      Stmt& s = set_taken_over_;
      bind_text(s.get(), 1, id.get());
      bind_text(s.get(), 2, new_seeder);
      bind_text(s.get(), 3, seed_ip);
      sqlite3_bind_int64(s.get(), 4, seed_port);
      bind_u64(s.get(), 5, idx);
      return step_done(s, "hand the seed over");
    };
    if (const auto* c = std::get_if<TakeOverSeed>(&command)) {
      return hand_over("TakeOverSeed", TaskState::kFetching, c->expected_epoch, c->new_seeder,
                       c->seed_ip, c->seed_port);
    }
    if (const auto* c = std::get_if<ReseedTask>(&command)) {
      return hand_over("ReseedTask", TaskState::kReady, c->expected_epoch, c->new_seeder,
                       c->seed_ip, c->seed_port);
    }
    if (const auto* c = std::get_if<MarkTaskReady>(&command)) {
      if (task->state != TaskState::kFetching) return transition_error("MarkTaskReady");
      if (c->epoch != task->lease_epoch.get()) return stale("MarkTaskReady", c->epoch);
      if (c->size != published) {
        return make_error(kErrBadTransition,
                          "MarkTaskReady: task " + id.get() + " has " + std::to_string(published) +
                              " bytes published, not " + std::to_string(c->size));
      }
      Stmt& s = set_ready_;
      bind_text(s.get(), 1, id.get());
      sqlite3_bind_int(s.get(), 2, static_cast<int>(TaskState::kReady));
      sqlite3_bind_int64(s.get(), 3, c->size);
      bind_text(s.get(), 4, c->sha256);
      bind_text(s.get(), 6, c->seed_ip);
      sqlite3_bind_int64(s.get(), 7, c->seed_port);
      bind_u64(s.get(), 8, idx);
      return step_done(s, "mark task ready");
    }
    if (const auto* c = std::get_if<MarkTaskFailed>(&command)) {
      if (task->state == TaskState::kFailed) return transition_error("MarkTaskFailed");
      // Fenced: the fetch (fetching) or with seed_lost the seed (ready) of that epoch.
      const TaskState fenced = c->seed_lost ? TaskState::kReady : TaskState::kFetching;
      if (c->epoch && (task->state != fenced || *c->epoch != task->lease_epoch.get())) {
        return stale("MarkTaskFailed", *c->epoch);
      }
      Stmt& s = set_failed_;
      bind_text(s.get(), 1, id.get());
      sqlite3_bind_int(s.get(), 2, static_cast<int>(TaskState::kFailed));
      bind_text(s.get(), 3, c->code);
      bind_text(s.get(), 4, c->message);
      bind_u64(s.get(), 5, idx);
      return step_done(s, "mark task failed");
    }
    const auto& restart = std::get<RestartTask>(command);
    if (task->state != TaskState::kFailed) return transition_error("RestartTask");
    Stmt& clear = seg_clear_;
    bind_text(clear.get(), 1, id.get());
    if (Status st = step_done(clear, "drop segments"); !st.ok()) return st;
    Stmt& s = set_restarted_;
    bind_text(s.get(), 1, id.get());
    sqlite3_bind_int(s.get(), 2, static_cast<int>(TaskState::kFetching));
    bind_text(s.get(), 3, restart.seeder);
    bind_u64(s.get(), 4, idx);
    return step_done(s, "restart task");
  }

  // The cas rule shared by put and delete: OK when the write may go ahead.
  static Status check_cas(const std::string& key, const std::optional<KvRecord>& existing,
                          std::optional<uint64_t> cas) {
    if (!cas) return {};
    if (existing && existing->modify_index != *cas) {
      return make_error(kErrCasFailed, "key '" + key + "' is at index " +
                                           std::to_string(existing->modify_index) + ", not " +
                                           std::to_string(*cas));
    }
    if (!existing && *cas != 0) {
      return make_error(kErrKeyUnknown,
                        "key '" + key + "' does not exist (cas " + std::to_string(*cas) + ")");
    }
    return {};
  }

  Result<std::string> kv_put(LogIndex index, const KvPut& c) {
    auto existing = find_kv(c.key);
    if (!existing.ok()) return existing.error();
    if (Status st = check_cas(c.key, *existing, c.cas); !st.ok()) return st.error();
    if (*existing) {
      Stmt& s = kv_update_;
      bind_text(s.get(), 1, c.key);
      bind_blob(s.get(), 2, c.value);
      bind_u64(s.get(), 3, index.get());
      if (Status st = step_done(s, "update kv"); !st.ok()) return st.error();
    } else {
      Stmt& s = kv_insert_;
      bind_text(s.get(), 1, c.key);
      bind_blob(s.get(), 2, c.value);
      bind_u64(s.get(), 3, index.get());
      bind_u64(s.get(), 4, index.get());
      if (Status st = step_done(s, "insert kv"); !st.ok()) return st.error();
    }
    return put_result(index.get());
  }

  Result<std::string> kv_delete(const KvDelete& c) {
    auto existing = find_kv(c.key);
    if (!existing.ok()) return existing.error();
    if (Status st = check_cas(c.key, *existing, c.cas); !st.ok()) return st.error();
    if (!*existing) return delete_result(false);
    Stmt& s = kv_delete_;
    bind_text(s.get(), 1, c.key);
    if (Status st = step_done(s, "delete kv"); !st.ok()) return st.error();
    return delete_result(true);
  }

  // REQUIRES: mu_ held, inside a write transaction; `c` valid.
  Result<std::string> issue(LogIndex index, const IssueCertificate& c) {
    auto existing = find_certificate(c.node_id);
    if (!existing.ok()) return existing.error();
    if (*existing && (*existing)->revocation) {
      return revoked_error(c.node_id, *(*existing)->revocation);
    }
    Stmt& s = cert_issue_;
    bind_text(s.get(), 1, c.node_id);
    bind_text(s.get(), 2, c.role);
    sqlite3_bind_int64(s.get(), 3, c.not_before);
    sqlite3_bind_int64(s.get(), 4, c.not_after);
    bind_u64(s.get(), 5, index.get());
    if (Status st = step_done(s, "issue certificate"); !st.ok()) return st.error();
    return issue_result(index.get());
  }

  // REQUIRES: as issue(). Sets new_revocation_ when the node becomes revoked.
  Result<std::string> revoke(LogIndex index, const RevokeCertificate& c) {
    auto existing = find_certificate(c.node_id);
    if (!existing.ok()) return existing.error();
    if (*existing && (*existing)->revocation) {
      return revoke_result((*existing)->revocation->revoked_at, /*already=*/true);
    }
    Stmt& s = cert_revoke_;
    bind_text(s.get(), 1, c.node_id);
    sqlite3_bind_int64(s.get(), 2, c.revoked_at);
    bind_text(s.get(), 3, c.reason);
    bind_u64(s.get(), 4, index.get());
    if (Status st = step_done(s, "revoke certificate"); !st.ok()) return st.error();
    new_revocation_.emplace(c.node_id, Revocation{c.revoked_at, c.reason, index});
    return revoke_result(c.revoked_at, /*already=*/false);
  }

  // REQUIRES: mu_ held, inside a write transaction.
  Status replace_everything(LogIndex index, const SnapshotData& data) {
    if (Status st = exec("DELETE FROM tasks; DELETE FROM segments; DELETE FROM kv; "
                         "DELETE FROM certificates; DELETE FROM results;");
        !st.ok()) {
      return st;
    }
    for (const TaskRecord& t : data.tasks) {
      Stmt& s = restore_task_;
      bind_text(s.get(), 1, t.task_id.get());
      bind_text(s.get(), 2, t.url);
      if (t.digest) bind_text(s.get(), 3, *t.digest);
      sqlite3_bind_int64(s.get(), 4, t.created_at);
      sqlite3_bind_int(s.get(), 5, static_cast<int>(t.state));
      bind_text(s.get(), 6, t.seeder);
      sqlite3_bind_int64(s.get(), 7, t.size);
      bind_text(s.get(), 8, t.sha256);
      bind_text(s.get(), 10, t.seed_ip);
      sqlite3_bind_int64(s.get(), 11, t.seed_port);
      if (t.error) {
        bind_text(s.get(), 12, t.error->code);
        bind_text(s.get(), 13, t.error->message);
      }
      bind_u64(s.get(), 14, t.updated_index.get());
      sqlite3_bind_int64(s.get(), 15, t.segment_size);
      bind_u64(s.get(), 16, t.lease_epoch.get());
      if (Status st = step_done(s, "restore task"); !st.ok()) return st;
      for (const SegmentRecord& seg : t.segments) {
        Stmt& g = seg_insert_;
        bind_text(g.get(), 1, t.task_id.get());
        sqlite3_bind_int64(g.get(), 2, seg.index);
        sqlite3_bind_int64(g.get(), 3, seg.offset);
        sqlite3_bind_int64(g.get(), 4, seg.size);
        bind_blob(g.get(), 5, seg.metainfo);
        if (Status st = step_done(g, "restore segment"); !st.ok()) return st;
      }
    }
    for (const KvRecord& kv : data.kv) {
      Stmt& s = kv_insert_;
      bind_text(s.get(), 1, kv.key);
      bind_blob(s.get(), 2, kv.value);
      bind_u64(s.get(), 3, kv.create_index);
      bind_u64(s.get(), 4, kv.modify_index);
      if (Status st = step_done(s, "restore kv"); !st.ok()) return st;
    }
    for (const CertificateRecord& c : data.certificates) {
      Stmt& s = cert_restore_;
      bind_text(s.get(), 1, c.node_id);
      bind_text(s.get(), 2, c.role);
      sqlite3_bind_int64(s.get(), 3, c.not_before);
      sqlite3_bind_int64(s.get(), 4, c.not_after);
      bind_u64(s.get(), 5, c.issued_index.get());
      sqlite3_bind_int(s.get(), 6, c.revocation ? 1 : 0);
      sqlite3_bind_int64(s.get(), 7, c.revocation ? c.revocation->revoked_at : 0);
      bind_text(s.get(), 8, c.revocation ? c.revocation->reason : std::string());
      bind_u64(s.get(), 9, c.revocation ? c.revocation->index.get() : 0);
      if (Status st = step_done(s, "restore certificate"); !st.ok()) return st;
    }
    for (const ResultRecord& r : data.results) {
      Stmt& s = result_insert_;
      bind_text(s.get(), 1, r.client_id);
      bind_u64(s.get(), 2, r.seq);
      bind_u64(s.get(), 3, r.index.get());
      sqlite3_bind_int(s.get(), 4, r.error ? 0 : 1);
      bind_text(s.get(), 5, r.error ? r.error->code : r.result);
      bind_text(s.get(), 6, r.error ? r.error->message : std::string());
      if (Status st = step_done(s, "restore result"); !st.ok()) return st;
    }
    return write_applied(index.get());
  }

  // Everything in one read transaction: the tables and applied_index of one moment.
  Result<SnapshotData> read_one_moment() const {
    std::lock_guard lock(mu_);
    if (Status st = exec("BEGIN;"); !st.ok()) return st.error();
    auto data = read_everything();
    (void)exec("COMMIT;");
    return data;
  }

  // REQUIRES: mu_ held.
  Result<SnapshotData> read_everything() const {
    SnapshotData data;
    auto applied = read_applied();
    if (!applied.ok()) return applied.error();
    data.applied_index = LogIndex(*applied);
    auto tasks = read_tasks(all_tasks_);
    if (!tasks.ok()) return tasks.error();
    data.tasks = std::move(*tasks);
    auto kv = read_kv(kv_list_all_);
    if (!kv.ok()) return kv.error();
    data.kv = std::move(*kv);
    auto certificates = read_certificates(cert_all_);
    if (!certificates.ok()) return certificates.error();
    data.certificates = std::move(*certificates);
    Stmt& s = result_all_;
    ResetGuard guard(s);
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) data.results.push_back(read_result(s.get()));
    if (rc != SQLITE_DONE) return storage_error("read results");
    // Sorted here, not in SQL: seq is a uint64 stored as a signed SQLite integer.
    std::sort(data.results.begin(), data.results.end(),
              [](const ResultRecord& a, const ResultRecord& b) {
                return a.client_id != b.client_id ? a.client_id < b.client_id : a.seq < b.seq;
              });
    return data;
  }

  // REQUIRES: mu_ held.
  Result<std::optional<ResultRecord>> find_result(const std::string& client_id,
                                                  uint64_t seq) const {
    Stmt& s = result_get_;
    ResetGuard guard(s);
    bind_text(s.get(), 1, client_id);
    bind_u64(s.get(), 2, seq);
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) return std::optional<ResultRecord>(read_result(s.get()));
    if (rc != SQLITE_DONE) return storage_error("read result");
    return std::optional<ResultRecord>();
  }

  static Result<std::string> outcome_of(const ResultRecord& r) {
    if (r.error) return *r.error;
    return r.result;
  }

  static ResultRecord read_result(sqlite3_stmt* s) {
    ResultRecord r;
    r.client_id = column_text(s, 0);
    r.seq = column_u64(s, 1);
    r.index = LogIndex(column_u64(s, 2));
    if (sqlite3_column_int(s, 3) != 0) {
      r.result = column_text(s, 4);
    } else {
      r.error = make_error(column_text(s, 4), column_text(s, 5));
    }
    return r;
  }

  // REQUIRES: mu_ held.
  Result<std::optional<TaskRecord>> find_task(const TaskId& task) const {
    Stmt& s = get_task_;
    ResetGuard guard(s);
    bind_text(s.get(), 1, task.get());
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_DONE) return std::optional<TaskRecord>();
    if (rc != SQLITE_ROW) return storage_error("read task");
    TaskRecord t = read_task(s.get());
    if (Status st = read_segments(t); !st.ok()) return st.error();
    return std::optional<TaskRecord>(std::move(t));
  }

  // REQUIRES: mu_ held. Fills t.segments.
  Status read_segments(TaskRecord& t) const {
    Stmt& s = seg_list_;
    ResetGuard guard(s);
    bind_text(s.get(), 1, t.task_id.get());
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      t.segments.push_back(
          SegmentRecord{sqlite3_column_int64(s.get(), 0), sqlite3_column_int64(s.get(), 1),
                        sqlite3_column_int64(s.get(), 2), column_blob(s.get(), 3)});
    }
    if (rc != SQLITE_DONE) return storage_error("read segments");
    return {};
  }

  // REQUIRES: mu_ held; `s` selects kTaskColumns with its parameters bound.
  Result<std::vector<TaskRecord>> read_tasks(Stmt& s) const {
    ResetGuard guard(s);
    std::vector<TaskRecord> out;
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) out.push_back(read_task(s.get()));
    if (rc != SQLITE_DONE) return storage_error("list tasks");
    s.reset();
    for (TaskRecord& t : out) {
      if (Status st = read_segments(t); !st.ok()) return st.error();
    }
    return out;
  }

  static TaskRecord read_task(sqlite3_stmt* s) {
    TaskRecord r;
    r.task_id = TaskId(column_text(s, 0));
    r.url = column_text(s, 1);
    if (sqlite3_column_type(s, 2) != SQLITE_NULL) r.digest = column_text(s, 2);
    r.created_at = sqlite3_column_int64(s, 3);
    int state = sqlite3_column_int(s, 4);
    r.state = state == 1   ? TaskState::kReady
              : state == 2 ? TaskState::kFailed
                           : TaskState::kFetching;
    r.seeder = column_text(s, 5);
    r.size = sqlite3_column_int64(s, 6);
    r.sha256 = column_text(s, 7);
    r.seed_ip = column_text(s, 9);
    r.seed_port = sqlite3_column_int64(s, 10);
    if (sqlite3_column_type(s, 11) != SQLITE_NULL) {
      r.error = make_error(column_text(s, 11), column_text(s, 12));
    }
    r.updated_index = LogIndex(column_u64(s, 13));
    r.segment_size = sqlite3_column_int64(s, 14);
    r.lease_epoch = LogIndex(column_u64(s, 15));
    return r;
  }

  // REQUIRES: mu_ held.
  Result<std::optional<KvRecord>> find_kv(const std::string& key) const {
    Stmt& s = kv_get_;
    ResetGuard guard(s);
    bind_text(s.get(), 1, key);
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) return std::optional<KvRecord>(read_kv_row(s.get()));
    if (rc != SQLITE_DONE) return storage_error("read kv");
    return std::optional<KvRecord>();
  }

  // REQUIRES: mu_ held; `s` selects the kv columns with its parameters bound.
  Result<std::vector<KvRecord>> read_kv(Stmt& s) const {
    ResetGuard guard(s);
    std::vector<KvRecord> out;
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) out.push_back(read_kv_row(s.get()));
    if (rc != SQLITE_DONE) return storage_error("list kv");
    return out;
  }

  static KvRecord read_kv_row(sqlite3_stmt* s) {
    return KvRecord{column_text(s, 0), column_blob(s, 1), column_u64(s, 2), column_u64(s, 3)};
  }

  // REQUIRES: mu_ held.
  Result<std::optional<CertificateRecord>> find_certificate(const std::string& node) const {
    Stmt& s = cert_get_;
    ResetGuard guard(s);
    bind_text(s.get(), 1, node);
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) return std::optional<CertificateRecord>(read_certificate_row(s.get()));
    if (rc != SQLITE_DONE) return storage_error("read certificate");
    return std::optional<CertificateRecord>();
  }

  // REQUIRES: mu_ held; `s` selects kCertificateColumns.
  Result<std::vector<CertificateRecord>> read_certificates(Stmt& s) const {
    ResetGuard guard(s);
    std::vector<CertificateRecord> out;
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) out.push_back(read_certificate_row(s.get()));
    if (rc != SQLITE_DONE) return storage_error("list certificates");
    return out;
  }

  // REQUIRES: mu_ held (or the object not yet shared, in open()).
  Result<std::map<std::string, Revocation>> read_revoked() const {
    auto rows = read_certificates(cert_revoked_);
    if (!rows.ok()) return rows.error();
    std::map<std::string, Revocation> out;
    for (CertificateRecord& c : *rows) {
      if (c.revocation) out.emplace(std::move(c.node_id), std::move(*c.revocation));
    }
    return out;
  }

  static CertificateRecord read_certificate_row(sqlite3_stmt* s) {
    CertificateRecord c;
    c.node_id = column_text(s, 0);
    c.role = column_text(s, 1);
    c.not_before = sqlite3_column_int64(s, 2);
    c.not_after = sqlite3_column_int64(s, 3);
    c.issued_index = LogIndex(column_u64(s, 4));
    if (sqlite3_column_int(s, 5) != 0) {
      c.revocation =
          Revocation{sqlite3_column_int64(s, 6), column_text(s, 7), LogIndex(column_u64(s, 8))};
    }
    return c;
  }

  // REQUIRES: mu_ held.
  Result<uint64_t> read_applied() const {
    Stmt& s = get_meta_;
    ResetGuard guard(s);
    if (sqlite3_step(s.get()) != SQLITE_ROW) return storage_error("read applied_index");
    return column_u64(s.get(), 0);
  }

  // REQUIRES: mu_ held, inside a write transaction.
  Status write_applied(uint64_t index) {
    Stmt& s = set_meta_;
    bind_u64(s.get(), 1, index);
    return step_done(s, "store applied_index");
  }

  // Creates schema 3 in a new file, adds the certificates table to a schema-2 file; refuses
  // files of any other schema.
  Status ensure_schema(const std::string& path) {
    auto version = query_int("PRAGMA user_version;");
    if (!version.ok()) return version.error();
    if (*version == kSchemaVersion) return {};
    if (*version == 3) return create_tables(kMigrateTo4);
    if (*version == 2) return create_tables(std::string(kCertificatesTable) + kMigrateTo4);
    if (*version != 0) {
      return make_error(kErrStorage, "tracker db " + path + ": unknown schema version " +
                                         std::to_string(*version));
    }
    auto tables = query_int("SELECT count(*) FROM sqlite_master;");
    if (!tables.ok()) return tables.error();
    if (*tables != 0) {
      return make_error(kErrStorage, "tracker db " + path +
                                         ": written by the pre-Raft tracker (schema 1), which "
                                         "is not migrated; remove the file");
    }
    return create_tables(std::string(kSchema) + kCertificatesTable + kMigrateTo4);
  }

  // Runs `sql` and sets user_version to kSchemaVersion, in one transaction.
  Status create_tables(const std::string& sql) {
    if (Status st = exec("BEGIN IMMEDIATE;"); !st.ok()) return st;
    const std::string all = sql + "PRAGMA user_version = " + std::to_string(kSchemaVersion) + ";";
    Status st = exec(all.c_str());
    if (st.ok()) st = exec("COMMIT;");
    if (!st.ok()) (void)exec("ROLLBACK;");
    return st;
  }

  Result<int64_t> query_int(const char* sql) {
    Stmt s;
    if (s.prepare(db_, sql) != SQLITE_OK) return storage_error(sql);
    if (sqlite3_step(s.get()) != SQLITE_ROW) return storage_error(sql);
    return sqlite3_column_int64(s.get(), 0);
  }

  Status step_done(Stmt& s, const char* what) const {
    int rc = sqlite3_step(s.get());
    s.reset();
    if (rc != SQLITE_DONE) return storage_error(what);
    return {};
  }

  Status exec(const char* sql) const {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err ? err : "unknown error";
      sqlite3_free(err);
      return make_error(kErrStorage, std::string("tracker db: ") + msg);
    }
    return {};
  }

  Error storage_error(const std::string& what) const {
    return make_error(kErrStorage, "tracker db: " + what + ": " +
                                       (db_ ? sqlite3_errmsg(db_) : "cannot allocate"));
  }

  // Declared before the statements so it closes after they are finalised.
  struct Connection {
    sqlite3* p = nullptr;
    ~Connection() { sqlite3_close(p); }
  };
  std::string path_;
  Connection conn_;
  sqlite3*& db_ = conn_.p;
  mutable std::mutex mu_;
  uint64_t applied_ = 0;  // guarded by mu_; equals meta.applied_index
  // Set by revoke() inside an apply's transaction, moved into revoked_ after its COMMIT.
  // Guarded by mu_.
  std::optional<std::pair<std::string, Revocation>> new_revocation_;
  // The revoked rows of the certificates table, as committed. Lock order: mu_ then
  // revoked_mu_; readers of revoked_ take only revoked_mu_.
  mutable std::mutex revoked_mu_;
  std::map<std::string, Revocation> revoked_;  // guarded by revoked_mu_
  mutable Stmt get_meta_, set_meta_, get_task_, list_tasks_, all_tasks_, insert_task_,
      restore_task_, set_ready_, set_failed_, set_restarted_, kv_get_, kv_list_all_, kv_list_from_,
      kv_list_range_, kv_count_, kv_insert_, kv_update_, kv_delete_, result_get_, result_all_,
      result_insert_, result_prune_, cert_get_, cert_all_, cert_revoked_, cert_issue_, cert_revoke_,
      cert_restore_, seg_list_, seg_insert_, seg_clear_, set_published_, set_renewed_,
      set_taken_over_;
};

}  // namespace

Result<std::unique_ptr<TrackerStateMachine>> open_sqlite_tracker(const std::string& path) {
  auto tracker = std::make_unique<SqliteTracker>();
  if (Status st = tracker->open(path); !st.ok()) return st.error();
  return std::unique_ptr<TrackerStateMachine>(std::move(tracker));
}

}  // namespace starling::tracker

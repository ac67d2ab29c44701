// SQLite implementation of TrackerStateMachine. One connection, guarded by a mutex (the
// tracker is the only user of its file; calls are short).
#include <sqlite3.h>

#include <mutex>

#include "supernode/tracker/state_machine.h"

namespace starling::tracker {

const char* task_state_name(TaskState state) {
  switch (state) {
    case TaskState::kFetching:
      return "fetching";
    case TaskState::kReady:
      return "ready";
    case TaskState::kFailed:
      return "failed";
  }
  return "unknown";
}

namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('applied_index', 0);
CREATE TABLE IF NOT EXISTS tasks (
  task_id       TEXT PRIMARY KEY,
  url           TEXT NOT NULL,
  digest        TEXT,
  created_at    INTEGER NOT NULL,
  state         INTEGER NOT NULL,
  size          INTEGER NOT NULL DEFAULT 0,
  sha256        TEXT NOT NULL DEFAULT '',
  metainfo      BLOB,
  error_code    TEXT,
  error_message TEXT,
  updated_index INTEGER NOT NULL
);
)sql";

constexpr char kTaskColumns[] =
    "task_id, url, digest, created_at, state, size, sha256, metainfo, error_code, "
    "error_message, updated_index";

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

std::string column_text(sqlite3_stmt* s, int col) {
  const unsigned char* p = sqlite3_column_text(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n)) : std::string();
}

int bind_text(sqlite3_stmt* s, int col, const std::string& v) {
  return sqlite3_bind_text(s, col, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

class SqliteTracker final : public TrackerStateMachine {
 public:
  Status open(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      return storage_error("open " + path);
    }
    sqlite3_busy_timeout(db_, 5000);
    for (const char* pragma : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;"}) {
      if (Status st = exec(pragma); !st.ok()) return st;
    }
    if (Status st = exec(kSchema); !st.ok()) return st;
    std::string select = std::string("SELECT ") + kTaskColumns + " FROM tasks";
    struct {
      Stmt* stmt;
      std::string sql;
    } stmts[] = {
        {&get_meta_, "SELECT value FROM meta WHERE key = 'applied_index'"},
        {&set_meta_, "UPDATE meta SET value = ?1 WHERE key = 'applied_index'"},
        {&get_task_, select + " WHERE task_id = ?1"},
        {&list_tasks_, select + " ORDER BY created_at, task_id"},
        {&insert_task_,
         "INSERT INTO tasks (task_id, url, digest, created_at, state, updated_index) "
         "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
        {&set_ready_,
         "UPDATE tasks SET state = ?2, size = ?3, sha256 = ?4, metainfo = ?5, error_code = NULL, "
         "error_message = NULL, updated_index = ?6 WHERE task_id = ?1"},
        {&set_failed_,
         "UPDATE tasks SET state = ?2, error_code = ?3, error_message = ?4, updated_index = ?5 "
         "WHERE task_id = ?1"},
        {&set_restarted_,
         "UPDATE tasks SET state = ?2, error_code = NULL, error_message = NULL, size = 0, "
         "sha256 = '', metainfo = NULL, updated_index = ?3 WHERE task_id = ?1"},
    };
    for (auto& s : stmts) {
      if (s.stmt->prepare(db_, s.sql.c_str()) != SQLITE_OK) return storage_error("prepare");
    }
    Stmt& q = get_meta_;
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_ROW) {
      q.reset();
      return storage_error("read applied_index");
    }
    applied_ = static_cast<uint64_t>(sqlite3_column_int64(q.get(), 0));
    q.reset();
    return {};
  }

  Status apply(LogIndex index, const Command& command) override {
    std::lock_guard lock(mu_);
    if (index.get() <= applied_) return {};
    if (Status st = exec("BEGIN IMMEDIATE;"); !st.ok()) return st;
    Status effect = apply_effect(index, command);
    bool rejected = !effect.ok() && effect.error().code != kErrStorage;
    if (!effect.ok() && !rejected) {
      (void)exec("ROLLBACK;");
      return effect;
    }
    // A rejected command consumes its index too: store it with no other effect.
    Stmt& s = set_meta_;
    sqlite3_bind_int64(s.get(), 1, static_cast<sqlite3_int64>(index.get()));
    int rc = sqlite3_step(s.get());
    s.reset();
    if (rc != SQLITE_DONE) {
      (void)exec("ROLLBACK;");
      return storage_error("store applied_index");
    }
    if (Status st = exec("COMMIT;"); !st.ok()) {
      (void)exec("ROLLBACK;");
      return st;
    }
    applied_ = index.get();
    return effect;
  }

  LogIndex applied_index() const override {
    std::lock_guard lock(mu_);
    return LogIndex(applied_);
  }

  Result<std::optional<TaskRecord>> get_task(const TaskId& task) const override {
    std::lock_guard lock(mu_);
    return find(task);
  }

  Result<std::vector<TaskRecord>> list_tasks() const override {
    std::lock_guard lock(mu_);
    std::vector<TaskRecord> out;
    Stmt& s = list_tasks_;
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) out.push_back(read_row(s.get()));
    s.reset();
    if (rc != SQLITE_DONE) return storage_error("list tasks");
    return out;
  }

 private:
  // REQUIRES: mu_ held, inside a transaction.
  Status apply_effect(LogIndex index, const Command& command) {
    const TaskId& id =
        std::visit([](const auto& c) -> const TaskId& { return c.task_id; }, command);
    auto existing = find(id);
    if (!existing.ok()) return existing.error();
    const std::optional<TaskRecord>& task = *existing;
    auto idx = static_cast<sqlite3_int64>(index.get());

    if (const auto* c = std::get_if<CreateTask>(&command)) {
      if (task) return make_error(kErrTaskExists, "task " + id.get() + " already exists");
      Stmt& s = insert_task_;
      bind_text(s.get(), 1, id.get());
      bind_text(s.get(), 2, c->url);
      if (c->digest) bind_text(s.get(), 3, *c->digest);
      sqlite3_bind_int64(s.get(), 4, c->created_at);
      sqlite3_bind_int(s.get(), 5, static_cast<int>(TaskState::kFetching));
      sqlite3_bind_int64(s.get(), 6, idx);
      return step_done(s, "insert task");
    }
    if (!task) return make_error(kErrTaskUnknown, "unknown task " + id.get());
    auto transition_error = [&](const char* what) {
      return make_error(kErrBadTransition, std::string(what) + ": task " + id.get() + " is " +
                                               task_state_name(task->state));
    };
    if (const auto* c = std::get_if<MarkTaskReady>(&command)) {
      if (task->state != TaskState::kFetching) return transition_error("MarkTaskReady");
      Stmt& s = set_ready_;
      bind_text(s.get(), 1, id.get());
      sqlite3_bind_int(s.get(), 2, static_cast<int>(TaskState::kReady));
      sqlite3_bind_int64(s.get(), 3, c->size);
      bind_text(s.get(), 4, c->sha256);
      sqlite3_bind_blob(s.get(), 5, c->metainfo.data(), static_cast<int>(c->metainfo.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_int64(s.get(), 6, idx);
      return step_done(s, "mark task ready");
    }
    if (const auto* c = std::get_if<MarkTaskFailed>(&command)) {
      if (task->state == TaskState::kFailed) return transition_error("MarkTaskFailed");
      Stmt& s = set_failed_;
      bind_text(s.get(), 1, id.get());
      sqlite3_bind_int(s.get(), 2, static_cast<int>(TaskState::kFailed));
      bind_text(s.get(), 3, c->code);
      bind_text(s.get(), 4, c->message);
      sqlite3_bind_int64(s.get(), 5, idx);
      return step_done(s, "mark task failed");
    }
    // RestartTask
    if (task->state != TaskState::kFailed) return transition_error("RestartTask");
    Stmt& s = set_restarted_;
    bind_text(s.get(), 1, id.get());
    sqlite3_bind_int(s.get(), 2, static_cast<int>(TaskState::kFetching));
    sqlite3_bind_int64(s.get(), 3, idx);
    return step_done(s, "restart task");
  }

  // REQUIRES: mu_ held.
  Result<std::optional<TaskRecord>> find(const TaskId& task) const {
    Stmt& s = get_task_;
    bind_text(s.get(), 1, task.get());
    int rc = sqlite3_step(s.get());
    std::optional<TaskRecord> out;
    if (rc == SQLITE_ROW) out = read_row(s.get());
    s.reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return storage_error("read task");
    return out;
  }

  static TaskRecord read_row(sqlite3_stmt* s) {
    TaskRecord r;
    r.task_id = TaskId(column_text(s, 0));
    r.url = column_text(s, 1);
    if (sqlite3_column_type(s, 2) != SQLITE_NULL) r.digest = column_text(s, 2);
    r.created_at = sqlite3_column_int64(s, 3);
    int state = sqlite3_column_int(s, 4);
    r.state = state == 1   ? TaskState::kReady
              : state == 2 ? TaskState::kFailed
                           : TaskState::kFetching;
    r.size = sqlite3_column_int64(s, 5);
    r.sha256 = column_text(s, 6);
    if (const void* blob = sqlite3_column_blob(s, 7)) {
      r.metainfo.assign(static_cast<const char*>(blob),
                        static_cast<size_t>(sqlite3_column_bytes(s, 7)));
    }
    if (sqlite3_column_type(s, 8) != SQLITE_NULL) {
      r.error = make_error(column_text(s, 8), column_text(s, 9));
    }
    r.updated_index = LogIndex(static_cast<uint64_t>(sqlite3_column_int64(s, 10)));
    return r;
  }

  Status step_done(Stmt& s, const char* what) {
    int rc = sqlite3_step(s.get());
    s.reset();
    if (rc != SQLITE_DONE) return storage_error(what);
    return {};
  }

  Status exec(const char* sql) {
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
  Connection conn_;
  sqlite3*& db_ = conn_.p;
  mutable std::mutex mu_;
  uint64_t applied_ = 0;  // guarded by mu_; equals meta.applied_index
  mutable Stmt get_meta_, set_meta_, get_task_, list_tasks_, insert_task_, set_ready_, set_failed_,
      set_restarted_;
};

}  // namespace

Result<std::unique_ptr<TrackerStateMachine>> open_sqlite_tracker(const std::string& path) {
  auto tracker = std::make_unique<SqliteTracker>();
  if (Status st = tracker->open(path); !st.ok()) return st.error();
  return std::unique_ptr<TrackerStateMachine>(std::move(tracker));
}

}  // namespace starling::tracker

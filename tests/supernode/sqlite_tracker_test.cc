#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "supernode/tracker/command.h"
#include "supernode/tracker/log.h"
#include "supernode/tracker/state_machine.h"

namespace starling::tracker {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "tracker_test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

TaskId task(char c) { return TaskId(std::string(64, c)); }

std::unique_ptr<TrackerStateMachine> open(const std::string& path) {
  auto t = open_sqlite_tracker(path);
  EXPECT_TRUE(t.ok()) << t.error().message;
  return std::move(t).value();
}

TEST(SqliteTracker, AppliesTheTaskLifecycle) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  EXPECT_EQ(t->applied_index(), LogIndex(0));
  ASSERT_TRUE(t->apply(LogIndex(1), CreateTask{task('a'), "http://h/f", std::nullopt, 100}).ok());
  auto rec = t->get_task(task('a'));
  ASSERT_TRUE(rec.ok());
  ASSERT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  EXPECT_EQ((*rec)->url, "http://h/f");
  EXPECT_EQ((*rec)->created_at, 100);
  EXPECT_FALSE((*rec)->digest.has_value());

  ASSERT_TRUE(t->apply(LogIndex(2), MarkTaskFailed{task('a'), "origin.http_status", "404"}).ok());
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFailed);
  ASSERT_TRUE((*rec)->error.has_value());
  EXPECT_EQ((*rec)->error->code, "origin.http_status");
  EXPECT_EQ((*rec)->error->message, "404");

  ASSERT_TRUE(t->apply(LogIndex(3), RestartTask{task('a')}).ok());
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  EXPECT_FALSE((*rec)->error.has_value());

  std::string metainfo(
      "d4:infod\0\xff"
      "ee",
      12);
  ASSERT_TRUE(
      t->apply(LogIndex(4), MarkTaskReady{task('a'), 42, std::string(64, 'c'), metainfo}).ok());
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kReady);
  EXPECT_EQ((*rec)->size, 42);
  EXPECT_EQ((*rec)->sha256, std::string(64, 'c'));
  EXPECT_EQ((*rec)->metainfo, metainfo);
  EXPECT_EQ((*rec)->updated_index, LogIndex(4));
  EXPECT_EQ(t->applied_index(), LogIndex(4));

  auto missing = t->get_task(task('b'));
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST(SqliteTracker, ReapplyingAnIndexIsANoOp) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  CreateTask create{task('a'), "http://h/f", std::nullopt, 1};
  ASSERT_TRUE(t->apply(LogIndex(1), create).ok());
  ASSERT_TRUE(t->apply(LogIndex(2), MarkTaskFailed{task('a'), "x", "y"}).ok());
  // Replaying the log from the start (as after a crash) changes nothing and reports OK.
  EXPECT_TRUE(t->apply(LogIndex(1), create).ok());
  EXPECT_TRUE(t->apply(LogIndex(2), MarkTaskFailed{task('a'), "x", "y"}).ok());
  EXPECT_TRUE(t->apply(LogIndex(2), RestartTask{task('a')}).ok());
  auto rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFailed);
  EXPECT_EQ(t->applied_index(), LogIndex(2));
  auto all = t->list_tasks();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

TEST(SqliteTracker, RejectedCommandsConsumeTheirIndexAndChangeNothing) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  struct Case {
    Command command;
    const char* code;
  };
  ASSERT_TRUE(t->apply(LogIndex(1), CreateTask{task('a'), "http://h/f", std::nullopt, 1}).ok());
  const Case cases[] = {
      {CreateTask{task('a'), "http://other", std::nullopt, 2}, kErrTaskExists},
      {RestartTask{task('a')}, kErrBadTransition},
      {MarkTaskReady{task('b'), 1, "", ""}, kErrTaskUnknown},
      {MarkTaskFailed{task('b'), "c", "m"}, kErrTaskUnknown},
      {RestartTask{task('b')}, kErrTaskUnknown},
  };
  uint64_t index = 1;
  for (const Case& c : cases) {
    Status st = t->apply(LogIndex(++index), c.command);
    ASSERT_FALSE(st.ok()) << command_name(c.command);
    EXPECT_EQ(st.error().code, c.code) << command_name(c.command);
    EXPECT_EQ(t->applied_index(), LogIndex(index));
  }
  auto rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->url, "http://h/f");
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  EXPECT_EQ((*rec)->updated_index, LogIndex(1));
  // Ready tasks cannot become ready again; failed tasks cannot fail again.
  ASSERT_TRUE(t->apply(LogIndex(++index), MarkTaskReady{task('a'), 1, "s", "m"}).ok());
  EXPECT_EQ(t->apply(LogIndex(++index), MarkTaskReady{task('a'), 2, "s", "m"}).error().code,
            kErrBadTransition);
  ASSERT_TRUE(t->apply(LogIndex(++index), MarkTaskFailed{task('a'), "lost", "content gone"}).ok());
  EXPECT_EQ(t->apply(LogIndex(++index), MarkTaskFailed{task('a'), "c", "m"}).error().code,
            kErrBadTransition);
}

TEST(SqliteTracker, StateAndAppliedIndexSurviveReopen) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  {
    auto t = open(path);
    ASSERT_TRUE(t->apply(LogIndex(5),
                         CreateTask{task('a'), "http://h/a", "sha256:" + std::string(64, '1'), 7})
                    .ok());
    ASSERT_TRUE(t->apply(LogIndex(6), CreateTask{task('b'), "http://h/b", std::nullopt, 8}).ok());
    ASSERT_TRUE(t->apply(LogIndex(9), MarkTaskReady{task('a'), 3, "abc", "meta"}).ok());
  }
  auto t = open(path);
  EXPECT_EQ(t->applied_index(), LogIndex(9));
  auto all = t->list_tasks();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].task_id, task('a'));
  EXPECT_EQ((*all)[0].state, TaskState::kReady);
  EXPECT_EQ((*all)[0].metainfo, "meta");
  EXPECT_EQ((*all)[0].digest, "sha256:" + std::string(64, '1'));
  EXPECT_EQ((*all)[1].task_id, task('b'));
  EXPECT_EQ((*all)[1].state, TaskState::kFetching);
  // The persisted index still guards against replays after the reopen.
  EXPECT_TRUE(t->apply(LogIndex(6), MarkTaskFailed{task('b'), "c", "m"}).ok());
  EXPECT_EQ((*t->get_task(task('b')))->state, TaskState::kFetching);
}

TEST(SqliteTracker, AppliedIndexIsCommittedWithTheEffect) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  auto t = open(path);
  ASSERT_TRUE(t->apply(LogIndex(1), CreateTask{task('a'), "http://h/a", std::nullopt, 1}).ok());
  // A second connection sees the index and the row together, never one without the other.
  auto other = open(path);
  EXPECT_EQ(other->applied_index(), LogIndex(1));
  auto rec = other->get_task(task('a'));
  ASSERT_TRUE(rec.ok());
  EXPECT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->updated_index, LogIndex(1));
}

TEST(SqliteTracker, OpenFailsCleanlyOnABadPath) {
  TempDir dir;
  auto t = open_sqlite_tracker(dir.file("missing/dir/tracker.db"));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, kErrStorage);
  // A file that is not a database.
  std::string junk = dir.file("junk.db");
  FILE* f = fopen(junk.c_str(), "w");
  fputs("this is not an sqlite database, not at all, not even close", f);
  fclose(f);
  auto j = open_sqlite_tracker(junk);
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.error().code, kErrStorage);
}

TEST(LocalLog, AssignsConsecutiveIndexesAndContinuesAfterReopen) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  {
    auto t = open(path);
    LocalLog log(*t);
    auto i1 = log.propose(CreateTask{task('a'), "http://h/a", std::nullopt, 1});
    ASSERT_TRUE(i1.ok());
    EXPECT_EQ(*i1, LogIndex(1));
    auto dup = log.propose(CreateTask{task('a'), "http://h/a", std::nullopt, 1});
    ASSERT_FALSE(dup.ok());
    EXPECT_EQ(dup.error().code, kErrTaskExists);
    auto i3 = log.propose(MarkTaskFailed{task('a'), "c", "m"});
    ASSERT_TRUE(i3.ok());
    EXPECT_EQ(*i3, LogIndex(3));  // the rejected proposal consumed index 2
  }
  auto t = open(path);
  LocalLog log(*t);
  auto i4 = log.propose(RestartTask{task('a')});
  ASSERT_TRUE(i4.ok());
  EXPECT_EQ(*i4, LogIndex(4));
  EXPECT_EQ((*t->get_task(task('a')))->state, TaskState::kFetching);
}

}  // namespace
}  // namespace starling::tracker

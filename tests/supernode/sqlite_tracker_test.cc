#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "supernode/tracker/command.h"
#include "supernode/tracker/snapshot_codec.h"
#include "supernode/tracker/state_machine.h"
#include "tests/temp_dir.h"

namespace starling::tracker {
namespace {

namespace fs = std::filesystem;

using starling::testing::TempDir;

TaskId task(char c) { return TaskId(std::string(64, c)); }
std::string node(char c) { return std::string(64, c); }
constexpr int64_t kSeg = 10;  // segment size of the test tasks

std::unique_ptr<TrackerStateMachine> open(const std::string& path) {
  auto t = open_sqlite_tracker(path);
  EXPECT_TRUE(t.ok()) << t.error().message;
  return std::move(t).value();
}

// A proposer: one client id, consecutive sequence numbers.
class Client {
 public:
  explicit Client(std::string id) : id_(std::move(id)) {}
  Proposal operator()(Command c) { return Proposal{id_, ++seq_, std::move(c)}; }

 private:
  std::string id_;
  uint64_t seq_ = 0;
};

// Everything a reader of a task can see, as one comparable string.
std::string describe(const TaskRecord& t) {
  std::string s = t.task_id.get() + "|" + t.url + "|" + (t.digest ? *t.digest : "<none>") + "|" +
                  std::to_string(t.created_at) + "|" + task_state_name(t.state) + "|" + t.seeder +
                  "|" + std::to_string(t.segment_size) + "|" + std::to_string(t.lease_epoch.get()) +
                  "|" + std::to_string(t.size) + "|" + t.sha256 + "|" + t.seed_ip + "|" +
                  std::to_string(t.seed_port) + "|" + std::to_string(t.updated_index.get());
  if (t.error) s += "|" + t.error->code + "|" + t.error->message;
  for (const SegmentRecord& g : t.segments) {
    s += "|seg " + std::to_string(g.index) + "@" + std::to_string(g.offset) + "+" +
         std::to_string(g.size) + ":" + g.metainfo;
  }
  return s;
}

std::vector<std::string> describe_all(const TrackerStateMachine& t) {
  auto tasks = t.list_tasks();
  EXPECT_TRUE(tasks.ok());
  std::vector<std::string> out;
  for (const TaskRecord& r : *tasks) out.push_back(describe(r));
  return out;
}

std::vector<KvRecord> all_kv(const TrackerStateMachine& t) {
  auto kv = t.kv_list("");
  EXPECT_TRUE(kv.ok());
  return *kv;
}

std::string snapshot_of(const TrackerStateMachine& t) {
  auto s = t.snapshot();
  EXPECT_TRUE(s.ok()) << s.error().message;
  return *s;
}

void expect_ok(const Result<std::string>& r, const std::string& json) {
  ASSERT_TRUE(r.ok()) << r.error().code << ": " << r.error().message;
  EXPECT_EQ(*r, json);
}

void expect_error(const Result<std::string>& r, const char* code) {
  ASSERT_FALSE(r.ok()) << "succeeded with " << *r;
  EXPECT_EQ(r.error().code, code) << r.error().message;
}

TEST(SqliteTracker, AppliesTheTaskLifecycle) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Client c("c1");
  EXPECT_EQ(t->applied_index(), LogIndex(0));
  expect_ok(t->apply(LogIndex(1),
                     c(CreateTask{task('a'), "http://h/f", std::nullopt, 100, node('1'), kSeg})),
            R"({"epoch":1})");
  auto rec = t->get_task(task('a'));
  ASSERT_TRUE(rec.ok());
  ASSERT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  EXPECT_EQ((*rec)->url, "http://h/f");
  EXPECT_EQ((*rec)->created_at, 100);
  EXPECT_EQ((*rec)->seeder, node('1'));
  EXPECT_FALSE((*rec)->digest.has_value());
  EXPECT_EQ((*rec)->segment_size, kSeg);
  EXPECT_EQ((*rec)->lease_epoch, LogIndex(1));
  EXPECT_TRUE((*rec)->segments.empty());

  expect_ok(t->apply(LogIndex(2),
                     c(MarkTaskFailed{task('a'), "origin.http_status", "404", std::nullopt})),
            "{}");
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFailed);
  ASSERT_TRUE((*rec)->error.has_value());
  EXPECT_EQ((*rec)->error->code, "origin.http_status");
  EXPECT_EQ((*rec)->error->message, "404");

  // A restart hands the task to another seeder.
  expect_ok(t->apply(LogIndex(3), c(RestartTask{task('a'), node('2')})), R"({"epoch":3})");
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  EXPECT_EQ((*rec)->seeder, node('2'));
  EXPECT_EQ((*rec)->lease_epoch, LogIndex(3));
  EXPECT_FALSE((*rec)->error.has_value());

  std::string metainfo(
      "d4:infod\0\xff"
      "ee",
      12);
  // Segments of 10 bytes: 10 + 10 + 2 = 22.
  expect_ok(t->apply(LogIndex(4),
                     c(PublishSegment{task('a'), 3, 0, 0, kSeg, metainfo, "192.0.2.7", 6881})),
            "{}");
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  ASSERT_EQ((*rec)->segments.size(), 1u);
  EXPECT_EQ((*rec)->segments[0], (SegmentRecord{0, 0, kSeg, metainfo}));
  EXPECT_EQ((*rec)->seed_ip, "192.0.2.7");
  EXPECT_EQ((*rec)->seed_port, 6881);
  expect_ok(
      t->apply(LogIndex(5), c(PublishSegment{task('a'), 3, 1, 10, kSeg, "m1", "192.0.2.7", 6881})),
      "{}");
  expect_ok(t->apply(LogIndex(6), c(RenewSeedLease{task('a'), 3})), "{}");
  EXPECT_EQ((*t->get_task(task('a')))->updated_index, LogIndex(6));
  expect_ok(
      t->apply(LogIndex(7), c(PublishSegment{task('a'), 3, 2, 20, 2, "m2", "192.0.2.7", 6881})),
      "{}");
  expect_ok(t->apply(LogIndex(8),
                     c(MarkTaskReady{task('a'), 3, 22, std::string(64, 'c'), "192.0.2.7", 6881})),
            "{}");
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kReady);
  EXPECT_EQ((*rec)->size, 22);
  EXPECT_EQ((*rec)->sha256, std::string(64, 'c'));
  ASSERT_EQ((*rec)->segments.size(), 3u);
  EXPECT_EQ((*rec)->segments[2], (SegmentRecord{2, 20, 2, "m2"}));
  EXPECT_EQ((*rec)->seed_ip, "192.0.2.7");
  EXPECT_EQ((*rec)->seed_port, 6881);
  EXPECT_EQ((*rec)->seeder, node('2'));
  EXPECT_EQ((*rec)->updated_index, LogIndex(8));
  EXPECT_EQ(t->applied_index(), LogIndex(8));

  // Ready -> failed (the seed lost it) -> restarted: the old endpoint and segments are gone.
  expect_ok(t->apply(LogIndex(9), c(MarkTaskFailed{task('a'), "seed.lost", "gone", std::nullopt})),
            "{}");
  expect_ok(t->apply(LogIndex(10), c(RestartTask{task('a'), node('3')})), R"({"epoch":10})");
  rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  EXPECT_EQ((*rec)->seeder, node('3'));
  EXPECT_EQ((*rec)->seed_ip, "");
  EXPECT_EQ((*rec)->seed_port, 0);
  EXPECT_TRUE((*rec)->segments.empty());
  EXPECT_EQ((*rec)->lease_epoch, LogIndex(10));

  auto missing = t->get_task(task('b'));
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST(SqliteTracker, RejectedCommandsConsumeTheirIndexAndChangeNothing) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Client c("c1");
  struct Case {
    Command command;
    const char* code;
  };
  ASSERT_TRUE(t->apply(LogIndex(1),
                       c(CreateTask{task('a'), "http://h/f", std::nullopt, 1, node('1'), kSeg}))
                  .ok());
  const Case cases[] = {
      {CreateTask{task('a'), "http://other", std::nullopt, 2, node('2'), kSeg}, kErrTaskExists},
      {RestartTask{task('a'), node('2')}, kErrBadTransition},
      {MarkTaskReady{task('b'), 1, 0, "", "", 0}, kErrTaskUnknown},
      {PublishSegment{task('b'), 1, 0, 0, 1, "m", "", 0}, kErrTaskUnknown},
      {RenewSeedLease{task('b'), 1}, kErrTaskUnknown},
      {TakeOverSeed{task('b'), 1, node('2'), "", 0}, kErrTaskUnknown},
      {MarkTaskFailed{task('b'), "c", "m", std::nullopt}, kErrTaskUnknown},
      {RestartTask{task('b'), node('2')}, kErrTaskUnknown},
      // Not valid (built in memory, never decoded): refused the same way on every replica.
      {CreateTask{task('c'), "u", std::nullopt, 1, "not-a-node", kSeg}, kErrBadCommand},
      {KvPut{"", "v", std::nullopt}, kErrBadCommand},
  };
  uint64_t index = 1;
  for (const Case& k : cases) {
    auto r = t->apply(LogIndex(++index), c(k.command));
    ASSERT_FALSE(r.ok()) << command_name(k.command);
    EXPECT_EQ(r.error().code, k.code) << command_name(k.command) << ": " << r.error().message;
    EXPECT_EQ(t->applied_index(), LogIndex(index));
  }
  auto rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->url, "http://h/f");
  EXPECT_EQ((*rec)->seeder, node('1'));
  EXPECT_EQ((*rec)->state, TaskState::kFetching);
  EXPECT_EQ((*rec)->updated_index, LogIndex(1));
  EXPECT_EQ(describe_all(*t).size(), 1u);
  EXPECT_EQ(*t->kv_count(), 0u);
  // Ready tasks cannot become ready again; failed tasks cannot fail again.
  ASSERT_TRUE(t->apply(LogIndex(++index), c(MarkTaskReady{task('a'), 1, 0, "s", "", 0})).ok());
  expect_error(t->apply(LogIndex(++index), c(MarkTaskReady{task('a'), 1, 0, "s", "", 0})),
               kErrBadTransition);
  expect_error(t->apply(LogIndex(++index), c(PublishSegment{task('a'), 1, 0, 0, 1, "m", "", 0})),
               kErrBadTransition);
  expect_error(t->apply(LogIndex(++index), c(RenewSeedLease{task('a'), 1})), kErrBadTransition);
  expect_error(t->apply(LogIndex(++index), c(TakeOverSeed{task('a'), 1, node('2'), "", 0})),
               kErrBadTransition);
  ASSERT_TRUE(
      t->apply(LogIndex(++index), c(MarkTaskFailed{task('a'), "lost", "gone", std::nullopt})).ok());
  expect_error(t->apply(LogIndex(++index), c(MarkTaskFailed{task('a'), "c", "m", std::nullopt})),
               kErrBadTransition);
  // A proposal whose client id is invalid is refused and consumes its index.
  expect_error(t->apply(LogIndex(++index), Proposal{"NOT HEX", 1, KvPut{"k", "v", std::nullopt}}),
               kErrBadCommand);
  EXPECT_EQ(t->applied_index(), LogIndex(index));
  EXPECT_EQ(*t->kv_count(), 0u);
}

TEST(SqliteTracker, SameClientAndSeqAppliesOnce) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Proposal put{"aa", 1, KvPut{"k", "v1", std::nullopt}};
  expect_ok(t->apply(LogIndex(1), put), R"({"index":1})");
  // The proposer timed out and proposed the same (client, seq) again; Raft committed both.
  Proposal retry = put;
  std::get<KvPut>(retry.command).value = "v2";  // even a different body has no effect
  expect_ok(t->apply(LogIndex(2), retry), R"({"index":1})");
  EXPECT_EQ(t->applied_index(), LogIndex(2));
  auto kv = t->kv_get("k");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->value, "v1");
  EXPECT_EQ((*kv)->modify_index, 1u);

  // Another client's seq 1 is a different proposal.
  expect_ok(t->apply(LogIndex(3), Proposal{"bb", 1, KvPut{"k", "v3", std::nullopt}}),
            R"({"index":3})");

  // A recorded rejection is returned again, even after the state changed so that the command
  // would now succeed: the retry must not take effect.
  Proposal cas_create{"aa", 2, KvPut{"k", "mine", 0}};
  auto first = t->apply(LogIndex(4), cas_create);
  expect_error(first, kErrCasFailed);
  expect_ok(t->apply(LogIndex(5), Proposal{"bb", 2, KvDelete{"k", std::nullopt}}),
            R"({"deleted":true})");
  auto again = t->apply(LogIndex(6), cas_create);
  expect_error(again, kErrCasFailed);
  EXPECT_EQ(again.error().message, first.error().message);
  EXPECT_FALSE(t->kv_get("k")->has_value());
  EXPECT_EQ(t->applied_index(), LogIndex(6));

  // Same for task commands: a retried RestartTask does not restart a task that failed again.
  Client c("cc");
  ASSERT_TRUE(
      t->apply(LogIndex(7), c(CreateTask{task('a'), "u", std::nullopt, 1, node('1'), kSeg})).ok());
  ASSERT_TRUE(t->apply(LogIndex(8), c(MarkTaskFailed{task('a'), "x", "y", std::nullopt})).ok());
  Proposal restart = c(RestartTask{task('a'), node('2')});
  expect_ok(t->apply(LogIndex(9), restart), R"({"epoch":9})");
  ASSERT_TRUE(t->apply(LogIndex(10), c(MarkTaskFailed{task('a'), "x2", "y2", std::nullopt})).ok());
  expect_ok(t->apply(LogIndex(11), restart), R"({"epoch":9})");
  auto rec = t->get_task(task('a'));
  EXPECT_EQ((*rec)->state, TaskState::kFailed);
  EXPECT_EQ((*rec)->updated_index, LogIndex(10));
  EXPECT_EQ(t->applied_index(), LogIndex(11));
}

TEST(SqliteTracker, ReplayAfterACrashIsANoOp) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  std::vector<Proposal> log;
  Client c("c1");
  log.push_back(c(CreateTask{task('a'), "http://h/a", std::nullopt, 1, node('1'), kSeg}));
  log.push_back(c(KvPut{"x", "1", std::nullopt}));
  log.push_back(c(CreateTask{task('b'), "http://h/b", std::nullopt, 2, node('1'), kSeg}));
  log.push_back(c(KvPut{"y", "2", 0}));
  log.push_back(c(MarkTaskFailed{task('a'), "c", "m", std::nullopt}));
  log.push_back(c(KvPut{"x", "3", 2}));  // index 6 -> {"index":6}
  log.push_back(c(CreateTask{task('a'), "u", std::nullopt, 3, node('2'), kSeg}));  // exists
  log.push_back(c(RestartTask{task('a'), node('2')}));
  log.push_back(c(KvDelete{"y", std::nullopt}));
  log.push_back(c(KvPut{"x", "4", 2}));  // stale cas
  std::vector<Result<std::string>> results;
  std::string before;
  {
    auto t = open(path);
    for (size_t i = 0; i < log.size(); ++i) results.push_back(t->apply(LogIndex(i + 1), log[i]));
    before = snapshot_of(*t);
  }
  // The process died after committing index 10 but before the driver recorded it: on restart
  // the driver replays the last entries.
  auto t = open(path);
  EXPECT_EQ(t->applied_index(), LogIndex(10));
  for (size_t i = 5; i < log.size(); ++i) {
    auto r = t->apply(LogIndex(i + 1), log[i]);
    ASSERT_EQ(r.ok(), results[i].ok()) << i;
    if (r.ok()) {
      EXPECT_EQ(*r, *results[i]) << i;
    } else {
      EXPECT_EQ(r.error().code, results[i].error().code) << i;
      EXPECT_EQ(r.error().message, results[i].error().message) << i;
    }
  }
  EXPECT_EQ(snapshot_of(*t), before);
  EXPECT_EQ(t->applied_index(), LogIndex(10));
  expect_ok(results[5], R"({"index":6})");
  expect_error(results[6], kErrTaskExists);
  expect_error(results[9], kErrCasFailed);
  // An old index whose (client, seq) is not known changes nothing either.
  expect_ok(t->apply(LogIndex(3), Proposal{"dd", 1, KvPut{"z", "z", std::nullopt}}), "{}");
  EXPECT_FALSE(t->kv_get("z")->has_value());
}

TEST(SqliteTracker, KvPutGetDeleteAndCas) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Client c("c1");
  // cas 0 on an absent key: created; the indexes are the Raft index of the command.
  expect_ok(t->apply(LogIndex(3), c(KvPut{"a", "one", 0})), R"({"index":3})");
  auto a = t->kv_get("a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ(**a, (KvRecord{"a", "one", 3, 3}));
  // cas 0 on a present key fails.
  auto r = t->apply(LogIndex(4), c(KvPut{"a", "two", 0}));
  expect_error(r, kErrCasFailed);
  EXPECT_EQ(r.error().message, "key 'a' is at index 3, not 0");
  // Unconditional put: modify_index moves, create_index stays.
  expect_ok(t->apply(LogIndex(7), c(KvPut{"a", "two", std::nullopt})), R"({"index":7})");
  EXPECT_EQ(**t->kv_get("a"), (KvRecord{"a", "two", 3, 7}));
  // A stale index fails and names the current one; the matching one succeeds.
  r = t->apply(LogIndex(8), c(KvPut{"a", "three", 3}));
  expect_error(r, kErrCasFailed);
  EXPECT_EQ(r.error().message, "key 'a' is at index 7, not 3");
  EXPECT_EQ((*t->kv_get("a"))->value, "two");
  expect_ok(t->apply(LogIndex(9), c(KvPut{"a", "three", 7})), R"({"index":9})");
  EXPECT_EQ(**t->kv_get("a"), (KvRecord{"a", "three", 3, 9}));
  // cas n on an absent key.
  expect_error(t->apply(LogIndex(10), c(KvPut{"nope", "x", 5})), kErrKeyUnknown);
  EXPECT_FALSE(t->kv_get("nope")->has_value());

  // Delete with cas: stale fails, matching deletes; without cas on a missing key: false.
  r = t->apply(LogIndex(11), c(KvDelete{"a", 7}));
  expect_error(r, kErrCasFailed);
  EXPECT_EQ(r.error().message, "key 'a' is at index 9, not 7");
  expect_error(t->apply(LogIndex(12), c(KvDelete{"a", 0})), kErrCasFailed);
  EXPECT_TRUE(t->kv_get("a")->has_value());
  expect_ok(t->apply(LogIndex(13), c(KvDelete{"a", 9})), R"({"deleted":true})");
  EXPECT_FALSE(t->kv_get("a")->has_value());
  expect_ok(t->apply(LogIndex(14), c(KvDelete{"a", std::nullopt})), R"({"deleted":false})");
  expect_ok(t->apply(LogIndex(15), c(KvDelete{"a", 0})), R"({"deleted":false})");
  expect_error(t->apply(LogIndex(16), c(KvDelete{"a", 9})), kErrKeyUnknown);
  // Without cas on a present key.
  expect_ok(t->apply(LogIndex(17), c(KvPut{"b", "", std::nullopt})), R"({"index":17})");
  EXPECT_EQ(**t->kv_get("b"), (KvRecord{"b", "", 17, 17}));  // empty value, not absent
  expect_ok(t->apply(LogIndex(18), c(KvDelete{"b", std::nullopt})), R"({"deleted":true})");
  // Re-created after a delete: a new create_index.
  expect_ok(t->apply(LogIndex(20), c(KvPut{"a", "again", std::nullopt})), R"({"index":20})");
  EXPECT_EQ(**t->kv_get("a"), (KvRecord{"a", "again", 20, 20}));
  EXPECT_EQ(*t->kv_count(), 1u);
  EXPECT_EQ(t->applied_index(), LogIndex(20));

  // Binary values of the largest size survive byte for byte.
  std::string big;
  for (size_t i = 0; i < kMaxKvValueBytes; ++i) big.push_back(static_cast<char>(i * 31));
  expect_ok(t->apply(LogIndex(21), c(KvPut{"big", big, std::nullopt})), R"({"index":21})");
  EXPECT_EQ((*t->kv_get("big"))->value, big);
  expect_error(t->apply(LogIndex(22), c(KvPut{"big", big + "x", std::nullopt})), kErrBadCommand);
  EXPECT_EQ((*t->kv_get("big"))->modify_index, 21u);
}

TEST(SqliteTracker, KvListByPrefixIsOrderedByKey) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Client c("c1");
  const std::string keys[] = {"b",
                              "a/c",
                              "a",
                              "ab",
                              "a/b",
                              "\xc3\xa9",
                              "\xc3\xa9/x",
                              "\xf4\x8f\xbf\xbf",
                              "\xf4\x8f\xbf\xbf/z"};
  uint64_t index = 0;
  for (const std::string& k : keys) {
    ASSERT_TRUE(t->apply(LogIndex(++index), c(KvPut{k, "v" + k, std::nullopt})).ok()) << k;
  }
  auto names = [&](const std::string& prefix) {
    auto list = t->kv_list(prefix);
    EXPECT_TRUE(list.ok());
    std::vector<std::string> out;
    for (const KvRecord& r : *list) {
      EXPECT_EQ(r.value, "v" + r.key);
      out.push_back(r.key);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(""), (V{"a", "a/b", "a/c", "ab", "b", "\xc3\xa9", "\xc3\xa9/x",
                          "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf/z"}));
  EXPECT_EQ(names("a"), (V{"a", "a/b", "a/c", "ab"}));
  EXPECT_EQ(names("a/"), (V{"a/b", "a/c"}));
  EXPECT_EQ(names("a/b"), (V{"a/b"}));
  EXPECT_EQ(names("\xc3\xa9"), (V{"\xc3\xa9", "\xc3\xa9/x"}));
  EXPECT_EQ(names("\xf4\x8f\xbf\xbf"), (V{"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf/z"}));
  EXPECT_EQ(names("\xff"), V{});
  EXPECT_EQ(names("zz"), V{});
  EXPECT_EQ(names("a/bc"), V{});
  EXPECT_EQ(*t->kv_count(), std::size(keys));
}

TEST(SqliteTracker, RecordedResultsArePrunedAfterTheWindow) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Proposal put{"aa", 1, KvPut{"k", "v", std::nullopt}};
  expect_ok(t->apply(LogIndex(10), put), R"({"index":10})");
  expect_ok(t->apply(LogIndex(11), Proposal{"bb", 1, KvPut{"other", "v", std::nullopt}}),
            R"({"index":11})");
  // Still within the window (kept while index - recorded <= kResultWindow): deduplicated.
  expect_ok(t->apply(LogIndex(10 + kResultWindow), put), R"({"index":10})");
  EXPECT_EQ((*t->kv_get("k"))->modify_index, 10u);
  auto snap = decode_snapshot(snapshot_of(*t));
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->results.size(), 2u);
  // One index later the record is gone on every replica: the same proposal applies again.
  uint64_t later = 11 + kResultWindow;
  expect_ok(t->apply(LogIndex(later), put), "{\"index\":" + std::to_string(later) + "}");
  EXPECT_EQ((*t->kv_get("k"))->modify_index, later);
  snap = decode_snapshot(snapshot_of(*t));
  ASSERT_TRUE(snap.ok());
  // ("aa",1) was dropped and recorded anew at `later`; ("bb",1) at 11 is still in the window.
  ASSERT_EQ(snap->results.size(), 2u);
  EXPECT_EQ(snap->results[0].client_id, "aa");
  EXPECT_EQ(snap->results[0].index, LogIndex(later));
  EXPECT_EQ(snap->results[1].client_id, "bb");
  // A big jump drops everything older than the window.
  expect_ok(t->apply(LogIndex(later + 5 * kResultWindow), Proposal{"cc", 1, KvDelete{"x", {}}}),
            R"({"deleted":false})");
  snap = decode_snapshot(snapshot_of(*t));
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->results.size(), 1u);
  EXPECT_EQ(snap->results[0].client_id, "cc");
}

// A state with a bit of everything: every task state, binary values, recorded rejections.
void build_rich_state(TrackerStateMachine& t) {
  Client c("c1"), d("d2");
  uint64_t i = 0;
  auto apply = [&](Proposal p) { (void)t.apply(LogIndex(++i), std::move(p)); };
  apply(
      c(CreateTask{task('a'), "http://h/a", "sha256:" + std::string(64, '1'), 7, node('1'), kSeg}));
  apply(c(CreateTask{task('b'), "http://h/b", std::nullopt, 8, node('2'), kSeg}));
  apply(c(CreateTask{task('c'), "http://h/c", std::nullopt, 6, node('3'), kSeg}));
  apply(
      d(PublishSegment{task('a'), 1, 0, 0, kSeg, std::string("meta\0\xff", 6), "10.0.0.1", 6881}));
  apply(d(PublishSegment{task('a'), 1, 1, kSeg, 3, "m1", "10.0.0.1", 6881}));
  apply(d(MarkTaskReady{task('a'), 1, kSeg + 3, "abc", "10.0.0.1", 6881}));
  apply(d(MarkTaskFailed{task('b'), "origin.http_status", "404", std::nullopt}));
  apply(d(RestartTask{task('a'), node('4')}));  // rejected: a is ready
  apply(c(KvPut{"config/x", std::string("\0\x01\xff", 3), std::nullopt}));
  apply(c(KvPut{"config/y", "", 0}));
  apply(c(KvPut{"config/x", "new", 9}));
  apply(c(KvPut{"config/x", "stale", 7}));  // rejected
  apply(d(KvPut{"\xc3\xa9t\xc3\xa9", "summer", std::nullopt}));
  apply(d(KvDelete{"config/y", std::nullopt}));
  apply(d(KvPut{"config/z", "z", std::nullopt}));
}

TEST(SqliteTracker, SnapshotRestoresIntoAFreshFile) {
  TempDir dir;
  auto source = open(dir.file("source.db"));
  build_rich_state(*source);
  ASSERT_EQ(source->applied_index(), LogIndex(15));
  std::string bytes = snapshot_of(*source);

  auto replica = open(dir.file("replica.db"));
  ASSERT_TRUE(replica->restore(LogIndex(15), bytes).ok());
  EXPECT_EQ(replica->applied_index(), LogIndex(15));
  EXPECT_EQ(describe_all(*replica), describe_all(*source));
  EXPECT_EQ(describe_all(*replica).size(), 3u);
  for (char id : {'a', 'b', 'c', 'd'}) {
    auto s = source->get_task(task(id));
    auto r = replica->get_task(task(id));
    ASSERT_TRUE(s.ok() && r.ok());
    ASSERT_EQ(s->has_value(), r->has_value());
    if (s->has_value()) {
      EXPECT_EQ(describe(**r), describe(**s));
    }
  }
  EXPECT_EQ(all_kv(*replica), all_kv(*source));
  EXPECT_EQ(*replica->kv_list("config/"), *source->kv_list("config/"));
  EXPECT_EQ(*replica->kv_count(), 3u);
  EXPECT_EQ(snapshot_of(*replica), bytes);

  // The recorded results came along: a retry of an entry applied before the snapshot is
  // still deduplicated on the replica, with the same answer.
  Proposal retry{"c1", 7, KvPut{"config/x", "stale", 7}};  // c1's 7th: the stale cas
  auto on_source = source->apply(LogIndex(16), retry);
  auto on_replica = replica->apply(LogIndex(16), retry);
  expect_error(on_source, kErrCasFailed);
  EXPECT_EQ(on_source.error().message, "key 'config/x' is at index 11, not 7");
  expect_error(on_replica, kErrCasFailed);
  EXPECT_EQ(on_replica.error().message, on_source.error().message);
  EXPECT_EQ(snapshot_of(*replica), snapshot_of(*source));

  // And it survives a reopen.
  replica.reset();
  replica = open(dir.file("replica.db"));
  EXPECT_EQ(replica->applied_index(), LogIndex(16));
  EXPECT_EQ(snapshot_of(*replica), snapshot_of(*source));
}

// The supernode's Raft driver reads snapshots on a thread of its own while entries are
// applied: every one it gets is the state of exactly one applied index, byte for byte what
// snapshot() returned at that index; the reader needs no tracker object.
TEST(SqliteTracker, ConcurrentSnapshotIsTheStateOfOneIndex) {
  TempDir dir;
  auto source = open(dir.file("source.db"));
  Client c("c1");
  constexpr uint64_t kEntries = 300;
  std::vector<std::string> at{snapshot_of(*source)};  // at[i]: snapshot() after index i
  auto read = source->concurrent_snapshot();
  ASSERT_TRUE(read);
  std::vector<TrackerStateMachine::IndexedSnapshot> seen;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      auto s = read();
      ASSERT_TRUE(s.ok()) << s.error().message;
      seen.push_back(std::move(*s));
    }
  });
  for (uint64_t i = 1; i <= kEntries; ++i) {
    ASSERT_TRUE(source
                    ->apply(LogIndex(i), c(KvPut{"k/" + std::to_string(i % 37),
                                                 std::string(200, static_cast<char>('a' + i % 26)),
                                                 std::nullopt}))
                    .ok());
    at.push_back(snapshot_of(*source));
  }
  done = true;
  reader.join();
  ASSERT_FALSE(seen.empty());
  std::set<uint64_t> indexes;
  for (const auto& s : seen) {
    ASSERT_LE(s.index.get(), kEntries);
    EXPECT_EQ(s.data, at[s.index.get()]) << "read at index " << s.index.get();
    indexes.insert(s.index.get());
  }
  std::cerr << seen.size() << " reads at " << indexes.size() << " distinct indexes\n";
  source.reset();
  auto last = read();  // the tracker object is gone; the file is not
  ASSERT_TRUE(last.ok()) << last.error().message;
  EXPECT_EQ(last->index, LogIndex(kEntries));
  EXPECT_EQ(last->data, at.back());
  // And it restores like any snapshot.
  auto replica = open(dir.file("replica.db"));
  ASSERT_TRUE(replica->restore(last->index, last->data).ok());
  EXPECT_EQ(snapshot_of(*replica), at.back());
}

TEST(SqliteTracker, RestoreReplacesEverythingAndTakesTheGivenIndex) {
  TempDir dir;
  auto source = open(dir.file("source.db"));
  build_rich_state(*source);
  std::string bytes = snapshot_of(*source);

  auto replica = open(dir.file("replica.db"));
  Client c("ee");
  ASSERT_TRUE(
      replica->apply(LogIndex(50), c(CreateTask{task('f'), "u", {}, 1, node('9'), kSeg})).ok());
  ASSERT_TRUE(replica->apply(LogIndex(51), c(KvPut{"old", "x", {}})).ok());
  // Raft's snapshot index may be past the tracker's own last index (entries between them were
  // not tracker proposals): applied_index() takes Raft's.
  ASSERT_TRUE(replica->restore(LogIndex(20), bytes).ok());
  EXPECT_EQ(replica->applied_index(), LogIndex(20));
  EXPECT_EQ((*replica->get_task(task('a')))->segments.size(), 2u);
  EXPECT_FALSE(replica->get_task(task('f'))->has_value());
  EXPECT_FALSE(replica->kv_get("old")->has_value());
  EXPECT_EQ(all_kv(*replica), all_kv(*source));
  EXPECT_EQ(describe_all(*replica), describe_all(*source));
  // ee's record went with the old state.
  expect_ok(replica->apply(LogIndex(21), Proposal{"ee", 2, KvPut{"old", "y", {}}}),
            R"({"index":21})");
}

TEST(SqliteTracker, RestoreOfGarbageFailsAndChangesNothing) {
  TempDir dir;
  auto source = open(dir.file("source.db"));
  build_rich_state(*source);
  std::string good = snapshot_of(*source);

  auto t = open(dir.file("replica.db"));
  Client c("ee");
  ASSERT_TRUE(t->apply(LogIndex(3), c(KvPut{"mine", "1", {}})).ok());
  ASSERT_TRUE(t->apply(LogIndex(4), c(CreateTask{task('f'), "u", {}, 1, node('9'), kSeg})).ok());
  const std::string before = snapshot_of(*t);

  std::vector<std::string> bad = {"", "garbage", std::string(100, '\0'), good + "x"};
  for (size_t n = 0; n < good.size(); n += 7) bad.push_back(good.substr(0, n));  // truncations
  std::string flipped_magic = good;
  flipped_magic[0] = 'X';
  bad.push_back(flipped_magic);
  for (char v : {char{1}, char{2}, char{4}}) {  // versions 1, 2 (before segments), unknown
    std::string version = good;
    version[8] = v;
    bad.push_back(version);
  }
  for (const std::string& b : bad) {
    Status st = t->restore(LogIndex(100), b);
    ASSERT_FALSE(st.ok()) << b.size();
    EXPECT_EQ(st.error().code, kErrBadSnapshot);
  }
  // A state newer than the index it is offered at would replay entries twice.
  Status st = t->restore(LogIndex(12), good);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, kErrBadSnapshot);
  EXPECT_EQ(snapshot_of(*t), before);
  EXPECT_EQ(t->applied_index(), LogIndex(4));
  EXPECT_EQ((*t->kv_get("mine"))->value, "1");
}

TEST(SqliteTracker, StateAndAppliedIndexSurviveReopen) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  Client c("c1");
  {
    auto t = open(path);
    ASSERT_TRUE(
        t->apply(LogIndex(5), c(CreateTask{task('a'), "http://h/a",
                                           "sha256:" + std::string(64, '1'), 7, node('1'), kSeg}))
            .ok());
    ASSERT_TRUE(t->apply(LogIndex(6),
                         c(CreateTask{task('b'), "http://h/b", std::nullopt, 8, node('2'), kSeg}))
                    .ok());
    ASSERT_TRUE(
        t->apply(LogIndex(7), c(PublishSegment{task('a'), 5, 0, 0, 3, "meta", "::1", 443})).ok());
    ASSERT_TRUE(t->apply(LogIndex(9), c(MarkTaskReady{task('a'), 5, 3, "abc", "::1", 443})).ok());
  }
  auto t = open(path);
  EXPECT_EQ(t->applied_index(), LogIndex(9));
  auto all = t->list_tasks();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].task_id, task('a'));
  EXPECT_EQ((*all)[0].state, TaskState::kReady);
  ASSERT_EQ((*all)[0].segments.size(), 1u);
  EXPECT_EQ((*all)[0].segments[0].metainfo, "meta");
  EXPECT_EQ((*all)[0].size, 3);
  EXPECT_EQ((*all)[0].seed_ip, "::1");
  EXPECT_EQ((*all)[0].seed_port, 443);
  EXPECT_EQ((*all)[0].digest, "sha256:" + std::string(64, '1'));
  EXPECT_EQ((*all)[1].task_id, task('b'));
  EXPECT_EQ((*all)[1].state, TaskState::kFetching);
  EXPECT_EQ((*all)[1].seeder, node('2'));
  // The persisted index still guards against replays after the reopen.
  EXPECT_TRUE(
      t->apply(LogIndex(6), Proposal{"zz", 1, MarkTaskFailed{task('b'), "c", "m", std::nullopt}})
          .ok());
  EXPECT_EQ((*t->get_task(task('b')))->state, TaskState::kFetching);
}

TEST(SqliteTracker, AppliedIndexIsCommittedWithTheEffect) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  auto t = open(path);
  ASSERT_TRUE(t->apply(LogIndex(1), Proposal{"a", 1,
                                             CreateTask{task('a'), "http://h/a", std::nullopt, 1,
                                                        node('1'), kSeg}})
                  .ok());
  ASSERT_TRUE(t->apply(LogIndex(2), Proposal{"a", 2, KvPut{"k", "v", {}}}).ok());
  // A second connection sees the index and the rows together, never one without the other.
  auto other = open(path);
  EXPECT_EQ(other->applied_index(), LogIndex(2));
  auto rec = other->get_task(task('a'));
  ASSERT_TRUE(rec.ok());
  EXPECT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->updated_index, LogIndex(1));
  EXPECT_EQ((*other->kv_get("k"))->modify_index, 2u);
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

TEST(SqliteTracker, RefusesAPreRaftFile) {
  TempDir dir;
  std::string path = dir.file("old.db");
  // The schema-1 tracker's file: tables but no user_version.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
                         "INSERT INTO meta VALUES ('applied_index', 3);"
                         "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, url TEXT NOT NULL);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto t = open_sqlite_tracker(path);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, kErrStorage);
  EXPECT_NE(t.error().message.find("schema 1"), std::string::npos) << t.error().message;
}

std::string describe(const CertificateRecord& c) {
  std::string s = c.node_id + "|" + c.role + "|" + std::to_string(c.not_before) + "|" +
                  std::to_string(c.not_after) + "|" + std::to_string(c.issued_index.get());
  if (c.revocation) {
    s += "|revoked " + std::to_string(c.revocation->revoked_at) + " '" + c.revocation->reason +
         "' @" + std::to_string(c.revocation->index.get());
  }
  return s;
}

std::vector<std::string> all_certificates(const TrackerStateMachine& t) {
  auto list = t.list_certificates();
  EXPECT_TRUE(list.ok()) << list.error().message;
  std::vector<std::string> out;
  if (list.ok()) {
    for (const CertificateRecord& c : *list) out.push_back(describe(c));
  }
  return out;
}

bool revoked(const TrackerStateMachine& t, const std::string& node) {
  auto r = t.is_revoked(node);
  EXPECT_TRUE(r.ok());
  return r.ok() && *r;
}

// Issue 5 item 1: every issuance is a replicated entry; a revocation is permanent and wins
// over any later issuance, identically on every replica.
TEST(SqliteTracker, CertificatesAreRecordedAndRevocationIsSticky) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Client c("c1");
  expect_ok(t->apply(LogIndex(1), c(IssueCertificate{node('a'), "peer", 100, 200})),
            R"({"issued_index":1})");
  EXPECT_FALSE(revoked(*t, node('a')));
  // A renewal replaces the recorded validity.
  expect_ok(t->apply(LogIndex(2), c(IssueCertificate{node('a'), "peer", 150, 250})),
            R"({"issued_index":2})");
  expect_ok(t->apply(LogIndex(3), c(IssueCertificate{node('b'), "admin", 1, 2})),
            R"({"issued_index":3})");
  auto a = t->get_certificate(node('a'));
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ(describe(**a), node('a') + "|peer|150|250|2");
  EXPECT_FALSE((*a)->revoked());

  expect_ok(t->apply(LogIndex(4), c(RevokeCertificate{node('a'), "lost laptop", 1000})),
            R"({"revoked_at":1000})");
  EXPECT_TRUE(revoked(*t, node('a')));
  EXPECT_FALSE(revoked(*t, node('b')));
  auto rev = t->revocation(node('a'));
  ASSERT_TRUE(rev.ok() && rev->has_value());
  EXPECT_EQ((*rev)->reason, "lost laptop");
  EXPECT_EQ((*rev)->revoked_at, 1000);
  EXPECT_EQ((*rev)->index, LogIndex(4));

  // Sticky: a later issuance is refused, with the reason; the record keeps its issuance.
  auto again = t->apply(LogIndex(5), c(IssueCertificate{node('a'), "peer", 300, 400}));
  expect_error(again, kErrCertRevoked);
  EXPECT_EQ(again.error().message, "node " + node('a') + " was revoked: lost laptop");
  EXPECT_EQ(t->applied_index(), LogIndex(5));
  // A second revocation changes nothing and says when the first one was.
  expect_ok(t->apply(LogIndex(6), c(RevokeCertificate{node('a'), "again", 2000})),
            R"({"revoked_at":1000,"already_revoked":true})");
  // A node never enrolled through the cluster (e.g. a supernode's own certificate) can be
  // revoked too; without a reason the refusal says so.
  expect_ok(t->apply(LogIndex(7), c(RevokeCertificate{node('9'), "", 3000})),
            R"({"revoked_at":3000})");
  auto refused = t->apply(LogIndex(8), c(IssueCertificate{node('9'), "supernode", 1, 2}));
  expect_error(refused, kErrCertRevoked);
  EXPECT_EQ(refused.error().message, "node " + node('9') + " was revoked (no reason given)");

  const std::vector<std::string> want = {
      node('9') + "||0|0|0|revoked 3000 '' @7",
      node('a') + "|peer|150|250|2|revoked 1000 'lost laptop' @4",
      node('b') + "|admin|1|2|3",
  };
  EXPECT_EQ(all_certificates(*t), want);
  EXPECT_FALSE(t->get_certificate(node('c'))->has_value());
  EXPECT_FALSE(*t->revocation(node('c')));

  // A retried revocation (same client and seq) answers the same without a second effect.
  Proposal revoke_b = c(RevokeCertificate{node('b'), "compromised", 4000});
  expect_ok(t->apply(LogIndex(9), revoke_b), R"({"revoked_at":4000})");
  expect_ok(t->apply(LogIndex(10), revoke_b), R"({"revoked_at":4000})");
  EXPECT_EQ((*t->revocation(node('b')))->index, LogIndex(9));

  // Durable: the revocations are read back from the file (also into the in-memory copy).
  t.reset();
  t = open(dir.file("tracker.db"));
  EXPECT_TRUE(revoked(*t, node('a')));
  EXPECT_TRUE(revoked(*t, node('b')));
  EXPECT_TRUE(revoked(*t, node('9')));
  EXPECT_EQ((*t->revocation(node('a')))->reason, "lost laptop");
  EXPECT_EQ(all_certificates(*t).size(), 3u);
}

TEST(SqliteTracker, CertificatesTravelInSnapshots) {
  TempDir dir;
  auto source = open(dir.file("source.db"));
  Client c("c1");
  ASSERT_TRUE(source->apply(LogIndex(1), c(IssueCertificate{node('a'), "peer", 10, 20})).ok());
  ASSERT_TRUE(source->apply(LogIndex(2), c(IssueCertificate{node('b'), "peer", 10, 20})).ok());
  ASSERT_TRUE(source->apply(LogIndex(3), c(RevokeCertificate{node('a'), "gone", 30})).ok());
  ASSERT_TRUE(source->apply(LogIndex(4), c(RevokeCertificate{node('c'), "never seen", 40})).ok());
  const std::string bytes = snapshot_of(*source);

  // A replica that knew nothing: it refuses the revoked nodes as soon as the restore commits.
  auto replica = open(dir.file("replica.db"));
  ASSERT_TRUE(replica->restore(LogIndex(4), bytes).ok());
  EXPECT_EQ(all_certificates(*replica), all_certificates(*source));
  EXPECT_TRUE(revoked(*replica, node('a')));
  EXPECT_TRUE(revoked(*replica, node('c')));
  EXPECT_FALSE(revoked(*replica, node('b')));
  EXPECT_EQ(snapshot_of(*replica), bytes);
  // The same next entry gives the same answer on both.
  Proposal issue = c(IssueCertificate{node('a'), "peer", 50, 60});
  auto on_source = source->apply(LogIndex(5), issue);
  auto on_replica = replica->apply(LogIndex(5), issue);
  expect_error(on_source, kErrCertRevoked);
  expect_error(on_replica, kErrCertRevoked);
  EXPECT_EQ(on_replica.error().message, on_source.error().message);

  // A restore replaces the in-memory revocations too: a node revoked only in the old state is
  // not revoked in the new one (it is whatever the leader's state says).
  auto other = open(dir.file("other.db"));
  ASSERT_TRUE(other->apply(LogIndex(1), Client("d4")(RevokeCertificate{node('b'), "x", 1})).ok());
  EXPECT_TRUE(revoked(*other, node('b')));
  ASSERT_TRUE(other->restore(LogIndex(4), bytes).ok());
  EXPECT_FALSE(revoked(*other, node('b')));
  EXPECT_TRUE(revoked(*other, node('a')));
  // A failed restore changes neither the table nor the in-memory copy.
  ASSERT_FALSE(other->restore(LogIndex(9), bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_TRUE(revoked(*other, node('a')));
  EXPECT_EQ(all_certificates(*other), all_certificates(*source));
}

TEST(SqliteTracker, ASchema2FileGainsTheCertificatesTable) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  {
    auto t = open(path);
    ASSERT_TRUE(t->apply(LogIndex(1), Proposal{"aa", 1, KvPut{"k", "v", std::nullopt}}).ok());
  }
  // What the tracker wrote before certificates existed: schema 2, no certificates table.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TABLE certificates; DROP TABLE segments; ALTER TABLE tasks DROP "
                         "COLUMN segment_size; ALTER TABLE tasks DROP COLUMN lease_epoch; "
                         "PRAGMA user_version = 2;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto t = open(path);
  EXPECT_EQ(t->applied_index(), LogIndex(1));
  EXPECT_EQ((*t->kv_get("k"))->value, "v");
  EXPECT_TRUE(all_certificates(*t).empty());
  expect_ok(t->apply(LogIndex(2), Proposal{"aa", 2, RevokeCertificate{node('a'), "r", 5}}),
            R"({"revoked_at":5})");
  t.reset();
  t = open(path);
  EXPECT_TRUE(revoked(*t, node('a')));
}

// Issue 4 items 4-5: segments are published in order by the lease holder only; a takeover
// fences the old seeder off for good.
TEST(SqliteTracker, SegmentsAreFencedByTheSeedLease) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Client old_seeder("a1"), leader("b2");
  uint64_t i = 0;
  auto apply = [&](Proposal p) { return t->apply(LogIndex(++i), std::move(p)); };
  expect_ok(apply(old_seeder(CreateTask{task('a'), "u", std::nullopt, 1, node('1'), kSeg})),
            R"({"epoch":1})");
  // Out of order, wrong offset, oversize, stale epoch: refused, nothing published.
  expect_error(apply(old_seeder(PublishSegment{task('a'), 1, 1, 10, kSeg, "m", "", 0})),
               kErrBadTransition);
  expect_error(apply(old_seeder(PublishSegment{task('a'), 1, 0, 5, kSeg, "m", "", 0})),
               kErrBadTransition);
  expect_error(apply(old_seeder(PublishSegment{task('a'), 1, 0, 0, kSeg + 1, "m", "", 0})),
               kErrBadTransition);
  expect_error(apply(old_seeder(PublishSegment{task('a'), 2, 0, 0, kSeg, "m", "", 0})),
               kErrStaleLease);
  EXPECT_TRUE((*t->get_task(task('a')))->segments.empty());
  expect_ok(apply(old_seeder(PublishSegment{task('a'), 1, 0, 0, kSeg, "m0", "10.0.0.1", 1})), "{}");
  // A short segment must be the last one.
  expect_ok(apply(old_seeder(PublishSegment{task('a'), 1, 1, 10, 4, "m1", "10.0.0.1", 1})), "{}");
  expect_error(apply(old_seeder(PublishSegment{task('a'), 1, 2, 14, 4, "m2", "10.0.0.1", 1})),
               kErrBadTransition);
  // Ready only with the published size.
  expect_error(apply(old_seeder(MarkTaskReady{task('a'), 1, 15, "s", "", 0})), kErrBadTransition);

  // The leader saw the lease expire: takeover with the epoch it saw.
  const uint64_t takeover_index = i + 1;
  expect_ok(apply(leader(TakeOverSeed{task('a'), 1, node('2'), "10.0.0.2", 2})),
            "{\"epoch\":" + std::to_string(takeover_index) + "}");
  auto rec = *t->get_task(task('a'));
  EXPECT_EQ(rec->seeder, node('2'));
  EXPECT_EQ(rec->lease_epoch, LogIndex(takeover_index));
  EXPECT_EQ(rec->seed_ip, "10.0.0.2");
  EXPECT_EQ(rec->segments.size(), 2u);  // kept: the new seeder resumes after them
  // A second takeover based on the old epoch (a stale leader) is refused.
  expect_error(apply(leader(TakeOverSeed{task('a'), 1, node('3'), "", 0})), kErrStaleLease);
  // The old seeder is fenced: renewals, segments, ready and failure are all refused.
  expect_error(apply(old_seeder(RenewSeedLease{task('a'), 1})), kErrStaleLease);
  expect_error(apply(old_seeder(MarkTaskReady{task('a'), 1, 14, "s", "", 0})), kErrStaleLease);
  expect_error(apply(old_seeder(MarkTaskFailed{task('a'), "origin.io", "x", 1})), kErrStaleLease);
  EXPECT_EQ((*t->get_task(task('a')))->state, TaskState::kFetching);
  // The new holder finishes.
  Client fresh("c3");
  // A seed_lost failure is about a ready task's seed, never a fetch.
  expect_error(apply(fresh(MarkTaskFailed{task('a'), "seed.lost", "x", takeover_index, true})),
               kErrStaleLease);
  expect_ok(apply(fresh(RenewSeedLease{task('a'), takeover_index})), "{}");
  EXPECT_EQ((*t->get_task(task('a')))->updated_index, LogIndex(i));
  expect_ok(apply(fresh(MarkTaskReady{task('a'), takeover_index, 14, "s", "10.0.0.2", 2})), "{}");
  rec = *t->get_task(task('a'));
  EXPECT_EQ(rec->state, TaskState::kReady);
  EXPECT_EQ(rec->size, 14);
  // The state travels in a snapshot unchanged.
  auto replica = open(dir.file("replica.db"));
  ASSERT_TRUE(replica->restore(LogIndex(i), snapshot_of(*t)).ok());
  EXPECT_EQ(describe_all(*replica), describe_all(*t));
  // A fetch failure with the current epoch fails the task; without epoch a ready one too.
  expect_ok(apply(fresh(MarkTaskFailed{task('a'), "seed.lost", "gone", std::nullopt})), "{}");
}

// A ready task whose seeder went silent is handed to another member (ReseedTask): it stays
// ready with its segments, size and hash; the epoch moves on, so a stale view is refused.
TEST(SqliteTracker, AReadyTaskIsReseededByAnotherMember) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  Client seeder("a1"), leader("b2");
  uint64_t i = 0;
  auto apply = [&](Proposal p) { return t->apply(LogIndex(++i), std::move(p)); };
  expect_ok(apply(seeder(CreateTask{task('a'), "u", std::nullopt, 1, node('1'), kSeg})),
            R"({"epoch":1})");
  // Not while fetching: that is TakeOverSeed's job (the fetch must be resumed, not re-seeded).
  expect_error(apply(leader(ReseedTask{task('a'), 1, node('2'), "10.0.0.2", 2})),
               kErrBadTransition);
  expect_ok(apply(seeder(PublishSegment{task('a'), 1, 0, 0, kSeg, "m0", "10.0.0.1", 1})), "{}");
  expect_ok(apply(seeder(PublishSegment{task('a'), 1, 1, kSeg, 4, "m1", "10.0.0.1", 1})), "{}");
  expect_ok(apply(seeder(MarkTaskReady{task('a'), 1, kSeg + 4, "s", "10.0.0.1", 1})), "{}");
  const auto before = **t->get_task(task('a'));
  const auto state_before = describe_all(*t);
  // A stale epoch and an unknown task are refused and change nothing.
  expect_error(apply(leader(ReseedTask{task('a'), 2, node('2'), "10.0.0.2", 2})), kErrStaleLease);
  expect_error(apply(leader(ReseedTask{task('b'), 1, node('2'), "10.0.0.2", 2})), kErrTaskUnknown);
  EXPECT_EQ(describe_all(*t), state_before);

  const uint64_t reseed_index = i + 1;
  expect_ok(apply(leader(ReseedTask{task('a'), 1, node('2'), "10.0.0.2", 2})),
            "{\"epoch\":" + std::to_string(reseed_index) + "}");
  auto rec = **t->get_task(task('a'));
  EXPECT_EQ(rec.state, TaskState::kReady);
  EXPECT_EQ(rec.seeder, node('2'));
  EXPECT_EQ(rec.seed_ip, "10.0.0.2");
  EXPECT_EQ(rec.seed_port, 2);
  EXPECT_EQ(rec.lease_epoch, LogIndex(reseed_index));
  EXPECT_EQ(rec.updated_index, LogIndex(reseed_index));
  EXPECT_EQ(rec.segments, before.segments);
  EXPECT_EQ(rec.size, before.size);
  EXPECT_EQ(rec.sha256, before.sha256);
  // A second reseed from the same (now stale) view is refused; one from the new epoch is not.
  expect_error(apply(leader(ReseedTask{task('a'), 1, node('3'), "10.0.0.3", 3})), kErrStaleLease);
  const uint64_t second_index = i + 1;
  expect_ok(apply(leader(ReseedTask{task('a'), reseed_index, node('3'), "10.0.0.3", 3})),
            "{\"epoch\":" + std::to_string(second_index) + "}");
  EXPECT_EQ((*t->get_task(task('a')))->seeder, node('3'));
  // It travels in a snapshot unchanged.
  auto replica = open(dir.file("replica.db"));
  ASSERT_TRUE(replica->restore(LogIndex(i), snapshot_of(*t)).ok());
  EXPECT_EQ(describe_all(*replica), describe_all(*t));
  // The first re-seeder, acting on its stale view, cannot fail it; nor can a fetch's failure
  // at the current epoch (the task is ready, not fetching); the current seeder can.
  expect_error(apply(leader(MarkTaskFailed{task('a'), "seed.lost", "gone", reseed_index, true})),
               kErrStaleLease);
  expect_error(apply(leader(MarkTaskFailed{task('a'), "origin.io", "x", second_index})),
               kErrStaleLease);
  EXPECT_EQ((*t->get_task(task('a')))->state, TaskState::kReady);
  expect_ok(apply(leader(MarkTaskFailed{task('a'), "seed.lost", "gone", second_index, true})),
            "{}");
  EXPECT_EQ((*t->get_task(task('a')))->state, TaskState::kFailed);
  // Not for a failed task (RestartTask starts it again).
  expect_error(apply(leader(ReseedTask{task('a'), second_index, node('2'), "10.0.0.2", 2})),
               kErrBadTransition);
}

TEST(SqliteTracker, ASchema3FileIsMigratedToSegments) {
  TempDir dir;
  std::string path = dir.file("tracker.db");
  {
    auto t = open(path);
    ASSERT_TRUE(t->apply(LogIndex(1), Proposal{"aa", 1, KvPut{"k", "v", std::nullopt}}).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const std::string sql =
      "DROP TABLE segments; ALTER TABLE tasks DROP COLUMN segment_size; "
      "ALTER TABLE tasks DROP COLUMN lease_epoch; "
      "INSERT INTO tasks (task_id, url, created_at, state, seeder, size, updated_index) VALUES ('" +
      std::string(64, 'a') + "', 'u', 1, 1, '" + node('1') + "', 5, 1); PRAGMA user_version = 3;";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto t = open(path);
  auto rec = *t->get_task(task('a'));
  ASSERT_TRUE(rec.has_value());
  // A ready task without segments cannot be served: it is failed, to be registered again.
  EXPECT_EQ(rec->state, TaskState::kFailed);
  EXPECT_EQ(rec->lease_epoch, LogIndex(1));
  EXPECT_GT(rec->segment_size, 0);
  // And the state is a valid snapshot.
  auto replica = open(dir.file("replica.db"));
  EXPECT_TRUE(replica->restore(LogIndex(1), snapshot_of(*t)).ok());
}

}  // namespace
}  // namespace starling::tracker

// ---- apply_batch: a Ready's committed entries in one transaction (RAFTPERF) ----
namespace starling::tracker {
namespace {

std::vector<TrackerStateMachine::BatchEntry> batch_of(const std::vector<Proposal>& ps,
                                                      uint64_t first_index) {
  std::vector<TrackerStateMachine::BatchEntry> out;
  for (size_t k = 0; k < ps.size(); ++k) out.push_back({LogIndex(first_index + k), &ps[k]});
  return out;
}

// What a proposer is told, as one comparable string.
std::string outcome(const Result<std::string>& r) {
  return r.ok() ? "ok " + *r : "error " + r.error().code + ": " + r.error().message;
}

// Successes, every kind of rejection and a retried (client_id, seq) inside one batch.
std::vector<Proposal> mixed_proposals() {
  Client a("aa"), b("bb");
  std::vector<Proposal> ps;
  ps.push_back(a(KvPut{"k1", "v1", std::nullopt}));
  ps.push_back(b(KvPut{"k1", "v2", uint64_t{7}}));  // cas mismatch: kv.cas_failed
  ps.push_back(a(KvPut{"k2", "v3", uint64_t{0}}));
  ps.push_back(ps[0]);  // retry of a's seq 1: recorded result
  ps.push_back(b(KvDelete{"k2", std::nullopt}));
  ps.push_back(b(RevokeCertificate{node('c'), "lost", 10}));
  ps.push_back(a(IssueCertificate{node('c'), "peer", 1, 2}));      // cert.revoked
  ps.push_back(b(RevokeCertificate{node('c'), "again", 11}));      // already revoked
  ps.push_back(Proposal{"aa", 99, KvPut{"", "x", std::nullopt}});  // tracker.bad_command
  return ps;
}

TEST(SqliteTrackerBatch, ResultsAndStateMatchApplyingOneByOne) {
  TempDir dir;
  auto one = open(dir.file("one.db"));
  auto batched = open(dir.file("batched.db"));
  const std::vector<Proposal> ps = mixed_proposals();
  std::vector<std::string> expected;
  for (size_t k = 0; k < ps.size(); ++k)
    expected.push_back(outcome(one->apply(LogIndex(5 + k), ps[k])));
  auto got = batched->apply_batch(batch_of(ps, 5));
  ASSERT_TRUE(got.ok()) << got.error().message;
  ASSERT_EQ(got->size(), ps.size());
  for (size_t k = 0; k < ps.size(); ++k)
    EXPECT_EQ(outcome((*got)[k]), expected[k]) << "entry " << k;
  // Spot checks of what the user sees, besides equality with the one-by-one path.
  expect_ok((*got)[0], R"({"index":5})");
  expect_error((*got)[1], kErrCasFailed);
  expect_ok((*got)[3], R"({"index":5})");
  expect_error((*got)[6], kErrCertRevoked);
  expect_error((*got)[8], kErrBadCommand);
  EXPECT_EQ(batched->applied_index(), LogIndex(5 + ps.size() - 1));
  EXPECT_EQ(snapshot_of(*batched), snapshot_of(*one));
  EXPECT_TRUE(revoked(*batched, node('c')));  // visible once the batch committed
  EXPECT_EQ((*batched->revocation(node('c')))->reason, "lost");
}

TEST(SqliteTrackerBatch, ReplayAfterReopenChangesNothingAndReturnsTheRecordedResults) {
  TempDir dir;
  const std::string path = dir.file("tracker.db");
  const std::vector<Proposal> ps = mixed_proposals();
  std::vector<std::string> first;
  std::string state;
  {
    auto t = open(path);
    auto got = t->apply_batch(batch_of(ps, 1));
    ASSERT_TRUE(got.ok());
    for (auto& r : *got) first.push_back(outcome(r));
    state = snapshot_of(*t);
  }
  auto t = open(path);
  EXPECT_EQ(t->applied_index(), LogIndex(ps.size()));
  // The driver re-delivers entries after a restart: no effect, same answers for recorded
  // clients ("{}" for the unrecorded bad proposal's replay is not asked: same client, seq 99
  // was recorded as a rejection).
  auto again = t->apply_batch(batch_of(ps, 1));
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->size(), ps.size());
  for (size_t k = 0; k < ps.size(); ++k) EXPECT_EQ(outcome((*again)[k]), first[k]) << "entry " << k;
  EXPECT_EQ(snapshot_of(*t), state);
}

// synchronous=NORMAL: a power loss may take back the last committed batches (never half of
// one). Simulated by copying the files after batch 1 and putting them back after batch 2:
// the tracker is at batch 1's last index and re-applying batch 2 from the Raft log gives the
// same state and the same answers as the run that was not interrupted.
TEST(SqliteTrackerBatch, ALostTailIsReappliedFromTheLogIdentically) {
  TempDir dir;
  const std::string path = dir.file("tracker.db");
  Client a("aa"), b("bb");
  std::vector<Proposal> first = {a(KvPut{"x", "1", std::nullopt}),
                                 b(KvPut{"y", "2", std::nullopt})};
  std::vector<Proposal> second = {a(KvPut{"x", "3", uint64_t{1}}), b(KvDelete{"y", uint64_t{2}}),
                                  first[0], a(RevokeCertificate{node('d'), "gone", 3})};
  std::vector<std::string> answers;
  std::string state;
  {
    auto t = open(path);
    ASSERT_TRUE(t->apply_batch(batch_of(first, 1)).ok());
    for (const char* suffix : {"", "-wal"}) {
      if (fs::exists(path + suffix))
        fs::copy_file(path + suffix, dir.file(std::string("saved") + suffix));
    }
    auto got = t->apply_batch(batch_of(second, 3));
    ASSERT_TRUE(got.ok());
    for (auto& r : *got) answers.push_back(outcome(r));
    state = snapshot_of(*t);
    EXPECT_TRUE(revoked(*t, node('d')));
  }
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  for (const char* suffix : {"", "-wal"}) {
    if (fs::exists(dir.file(std::string("saved") + suffix))) {
      fs::copy_file(dir.file(std::string("saved") + suffix), path + suffix);
    }
  }
  auto t = open(path);
  EXPECT_EQ(t->applied_index(), LogIndex(2));
  EXPECT_FALSE(revoked(*t, node('d')));
  auto got = t->apply_batch(batch_of(second, 3));
  ASSERT_TRUE(got.ok());
  for (size_t k = 0; k < second.size(); ++k)
    EXPECT_EQ(outcome((*got)[k]), answers[k]) << "entry " << k;
  EXPECT_EQ(t->applied_index(), LogIndex(6));
  EXPECT_EQ(snapshot_of(*t), state);
  EXPECT_TRUE(revoked(*t, node('d')));
}

TEST(SqliteTrackerBatch, AnEmptyBatchAndABatchAfterSingleAppliesKeepIndexesInOrder) {
  TempDir dir;
  auto t = open(dir.file("tracker.db"));
  auto none = t->apply_batch({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(t->applied_index(), LogIndex(0));
  Client a("aa");
  expect_ok(t->apply(LogIndex(1), a(KvPut{"k", "1", std::nullopt})), R"({"index":1})");
  // Indexes may skip (entries that are not tracker proposals).
  std::vector<Proposal> ps = {a(KvPut{"k", "2", uint64_t{1}}), a(KvPut{"k", "3", uint64_t{4}})};
  std::vector<TrackerStateMachine::BatchEntry> batch = {{LogIndex(4), &ps[0]},
                                                        {LogIndex(9), &ps[1]}};
  auto got = t->apply_batch(batch);
  ASSERT_TRUE(got.ok());
  expect_ok((*got)[0], R"({"index":4})");
  expect_ok((*got)[1], R"({"index":9})");
  EXPECT_EQ(t->applied_index(), LogIndex(9));
  EXPECT_EQ((*t->kv_get("k"))->create_index, 1u);
  EXPECT_EQ((*t->kv_get("k"))->modify_index, 9u);
}

}  // namespace
}  // namespace starling::tracker

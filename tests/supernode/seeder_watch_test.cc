#include "supernode/seeder_watch.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace starling::supernode {
namespace {

using namespace std::chrono_literals;
using Clock = SeederWatch::Clock;

const std::string kSelf(64, 'a');
const std::string kOther(64, 'b');
const std::string kThird(64, 'c');

SeededTask task(char c, const std::string& seeder, uint64_t epoch = 1) {
  return SeededTask{TaskId(std::string(64, c)), seeder, epoch};
}

TEST(SeederWatch, ASeederIsSilentAfterTheTimeoutSinceItWasLastHeard) {
  const Clock::time_point t0 = Clock::time_point{} + 1000s;
  SeederWatch w(2s);
  w.lead(t0);
  const std::vector<SeededTask> ready = {task('1', kOther)};
  w.heard(kOther, t0 + 5s);
  EXPECT_TRUE(w.silent(ready, kSelf, t0 + 6s).empty());
  EXPECT_TRUE(w.silent(ready, kSelf, t0 + 7s - 1ms).empty());
  EXPECT_EQ(w.silent(ready, kSelf, t0 + 7s), ready);
  // Heard again: silent again only a whole timeout later.
  w.heard(kOther, t0 + 7s);
  EXPECT_TRUE(w.silent(ready, kSelf, t0 + 8s).empty());
  EXPECT_EQ(w.silent(ready, kSelf, t0 + 9s), ready);
  // An RPC that arrives late with an older time does not move the last time back.
  w.heard(kOther, t0 + 20s);
  w.heard(kOther, t0 + 1s);
  EXPECT_TRUE(w.silent(ready, kSelf, t0 + 21s).empty());
}

TEST(SeederWatch, ANewLeaderGivesEverySeederAWholeTimeout) {
  const Clock::time_point t0 = Clock::time_point{} + 1000s;
  SeederWatch w(2s);
  w.heard(kOther, t0);  // heard long before leading
  w.lead(t0 + 10s);
  const std::vector<SeededTask> ready = {task('1', kOther), task('2', kThird)};
  EXPECT_TRUE(w.silent(ready, kSelf, t0 + 11s).empty());
  // Never heard at all (it died before this leadership): silent a timeout after the election.
  EXPECT_EQ(w.silent(ready, kSelf, t0 + 12s), ready);
  // A later election restarts the clock of everyone not heard since.
  w.heard(kThird, t0 + 12s);
  w.lead(t0 + 13s);
  EXPECT_TRUE(w.silent(ready, kSelf, t0 + 14s).empty());
  EXPECT_EQ(w.silent(ready, kSelf, t0 + 15s), ready);
}

TEST(SeederWatch, TheLeaderNeverReseedsItsOwnTasksAndKeepsTheOrder) {
  const Clock::time_point t0 = Clock::time_point{} + 1000s;
  SeederWatch w(1s);
  w.lead(t0);
  w.heard(kThird, t0 + 9s);
  const std::vector<SeededTask> ready = {task('1', kOther, 3), task('2', kSelf, 4),
                                         task('3', kThird, 5), task('4', kOther, 6)};
  const std::vector<SeededTask> want = {task('1', kOther, 3), task('4', kOther, 6)};
  EXPECT_EQ(w.silent(ready, kSelf, t0 + 9s), want);
  // Its own node id is never silent, even if it was never heard.
  EXPECT_TRUE(w.silent({task('2', kSelf)}, kSelf, t0 + 1000s).empty());
  EXPECT_TRUE(w.silent({}, kSelf, t0 + 1000s).empty());
}

}  // namespace
}  // namespace starling::supernode

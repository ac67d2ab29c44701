// What a killed get leaves (cli/leftovers.h): the names, the locks and the sweep, on real files.
#include "cli/leftovers.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/crypto/temp_dir.h"

namespace starling::cli {
namespace {

namespace fs = std::filesystem;

using crypto::testing::TempDir;

TEST(Leftovers, NamesAreExactlyGetsTemporaries) {
  EXPECT_TRUE(is_output_leftover_name(".out.bin.starling-Ab3xYz", "out.bin"));
  EXPECT_TRUE(is_output_leftover_name(".out.bin.starling-peer-000000", "out.bin"));
  EXPECT_TRUE(is_output_leftover_name(".x.starling-peer-zzzzzz", "x"));
  for (const char* other : {
           ".out.bin.starling-Ab3xY",       // five random characters
           ".out.bin.starling-Ab3xYzz",     // seven
           ".out.bin.starling-Ab3-Yz",      // not mkstemp's alphabet
           ".out.bin.starling-peer-Ab3xY",  // five, after peer-
           ".out.bin.starling-peer-",       // none
           ".out.bin.starling-",            // none
           "out.bin.starling-Ab3xYz",       // not hidden
           ".out.bi.starling-Ab3xYz",       // another output
           ".out.bin.x.starling-Ab3xYz",    // another output ("out.bin.x")
           ".out.bin.starlinG-Ab3xYz",      // another infix
           ".out.bin",                      // the output's own name, hidden
           "",
       }) {
    EXPECT_FALSE(is_output_leftover_name(other, "out.bin")) << other;
  }
  EXPECT_FALSE(is_output_leftover_name("..starling-Ab3xYz", ""));
  EXPECT_TRUE(is_socket_dir_leftover_name("starling-get-q1W2e3"));
  for (const char* other : {"starling-get-q1W2e", "starling-get-q1W2e3x", "starling-get-q1W2_3",
                            "xstarling-get-q1W2e3", "starling-peer-q1W2e3", ""}) {
    EXPECT_FALSE(is_socket_dir_leftover_name(other)) << other;
  }
}

TEST(Leftovers, ALockIsExclusiveUntilReleased) {
  TempDir dir;
  const std::string file = dir.file("f");
  std::ofstream(file) << "x";
  auto first = OwnerLock::take(file);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = OwnerLock::take(file);  // another open file description: refused
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().message, "cannot lock " + file + ": Resource temporarily unavailable");
  *first = OwnerLock();  // released
  EXPECT_TRUE(OwnerLock::take(file).ok());
  EXPECT_TRUE(OwnerLock::take(dir.path()).ok());  // directories too
  auto missing = OwnerLock::take(dir.file("none"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message,
            "cannot open " + dir.file("none") + ": No such file or directory");
}

void age(const fs::path& path, int seconds) {
  const timeval then[2] = {{std::time(nullptr) - seconds, 0}, {std::time(nullptr) - seconds, 0}};
  ASSERT_EQ(::lutimes(path.c_str(), then), 0) << path;
}

// Unlocked and old: removed (a data directory with everything in it). Locked, young, another
// output's, a symlink, or not a temporary name: kept.
TEST(Leftovers, SweepRemovesOnlyWhatNoRunningGetHolds) {
  TempDir scratch;
  const fs::path dir = scratch.path();
  const fs::path out = dir / "out" / "file.iso";
  const fs::path tmp = dir / "tmp";
  fs::create_directories(out.parent_path());
  fs::create_directories(tmp);
  const fs::path o = out.parent_path();
  std::ofstream(o / ".file.iso.starling-aaaaaa") << "partial";
  fs::create_directories(o / ".file.iso.starling-peer-bbbbbb" / "tasks" / "t");
  std::ofstream(o / ".file.iso.starling-peer-bbbbbb" / "tasks" / "t" / "seg-0") << "segment";
  fs::create_directories(tmp / "starling-get-cccccc");
  std::ofstream(o / ".file.iso.starling-dddddd") << "held";    // a running get's
  std::ofstream(o / ".file.iso.starling-eeeeee") << "young";   // just created
  std::ofstream(o / ".other.iso.starling-ffffff") << "other";  // another output's
  std::ofstream(o / "notes.txt") << "the user's";
  fs::create_directories(tmp / "starling-get-gggggg");  // a running get's
  fs::create_directories(dir / "target");
  fs::create_symlink(dir / "target", o / ".file.iso.starling-peer-hhhhhh");
  for (const char* name :
       {".file.iso.starling-aaaaaa", ".file.iso.starling-peer-bbbbbb", ".file.iso.starling-dddddd",
        ".other.iso.starling-ffffff", "notes.txt", ".file.iso.starling-peer-hhhhhh"}) {
    age(o / name, 60);
  }
  age(tmp / "starling-get-cccccc", 60);
  age(tmp / "starling-get-gggggg", 60);
  auto held = OwnerLock::take((o / ".file.iso.starling-dddddd").string());
  auto held_dir = OwnerLock::take((tmp / "starling-get-gggggg").string());
  ASSERT_TRUE(held.ok() && held_dir.ok());

  EXPECT_EQ(sweep_leftovers(out.string(), tmp.string()),
            (std::vector<std::string>{(o / ".file.iso.starling-aaaaaa").string(),
                                      (o / ".file.iso.starling-peer-bbbbbb").string(),
                                      (tmp / "starling-get-cccccc").string()}));
  std::vector<std::string> left = TempDir::entries_of(o);
  for (const auto& e : TempDir::entries_of(tmp)) left.push_back(e);
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{
                      ".file.iso.starling-dddddd", ".file.iso.starling-eeeeee",
                      ".file.iso.starling-peer-hhhhhh", ".other.iso.starling-ffffff", "notes.txt",
                      "starling-get-gggggg"}));
  EXPECT_TRUE(fs::exists(dir / "target"));
  // Once the running get has gone, its leftovers go too.
  *held = OwnerLock();
  *held_dir = OwnerLock();
  EXPECT_EQ(sweep_leftovers(out.string(), tmp.string()).size(), 2u);
  // A missing directory is nothing to sweep.
  EXPECT_TRUE(sweep_leftovers((dir / "none" / "f").string(), (dir / "none").string()).empty());
}

}  // namespace
}  // namespace starling::cli

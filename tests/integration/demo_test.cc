// `starling demo` end to end, and its cleanup when interrupted.
#include <dirent.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include "tests/integration/process.h"

namespace starling::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Processes whose command line mentions `needle`.
int processes_mentioning(const std::string& needle) {
  int count = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = read_text(e.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos) ++count;
  }
  return count;
}

std::string working_dir(const std::string& output) {
  std::smatch m;
  static const std::regex re("working directory (/tmp/starling-demo-[A-Za-z0-9]+)");
  return std::regex_search(output, m, re) ? m[1].str() : "";
}

TEST(DemoTest, SmallRunVerifiesEveryOutputAndCleansUp) {
  TempDir d;
  auto r = run_starling({"demo", "--size-mib", "24", "--peers", "3"}, d / "demo.log", 300s);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("origin:    1 request(s), 24.0 MiB sent"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("demo OK: every output is byte-identical"), std::string::npos);
  const std::string dir = working_dir(r.output);
  ASSERT_FALSE(dir.empty()) << r.output;
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_EQ(processes_mentioning(dir), 0);
}

TEST(DemoTest, CtrlCStopsEveryProcessAndRemovesTheWorkingDirectory) {
  TempDir d;
  Process demo({"demo", "--size-mib", "512", "--peers", "4"}, d / "demo.log");
  ASSERT_TRUE(
      eventually([&] { return demo.output().find("started origin") != std::string::npos; }, 120s))
      << demo.output();
  const std::string dir = working_dir(demo.output());
  ASSERT_FALSE(dir.empty()) << demo.output();
  EXPECT_GT(processes_mentioning(dir), 4);  // origin, supernode, peers, gets
  demo.signal(SIGINT);
  EXPECT_EQ(demo.wait(60s), 130) << demo.output();
  EXPECT_NE(demo.output().find("interrupted: stopping every process"), std::string::npos);
  EXPECT_EQ(processes_mentioning(dir), 0);
  EXPECT_FALSE(fs::exists(dir));
}

}  // namespace
}  // namespace starling::testing

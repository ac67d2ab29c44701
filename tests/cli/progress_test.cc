#include "cli/progress.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace starling::cli {
namespace {

constexpr int64_t kMiB = 1 << 20;

TEST(ProgressLine, AFinalSizeShowsAPercentage) {
  EXPECT_EQ(progress_line("downloading", 60 * kMiB, 256 * kMiB, 3, true),
            "downloading 60.0 MiB / 256.0 MiB (23%), 3 peers");
  EXPECT_EQ(progress_line("downloading", 256 * kMiB, 256 * kMiB, 1, true),
            "downloading 256.0 MiB / 256.0 MiB (100%), 1 peer");
  EXPECT_EQ(progress_line("downloading", 0, 1, 0, true),
            "downloading 0.0 MiB / 0.0 MiB (0%), 0 peers");
}

// While the origin is still sending, total_bytes is the published segments' size: the line
// says it is a lower bound instead of a percentage that would fall when the next one appears
// ("93%" of 64 MiB, then "54%" of 128 MiB).
TEST(ProgressLine, AnUnknownSizeIsShownAsALowerBound) {
  EXPECT_EQ(progress_line("downloading", 60 * kMiB, 64 * kMiB, 2, false),
            "downloading 60.0 MiB of at least 64.0 MiB, 2 peers");
  EXPECT_EQ(progress_line("downloading", 70 * kMiB, 128 * kMiB, 1, false),
            "downloading 70.0 MiB of at least 128.0 MiB, 1 peer");
}

TEST(ProgressLine, OtherStatesAndNothingToCountShowTheState) {
  EXPECT_EQ(progress_line("fetching", 0, 0, 0, false), "fetching…");
  EXPECT_EQ(progress_line("verifying", 5, 5, 1, true), "verifying…");
  EXPECT_EQ(progress_line("downloading", 0, 0, 4, false), "downloading…");
  EXPECT_EQ(progress_line("", 0, 0, 0, false), "…");
}

TEST(ProgressLine, OutOfRangeCountsAreClamped) {
  EXPECT_EQ(progress_line("downloading", 9 * kMiB, 8 * kMiB, 1, true),
            "downloading 8.0 MiB / 8.0 MiB (100%), 1 peer");
  EXPECT_EQ(progress_line("downloading", -5, 8 * kMiB, 1, true),
            "downloading 0.0 MiB / 8.0 MiB (0%), 1 peer");
  const int64_t huge = INT64_MAX;
  EXPECT_EQ(
      progress_line("downloading", huge / 2, huge, 1, true).find("(50%)") != std::string::npos,
      true);
}

}  // namespace
}  // namespace starling::cli

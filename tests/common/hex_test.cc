#include "common/hex.h"

#include <gtest/gtest.h>

namespace starling {
namespace {

TEST(Hex, RoundTripsEveryByte) {
  Bytes all(256);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint8_t>(i);
  const std::string hex = to_hex(all);
  ASSERT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 8), "00010203");
  EXPECT_EQ(from_hex(hex), all);
}

TEST(Hex, RejectsOddLengthAndNonHex) {
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
  EXPECT_EQ(from_hex("ABcd"), (Bytes{0xab, 0xcd}));
  EXPECT_EQ(from_hex(""), Bytes{});
}

}  // namespace
}  // namespace starling

// The renewal schedule and the --cert-lifetime parser (crypto/renewal.h): table-driven.
#include "crypto/renewal.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <thread>

namespace starling::crypto {
namespace {

using std::chrono::seconds;

TEST(RenewAt, TwoThirdsOfTheValidity) {
  struct Case {
    int64_t not_before, not_after, want;
  };
  const Case cases[] = {
      {0, 43200, 28800},                              // 12 h leaf: renew after 8 h
      {1'700'000'000, 1'700'000'030, 1'700'000'020},  // 30 s leaf: after 20 s
      {1000, 1090, 1060},                             // 90 s
      {0, 1, 0},                                      // floor(2/3)
      {0, 2, 1},                                      // floor(4/3)
      {0, 3, 2},
      {0, 4, 2},        // floor(8/3)
      {0, 5, 3},        // floor(10/3)
      {100, 100, 100},  // no validity: due at once
      {100, 50, 100},   // inverted: due at once
  };
  for (const auto& c : cases) {
    EXPECT_EQ(renew_at(c.not_before, c.not_after), c.want) << c.not_before << ".." << c.not_after;
  }
}

TEST(RenewAt, AlwaysInsideTheValidityAndNoOverflow) {
  const int64_t big = std::numeric_limits<int64_t>::max();
  const int64_t small = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(renew_at(0, big), big / 3 * 2 + (big % 3) * 2 / 3);
  const int64_t t = renew_at(small, big);
  EXPECT_GT(t, small);
  EXPECT_LT(t, big);
  for (int64_t span = 1; span < 200; ++span) {
    const int64_t at = renew_at(1000, 1000 + span);
    EXPECT_GE(at, 1000);
    EXPECT_LT(at, 1000 + span);
    EXPECT_GE(3 * (at - 1000), 2 * span - 2) << span;  // not much earlier than 2/3
  }
}

TEST(RenewalRetryDelay, DoublesIsCappedAndStaysInsideTheLeaf) {
  EXPECT_EQ(renewal_retry_delay(1, 0, 10'000), seconds(1));
  EXPECT_EQ(renewal_retry_delay(2, 0, 10'000), seconds(2));
  EXPECT_EQ(renewal_retry_delay(3, 0, 10'000), seconds(4));
  EXPECT_EQ(renewal_retry_delay(6, 0, 10'000), seconds(32));
  EXPECT_EQ(renewal_retry_delay(7, 0, 10'000), seconds(60));
  EXPECT_EQ(renewal_retry_delay(1000, 0, 10'000), seconds(60));
  EXPECT_EQ(renewal_retry_delay(0, 0, 10'000), seconds(1));
  // Never past the old leaf's end, never below a second.
  EXPECT_EQ(renewal_retry_delay(7, 9'990, 10'000), seconds(10));
  EXPECT_EQ(renewal_retry_delay(7, 9'999, 10'000), seconds(1));
  // Expired: an enrolment from scratch, no hurry.
  EXPECT_EQ(renewal_retry_delay(7, 10'000, 10'000), seconds(60));
  EXPECT_EQ(renewal_retry_delay(7, 20'000, 10'000), seconds(60));
}

TEST(ParseCertLifetime, AcceptsUnits) {
  struct Case {
    const char* text;
    int64_t want;
  };
  const Case cases[] = {{"90s", 90},    {"10s", 10},        {"15m", 900},    {"12h", 43200},
                        {"7d", 604800}, {"366d", 31622400}, {"0012h", 43200}};
  for (const auto& c : cases) {
    auto got = parse_cert_lifetime(c.text);
    ASSERT_TRUE(got.ok()) << c.text << ": " << got.error().message;
    EXPECT_EQ(got->count(), c.want) << c.text;
  }
}

TEST(ParseCertLifetime, RefusesWithOneLine) {
  for (const char* text : {"", "s", "12", "12x", "h12", "1.5h", "-5m", "+5m", "12 h", "12hh",
                           "99999999999999999999s", "1e3s"}) {
    auto got = parse_cert_lifetime(text);
    ASSERT_FALSE(got.ok()) << text;
    EXPECT_EQ(got.error().code, kErrLifetime);
    EXPECT_EQ(got.error().message, "'" + std::string(text).substr(0, 40) +
                                       "' is not a duration (use e.g. 90s, 15m, 12h, 7d)")
        << text;
  }
  for (const char* text : {"0s", "9s", "367d", "9000h", "999999999999d"}) {
    auto got = parse_cert_lifetime(text);
    ASSERT_FALSE(got.ok()) << text;
    EXPECT_EQ(got.error().message,
              "certificate lifetime '" + std::string(text) + "' is out of range (10s to 366d)")
        << text;
  }
}

TEST(SleepUntilUnix, ReturnsAtOnceForThePastAndFalseWhenStopped) {
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::unique_lock lock(mu);
  EXPECT_TRUE(sleep_until_unix(lock, cv, stopping, 0));  // 1970 is past
  stopping = true;
  EXPECT_FALSE(sleep_until_unix(lock, cv, stopping, std::numeric_limits<int64_t>::max()));
  // A stop set (and notified) by another thread ends a long sleep.
  stopping = false;
  std::thread stopper([&] {
    std::lock_guard l(mu);
    stopping = true;
    cv.notify_all();
  });
  EXPECT_FALSE(sleep_until_unix(lock, cv, stopping, std::numeric_limits<int64_t>::max()));
  lock.unlock();
  stopper.join();
}

}  // namespace
}  // namespace starling::crypto

// When a node replaces its certificate, and how long certificates live (issue 5 items 1, 7).
// Pure functions: no clock, no I/O. The peer daemon and the supernode call renew_at() with
// their leaf's validity and schedule the re-enrolment (or re-signing) themselves.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "common/result.h"

namespace starling::crypto {

inline constexpr char kErrLifetime[] = "crypto.lifetime";

// Default lifetime of the leaves a supernode issues (Enroll) and signs for itself.
inline constexpr std::chrono::seconds kDefaultCertLifetime{12 * 3600};
// Bounds of --cert-lifetime: short enough lives for tests, never longer than a year (the CA
// lives ten).
inline constexpr std::chrono::seconds kMinCertLifetime{10};
inline constexpr std::chrono::seconds kMaxCertLifetime{366 * 24 * 3600};

// The unix time (seconds) at which a leaf valid from `not_before` to `not_after` should be
// replaced: when two thirds of its validity have elapsed, so the last third is left for
// retries while the old leaf still works. A leaf whose not_after is not after its not_before
// is due at once (returns not_before).
int64_t renew_at(int64_t not_before, int64_t not_after);

// The pause before the next attempt after `failures` (>= 1) consecutive failed renewals:
// 1 s doubling up to 60 s, but while the leaf is valid never past `not_after` - `now` (its
// remaining life), and never less than 1 s.
std::chrono::seconds renewal_retry_delay(int failures, int64_t now, int64_t not_after);

// A duration as written on the command line: a positive integer followed by one unit,
// "s", "m", "h" or "d" ("90s", "15m", "12h", "7d"), within [kMinCertLifetime,
// kMaxCertLifetime]. Errors (kErrLifetime) are one line naming the input, e.g.
// "'12x' is not a duration (use e.g. 90s, 15m, 12h, 7d)". Never crashes on any bytes.
Result<std::chrono::seconds> parse_cert_lifetime(std::string_view text);

// The renewal threads' sleep: waits on `cv` (with `lock` held on its mutex) until unix time
// `t`, re-reading the wall clock at least every minute; false when `stopping` (guarded by the
// same mutex, with `cv` notified when it is set) became true first.
bool sleep_until_unix(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                      const bool& stopping, int64_t t);

}  // namespace starling::crypto

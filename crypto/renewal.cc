#include "crypto/renewal.h"

#include <algorithm>
#include <string>

namespace starling::crypto {

int64_t renew_at(int64_t not_before, int64_t not_after) {
  if (not_after <= not_before) return not_before;
  // (not_after - not_before) may exceed INT64_MAX for absurd inputs: compute in unsigned.
  const uint64_t span = static_cast<uint64_t>(not_after) - static_cast<uint64_t>(not_before);
  const uint64_t elapsed = span / 3 * 2 + (span % 3) * 2 / 3;  // floor(2 * span / 3)
  return static_cast<int64_t>(static_cast<uint64_t>(not_before) + elapsed);
}

std::chrono::seconds renewal_retry_delay(int failures, int64_t now, int64_t not_after) {
  const int doublings = std::clamp(failures - 1, 0, 6);  // 1, 2, 4, ... 64 → capped at 60
  int64_t delay = std::min<int64_t>(int64_t{1} << doublings, 60);
  if (not_after > now) delay = std::min(delay, not_after - now);
  return std::chrono::seconds(std::max<int64_t>(delay, 1));
}

Result<std::chrono::seconds> parse_cert_lifetime(std::string_view text) {
  const std::string shown(text.substr(0, 40));
  auto bad = [&] {
    return make_error(kErrLifetime,
                      "'" + shown + "' is not a duration (use e.g. 90s, 15m, 12h, 7d)");
  };
  if (text.size() < 2) return bad();
  int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      return bad();
  }
  const std::string_view digits = text.substr(0, text.size() - 1);
  if (digits.size() > 12) return bad();  // above the maximum in any unit; no overflow below
  int64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return bad();
    value = value * 10 + (c - '0');
  }
  const std::chrono::seconds lifetime(value * unit);
  if (lifetime < kMinCertLifetime || lifetime > kMaxCertLifetime) {
    return make_error(kErrLifetime, "certificate lifetime '" + shown + "' is out of range (" +
                                        std::to_string(kMinCertLifetime.count()) + "s to " +
                                        std::to_string(kMaxCertLifetime.count() / 86400) + "d)");
  }
  return lifetime;
}

bool sleep_until_unix(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                      const bool& stopping, int64_t t) {
  while (!stopping) {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    if (t <= now) return true;
    cv.wait_for(lock, std::chrono::seconds(std::min<int64_t>(t - now, 60)));
  }
  return false;
}

}  // namespace starling::crypto

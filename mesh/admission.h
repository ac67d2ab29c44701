// Admission control for mesh handshakes: what a listener checks on a connection before it
// spends a Diffie-Hellman (or a thread's time) on it. Pure core: no I/O, no clock and no RNG
// of its own (callers pass a steady-clock `now` and, for the cookie secret and nonces, a
// random-bytes function).
//
// The scheme follows WireGuard's (whitepaper §5.4.4 and §5.4.7), keyed by the network PSK
// rather than by the responder's static key, since an XX initiator does not know that key:
//
// - mac1: every first handshake frame ends with mac1 = MAC(HASH("mac1----" || psk), bytes
//   before mac1). A sender without the network key cannot produce it, so the responder drops
//   its connection before any DH and before sending anything (in particular before message 2,
//   which in XX carries the responder's static key).
// - cookies: when the responder is under load it answers a first frame whose mac2 is missing or
//   wrong with a cookie reply instead of message 2. cookie = MAC(secret, source IP), where
//   the 32-byte secret is replaced every 2 minutes; the reply carries it sealed with
//   XChaCha20-Poly1305 (key HASH("cookie--" || psk), random 24-byte nonce, ad = the frame's
//   mac1). The initiator retries with mac2 = MAC(cookie, bytes before mac2), which proves it
//   receives traffic at its source address, and the responder checks it with one keyed hash.
// - a per-source-IP token bucket bounds how fast one address can start handshakes.
//
// MAC(key, x) is keyed BLAKE2b with a 16-byte output; HASH is BLAKE2b-512 truncated to the 32
// bytes used as a key.
//
// Threading: every class here has one owner at a time (the listener guards shared ones with
// its own mutex).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/result.h"
#include "mesh/noise.h"

namespace starling::mesh::admission {

inline constexpr char kErrMalformed[] = "mesh.bad_frame";  // a frame that does not parse

inline constexpr size_t kMacLen = 16;
inline constexpr size_t kCookieLen = 16;
inline constexpr size_t kCookieNonceLen = 24;
inline constexpr size_t kCookieReplyLen = kCookieNonceLen + kCookieLen + noise::kTagLen;  // 56
// The responder replaces its cookie secret this often and also accepts the previous one, so a
// cookie stays valid for at least this long after it was issued.
inline constexpr std::chrono::seconds kCookieSecretLifetime{120};

using Time = std::chrono::steady_clock::time_point;
using Mac = std::array<uint8_t, kMacLen>;
using Cookie = std::array<uint8_t, kCookieLen>;
using RandomBytes = std::function<void(std::span<uint8_t>)>;

// The Noise pattern of a handshake, named by the first frame.
enum class PatternId : uint8_t { kXXpsk3 = 1, kIKpsk2 = 2 };
// What the responder sends back to a first frame.
enum class ReplyKind : uint8_t { kHandshake = 1, kCookie = 2 };

// Keys derived from the network PSK once per configuration. Wiped on destruction.
struct AdmissionKeys {
  noise::Key mac1{};
  noise::Key cookie_reply{};
  ~AdmissionKeys();
};
void derive_keys(const noise::Key& psk, AdmissionKeys& out);

// Keyed BLAKE2b-128 of a || b; the key is 16 to 64 bytes.
Mac keyed_mac(noise::ByteView key, noise::ByteView a, noise::ByteView b = {});

// ---- first frame (initiator -> responder) ----
//   u16 BE L || u8 pattern || Noise message 1 || mac1 (16) || mac2 (16)
// L counts the bytes after itself; mac1 covers every byte before it (L included), mac2 every
// byte before it (mac1 included) and is all zero when the initiator holds no cookie.
inline constexpr size_t kFirstFrameOverhead = 2 + 1 + 2 * kMacLen;

Bytes encode_first_frame(PatternId pattern, noise::ByteView noise_message,
                         const AdmissionKeys& keys, const std::optional<Cookie>& cookie);

// A parsed first frame; the views point into the bytes given to parse_first_frame.
struct FirstFrame {
  PatternId pattern = PatternId::kXXpsk3;
  noise::ByteView noise_message;
  noise::ByteView before_mac1;
  noise::ByteView before_mac2;
  Mac mac1{};
  Mac mac2{};
};
// `frame` is the whole frame, length field included. Never crashes on any bytes; errors are
// kErrMalformed (wrong length field, unknown pattern, too short).
Result<FirstFrame> parse_first_frame(noise::ByteView frame);
bool mac1_valid(const FirstFrame& f, const AdmissionKeys& keys);  // constant time
bool mac2_valid(const FirstFrame& f, const Cookie& cookie);       // constant time

// ---- reply frame (responder -> initiator) ----
//   u16 BE L || u8 kind || body
// kind 1: body = Noise message 2. kind 2: body = cookie reply (nonce || sealed cookie).
Bytes encode_reply_frame(ReplyKind kind, noise::ByteView body);
struct ReplyFrame {
  ReplyKind kind = ReplyKind::kHandshake;
  noise::ByteView body;
};
// `payload` is the frame without its length field. Errors: kErrMalformed.
Result<ReplyFrame> parse_reply_frame(noise::ByteView payload);

using CookieNonce = std::array<uint8_t, kCookieNonceLen>;
Bytes seal_cookie_reply(const Cookie& cookie, const Mac& mac1, const AdmissionKeys& keys,
                        const CookieNonce& nonce);
// Opens a cookie reply to the first frame that carried `mac1`. Never crashes on any bytes;
// errors are kErrMalformed (wrong size) and noise::kErrDecrypt (not sealed by a holder of the
// PSK, or an answer to another frame).
Result<Cookie> open_cookie_reply(noise::ByteView body, const Mac& mac1, const AdmissionKeys& keys);

// The responder's side of cookies: the rotating secret, cookies for source addresses, mac2
// checks and cookie replies.
class CookieMaker {
 public:
  explicit CookieMaker(RandomBytes random);
  ~CookieMaker();
  CookieMaker(const CookieMaker&) = delete;
  CookieMaker& operator=(const CookieMaker&) = delete;

  // The cookie `source` (an IP address) must present now.
  Cookie cookie_for(std::string_view source, Time now);
  // True if f's mac2 was made with a cookie issued to `source` under the current or the
  // previous secret.
  bool mac2_valid(const FirstFrame& f, std::string_view source, Time now);
  // The cookie reply body for a first frame from `source` (a fresh random nonce each time).
  Bytes reply(const FirstFrame& f, std::string_view source, const AdmissionKeys& keys, Time now);

 private:
  void rotate_if_due(Time now);
  RandomBytes random_;
  std::array<uint8_t, 32> current_{};
  std::array<uint8_t, 32> previous_{};
  bool started_ = false;
  bool has_previous_ = false;
  Time current_since_{};
};

// The initiator's side: cookies received, per responder ("host:port"), used while younger than
// kCookieSecretLifetime. Holds at most `capacity` responders (expired ones go first, then the
// oldest).
class CookieJar {
 public:
  explicit CookieJar(size_t capacity = 256) : capacity_(capacity) {}
  void store(const std::string& responder, const Cookie& cookie, Time now);
  std::optional<Cookie> find(const std::string& responder, Time now) const;
  size_t size() const { return cookies_.size(); }

 private:
  struct Entry {
    Cookie cookie;
    Time received;
  };
  size_t capacity_;
  std::unordered_map<std::string, Entry> cookies_;
};

// A token bucket: `burst` tokens at most, refilled at `rate` per second; starts full.
class TokenBucket {
 public:
  TokenBucket(double rate_per_second, double burst, Time now);
  bool try_take(Time now);  // takes one token if there is one
  bool full(Time now) const;

 private:
  double level(Time now) const;
  double rate_;
  double burst_;
  double tokens_;
  Time last_;
};

// A token bucket per source IP. rate_per_second <= 0 disables the limit. At most max_sources
// buckets are kept: when the table is full, buckets that have refilled (indistinguishable from
// new ones) are dropped; if none has, the new source is admitted untracked this once.
class SourceRateLimiter {
 public:
  SourceRateLimiter(double rate_per_second, double burst, size_t max_sources = 16384);
  bool admit(const std::string& source, Time now);
  size_t tracked() const { return buckets_.size(); }

 private:
  double rate_;
  double burst_;
  size_t max_sources_;
  std::unordered_map<std::string, TokenBucket> buckets_;
};

// Lets a log line through at most once per `interval`, counting what it held back.
class LogThrottle {
 public:
  explicit LogThrottle(std::chrono::steady_clock::duration interval = std::chrono::seconds(1))
      : interval_(interval) {}
  // Returns the number of lines suppressed since the last one let through, or nullopt if this
  // one is suppressed.
  std::optional<uint64_t> allow(Time now);

 private:
  std::chrono::steady_clock::duration interval_;
  std::optional<Time> last_;
  uint64_t suppressed_ = 0;
};

}  // namespace starling::mesh::admission

#include "mesh/admission.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace starling::mesh::admission {
namespace {

void derive(std::string_view label, const noise::Key& psk, noise::Key& out) {
  noise::Hash h = noise::hash(noise::as_bytes(label), psk);
  std::memcpy(out.data(), h.data(), out.size());
  sodium_memzero(h.data(), h.size());
}

uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

Mac cookie_mac(const std::array<uint8_t, 32>& secret, std::string_view source) {
  return keyed_mac(secret, noise::as_bytes(source));
}

}  // namespace

AdmissionKeys::~AdmissionKeys() {
  sodium_memzero(mac1.data(), mac1.size());
  sodium_memzero(cookie_reply.data(), cookie_reply.size());
}

void derive_keys(const noise::Key& psk, AdmissionKeys& out) {
  derive("mac1----", psk, out.mac1);
  derive("cookie--", psk, out.cookie_reply);
}

Mac keyed_mac(noise::ByteView key, noise::ByteView a, noise::ByteView b) {
  if (sodium_init() < 0) std::abort();
  crypto_generichash_state st;
  crypto_generichash_init(&st, key.data(), key.size(), kMacLen);
  crypto_generichash_update(&st, a.data(), a.size());
  crypto_generichash_update(&st, b.data(), b.size());
  Mac out{};
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(&st, sizeof st);
  return out;
}

// ---- first frame ----

Bytes encode_first_frame(PatternId pattern, noise::ByteView noise_message,
                         const AdmissionKeys& keys, const std::optional<Cookie>& cookie) {
  const size_t length = kFirstFrameOverhead - 2 + noise_message.size();
  Bytes frame;
  frame.reserve(2 + length);
  frame.push_back(static_cast<uint8_t>(length >> 8));
  frame.push_back(static_cast<uint8_t>(length));
  frame.push_back(static_cast<uint8_t>(pattern));
  frame.insert(frame.end(), noise_message.begin(), noise_message.end());
  Mac m1 = keyed_mac(keys.mac1, frame);
  frame.insert(frame.end(), m1.begin(), m1.end());
  Mac m2{};
  if (cookie) m2 = keyed_mac(*cookie, frame);
  frame.insert(frame.end(), m2.begin(), m2.end());
  return frame;
}

Result<FirstFrame> parse_first_frame(noise::ByteView frame) {
  if (frame.size() < kFirstFrameOverhead) {
    return make_error(kErrMalformed, "first handshake frame of " + std::to_string(frame.size()) +
                                         " bytes is too short");
  }
  if (frame.size() > 2 + 65535 || get_u16(frame.data()) != frame.size() - 2) {
    return make_error(kErrMalformed, "first handshake frame length field does not match");
  }
  FirstFrame f;
  const uint8_t pattern = frame[2];
  if (pattern != static_cast<uint8_t>(PatternId::kXXpsk3) &&
      pattern != static_cast<uint8_t>(PatternId::kIKpsk2)) {
    return make_error(kErrMalformed, "unknown handshake pattern id " + std::to_string(pattern));
  }
  f.pattern = static_cast<PatternId>(pattern);
  const size_t mac1_at = frame.size() - 2 * kMacLen;
  f.noise_message = frame.subspan(3, mac1_at - 3);
  f.before_mac1 = frame.first(mac1_at);
  f.before_mac2 = frame.first(mac1_at + kMacLen);
  std::memcpy(f.mac1.data(), frame.data() + mac1_at, kMacLen);
  std::memcpy(f.mac2.data(), frame.data() + mac1_at + kMacLen, kMacLen);
  return f;
}

bool mac1_valid(const FirstFrame& f, const AdmissionKeys& keys) {
  Mac expected = keyed_mac(keys.mac1, f.before_mac1);
  return sodium_memcmp(expected.data(), f.mac1.data(), kMacLen) == 0;
}

bool mac2_valid(const FirstFrame& f, const Cookie& cookie) {
  Mac expected = keyed_mac(cookie, f.before_mac2);
  return sodium_memcmp(expected.data(), f.mac2.data(), kMacLen) == 0;
}

// ---- reply frame ----

Bytes encode_reply_frame(ReplyKind kind, noise::ByteView body) {
  const size_t length = 1 + body.size();
  Bytes frame;
  frame.reserve(2 + length);
  frame.push_back(static_cast<uint8_t>(length >> 8));
  frame.push_back(static_cast<uint8_t>(length));
  frame.push_back(static_cast<uint8_t>(kind));
  frame.insert(frame.end(), body.begin(), body.end());
  return frame;
}

Result<ReplyFrame> parse_reply_frame(noise::ByteView payload) {
  if (payload.empty()) return make_error(kErrMalformed, "empty handshake reply");
  const uint8_t kind = payload[0];
  ReplyFrame r;
  r.body = payload.subspan(1);
  if (kind == static_cast<uint8_t>(ReplyKind::kHandshake)) {
    r.kind = ReplyKind::kHandshake;
  } else if (kind == static_cast<uint8_t>(ReplyKind::kCookie)) {
    r.kind = ReplyKind::kCookie;
  } else {
    return make_error(kErrMalformed, "unknown handshake reply kind " + std::to_string(kind));
  }
  return r;
}

Bytes seal_cookie_reply(const Cookie& cookie, const Mac& mac1, const AdmissionKeys& keys,
                        const CookieNonce& nonce) {
  Bytes out(kCookieReplyLen);
  std::memcpy(out.data(), nonce.data(), nonce.size());
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + kCookieNonceLen, &clen, cookie.data(),
                                             cookie.size(), mac1.data(), mac1.size(), nullptr,
                                             nonce.data(), keys.cookie_reply.data());
  return out;
}

Result<Cookie> open_cookie_reply(noise::ByteView body, const Mac& mac1, const AdmissionKeys& keys) {
  if (body.size() != kCookieReplyLen) {
    return make_error(kErrMalformed, "cookie reply of " + std::to_string(body.size()) +
                                         " bytes (expected " + std::to_string(kCookieReplyLen) +
                                         ")");
  }
  Cookie cookie{};
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          cookie.data(), &mlen, nullptr, body.data() + kCookieNonceLen,
          body.size() - kCookieNonceLen, mac1.data(), mac1.size(), body.data(),
          keys.cookie_reply.data()) != 0) {
    return make_error(noise::kErrDecrypt,
                      "cookie reply does not authenticate (wrong network key or not ours)");
  }
  return cookie;
}

// ---- CookieMaker ----

CookieMaker::CookieMaker(RandomBytes random) : random_(std::move(random)) {}

CookieMaker::~CookieMaker() {
  sodium_memzero(current_.data(), current_.size());
  sodium_memzero(previous_.data(), previous_.size());
}

void CookieMaker::rotate_if_due(Time now) {
  if (!started_) {
    random_(current_);
    current_since_ = now;
    started_ = true;
    return;
  }
  if (now - current_since_ < kCookieSecretLifetime) return;
  // The retiring secret stays acceptable for one more period only if it was current until
  // just now; after a long idle spell it is simply dropped.
  has_previous_ = now - current_since_ < 2 * kCookieSecretLifetime;
  previous_ = current_;
  random_(current_);
  current_since_ = now;
}

Cookie CookieMaker::cookie_for(std::string_view source, Time now) {
  rotate_if_due(now);
  return cookie_mac(current_, source);
}

bool CookieMaker::mac2_valid(const FirstFrame& f, std::string_view source, Time now) {
  rotate_if_due(now);
  if (admission::mac2_valid(f, cookie_mac(current_, source))) return true;
  return has_previous_ && admission::mac2_valid(f, cookie_mac(previous_, source));
}

Bytes CookieMaker::reply(const FirstFrame& f, std::string_view source, const AdmissionKeys& keys,
                         Time now) {
  Cookie cookie = cookie_for(source, now);
  CookieNonce nonce;
  random_(nonce);
  Bytes body = seal_cookie_reply(cookie, f.mac1, keys, nonce);
  sodium_memzero(cookie.data(), cookie.size());
  return body;
}

// ---- CookieJar ----

void CookieJar::store(const std::string& responder, const Cookie& cookie, Time now) {
  if (cookies_.size() >= capacity_ && !cookies_.contains(responder)) {
    std::erase_if(cookies_, [&](const auto& kv) {
      return now - kv.second.received >= kCookieSecretLifetime;
    });
    if (cookies_.size() >= capacity_) {
      auto oldest = std::min_element(cookies_.begin(), cookies_.end(), [](auto& a, auto& b) {
        return a.second.received < b.second.received;
      });
      if (oldest != cookies_.end()) cookies_.erase(oldest);
    }
  }
  if (capacity_ == 0) return;
  cookies_[responder] = Entry{cookie, now};
}

std::optional<Cookie> CookieJar::find(const std::string& responder, Time now) const {
  auto it = cookies_.find(responder);
  if (it == cookies_.end()) return std::nullopt;
  if (now - it->second.received >= kCookieSecretLifetime || now < it->second.received) {
    return std::nullopt;
  }
  return it->second.cookie;
}

// ---- TokenBucket ----

TokenBucket::TokenBucket(double rate_per_second, double burst, Time now)
    : rate_(rate_per_second), burst_(std::max(burst, 1.0)), tokens_(burst_), last_(now) {}

double TokenBucket::level(Time now) const {
  if (now <= last_) return tokens_;
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  return std::min(burst_, tokens_ + elapsed * rate_);
}

bool TokenBucket::try_take(Time now) {
  tokens_ = level(now);
  if (now > last_) last_ = now;
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

bool TokenBucket::full(Time now) const { return level(now) >= burst_; }

// ---- SourceRateLimiter ----

SourceRateLimiter::SourceRateLimiter(double rate_per_second, double burst, size_t max_sources)
    : rate_(rate_per_second), burst_(burst), max_sources_(max_sources) {}

bool SourceRateLimiter::admit(const std::string& source, Time now) {
  if (rate_ <= 0) return true;
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_sources_) {
      std::erase_if(buckets_, [&](const auto& kv) { return kv.second.full(now); });
    }
    if (buckets_.size() >= max_sources_) return true;  // untracked this once (see header)
    it = buckets_.emplace(source, TokenBucket(rate_, burst_, now)).first;
  }
  return it->second.try_take(now);
}

// ---- LogThrottle ----

std::optional<uint64_t> LogThrottle::allow(Time now) {
  if (last_ && now - *last_ < interval_) {
    ++suppressed_;
    return std::nullopt;
  }
  last_ = now;
  uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

}  // namespace starling::mesh::admission

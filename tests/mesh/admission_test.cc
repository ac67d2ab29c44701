// The pure admission pieces: mac1/mac2 over first frames, cookie replies, the responder's
// rotating cookie secret, the initiator's cookie jar, token buckets and the log throttle.
#include "mesh/admission.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>
#include <random>

namespace starling::mesh::admission {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const Time kT0 = Time{} + seconds(1000);

noise::Key psk(uint8_t fill) {
  noise::Key k;
  k.fill(fill);
  return k;
}

// A deterministic stand-in for randombytes_buf.
RandomBytes seeded_random(uint32_t seed) {
  auto rng = std::make_shared<std::mt19937>(seed);
  return [rng](std::span<uint8_t> out) {
    for (auto& b : out) b = static_cast<uint8_t>((*rng)());
  };
}

Bytes noise_message(size_t n, uint8_t fill = 0xab) { return Bytes(n, fill); }

TEST(Mac1, MatchesAnIndependentComputation) {
  AdmissionKeys keys;
  derive_keys(psk(7), keys);
  // mac1 key = BLAKE2b-512("mac1----" || psk) truncated to 32 bytes.
  uint8_t h[64];
  Bytes in = {'m', 'a', 'c', '1', '-', '-', '-', '-'};
  in.insert(in.end(), 32, 7);
  crypto_generichash(h, sizeof h, in.data(), in.size(), nullptr, 0);
  ASSERT_EQ(0, std::memcmp(keys.mac1.data(), h, 32));
  EXPECT_NE(keys.mac1, keys.cookie_reply);

  const Bytes frame = encode_first_frame(PatternId::kXXpsk3, noise_message(32), keys, {});
  ASSERT_EQ(frame.size(), 2 + 1 + 32 + 16 + 16u);
  EXPECT_EQ(frame[0], 0);
  EXPECT_EQ(frame[1], 1 + 32 + 32);
  EXPECT_EQ(frame[2], 1);
  uint8_t mac[16];
  crypto_generichash(mac, sizeof mac, frame.data(), frame.size() - 32, keys.mac1.data(), 32);
  EXPECT_EQ(0, std::memcmp(frame.data() + frame.size() - 32, mac, 16));
  EXPECT_EQ(Bytes(frame.end() - 16, frame.end()), Bytes(16, 0));  // no cookie: mac2 = 0
}

TEST(Mac1, EveryCoveredByteMattersAndTheKeyMatters) {
  AdmissionKeys keys, other;
  derive_keys(psk(1), keys);
  derive_keys(psk(2), other);
  const Bytes frame = encode_first_frame(PatternId::kIKpsk2, noise_message(96), keys, {});
  auto f = parse_first_frame(frame);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->pattern, PatternId::kIKpsk2);
  EXPECT_EQ(Bytes(f->noise_message.begin(), f->noise_message.end()), noise_message(96));
  EXPECT_TRUE(mac1_valid(*f, keys));
  EXPECT_FALSE(mac1_valid(*f, other));              // a sender without the network key
  for (size_t i = 0; i + 16 < frame.size(); ++i) {  // everything but mac2
    Bytes bad = frame;
    bad[i] ^= 0x20;
    auto g = parse_first_frame(bad);
    if (g.ok()) {
      EXPECT_FALSE(mac1_valid(*g, keys)) << "byte " << i;
    }
  }
}

TEST(FirstFrame, MalformedFramesRejected) {
  AdmissionKeys keys;
  derive_keys(psk(1), keys);
  Bytes good = encode_first_frame(PatternId::kXXpsk3, noise_message(32), keys, {});
  EXPECT_FALSE(parse_first_frame(Bytes{}).ok());
  EXPECT_FALSE(parse_first_frame(Bytes(good.begin(), good.begin() + 20)).ok());
  Bytes longer = good;
  longer.push_back(0);  // length field no longer matches
  EXPECT_FALSE(parse_first_frame(longer).ok());
  for (uint8_t pattern : std::initializer_list<uint8_t>{0, 3, 255}) {
    Bytes bad = good;
    bad[2] = pattern;
    auto r = parse_first_frame(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, kErrMalformed);
    EXPECT_NE(r.error().message.find("unknown handshake pattern id"), std::string::npos);
  }
  // The smallest frame (an empty Noise message) parses; its mac1 is checked as usual.
  const Bytes tiny_frame = encode_first_frame(PatternId::kXXpsk3, {}, keys, {});
  auto tiny = parse_first_frame(tiny_frame);  // views into tiny_frame
  ASSERT_TRUE(tiny.ok());
  EXPECT_TRUE(mac1_valid(*tiny, keys));
}

TEST(ReplyFrame, KindsAndMalformed) {
  Bytes hs = encode_reply_frame(ReplyKind::kHandshake, Bytes{1, 2, 3});
  ASSERT_EQ(hs, (Bytes{0, 4, 1, 1, 2, 3}));
  auto r = parse_reply_frame(noise::ByteView(hs).subspan(2));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, ReplyKind::kHandshake);
  EXPECT_EQ(r->body.size(), 3u);
  EXPECT_FALSE(parse_reply_frame(Bytes{}).ok());
  EXPECT_FALSE(parse_reply_frame(Bytes{0}).ok());
  EXPECT_FALSE(parse_reply_frame(Bytes{3, 1}).ok());
}

TEST(Cookie, ReplyOpensOnlyWithThePskAndTheSameMac1) {
  AdmissionKeys keys, other;
  derive_keys(psk(3), keys);
  derive_keys(psk(4), other);
  CookieMaker maker(seeded_random(1));
  const Bytes frame = encode_first_frame(PatternId::kXXpsk3, noise_message(32), keys, {});
  auto f = parse_first_frame(frame);
  ASSERT_TRUE(f.ok());
  const Bytes body = maker.reply(*f, "192.0.2.7", keys, kT0);
  ASSERT_EQ(body.size(), kCookieReplyLen);
  auto cookie = open_cookie_reply(body, f->mac1, keys);
  ASSERT_TRUE(cookie.ok()) << cookie.error().message;
  EXPECT_EQ(*cookie, maker.cookie_for("192.0.2.7", kT0));
  // Random nonces: two replies to the same frame differ on the wire.
  EXPECT_NE(maker.reply(*f, "192.0.2.7", keys, kT0), body);

  EXPECT_EQ(open_cookie_reply(body, f->mac1, other).error().code, noise::kErrDecrypt);
  Mac another_mac1 = f->mac1;
  another_mac1[0] ^= 1;
  EXPECT_FALSE(open_cookie_reply(body, another_mac1, keys).ok());
  for (size_t i = 0; i < body.size(); ++i) {
    Bytes bad = body;
    bad[i] ^= 0x80;
    EXPECT_FALSE(open_cookie_reply(bad, f->mac1, keys).ok()) << "byte " << i;
  }
  EXPECT_EQ(open_cookie_reply(noise::ByteView(body).first(55), f->mac1, keys).error().code,
            kErrMalformed);
  Bytes longer = body;
  longer.push_back(0);
  EXPECT_EQ(open_cookie_reply(longer, f->mac1, keys).error().code, kErrMalformed);
}

TEST(Cookie, Mac2ValidForTheSourceWithinTheSecretWindow) {
  AdmissionKeys keys;
  derive_keys(psk(5), keys);
  CookieMaker maker(seeded_random(2));
  const Cookie cookie = maker.cookie_for("10.0.0.1", kT0);
  const Bytes with = encode_first_frame(PatternId::kXXpsk3, noise_message(32), keys, cookie);
  const Bytes without = encode_first_frame(PatternId::kXXpsk3, noise_message(32), keys, {});
  auto f = parse_first_frame(with);
  auto g = parse_first_frame(without);
  ASSERT_TRUE(f.ok() && g.ok());
  EXPECT_TRUE(mac1_valid(*f, keys));  // mac2 does not disturb mac1
  EXPECT_TRUE(maker.mac2_valid(*f, "10.0.0.1", kT0));
  EXPECT_FALSE(maker.mac2_valid(*g, "10.0.0.1", kT0));  // no cookie
  EXPECT_FALSE(maker.mac2_valid(*f, "10.0.0.2", kT0));  // another source
  EXPECT_TRUE(maker.mac2_valid(*f, "10.0.0.1", kT0 + seconds(119)));
  // At 200 s the secret rotates; the previous one still counts for one more period.
  EXPECT_TRUE(maker.mac2_valid(*f, "10.0.0.1", kT0 + seconds(200)));
  EXPECT_NE(maker.cookie_for("10.0.0.1", kT0 + seconds(200)), cookie);
  // At 330 s it rotates again: the cookie from t0 is two secrets old.
  EXPECT_FALSE(maker.mac2_valid(*f, "10.0.0.1", kT0 + seconds(330)));
  // A byte of mac2 flipped.
  Bytes bad = with;
  bad.back() ^= 1;
  CookieMaker fresh(seeded_random(2));
  auto h = parse_first_frame(bad);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(fresh.cookie_for("10.0.0.1", kT0), cookie);  // same seed, same secret
  EXPECT_FALSE(fresh.mac2_valid(*h, "10.0.0.1", kT0));
  EXPECT_TRUE(fresh.mac2_valid(*f, "10.0.0.1", kT0));
}

TEST(Cookie, SecretFromBeforeALongIdleSpellIsDropped) {
  AdmissionKeys keys;
  derive_keys(psk(5), keys);
  CookieMaker maker(seeded_random(3));
  const Cookie cookie = maker.cookie_for("10.0.0.1", kT0);
  const Bytes frame = encode_first_frame(PatternId::kXXpsk3, {}, keys, cookie);
  auto f = parse_first_frame(frame);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(maker.mac2_valid(*f, "10.0.0.1", kT0 + seconds(1000)));
}

TEST(CookieJar, CookiesExpireAndCapacityHolds) {
  CookieJar jar(2);
  Cookie a{}, b{}, c{};
  a.fill(1);
  b.fill(2);
  c.fill(3);
  jar.store("h:1", a, kT0);
  EXPECT_EQ(jar.find("h:1", kT0 + seconds(119)), a);
  EXPECT_FALSE(jar.find("h:1", kT0 + seconds(120)).has_value());
  EXPECT_FALSE(jar.find("h:2", kT0).has_value());
  jar.store("h:2", b, kT0 + seconds(1));
  jar.store("h:3", c, kT0 + seconds(2));  // full: the oldest (h:1) goes
  EXPECT_EQ(jar.size(), 2u);
  EXPECT_FALSE(jar.find("h:1", kT0 + seconds(2)).has_value());
  EXPECT_EQ(jar.find("h:2", kT0 + seconds(2)), b);
  EXPECT_EQ(jar.find("h:3", kT0 + seconds(2)), c);
  jar.store("h:2", a, kT0 + seconds(3));  // replacing an entry needs no room
  EXPECT_EQ(jar.find("h:2", kT0 + seconds(3)), a);
}

TEST(TokenBucket, BurstThenSteadyRate) {
  TokenBucket bucket(20, 40, kT0);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(bucket.try_take(kT0)) << i;
  EXPECT_FALSE(bucket.try_take(kT0));
  EXPECT_FALSE(bucket.try_take(kT0 + milliseconds(49)));
  EXPECT_TRUE(bucket.try_take(kT0 + milliseconds(50)));  // 1 token per 50 ms
  EXPECT_FALSE(bucket.try_take(kT0 + milliseconds(50)));
  // One second refills 20, never more than the burst.
  int taken = 0;
  while (bucket.try_take(kT0 + milliseconds(1050))) ++taken;
  EXPECT_EQ(taken, 20);
  EXPECT_FALSE(bucket.full(kT0 + milliseconds(1050)));
  EXPECT_TRUE(bucket.full(kT0 + seconds(100)));
  taken = 0;
  while (bucket.try_take(kT0 + seconds(100))) ++taken;
  EXPECT_EQ(taken, 40);
  // A clock that goes backwards refills nothing.
  EXPECT_FALSE(bucket.try_take(kT0));
}

TEST(SourceRateLimiter, SourcesAreIndependentAndTheTableIsBounded) {
  SourceRateLimiter limiter(1, 3, /*max_sources=*/2);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(limiter.admit("a", kT0));
  EXPECT_FALSE(limiter.admit("a", kT0));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(limiter.admit("b", kT0));
  EXPECT_FALSE(limiter.admit("b", kT0));
  EXPECT_EQ(limiter.tracked(), 2u);
  // Table full, nobody refilled: a new source passes untracked and "a" stays limited.
  EXPECT_TRUE(limiter.admit("c", kT0));
  EXPECT_EQ(limiter.tracked(), 2u);
  EXPECT_FALSE(limiter.admit("a", kT0));
  // Later every bucket has refilled: they are dropped to make room.
  EXPECT_TRUE(limiter.admit("c", kT0 + seconds(10)));
  EXPECT_EQ(limiter.tracked(), 1u);
  SourceRateLimiter off(0, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(off.admit("x", kT0));
  EXPECT_EQ(off.tracked(), 0u);
}

TEST(LogThrottle, AtMostOneLinePerInterval) {
  LogThrottle t(seconds(1));
  EXPECT_EQ(t.allow(kT0), std::optional<uint64_t>(0));
  EXPECT_FALSE(t.allow(kT0 + milliseconds(10)).has_value());
  EXPECT_FALSE(t.allow(kT0 + milliseconds(999)).has_value());
  EXPECT_EQ(t.allow(kT0 + seconds(1)), std::optional<uint64_t>(2));
  EXPECT_EQ(t.allow(kT0 + seconds(5)), std::optional<uint64_t>(0));
}

}  // namespace
}  // namespace starling::mesh::admission

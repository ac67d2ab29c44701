// The dialer's cookie-reply parser on arbitrary bytes: the reply frame, then the sealed cookie
// (XChaCha20-Poly1305 under the PSK-derived key, bound to our first frame's mac1). Half the
// inputs start from a genuine reply and flip fuzzer-chosen bits: only the untouched reply may
// open, and it must give back the cookie that was sealed.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "mesh/admission.h"

namespace {

using namespace starling::mesh;
using namespace starling::mesh::admission;
using starling::Bytes;

const AdmissionKeys& keys() {
  static const AdmissionKeys* k = [] {
    auto* out = new AdmissionKeys;
    noise::Key psk;
    psk.fill(0x42);
    derive_keys(psk, *out);
    return out;
  }();
  return *k;
}

Mac fixed_mac1() {
  Mac m;
  m.fill(0x11);
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Mac mac1 = fixed_mac1();
  if (data[0] & 1) {
    // Mutate a genuine reply frame: [kind byte][nonce 24][sealed cookie 32].
    Cookie cookie;
    cookie.fill(0x5a);
    CookieNonce nonce;
    nonce.fill(0x07);
    Bytes body = seal_cookie_reply(cookie, mac1, keys(), nonce);
    Bytes frame = encode_reply_frame(ReplyKind::kCookie, body);
    Bytes payload(frame.begin() + 2, frame.end());
    bool changed = false;
    for (size_t i = 1; i < size; ++i) {
      const uint8_t flip = data[i];
      if (flip == 0) continue;
      payload[(i - 1) % payload.size()] ^= flip;
      changed = true;
    }
    if (size > 1 && (data[1] & 0x80)) {  // also try truncation
      const size_t cut = (data[1] & 0x3fu) % payload.size();
      payload.resize(payload.size() - cut);
      changed = changed || cut != 0;
    }
    auto r = parse_reply_frame(payload);
    if (!r.ok() || r->kind != ReplyKind::kCookie) return 0;
    auto opened = open_cookie_reply(r->body, mac1, keys());
    if (opened.ok() && *opened != cookie) __builtin_trap();
    if (!changed && !opened.ok()) __builtin_trap();
    return 0;
  }
  auto r = parse_reply_frame(noise::ByteView(data + 1, size - 1));
  if (!r.ok()) return 0;
  if (r->kind == ReplyKind::kCookie) (void)open_cookie_reply(r->body, mac1, keys());
  return 0;
}

// Noise handshake core reading arbitrary bytes where a peer's message is expected:
// the responder reading message 1 (XXpsk3 and IKpsk2) and message 3 (XXpsk3), and the
// initiator reading message 2 (both patterns); plus the mesh framing around them: the first
// frame (pattern id, mac1, mac2) as the listener parses it, and the reply frame as the dialer
// parses it. Keys are fixed so runs are reproducible.
#include <cstddef>
#include <cstdint>

#include "mesh/admission.h"
#include "mesh/noise.h"

namespace {

using namespace starling::mesh::noise;

KeyPair fixed_key(uint8_t b) {
  Key k;
  k.fill(b);
  return key_pair_from_secret(k);
}

HandshakeConfig config(Pattern p, Role r) {
  HandshakeConfig c;
  c.pattern = p;
  c.role = r;
  c.prologue = {'f', 'u', 'z', 'z'};
  c.local_static = fixed_key(r == Role::kInitiator ? 1 : 2);
  c.local_ephemeral = fixed_key(r == Role::kInitiator ? 3 : 4);
  c.psk.fill(9);
  if (p == Pattern::kIKpsk2 && r == Role::kInitiator) c.remote_static = fixed_key(2).public_key;
  return c;
}

// Any outcome is fine; a failure must leave the state failed and later calls failing.
void read_then_probe(HandshakeState& hs, ByteView data) {
  auto r = hs.read_message(data);
  if (!r.ok()) {
    if (!hs.failed()) __builtin_trap();
    if (hs.read_message(data).ok()) __builtin_trap();
    return;
  }
  if (!hs.is_complete() && hs.is_my_turn()) (void)hs.write_message(data);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 7;
  ByteView in(data + 1, size - 1);
  const ByteView payload = in.first(in.size() < 8 ? in.size() : 8);
  switch (mode) {
    case 0: {  // XX responder, message 1
      HandshakeState resp(config(Pattern::kXXpsk3, Role::kResponder));
      read_then_probe(resp, in);
      break;
    }
    case 1: {  // XX responder, message 3 after a genuine message 1
      HandshakeState init(config(Pattern::kXXpsk3, Role::kInitiator));
      HandshakeState resp(config(Pattern::kXXpsk3, Role::kResponder));
      auto m1 = init.write_message(payload);
      if (!m1.ok() || !resp.read_message(*m1).ok()) __builtin_trap();
      if (!resp.write_message(payload).ok()) __builtin_trap();
      read_then_probe(resp, in);
      break;
    }
    case 2: {  // XX initiator, message 2
      HandshakeState init(config(Pattern::kXXpsk3, Role::kInitiator));
      if (!init.write_message(payload).ok()) __builtin_trap();
      read_then_probe(init, in);
      break;
    }
    case 3: {  // IK responder, message 1
      HandshakeState resp(config(Pattern::kIKpsk2, Role::kResponder));
      read_then_probe(resp, in);
      break;
    }
    case 4: {  // IK initiator, message 2
      HandshakeState init(config(Pattern::kIKpsk2, Role::kInitiator));
      if (!init.write_message(payload).ok()) __builtin_trap();
      read_then_probe(init, in);
      break;
    }
    case 5: {  // the listener's first frame: parse, check the MACs, hand the message to Noise
      namespace adm = starling::mesh::admission;
      auto f = adm::parse_first_frame(in);
      if (!f.ok()) break;
      adm::AdmissionKeys keys;
      Key psk;
      psk.fill(9);
      adm::derive_keys(psk, keys);
      (void)adm::mac1_valid(*f, keys);
      adm::Cookie cookie{};
      (void)adm::mac2_valid(*f, cookie);
      if (f->noise_message.size() + adm::kFirstFrameOverhead != in.size()) __builtin_trap();
      const Pattern p = f->pattern == adm::PatternId::kIKpsk2 ? Pattern::kIKpsk2 : Pattern::kXXpsk3;
      HandshakeState resp(config(p, Role::kResponder));
      read_then_probe(resp, f->noise_message);
      break;
    }
    case 6: {  // the dialer's reply frame
      namespace adm = starling::mesh::admission;
      auto r = adm::parse_reply_frame(in);
      if (!r.ok()) break;
      if (r->body.size() + 1 != in.size()) __builtin_trap();
      if (r->kind == adm::ReplyKind::kHandshake) {
        HandshakeState init(config(Pattern::kXXpsk3, Role::kInitiator));
        if (!init.write_message({}).ok()) __builtin_trap();
        read_then_probe(init, r->body);
      }
      break;
    }
  }
  return 0;
}

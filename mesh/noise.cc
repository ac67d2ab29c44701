#include "mesh/noise.h"

#include <sodium.h>

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace starling::mesh::noise {
namespace {

constexpr uint64_t kMaxNonce = UINT64_MAX;  // reserved by the spec: never used

void ensure_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) std::abort();  // no crypto at all: continuing would be insecure
}

void make_nonce(uint64_t n, uint8_t out[crypto_aead_chacha20poly1305_IETF_NPUBBYTES]) {
  std::memset(out, 0, 4);
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<uint8_t>(n >> (8 * i));
}

}  // namespace

KeyPair key_pair_from_secret(const Key& secret) {
  ensure_sodium();
  KeyPair kp;
  kp.secret = secret;
  crypto_scalarmult_base(kp.public_key.data(), kp.secret.data());
  return kp;
}

KeyPair generate_key_pair() {
  ensure_sodium();
  Key secret;
  randombytes_buf(secret.data(), secret.size());
  KeyPair kp = key_pair_from_secret(secret);
  sodium_memzero(secret.data(), secret.size());
  return kp;
}

Result<Key> dh(const Key& secret, const Key& public_key) {
  ensure_sodium();
  Key out{};
  // libsodium already returns -1 on an all-zero output; check explicitly as well so the
  // property does not depend on the library version.
  if (crypto_scalarmult(out.data(), secret.data(), public_key.data()) != 0 ||
      sodium_is_zero(out.data(), out.size())) {
    return make_error(kErrDh, "X25519 produced the all-zero value (low-order public key)");
  }
  return out;
}

void aead_seal_into(const Key& k, uint64_t n, ByteView ad, ByteView plaintext, uint8_t* out) {
  uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
  make_nonce(n, nonce);
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, plaintext.data(), plaintext.size(),
                                            ad.data(), ad.size(), nullptr, nonce, k.data());
}

Status aead_open_into(const Key& k, uint64_t n, ByteView ad, ByteView ciphertext, uint8_t* out) {
  if (ciphertext.size() < kTagLen) {
    return make_error(kErrDecrypt, "ciphertext shorter than the authentication tag");
  }
  uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
  make_nonce(n, nonce);
  unsigned long long mlen = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, nullptr, ciphertext.data(),
                                                ciphertext.size(), ad.data(), ad.size(), nonce,
                                                k.data()) != 0) {
    return make_error(kErrDecrypt, "authentication tag mismatch");
  }
  return {};
}

Bytes aead_seal(const Key& k, uint64_t n, ByteView ad, ByteView plaintext) {
  Bytes out(plaintext.size() + kTagLen);
  aead_seal_into(k, n, ad, plaintext, out.data());
  return out;
}

Result<Bytes> aead_open(const Key& k, uint64_t n, ByteView ad, ByteView ciphertext) {
  if (ciphertext.size() < kTagLen) {
    return make_error(kErrDecrypt, "ciphertext shorter than the authentication tag");
  }
  Bytes out(ciphertext.size() - kTagLen);
  auto st = aead_open_into(k, n, ad, ciphertext, out.data());
  if (!st) return st.error();
  return out;
}

Hash hash(ByteView a, ByteView b) {
  ensure_sodium();
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, kHashLen);
  crypto_generichash_update(&st, a.data(), a.size());
  crypto_generichash_update(&st, b.data(), b.size());
  Hash out{};
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

// RFC 2104 HMAC over unkeyed BLAKE2b-512 (libsodium's keyed BLAKE2b is a different function).
Hash hmac(ByteView key, ByteView data1, ByteView data2) {
  ensure_sodium();
  std::array<uint8_t, kBlockLen> k0{};
  if (key.size() > kBlockLen) {
    Hash kh = hash(key);
    std::memcpy(k0.data(), kh.data(), kh.size());
  } else if (!key.empty()) {
    std::memcpy(k0.data(), key.data(), key.size());
  }
  std::array<uint8_t, kBlockLen> ipad{}, opad{};
  for (size_t i = 0; i < kBlockLen; ++i) {
    ipad[i] = static_cast<uint8_t>(k0[i] ^ 0x36);
    opad[i] = static_cast<uint8_t>(k0[i] ^ 0x5c);
  }
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, kHashLen);
  crypto_generichash_update(&st, ipad.data(), ipad.size());
  crypto_generichash_update(&st, data1.data(), data1.size());
  crypto_generichash_update(&st, data2.data(), data2.size());
  Hash inner{};
  crypto_generichash_final(&st, inner.data(), inner.size());
  Hash out = hash(opad, inner);
  sodium_memzero(k0.data(), k0.size());
  sodium_memzero(ipad.data(), ipad.size());
  sodium_memzero(opad.data(), opad.size());
  sodium_memzero(inner.data(), inner.size());
  return out;
}

std::array<Hash, 3> hkdf(const Hash& chaining_key, ByteView ikm, int num_outputs) {
  std::array<Hash, 3> out{};
  Hash temp_key = hmac(chaining_key, ikm);
  const uint8_t one = 1, two = 2, three = 3;
  out[0] = hmac(temp_key, ByteView(&one, 1));
  out[1] = hmac(temp_key, out[0], ByteView(&two, 1));
  if (num_outputs == 3) out[2] = hmac(temp_key, out[1], ByteView(&three, 1));
  sodium_memzero(temp_key.data(), temp_key.size());
  return out;
}

void rekey_in_place(Key& k) {
  static constexpr std::array<uint8_t, kKeyLen> kZeros{};
  std::array<uint8_t, kKeyLen + kTagLen> out;
  aead_seal_into(k, kMaxNonce, {}, kZeros, out.data());
  std::memcpy(k.data(), out.data(), kKeyLen);
  sodium_memzero(out.data(), out.size());
}

// ---- CipherState ----

CipherState::~CipherState() { sodium_memzero(k_.data(), k_.size()); }

void CipherState::initialize_key(const Key& k) {
  k_ = k;
  has_key_ = true;
  n_ = 0;
}

Result<Bytes> CipherState::encrypt_with_ad(ByteView ad, ByteView plaintext) {
  if (!has_key_) return Bytes(plaintext.begin(), plaintext.end());
  if (n_ == kMaxNonce) return make_error(kErrNonce, "cipher nonce exhausted");
  Bytes out = aead_seal(k_, n_, ad, plaintext);
  ++n_;
  return out;
}

Result<Bytes> CipherState::decrypt_with_ad(ByteView ad, ByteView ciphertext) {
  if (!has_key_) return Bytes(ciphertext.begin(), ciphertext.end());
  if (n_ == kMaxNonce) return make_error(kErrNonce, "cipher nonce exhausted");
  auto r = aead_open(k_, n_, ad, ciphertext);
  if (!r) return r.error();
  ++n_;  // only after success: a failed decryption does not consume the nonce
  return r;
}

void CipherState::rekey() { rekey_in_place(k_); }

// ---- SymmetricState ----

SymmetricState::SymmetricState(std::string_view protocol_name) {
  if (protocol_name.size() <= kHashLen) {
    std::memcpy(h_.data(), protocol_name.data(), protocol_name.size());
  } else {
    h_ = hash(as_bytes(protocol_name));
  }
  ck_ = h_;
}

SymmetricState::~SymmetricState() { sodium_memzero(ck_.data(), ck_.size()); }

void SymmetricState::mix_key(ByteView ikm) {
  auto out = hkdf(ck_, ikm, 2);
  ck_ = out[0];
  Key k;
  std::memcpy(k.data(), out[1].data(), kKeyLen);  // HASHLEN 64: truncate to 32
  cipher_.initialize_key(k);
  sodium_memzero(k.data(), k.size());
  for (auto& o : out) sodium_memzero(o.data(), o.size());
}

void SymmetricState::mix_hash(ByteView data) { h_ = hash(h_, data); }

void SymmetricState::mix_key_and_hash(ByteView ikm) {
  auto out = hkdf(ck_, ikm, 3);
  ck_ = out[0];
  mix_hash(out[1]);
  Key k;
  std::memcpy(k.data(), out[2].data(), kKeyLen);
  cipher_.initialize_key(k);
  sodium_memzero(k.data(), k.size());
  for (auto& o : out) sodium_memzero(o.data(), o.size());
}

Result<Bytes> SymmetricState::encrypt_and_hash(ByteView plaintext) {
  auto c = cipher_.encrypt_with_ad(h_, plaintext);
  if (!c) return c;
  mix_hash(*c);
  return c;
}

Result<Bytes> SymmetricState::decrypt_and_hash(ByteView ciphertext) {
  auto p = cipher_.decrypt_with_ad(h_, ciphertext);
  if (!p) return p;
  mix_hash(ciphertext);
  return p;
}

std::pair<CipherState, CipherState> SymmetricState::split() const {
  auto out = hkdf(ck_, {}, 2);
  Key k1, k2;
  std::memcpy(k1.data(), out[0].data(), kKeyLen);
  std::memcpy(k2.data(), out[1].data(), kKeyLen);
  std::pair<CipherState, CipherState> r;
  r.first.initialize_key(k1);
  r.second.initialize_key(k2);
  sodium_memzero(k1.data(), k1.size());
  sodium_memzero(k2.data(), k2.size());
  for (auto& o : out) sodium_memzero(o.data(), o.size());
  return r;
}

// ---- HandshakeState ----

std::string_view protocol_name(Pattern p) {
  switch (p) {
    case Pattern::kXXpsk3:
      return "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b";
    case Pattern::kIKpsk2:
      return "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b";
  }
  return "";
}

HandshakeState::HandshakeState(const HandshakeConfig& config)
    : pattern_(config.pattern),
      role_(config.role),
      symmetric_(protocol_name(config.pattern)),
      s_(config.local_static),
      e_(config.local_ephemeral),
      psk_(config.psk) {
  symmetric_.mix_hash(config.prologue);
  if (pattern_ == Pattern::kIKpsk2) {
    // Pre-message "<- s": both sides hash the responder's static key.
    if (role_ == Role::kInitiator) {
      if (!config.remote_static) {
        failed_ = true;  // misuse: IK needs the responder's key; every call will fail
        return;
      }
      rs_ = config.remote_static;
      symmetric_.mix_hash(*rs_);
    } else {
      symmetric_.mix_hash(s_.public_key);
    }
  }
}

HandshakeState::~HandshakeState() {
  sodium_memzero(s_.secret.data(), s_.secret.size());
  sodium_memzero(e_.secret.data(), e_.secret.size());
  sodium_memzero(psk_.data(), psk_.size());
}

namespace {

template <class Token>
const std::vector<Token>& message_tokens(Pattern p, size_t index) {
  static const std::vector<std::vector<Token>> xx = {
      {Token::kE},
      {Token::kE, Token::kEE, Token::kS, Token::kES},
      {Token::kS, Token::kSE, Token::kPsk},
  };
  static const std::vector<std::vector<Token>> ik = {
      {Token::kE, Token::kES, Token::kS, Token::kSS},
      {Token::kE, Token::kEE, Token::kSE, Token::kPsk},
  };
  return p == Pattern::kXXpsk3 ? xx[index] : ik[index];
}

size_t message_count(Pattern p) { return p == Pattern::kXXpsk3 ? 3 : 2; }

}  // namespace

bool HandshakeState::is_complete() const {
  return !failed_ && message_index_ >= message_count(pattern_);
}

bool HandshakeState::is_my_turn() const {
  bool initiator_turn = message_index_ % 2 == 0;
  return initiator_turn == (role_ == Role::kInitiator);
}

Error HandshakeState::fail(Error e) {
  failed_ = true;
  return e;
}

Status HandshakeState::process_dh(Token t) {
  const bool init = role_ == Role::kInitiator;
  const KeyPair* local = nullptr;
  const std::optional<Key>* remote = nullptr;
  switch (t) {
    case Token::kEE:
      local = &e_, remote = &re_;
      break;
    case Token::kES:
      local = init ? &e_ : &s_, remote = init ? &rs_ : &re_;
      break;
    case Token::kSE:
      local = init ? &s_ : &e_, remote = init ? &re_ : &rs_;
      break;
    case Token::kSS:
      local = &s_, remote = &rs_;
      break;
    default:
      return make_error(kErrBadMessage, "internal: not a DH token");
  }
  if (!remote->has_value()) return make_error(kErrBadMessage, "missing remote key for DH");
  auto shared = dh(local->secret, **remote);
  if (!shared) return shared.error();
  symmetric_.mix_key(*shared);
  sodium_memzero(shared->data(), shared->size());
  return {};
}

Result<Bytes> HandshakeState::write_message(ByteView payload) {
  if (failed_) return make_error(kErrBadMessage, "handshake already failed");
  if (message_index_ >= message_count(pattern_) || !is_my_turn()) {
    return fail(make_error(kErrBadMessage, "write_message out of turn"));
  }
  Bytes out;
  for (Token t : message_tokens<Token>(pattern_, message_index_)) {
    switch (t) {
      case Token::kE:
        out.insert(out.end(), e_.public_key.begin(), e_.public_key.end());
        symmetric_.mix_hash(e_.public_key);
        symmetric_.mix_key(e_.public_key);  // PSK patterns: "e" also calls MixKey
        break;
      case Token::kS: {
        auto c = symmetric_.encrypt_and_hash(s_.public_key);
        if (!c) return fail(c.error());
        out.insert(out.end(), c->begin(), c->end());
        break;
      }
      case Token::kPsk:
        symmetric_.mix_key_and_hash(psk_);
        break;
      default: {
        auto st = process_dh(t);
        if (!st) return fail(st.error());
      }
    }
  }
  auto c = symmetric_.encrypt_and_hash(payload);
  if (!c) return fail(c.error());
  out.insert(out.end(), c->begin(), c->end());
  if (out.size() > kMaxMessageLen) {
    return fail(make_error(kErrBadMessage, "handshake message exceeds 65535 bytes"));
  }
  ++message_index_;
  return out;
}

Result<Bytes> HandshakeState::read_message(ByteView message) {
  if (failed_) return make_error(kErrBadMessage, "handshake already failed");
  if (message_index_ >= message_count(pattern_) || is_my_turn()) {
    return fail(make_error(kErrBadMessage, "read_message out of turn"));
  }
  if (message.size() > kMaxMessageLen) {
    return fail(make_error(kErrBadMessage, "handshake message exceeds 65535 bytes"));
  }
  size_t pos = 0;
  for (Token t : message_tokens<Token>(pattern_, message_index_)) {
    switch (t) {
      case Token::kE: {
        if (message.size() - pos < kDhLen) {
          return fail(make_error(kErrBadMessage, "handshake message too short"));
        }
        Key re;
        std::memcpy(re.data(), message.data() + pos, kDhLen);
        pos += kDhLen;
        re_ = re;
        symmetric_.mix_hash(re);
        symmetric_.mix_key(re);
        break;
      }
      case Token::kS: {
        size_t len = kDhLen + (symmetric_.has_key() ? kTagLen : 0);
        if (message.size() - pos < len) {
          return fail(make_error(kErrBadMessage, "handshake message too short"));
        }
        auto p = symmetric_.decrypt_and_hash(message.subspan(pos, len));
        if (!p) return fail(p.error());
        pos += len;
        Key rs;
        std::memcpy(rs.data(), p->data(), kDhLen);
        rs_ = rs;
        break;
      }
      case Token::kPsk:
        symmetric_.mix_key_and_hash(psk_);
        break;
      default: {
        auto st = process_dh(t);
        if (!st) return fail(st.error());
      }
    }
  }
  auto p = symmetric_.decrypt_and_hash(message.subspan(pos));
  if (!p) return fail(p.error());
  ++message_index_;
  return p;
}

std::pair<CipherState, CipherState> HandshakeState::split() const {
  assert(is_complete());
  return symmetric_.split();
}

}  // namespace starling::mesh::noise

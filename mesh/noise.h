// Noise Protocol Framework (revision 34), the subset Starling uses: the patterns XXpsk3 and
// IKpsk2 with 25519, ChaChaPoly and BLAKE2b, built directly on libsodium.
//
// Pure core: no I/O, no clock, no RNG. The caller passes the local ephemeral key pair in
// (production: generate_key_pair(); tests: the vector's keys). Every function that reads bytes
// from the network returns a Result and never crashes on any input. After the first error a
// HandshakeState stays failed.
//
// Threading: none of these objects is shared; one owner uses each at a time.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "common/hex.h"
#include "common/result.h"

namespace starling::mesh::noise {

inline constexpr char kErrDecrypt[] = "noise.decrypt";         // tag check failed
inline constexpr char kErrBadMessage[] = "noise.bad_message";  // wrong length / state
inline constexpr char kErrDh[] = "noise.dh";                   // low-order point (zero DH)
inline constexpr char kErrNonce[] = "noise.nonce_exhausted";

inline constexpr size_t kKeyLen = 32;
inline constexpr size_t kDhLen = 32;
inline constexpr size_t kHashLen = 64;
inline constexpr size_t kBlockLen = 128;
inline constexpr size_t kTagLen = 16;
inline constexpr size_t kMaxMessageLen = 65535;  // Noise's limit on one message

using Key = std::array<uint8_t, kKeyLen>;
using Hash = std::array<uint8_t, kHashLen>;
using ByteView = std::span<const uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct KeyPair {
  Key secret{};
  Key public_key{};
};
KeyPair key_pair_from_secret(const Key& secret);
KeyPair generate_key_pair();  // fresh random X25519 key pair

// DH(secret, public). Fails (kErrDh) when the result is all zero (low-order public key).
Result<Key> dh(const Key& secret, const Key& public_key);

// IETF ChaCha20-Poly1305 with the Noise nonce: 4 zero bytes || 64-bit little-endian n.
Bytes aead_seal(const Key& k, uint64_t n, ByteView ad, ByteView plaintext);
Result<Bytes> aead_open(const Key& k, uint64_t n, ByteView ad, ByteView ciphertext);
// Same, writing into caller storage: out must hold plaintext.size() + kTagLen bytes.
void aead_seal_into(const Key& k, uint64_t n, ByteView ad, ByteView plaintext, uint8_t* out);
// out must hold ciphertext.size() - kTagLen bytes; REQUIRES ciphertext.size() >= kTagLen.
Status aead_open_into(const Key& k, uint64_t n, ByteView ad, ByteView ciphertext, uint8_t* out);

// BLAKE2b-512, HMAC-BLAKE2b (BLOCKLEN 128) and the Noise HKDF built on it.
Hash hash(ByteView a, ByteView b = {});
Hash hmac(ByteView key, ByteView data1, ByteView data2 = {});
// Noise HKDF(chaining_key, ikm, num_outputs) with num_outputs 2 or 3.
std::array<Hash, 3> hkdf(const Hash& chaining_key, ByteView ikm, int num_outputs);

// Noise REKEY(k) (spec §4.2, §11.3): k becomes the first 32 bytes of
// ENCRYPT(k, n = 2^64-1, ad = "", 32 zero bytes). In place: the old key is overwritten and the
// scratch space is wiped, so no copy of the old key survives the call.
void rekey_in_place(Key& k);

class CipherState {
 public:
  CipherState() = default;
  ~CipherState();
  CipherState(const CipherState&) = default;
  CipherState& operator=(const CipherState&) = default;

  void initialize_key(const Key& k);
  bool has_key() const { return has_key_; }
  void set_nonce(uint64_t n) { n_ = n; }
  uint64_t nonce() const { return n_; }
  const Key& key() const { return k_; }  // REQUIRES: has_key()

  // Without a key these return the input unchanged (Noise semantics).
  Result<Bytes> encrypt_with_ad(ByteView ad, ByteView plaintext);
  Result<Bytes> decrypt_with_ad(ByteView ad, ByteView ciphertext);
  void rekey();

 private:
  Key k_{};
  bool has_key_ = false;
  uint64_t n_ = 0;
};

class SymmetricState {
 public:
  explicit SymmetricState(std::string_view protocol_name);
  ~SymmetricState();

  void mix_key(ByteView ikm);
  void mix_hash(ByteView data);
  void mix_key_and_hash(ByteView ikm);
  const Hash& handshake_hash() const { return h_; }
  bool has_key() const { return cipher_.has_key(); }
  Result<Bytes> encrypt_and_hash(ByteView plaintext);
  Result<Bytes> decrypt_and_hash(ByteView ciphertext);
  std::pair<CipherState, CipherState> split() const;

 private:
  CipherState cipher_;
  Hash ck_{};
  Hash h_{};
};

enum class Pattern { kXXpsk3, kIKpsk2 };
enum class Role { kInitiator, kResponder };

std::string_view protocol_name(Pattern p);  // "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b", ...

struct HandshakeConfig {
  Pattern pattern = Pattern::kXXpsk3;
  Role role = Role::kInitiator;
  Bytes prologue;
  KeyPair local_static;
  KeyPair local_ephemeral;           // injected: fresh random in production
  std::optional<Key> remote_static;  // REQUIRED for the IKpsk2 initiator; ignored otherwise
  Key psk{};
};

// Runs one handshake. Messages alternate starting with the initiator; call write_message when
// is_my_turn(), read_message otherwise, until is_complete(), then split().
class HandshakeState {
 public:
  explicit HandshakeState(const HandshakeConfig& config);
  ~HandshakeState();
  HandshakeState(const HandshakeState&) = delete;
  HandshakeState& operator=(const HandshakeState&) = delete;

  // Returns the handshake message carrying `payload` (encrypted once a key exists).
  Result<Bytes> write_message(ByteView payload);
  // Processes a message from the peer and returns its payload.
  Result<Bytes> read_message(ByteView message);

  bool is_my_turn() const;
  bool is_complete() const;
  bool failed() const { return failed_; }
  // The remote static key, once received (or given up front for IK's initiator).
  const std::optional<Key>& remote_static() const { return rs_; }
  const Hash& handshake_hash() const { return symmetric_.handshake_hash(); }
  // REQUIRES: is_complete(). first = initiator-to-responder, second = responder-to-initiator.
  std::pair<CipherState, CipherState> split() const;

 private:
  enum class Token { kE, kS, kEE, kES, kSE, kSS, kPsk };
  Status process_dh(Token t);
  Error fail(Error e);

  Pattern pattern_;
  Role role_;
  SymmetricState symmetric_;
  KeyPair s_;
  KeyPair e_;
  std::optional<Key> rs_;
  std::optional<Key> re_;
  Key psk_{};
  size_t message_index_ = 0;
  bool failed_ = false;
};

}  // namespace starling::mesh::noise

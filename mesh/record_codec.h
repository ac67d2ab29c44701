// The transport record layer of a mesh session, after the Noise handshake (pure core, no I/O,
// no clock: callers pass a steady-clock `now`).
//
// Wire format of one record (all integers big-endian):
//   u16 L || u64 counter || ChaChaPoly(key, nonce = counter, ad = the 8 counter bytes,
//                                       plaintext = u8 type || fragment)
// L counts the bytes after the length field (counter + ciphertext), so 25 <= L <= 65535 and a
// fragment holds at most kMaxFragment bytes. A message is a run of kDataMore records closed by
// one kDataFinal record (an empty message is one empty kDataFinal). kClose ends the stream.
//
// The sealer numbers records 0, 1, 2, ...; the opener accepts only the next expected counter,
// so replayed, reordered and dropped records are all rejected. Any error is final: the opener
// stays failed and reports the first error again. Errors carry mesh::kErrProtocol.
//
// Rekeying: before sealing a record, the sealer checks its RekeyPolicy (records and plaintext
// bytes sealed under the current key, and the key's age against `now`). When one is due it
// first seals an empty kRekey record under the current key, then both sides replace the key
// by Noise REKEY(key) and wipe the old one (the opener does so when it has authenticated the
// kRekey record). Counters keep running across rekeys (they never reset), so a record from
// before a rekey can never be accepted again, and the old key is never used after its kRekey.
//
// Keys: the two CipherState keys of Noise Split() (initiator sends with the first).
// Threading: a sealer and an opener each belong to one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "mesh/noise.h"

namespace starling::mesh {

enum class RecordType : uint8_t { kDataFinal = 0, kDataMore = 1, kClose = 2, kRekey = 3 };

using RecordClock = std::chrono::steady_clock;
using RecordTime = RecordClock::time_point;

inline constexpr size_t kRecordLengthBytes = 2;
inline constexpr size_t kRecordCounterBytes = 8;
inline constexpr size_t kMaxRecordLength = 65535;  // max L
inline constexpr size_t kMinRecordLength = kRecordCounterBytes + 1 + noise::kTagLen;
inline constexpr size_t kMaxFragment = kMaxRecordLength - kMinRecordLength;  // 65510

// When the sender replaces its key. A key is retired before it would seal more than
// max_records data records or more than max_bytes of plaintext, and before sealing anything
// once it is max_age old (measured from its installation with the `now` values passed in).
// Values are clamped to at least 1 record, 1 byte and 1 ns.
struct RekeyPolicy {
  uint64_t max_records = uint64_t{1} << 20;
  uint64_t max_bytes = uint64_t{1} << 30;  // 1 GiB
  RecordClock::duration max_age = std::chrono::seconds(120);
};

class RecordSealer {
 public:
  // `now`: when the first key is installed (the end of the handshake).
  explicit RecordSealer(const noise::Key& key, RecordTime now = {}, RekeyPolicy policy = {},
                        size_t max_message = 16 * 1024 * 1024);
  ~RecordSealer();
  RecordSealer(RecordSealer&&) = default;
  RecordSealer& operator=(RecordSealer&&) = default;
  // Appends the records carrying `message` to `out` (with kRekey records wherever the policy
  // asks for one). Fails before appending anything if the message is larger than max_message;
  // fails if the 64-bit counter is exhausted (the session must then end).
  Status seal_message(std::string_view message, RecordTime now, std::string& out);
  // Appends a close record (preceded by a kRekey record if one is due).
  Status seal_close(RecordTime now, std::string& out);
  // Appends a kRekey record and switches to the next key now, whatever the policy says.
  Status seal_rekey(RecordTime now, std::string& out);
  uint64_t next_counter() const { return counter_; }
  uint64_t rekeys() const { return rekeys_; }  // kRekey records sealed so far
  // The current key, for tests that check the old key is gone after a rekey.
  const noise::Key& key_for_testing() const { return key_; }

 private:
  Status maybe_rekey(size_t next_fragment, RecordTime now, std::string& out);
  Status seal_record(RecordType type, std::string_view fragment, std::string& out);
  noise::Key key_;
  RekeyPolicy policy_;
  size_t max_message_;
  uint64_t counter_ = 0;
  uint64_t rekeys_ = 0;
  // Use of the current key.
  RecordTime key_installed_;
  uint64_t key_records_ = 0;
  uint64_t key_bytes_ = 0;
};

class RecordOpener {
 public:
  // max_record_length lets tests (and cautious callers) lower the frame limit below 65535.
  explicit RecordOpener(const noise::Key& key, size_t max_message = 16 * 1024 * 1024,
                        size_t max_record_length = kMaxRecordLength);
  ~RecordOpener();
  RecordOpener(RecordOpener&&) = default;
  RecordOpener& operator=(RecordOpener&&) = default;
  // Consumes stream bytes (any split). Complete messages become available via pop_message().
  // Bytes after a close record are an error.
  Status feed(std::string_view bytes);
  std::optional<std::string> pop_message();
  bool has_message() const { return !messages_.empty(); }
  bool close_received() const { return closed_; }
  bool failed() const { return error_.has_value(); }
  uint64_t rekeys() const { return rekeys_; }  // kRekey records accepted so far
  uint64_t next_counter() const { return expected_counter_; }
  // The current key, for tests that check the old key is gone after a rekey.
  const noise::Key& key_for_testing() const { return key_; }
  // Call at end of stream: fails unless a close record arrived and no partial record or
  // partial message is pending (truncation).
  Status finish();

 private:
  Status fail(std::string message);
  // record = counter || ciphertext, decrypted in place.
  Status process_record(char* data, size_t length);

  noise::Key key_;
  size_t max_message_;
  size_t max_record_length_;
  uint64_t expected_counter_ = 0;
  uint64_t rekeys_ = 0;
  std::string buffer_;  // unconsumed stream bytes
  size_t buffer_pos_ = 0;
  std::string assembling_;  // fragments of the current message
  bool in_message_ = false;
  std::deque<std::string> messages_;
  bool closed_ = false;
  std::optional<Error> error_;
};

}  // namespace starling::mesh

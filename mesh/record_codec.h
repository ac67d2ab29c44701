// The transport record layer of a mesh session, after the Noise handshake (pure core, no I/O).
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
// Keys: the two CipherState keys of Noise Split() (initiator sends with the first).
// Threading: a sealer and an opener each belong to one thread at a time.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "mesh/noise.h"

namespace starling::mesh {

enum class RecordType : uint8_t { kDataFinal = 0, kDataMore = 1, kClose = 2 };

inline constexpr size_t kRecordLengthBytes = 2;
inline constexpr size_t kRecordCounterBytes = 8;
inline constexpr size_t kMaxRecordLength = 65535;  // max L
inline constexpr size_t kMinRecordLength = kRecordCounterBytes + 1 + noise::kTagLen;
inline constexpr size_t kMaxFragment = kMaxRecordLength - kMinRecordLength;  // 65510

class RecordSealer {
 public:
  explicit RecordSealer(const noise::Key& key, size_t max_message = 16 * 1024 * 1024);
  ~RecordSealer();
  RecordSealer(RecordSealer&&) = default;
  RecordSealer& operator=(RecordSealer&&) = default;
  // Appends the records carrying `message` to `out`. Fails if the message is larger than
  // max_message or the counter is exhausted.
  Status seal_message(std::string_view message, std::string& out);
  // Appends a close record.
  Status seal_close(std::string& out);
  uint64_t next_counter() const { return counter_; }

 private:
  Status seal_record(RecordType type, std::string_view fragment, std::string& out);
  noise::Key key_;
  size_t max_message_;
  uint64_t counter_ = 0;
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
  // Call at end of stream: fails unless a close record arrived and no partial record or
  // partial message is pending (truncation).
  Status finish();

 private:
  Status fail(std::string message);
  Status process_record(std::string_view record);  // counter || ciphertext

  noise::Key key_;
  size_t max_message_;
  size_t max_record_length_;
  uint64_t expected_counter_ = 0;
  std::string buffer_;  // unconsumed stream bytes
  size_t buffer_pos_ = 0;
  std::string assembling_;  // fragments of the current message
  bool in_message_ = false;
  std::deque<std::string> messages_;
  bool closed_ = false;
  std::optional<Error> error_;
};

}  // namespace starling::mesh

#include "mesh/record_codec.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "mesh/session.h"

namespace starling::mesh {
namespace {

static_assert(kMaxMessageSize == 16 * 1024 * 1024, "keep record_codec.h defaults in sync");

void put_u64(uint64_t v, uint8_t* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}
uint64_t get_u64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | in[i];
  return v;
}
const uint8_t* u8(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

}  // namespace

// ---- RecordSealer ----

RecordSealer::RecordSealer(const noise::Key& key, RecordTime now, RekeyPolicy policy,
                           size_t max_message)
    : key_(key), policy_(policy), max_message_(max_message), key_installed_(now) {
  policy_.max_records = std::max<uint64_t>(policy_.max_records, 1);
  policy_.max_bytes = std::max<uint64_t>(policy_.max_bytes, 1);
  policy_.max_age = std::max(policy_.max_age, RecordClock::duration(1));
}

RecordSealer::~RecordSealer() { sodium_memzero(key_.data(), key_.size()); }

Status RecordSealer::seal_record(RecordType type, std::string_view fragment, std::string& out) {
  if (counter_ == UINT64_MAX) return make_error(kErrProtocol, "record counter exhausted");
  const size_t length = kRecordCounterBytes + 1 + fragment.size() + noise::kTagLen;
  const size_t start = out.size();
  out.resize(start + kRecordLengthBytes + length);
  auto* p = reinterpret_cast<uint8_t*>(out.data() + start);
  p[0] = static_cast<uint8_t>(length >> 8);
  p[1] = static_cast<uint8_t>(length);
  put_u64(counter_, p + 2);
  // Plaintext type || fragment is built in place, then encrypted in place (libsodium allows
  // the output to overlap the input exactly).
  uint8_t* body = p + 2 + kRecordCounterBytes;
  body[0] = static_cast<uint8_t>(type);
  if (!fragment.empty()) std::memcpy(body + 1, fragment.data(), fragment.size());
  noise::aead_seal_into(key_, counter_, noise::ByteView(p + 2, kRecordCounterBytes),
                        noise::ByteView(body, 1 + fragment.size()), body);
  ++counter_;
  return {};
}

Status RecordSealer::seal_rekey(RecordTime now, std::string& out) {
  // The kRekey record is the last one sealed with the old key; REKEY overwrites that key in
  // place, so no copy of it remains in this object.
  auto st = seal_record(RecordType::kRekey, {}, out);
  if (!st) return st;
  noise::rekey_in_place(key_);
  ++rekeys_;
  key_installed_ = now;
  key_records_ = 0;
  key_bytes_ = 0;
  return {};
}

Status RecordSealer::maybe_rekey(size_t next_fragment, RecordTime now, std::string& out) {
  const bool aged = now - key_installed_ >= policy_.max_age;
  // Volume: only a key that has sealed something can be worn out by the next record (a
  // fragment larger than max_bytes still goes out, alone under a fresh key).
  const bool worn = key_records_ > 0 && (key_records_ >= policy_.max_records ||
                                         key_bytes_ + next_fragment > policy_.max_bytes);
  if (!aged && !worn) return {};
  return seal_rekey(now, out);
}

Status RecordSealer::seal_message(std::string_view message, RecordTime now, std::string& out) {
  if (message.size() > max_message_) {
    return make_error(kErrProtocol, "message of " + std::to_string(message.size()) +
                                        " bytes exceeds the limit of " +
                                        std::to_string(max_message_));
  }
  size_t records = message.empty() ? 1 : (message.size() + kMaxFragment - 1) / kMaxFragment;
  out.reserve(out.size() + message.size() + records * (kRecordLengthBytes + kMinRecordLength));
  size_t pos = 0;
  do {
    size_t n = std::min(kMaxFragment, message.size() - pos);
    bool last = pos + n == message.size();
    auto st = maybe_rekey(n, now, out);
    if (!st) return st;
    st = seal_record(last ? RecordType::kDataFinal : RecordType::kDataMore, message.substr(pos, n),
                     out);
    if (!st) return st;
    ++key_records_;
    key_bytes_ += n;
    pos += n;
  } while (pos < message.size());
  return {};
}

Status RecordSealer::seal_close(RecordTime now, std::string& out) {
  auto st = maybe_rekey(0, now, out);
  if (!st) return st;
  return seal_record(RecordType::kClose, {}, out);
}

// ---- RecordOpener ----

RecordOpener::RecordOpener(const noise::Key& key, size_t max_message, size_t max_record_length)
    : key_(key), max_message_(max_message), max_record_length_(max_record_length) {}

RecordOpener::~RecordOpener() { sodium_memzero(key_.data(), key_.size()); }

Status RecordOpener::fail(std::string message) {
  error_ = make_error(kErrProtocol, std::move(message));
  buffer_.clear();
  buffer_pos_ = 0;
  assembling_.clear();
  return *error_;
}

Status RecordOpener::feed(std::string_view bytes) {
  if (error_) return *error_;
  if (bytes.empty()) return {};
  if (closed_) return fail("data after the close record");
  buffer_.append(bytes);
  for (;;) {
    const size_t avail = buffer_.size() - buffer_pos_;
    if (avail < kRecordLengthBytes) break;
    const auto* p = u8(buffer_) + buffer_pos_;
    const size_t length = (size_t{p[0]} << 8) | p[1];
    if (length < kMinRecordLength) {
      return fail("record length " + std::to_string(length) + " below the minimum");
    }
    if (length > max_record_length_) {
      return fail("record length " + std::to_string(length) + " above the limit of " +
                  std::to_string(max_record_length_));
    }
    if (avail < kRecordLengthBytes + length) break;  // partial record: wait for more
    auto st = process_record(buffer_.data() + buffer_pos_ + kRecordLengthBytes, length);
    if (!st) return st;
    buffer_pos_ += kRecordLengthBytes + length;
    if (closed_ && buffer_pos_ < buffer_.size()) return fail("data after the close record");
  }
  // Drop consumed bytes; amortised O(1) per byte since this runs once per feed.
  if (buffer_pos_ > 0) {
    buffer_.erase(0, buffer_pos_);
    buffer_pos_ = 0;
  }
  return {};
}

Status RecordOpener::process_record(char* data, size_t length) {
  const std::string_view record(data, length);
  const uint64_t counter = get_u64(u8(record));
  if (counter != expected_counter_) {
    return fail("record counter " + std::to_string(counter) + ", expected " +
                std::to_string(expected_counter_) + " (replayed, reordered or dropped record)");
  }
  if (expected_counter_ == UINT64_MAX) return fail("record counter exhausted");
  // Decrypted in place, in the stream buffer (libsodium allows output == input): no
  // allocation and no extra copy per record. The tag is checked before anything is written.
  auto ciphertext = record.substr(kRecordCounterBytes);
  auto* body = reinterpret_cast<uint8_t*>(data + kRecordCounterBytes);
  auto st = noise::aead_open_into(key_, counter, noise::ByteView(u8(record), kRecordCounterBytes),
                                  noise::as_bytes(ciphertext), body);
  const std::string_view plain(data + kRecordCounterBytes, ciphertext.size() - noise::kTagLen);
  if (!st) {
    return fail("record " + std::to_string(counter) +
                ": authentication failed (tampered record or wrong key)");
  }
  ++expected_counter_;
  const auto type = static_cast<uint8_t>(plain[0]);
  std::string_view fragment = std::string_view(plain).substr(1);
  switch (type) {
    case static_cast<uint8_t>(RecordType::kDataFinal):
    case static_cast<uint8_t>(RecordType::kDataMore): {
      if (assembling_.size() + fragment.size() > max_message_) {
        return fail("message exceeds the limit of " + std::to_string(max_message_) + " bytes");
      }
      assembling_.append(fragment);
      in_message_ = true;
      if (type == static_cast<uint8_t>(RecordType::kDataFinal)) {
        messages_.push_back(std::move(assembling_));
        assembling_.clear();
        in_message_ = false;
      }
      return {};
    }
    case static_cast<uint8_t>(RecordType::kClose):
      if (in_message_) return fail("close record in the middle of a message");
      if (!fragment.empty()) return fail("close record with a body");
      closed_ = true;
      return {};
    case static_cast<uint8_t>(RecordType::kRekey):
      // Authenticated under the current key above: switch to the next one and overwrite this
      // one in place. May come between the records of one message.
      if (!fragment.empty()) return fail("rekey record with a body");
      noise::rekey_in_place(key_);
      ++rekeys_;
      return {};
    default:
      return fail("unknown record type " + std::to_string(type));
  }
}

std::optional<std::string> RecordOpener::pop_message() {
  if (messages_.empty()) return std::nullopt;
  std::string m = std::move(messages_.front());
  messages_.pop_front();
  return m;
}

Status RecordOpener::finish() {
  if (error_) return *error_;
  if (closed_) return {};
  if (buffer_.size() > buffer_pos_) return fail("stream truncated in the middle of a record");
  if (in_message_) return fail("stream truncated in the middle of a message");
  return fail("stream ended without a close record (truncated)");
}

}  // namespace starling::mesh

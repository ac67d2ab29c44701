// Record opener fed arbitrary bytes, in arbitrary splits. A third of the inputs are turned into
// correctly encrypted records first (fuzzer-chosen types, fragments and counters; a kRekey
// record switches the generator to the next key as a real sender would) so the fuzzer reaches
// the logic behind the authentication tag. Another third drive a real sealer with a tiny
// rekey policy and check that every message comes out of the opener byte-identical.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mesh/record_codec.h"

namespace {

using namespace starling::mesh;

const noise::Key& key() {
  static const noise::Key k = [] {
    noise::Key x;
    x.fill(0x33);
    return x;
  }();
  return k;
}

// Input: repeated [flags, len, fragment...]; flags low bits = type, bit 7 = skip a counter.
std::string sealed_records(const uint8_t* data, size_t size) {
  noise::Key k = key();
  std::string out;
  uint64_t counter = 0;
  size_t pos = 0;
  while (pos + 2 <= size) {
    const uint8_t flags = data[pos];
    size_t len = data[pos + 1];
    pos += 2;
    if (len > size - pos) len = size - pos;
    if (flags & 0x80) ++counter;
    std::string plain(1, static_cast<char>(flags & 0x07));
    plain.append(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
    uint8_t ctr[8];
    for (int i = 0; i < 8; ++i) ctr[i] = static_cast<uint8_t>(counter >> (56 - 8 * i));
    auto c = noise::aead_seal(k, counter, noise::ByteView(ctr, 8), noise::as_bytes(plain));
    if ((flags & 0x07) == static_cast<uint8_t>(RecordType::kRekey)) noise::rekey_in_place(k);
    const size_t l = 8 + c.size();
    out.push_back(static_cast<char>(l >> 8));
    out.push_back(static_cast<char>(l));
    out.append(reinterpret_cast<const char*>(ctr), 8);
    out.append(reinterpret_cast<const char*>(c.data()), c.size());
    ++counter;
  }
  return out;
}

// Input: [policy records, policy bytes, then repeated (len, bytes...)] as messages.
void round_trip(const uint8_t* data, size_t size, size_t chunk) {
  if (size < 2) return;
  RekeyPolicy policy;
  policy.max_records = 1 + data[0] % 4;
  policy.max_bytes = 1 + size_t{data[1]} * 8;
  policy.max_age = std::chrono::seconds(1);
  const RecordTime t0{};
  RecordSealer sealer(key(), t0, policy, /*max_message=*/4096);
  std::vector<std::string> sent;
  std::string wire;
  size_t pos = 2;
  int tick = 0;
  while (pos < size) {
    size_t len = data[pos++];
    if (len > size - pos) len = size - pos;
    sent.emplace_back(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
    // Time advances by 0.5 s per message: a time-based rekey every other message.
    if (!sealer.seal_message(sent.back(), t0 + std::chrono::milliseconds(500 * tick++), wire)
             .ok()) {
      __builtin_trap();
    }
  }
  if (!sealer.seal_close(t0 + std::chrono::milliseconds(500 * tick), wire).ok()) __builtin_trap();
  RecordOpener opener(key(), 4096);
  for (size_t at = 0; at < wire.size(); at += chunk) {
    if (!opener.feed(std::string_view(wire).substr(at, chunk)).ok()) __builtin_trap();
  }
  for (const auto& m : sent) {
    auto got = opener.pop_message();
    if (!got || *got != m) __builtin_trap();
  }
  if (opener.pop_message() || !opener.finish().ok()) __builtin_trap();
  if (opener.rekeys() != sealer.rekeys()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t chunk = 1 + data[1];
  if (data[0] % 3 == 2) {
    round_trip(data + 2, size - 2, chunk);
    return 0;
  }
  const bool structured = data[0] % 3 == 1;
  std::string stream = structured ? sealed_records(data + 2, size - 2)
                                  : std::string(reinterpret_cast<const char*>(data + 2), size - 2);
  RecordOpener opener(key(), /*max_message=*/4096);
  size_t total = 0;
  bool failed = false;
  for (size_t pos = 0; pos < stream.size(); pos += chunk) {
    auto st = opener.feed(std::string_view(stream).substr(pos, chunk));
    if (!st.ok()) {
      failed = true;
      break;
    }
    while (auto m = opener.pop_message()) {
      if (m->size() > 4096) __builtin_trap();
      total += m->size();
    }
  }
  if (failed && opener.feed("x").ok()) __builtin_trap();  // errors are final
  (void)opener.finish();
  (void)total;
  return 0;
}

// Reading a tcpdump capture for tests that look for plaintext on the wire: TCP payloads split
// by port, and a count of a file's 64-byte blocks found anywhere in a byte string.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>

#include <gtest/gtest.h>

#include "tests/integration/process.h"

namespace starling::testing {

constexpr size_t kWindow = 64;
constexpr uint64_t kBase = 1099511628211ULL;

struct Payloads {
  std::string origin;  // TCP payload to or from the origin's port
  std::string other;   // every other TCP payload
  size_t packets = 0;
};

inline uint32_t u32le(const std::string& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

// Reads a classic pcap written by `tcpdump -i IF` on an Ethernet-type link (lo, veth) and
// splits the TCP payloads by whether they belong to `origin_port`.
inline Payloads read_pcap(const std::string& path, uint16_t origin_port) {
  const std::string b = read_text(path);
  Payloads out;
  if (b.size() < 24) return out;
  const uint32_t magic = u32le(b, 0);
  EXPECT_TRUE(magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) << "not a little-endian pcap";
  EXPECT_EQ(u32le(b, 20), 1u) << "expected the Ethernet link type";
  for (size_t at = 24; at + 16 <= b.size();) {
    const size_t len = u32le(b, at + 8);
    const size_t pkt = at + 16;
    at = pkt + len;
    if (at > b.size() || len < 14 + 20) break;
    const auto* p = reinterpret_cast<const uint8_t*>(b.data() + pkt);
    if (p[12] != 0x08 || p[13] != 0x00) continue;  // IPv4 only
    const uint8_t* ip = p + 14;
    const size_t ihl = (ip[0] & 0x0f) * 4u;
    if (ip[9] != 6 || len < 14 + ihl + 20) continue;  // TCP only
    const size_t total = (size_t{ip[2]} << 8) | ip[3];
    const uint8_t* tcp = ip + ihl;
    const size_t doff = (tcp[12] >> 4) * 4u;
    const uint16_t sport = static_cast<uint16_t>((tcp[0] << 8) | tcp[1]);
    const uint16_t dport = static_cast<uint16_t>((tcp[2] << 8) | tcp[3]);
    if (total < ihl + doff || 14 + total > len) continue;
    const std::string payload(reinterpret_cast<const char*>(tcp + doff), total - ihl - doff);
    (sport == origin_port || dport == origin_port ? out.origin : out.other) += payload;
    ++out.packets;
  }
  return out;
}

// How many of the file's 64-byte aligned blocks occur, at any alignment, in `haystack`
// (Rabin-Karp with a verifying memcmp, so hash collisions never count).
inline size_t blocks_found(const std::string& file, const std::string& haystack) {
  std::unordered_multimap<uint64_t, size_t> blocks;
  uint64_t top = 1;
  for (size_t i = 1; i < kWindow; ++i) top *= kBase;
  auto hash = [](const char* d) {
    uint64_t h = 0;
    for (size_t i = 0; i < kWindow; ++i) h = h * kBase + static_cast<uint8_t>(d[i]);
    return h;
  };
  for (size_t off = 0; off + kWindow <= file.size(); off += kWindow) {
    blocks.emplace(hash(file.data() + off), off);
  }
  size_t found = 0;
  if (haystack.size() < kWindow) return 0;
  uint64_t h = hash(haystack.data());
  for (size_t i = 0;; ++i) {
    auto [lo, hi] = blocks.equal_range(h);
    for (auto it = lo; it != hi; ++it) {
      if (std::memcmp(haystack.data() + i, file.data() + it->second, kWindow) == 0) {
        ++found;
        break;
      }
    }
    if (i + kWindow >= haystack.size()) break;
    h = (h - static_cast<uint8_t>(haystack[i]) * top) * kBase +
        static_cast<uint8_t>(haystack[i + kWindow]);
  }
  return found;
}

}  // namespace starling::testing

// A packet capture of a whole transfer holds no plaintext of the file on the mesh and data
// links. The origin's own HTTP traffic (plain HTTP by design) is the control: the same search
// must find the file there, which proves the search would notice a leak.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <unordered_map>

#include <gtest/gtest.h>

#include "tests/integration/cluster.h"
#include "tests/integration/process.h"

namespace starling::testing {
namespace {

namespace fs = std::filesystem;

constexpr size_t kWindow = 64;
constexpr uint64_t kBase = 1099511628211ULL;

struct Payloads {
  std::string origin;  // TCP payload to or from the origin's port
  std::string other;   // every other TCP payload on loopback
  size_t packets = 0;
};

uint32_t u32le(const std::string& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

// Reads a classic pcap written by `tcpdump -i lo` (Ethernet link type) and splits the TCP
// payloads by whether they belong to `origin_port`.
Payloads read_pcap(const std::string& path, uint16_t origin_port) {
  const std::string b = read_text(path);
  Payloads out;
  if (b.size() < 24) return out;
  const uint32_t magic = u32le(b, 0);
  EXPECT_TRUE(magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) << "not a little-endian pcap";
  EXPECT_EQ(u32le(b, 20), 1u) << "expected Ethernet link type on lo";
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
size_t blocks_found(const std::string& file, const std::string& haystack) {
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

TEST(CaptureTest, NoPlaintextOfTheFileOnMeshOrDataLinks) {
  ASSERT_EQ(::geteuid(), 0u) << "capturing on lo needs root";
  ASSERT_TRUE(fs::exists("/usr/bin/tcpdump")) << "scripts/deps.sh installs tcpdump";
  Cluster c(2);
  constexpr size_t kSize = 6 * 1024 * 1024;
  write_random_file(c.www("secret.bin"), kSize, 99);

  const std::string pcap = c.dir() / "transfer.pcap";
  Process dump("/usr/bin/tcpdump", {"-i", "lo", "-U", "-s", "0", "-w", pcap, "tcp"},
               c.dir() / "tcpdump.log");
  ASSERT_TRUE(
      eventually([&] { return dump.output().find("listening on lo") != std::string::npos; }, 10s))
      << dump.output();

  Process& a = c.start_get(0, {c.url("secret.bin"), "-o", c.out("a")}, "get-a.log");
  Process& b = c.start_get(1, {c.url("secret.bin"), "-o", c.out("b")}, "get-b.log");
  ASSERT_EQ(a.wait(120s), 0) << a.output();
  ASSERT_EQ(b.wait(120s), 0) << b.output();
  std::this_thread::sleep_for(500ms);
  dump.signal(SIGINT);
  ASSERT_EQ(dump.wait(10s), 0) << dump.output();

  const std::string file = read_text(c.www("secret.bin"));
  ASSERT_EQ(read_text(c.out("a")), file);
  ASSERT_EQ(read_text(c.out("b")), file);
  const Payloads p = read_pcap(pcap, c.origin_port());
  // The transfer was captured: both peers received the file over the encrypted links. (The
  // kernel may drop a few packets from a capture under load; tcpdump's log says how many.)
  EXPECT_GE(p.other.size(), 2 * kSize * 9 / 10) << dump.output();
  // Control: the origin's plain HTTP carries the file, and the search finds it there.
  EXPECT_GT(blocks_found(file, p.origin), kSize / kWindow / 2);
  // The mesh (Noise) and data (TLS) links carry none of it.
  EXPECT_EQ(blocks_found(file, p.other), 0u);
}

}  // namespace
}  // namespace starling::testing

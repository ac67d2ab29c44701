// A packet capture of a whole transfer holds no plaintext of the file on the mesh and data
// links. The origin's own HTTP traffic (plain HTTP by design) is the control: the same search
// must find the file there, which proves the search would notice a leak.
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "tests/integration/cluster.h"
#include "tests/integration/pcap.h"
#include "tests/integration/process.h"

namespace starling::testing {
namespace {

namespace fs = std::filesystem;

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
  // kernel drops packets from a capture under load, tcpdump's log says how many; so these
  // checks ask for half the traffic and a tenth of the blocks, not all of them.)
  EXPECT_GE(p.other.size(), kSize) << dump.output();
  // Control: the origin's plain HTTP carries the file, and the search finds it there.
  EXPECT_GT(blocks_found(file, p.origin), kSize / kWindow / 10) << dump.output();
  // The mesh (Noise) and data (TLS) links carry none of it.
  EXPECT_EQ(blocks_found(file, p.other), 0u);
}

}  // namespace
}  // namespace starling::testing

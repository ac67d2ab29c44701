// The whole path with real processes on loopback: an origin, a supernode and peer daemons,
// all separate `starling` processes; `starling get` as a user would run it.
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include <gtest/gtest.h>

#include "crypto/hash.h"
#include "tests/integration/cluster.h"
#include "tests/integration/process.h"
#include "tests/integration/slow_origin.h"

namespace starling::testing {
namespace {

namespace fs = std::filesystem;

// Files in `dir` other than `keep`: a failed get must leave no temp file behind.
std::vector<std::string> stray_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(SystemTest, FourConcurrentGetsByteIdenticalAndOriginServesOnce) {
  Cluster c(4);
  constexpr size_t kSize = 40 * 1024 * 1024 + 12345;  // not a multiple of the piece size
  write_random_file(c.www("blob"), kSize, 7);
  std::vector<Process*> gets;
  for (int i = 0; i < 4; ++i) {
    gets.push_back(&c.start_get(i, {c.url("blob"), "-o", c.out("blob" + std::to_string(i))},
                                "get" + std::to_string(i) + ".log"));
  }
  const std::string expected = sha256_of(c.www("blob"));
  for (int i = 0; i < 4; ++i) {
    auto& g = *gets[static_cast<size_t>(i)];
    ASSERT_EQ(g.wait(180s), 0) << g.output();
    EXPECT_EQ(sha256_of(c.out("blob" + std::to_string(i))), expected) << "peer " << i;
    EXPECT_EQ(fs::file_size(c.out("blob" + std::to_string(i))), kSize);
  }
  EXPECT_EQ(c.origin_stat("requests"), 1);
  EXPECT_EQ(c.origin_stat("bytes_sent"), static_cast<int64_t>(kSize));
  EXPECT_EQ(stray_files(c.dir() / "out").size(), 4u);

  // A second get of the same URL is served from the swarm and the cache: still one request.
  auto again = c.get(1, {c.url("blob"), "-o", c.out("again")});
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_EQ(sha256_of(c.out("again")), expected);
  EXPECT_EQ(c.origin_stat("requests"), 1);
}

TEST(SystemTest, DigestGivenAndMatching) {
  Cluster c(1);
  write_random_file(c.www("f"), 3 * 1024 * 1024, 3);
  auto r = c.get(0, {c.url("f"), "-o", c.out("f"), "--digest", "sha256:" + sha256_of(c.www("f"))});
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(sha256_of(c.out("f")), sha256_of(c.www("f")));
}

TEST(SystemTest, BadInputGivesOneLineErrorAndWritesNothing) {
  Cluster c(1);
  write_random_file(c.www("f"), 1024 * 1024, 5);
  struct Case {
    std::string name;
    std::vector<std::string> args;
    std::string message;
  };
  const std::string wrong_digest = "sha256:" + std::string(64, 'a');
  const Case cases[] = {
      {"unreachable origin",
       {"http://127.0.0.2:" + std::to_string(free_port("127.0.0.2")) + "/f", "-o", c.out("x")},
       "origin unreachable: http://127.0.0.2:"},
      {"404",
       {c.url("missing"), "-o", c.out("x")},
       "origin returned HTTP 404 for " + c.url("missing")},
      {"digest mismatch",
       {c.url("f"), "-o", c.out("x"), "--digest", wrong_digest},
       "digest mismatch for " + c.url("f") + ": expected " + wrong_digest},
      {"unwritable output",
       {c.url("f"), "-o", c.dir() / "no/such/dir/x"},
       "cannot write " + (c.dir() / "no/such/dir/x") + ": No such file or directory"},
      {"output is a directory",
       {c.url("f"), "-o", c.dir() / "out"},
       "cannot write " + (c.dir() / "out") + ": is a directory"},
      {"bad digest syntax",
       {c.url("f"), "-o", c.out("x"), "--digest", "md5:00"},
       "unsupported digest algorithm 'md5'"},
      {"not http", {"ftp://h/f", "-o", c.out("x")}, "URL must start with http:// or https://"},
  };
  for (const auto& k : cases) {
    auto r = c.get(0, k.args);
    EXPECT_EQ(r.code, 1) << k.name << ": " << r.output;
    EXPECT_NE(r.output.find("starling get: " + k.message), std::string::npos)
        << k.name << ": " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << k.name << ": " << r.output;
    EXPECT_TRUE(stray_files(c.dir() / "out").empty()) << k.name;
  }
  EXPECT_EQ(c.origin_stat("bytes_sent") >= 0, true);
}

std::string md5_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  crypto::Md5 h;
  h.update(bytes.data(), bytes.size());
  return h.finish_hex();
}

// `dfget URL...` run as a user would: through the link named dfget beside the binary.
RunResult run_dfget(const std::vector<std::string>& args, const std::string& log) {
  Process p((fs::path(starling_binary()).parent_path() / "dfget").string(), args, log);
  RunResult r;
  r.code = p.wait(120s);
  r.output = p.output();
  return r;
}

TEST(SystemTest, DfgetTakesDragonflysFlags) {
  Cluster c(1);
  constexpr size_t kSize = 5 * 1024 * 1024 + 7;
  write_random_file(c.www("layer"), kSize, 11);
  const std::string md5 = md5_of(c.www("layer"));

  // dfget 1's command line, as its registry hook passes it.
  auto one = run_dfget(
      {"-u", c.url("layer"), "-o", c.out("layer"), "--md5", md5, "--node", c.supernode_address(),
       "--notbs", "--dfdaemon", "--callsystem", "test", "--daemon-sock", c.socket(0)},
      c.dir() / "dfget1.log");
  ASSERT_EQ(one.code, 0) << one.output;
  EXPECT_EQ(sha256_of(c.out("layer")), sha256_of(c.www("layer")));
  EXPECT_NE(one.output.find("dfget: ignoring --node: a one-shot peer (used when no peer daemon "
                            "runs) also needs --network DIR\n"),
            std::string::npos)
      << one.output;
  EXPECT_NE(one.output.find("download SUCCESS cost:"), std::string::npos) << one.output;
  EXPECT_NE(one.output.find(" length:" + std::to_string(kSize) + "\n"), std::string::npos)
      << one.output;

  // dfget 2's, through `starling dfget`: the same content, served by the swarm.
  auto two = run_starling({"dfget", c.url("layer"), "-O", c.out("again"), "--digest", "md5:" + md5,
                           "--socket", c.socket(0)},
                          c.dir() / "dfget2.log");
  ASSERT_EQ(two.code, 0) << two.output;
  EXPECT_EQ(sha256_of(c.out("again")), sha256_of(c.www("layer")));
  EXPECT_EQ(c.origin_stat("requests"), 1);

  // A wrong MD5: the reason on one line, exit 1, nothing written.
  const std::string zeros(32, '0');
  auto wrong = run_dfget(
      {"-u", c.url("layer"), "-o", c.out("wrong"), "--md5", zeros, "--daemon-sock", c.socket(0)},
      c.dir() / "dfget3.log");
  EXPECT_EQ(wrong.code, 1) << wrong.output;
  EXPECT_EQ(wrong.output, "dfget: content md5 " + md5 + " differs from the expected md5 " + zeros +
                              " (nothing written)\n");
  EXPECT_EQ(stray_files(c.dir() / "out").size(), 2u);

  // Usage errors exit 2 and name dfget's help.
  auto source = run_dfget({"-u", c.url("layer"), "-o", c.out("x"), "--pattern", "source"},
                          c.dir() / "dfget4.log");
  EXPECT_EQ(source.code, 2);
  EXPECT_EQ(source.output,
            "dfget: --pattern source (a direct download from the origin) is not supported: only "
            "the supernodes fetch from the origin (see 'dfget --help')\n");
  auto unknown = run_dfget({c.url("layer"), "--no-such-flag"}, c.dir() / "dfget5.log");
  EXPECT_EQ(unknown.code, 2);
  EXPECT_EQ(unknown.output, "dfget: unknown flag --no-such-flag (see 'dfget --help')\n");
  EXPECT_EQ(stray_files(c.dir() / "out").size(), 2u);
}

TEST(SystemTest, DfgetTimeoutStopsWaitingAndWritesNothing) {
  Cluster c(1);
  SlowOrigin slow(Cluster::kOriginIp, std::string(4 << 20, 'x'), 256 << 10);  // 16 s
  const std::string url =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(slow.port()) + "/slow";
  const auto start = std::chrono::steady_clock::now();
  auto r = run_dfget(
      {"-u", url, "-o", c.out("slow"), "--timeout", "1500ms", "--daemon-sock", c.socket(0)},
      c.dir() / "dfget.log");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);  // not the fetch's 16 s
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("dfget: timed out after 1.500 s (", 0), 0u) << r.output;
  EXPECT_NE(r.output.find(" bytes done; the task goes on in the peer daemon)\n"), std::string::npos)
      << r.output;
  EXPECT_TRUE(stray_files(c.dir() / "out").empty());
}

TEST(SystemTest, NoDaemonIsAClearError) {
  TempDir d;
  auto r = run_starling({"get", "http://127.0.0.2/f", "-o", d / "x", "--socket", d / "none.sock"},
                        d / "log");
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.output, "starling get: no peer daemon at " + (d / "none.sock") +
                          " (start one with `starling peer`, or give --network and --supernode "
                          "to download with a one-shot peer)\n");
  EXPECT_FALSE(fs::exists(d / "x"));
  // The one-shot peer's flags go together.
  auto half = run_starling({"get", "http://127.0.0.2/f", "-o", d / "x", "--socket", d / "none.sock",
                            "--network", d / "net"},
                           d / "log2");
  EXPECT_EQ(half.code, 2);
  EXPECT_EQ(half.output,
            "starling: get: --network and --supernode go together (a one-shot peer needs both) "
            "(see 'starling --help')\n");
  EXPECT_TRUE(stray_files(d.path()).size() == 2u)
      << ::testing::PrintToString(stray_files(d.path()));
}

// Points $TMPDIR (where a one-shot peer puts its socket) at a directory of the test while it
// lives.
class ScopedTmpdir {
 public:
  explicit ScopedTmpdir(const std::string& dir) : dir_(dir) {
    fs::create_directories(dir);
    const char* old = ::getenv("TMPDIR");
    if (old != nullptr) old_ = old;
    ::setenv("TMPDIR", dir.c_str(), 1);
  }
  ~ScopedTmpdir() {
    if (old_) {
      ::setenv("TMPDIR", old_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }

 private:
  std::string dir_;
  std::optional<std::string> old_;
};

TEST(SystemTest, OneShotPeersDownloadWithoutADaemon) {
  Cluster c(0);  // a supernode and the origin; no peer daemon anywhere
  ScopedTmpdir tmp(c.dir() / "tmp");
  constexpr size_t kSize = 24 * 1024 * 1024 + 777;
  write_random_file(c.www("blob"), kSize, 11);
  const std::string expected = sha256_of(c.www("blob"));
  const std::string none = c.dir() / "none.sock";

  // Two at once, each a one-shot peer of its own: one origin request for both.
  std::vector<std::unique_ptr<Process>> gets;
  for (int i = 0; i < 2; ++i) {
    gets.push_back(std::make_unique<Process>(
        std::vector<std::string>{"get", c.url("blob"), "-o", c.out("blob" + std::to_string(i)),
                                 "--socket", none, "--network", c.dir() / "net", "--supernode",
                                 c.supernode_address(), "--listen",
                                 "127.0.0." + std::to_string(50 + i)},
        c.dir() / ("oneshot" + std::to_string(i) + ".log")));
  }
  for (int i = 0; i < 2; ++i) {
    Process& g = *gets[static_cast<size_t>(i)];
    ASSERT_EQ(g.wait(120s), 0) << g.output();
    EXPECT_NE(
        g.output().find("starling get: no peer daemon at " + none + ", starting a one-shot peer\n"),
        std::string::npos)
        << g.output();
    EXPECT_EQ(g.output().find("peer: "), std::string::npos) << g.output();  // get reports, not it
    EXPECT_EQ(sha256_of(c.out("blob" + std::to_string(i))), expected);
  }
  EXPECT_EQ(c.origin_stat("requests"), 1);

  // dfget 1's --node (port 8002 unless given, weight ignored) and --ip, with --network.
  auto d = run_starling(
      {"dfget", "-u", c.url("blob"), "-o", c.out("dfget"), "--node", c.supernode_address() + "=1",
       "--network", c.dir() / "net", "--ip", "127.0.0.52", "--daemon-sock", none},
      c.dir() / "dfget.log");
  ASSERT_EQ(d.code, 0) << d.output;
  EXPECT_EQ(d.output.find("ignoring --node"), std::string::npos) << d.output;
  EXPECT_EQ(sha256_of(c.out("dfget")), expected);
  EXPECT_EQ(c.origin_stat("requests"), 1);

  // Nothing of the one-shot peers is left: no data directory beside the outputs, no socket.
  EXPECT_EQ(stray_files(c.dir() / "out"), (std::vector<std::string>{"blob0", "blob1", "dfget"}))
      << ::testing::PrintToString(stray_files(c.dir() / "out"));
  EXPECT_TRUE(stray_files(c.dir() / "tmp").empty())
      << ::testing::PrintToString(stray_files(c.dir() / "tmp"));
}

TEST(SystemTest, CtrlCStopsAGetAndLeavesNothingBehind) {
  Cluster c(1);
  ScopedTmpdir tmp(c.dir() / "tmp");
  SlowOrigin slow(Cluster::kOriginIp, std::string(4 << 20, 's'), 256 << 10);  // 16 s
  const std::string base =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(slow.port()) + "/slow";
  const std::vector<std::vector<std::string>> ways = {
      {"--socket", c.socket(0)},  // through the daemon
      {"--socket", c.dir() / "none.sock", "--network", c.dir() / "net", "--supernode",
       c.supernode_address(), "--listen", "127.0.0.53"},  // a one-shot peer
  };
  for (size_t i = 0; i < ways.size(); ++i) {
    const std::string out = c.out("slow" + std::to_string(i));
    std::vector<std::string> args = {"get", base + std::to_string(i), "-o", out};
    args.insert(args.end(), ways[i].begin(), ways[i].end());
    Process get(args, c.dir() / ("ctrl-c" + std::to_string(i) + ".log"));
    // Interrupted while the supernode fetches this task (its own URL: the i-th request).
    ASSERT_TRUE(eventually([&] { return slow.requests() > static_cast<int64_t>(i); }, 30s))
        << get.output();
    get.signal(SIGINT);
    EXPECT_EQ(get.wait(30s), 128 + SIGINT) << get.output();
    EXPECT_NE(get.output().find("starling get: stopped by Interrupt, nothing written\n"),
              std::string::npos)
        << get.output();
    EXPECT_TRUE(stray_files(c.dir() / "out").empty())
        << ::testing::PrintToString(stray_files(c.dir() / "out"));
    EXPECT_TRUE(stray_files(c.dir() / "tmp").empty())
        << ::testing::PrintToString(stray_files(c.dir() / "tmp"));
  }
}

// kill -9 leaves a one-shot get's temp output, peer data directory and socket directory behind;
// the next get of that output removes them (they are no longer locked: cli/leftovers.h) and
// downloads the same bytes. While the get still ran, another get left them alone.
TEST(SystemTest, TheNextGetRemovesWhatAKilledGetLeft) {
  Cluster c(1);
  ScopedTmpdir tmp(c.dir() / "tmp");
  const std::string content(4 << 20, 'k');
  SlowOrigin slow(Cluster::kOriginIp, content, 256 << 10);  // 16 s
  const std::string url =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(slow.port()) + "/k";
  const std::string out = c.out("killed");
  const std::vector<std::string> args = {"get",         url,
                                         "-o",          out,
                                         "--socket",    c.dir() / "none.sock",
                                         "--network",   c.dir() / "net",
                                         "--supernode", c.supernode_address(),
                                         "--listen",    "127.0.0.54"};
  // As if they were a minute old (a get just starting beside them is left alone).
  const auto age_all = [&] {
    for (const auto& dir : {c.dir() / "out", c.dir() / "tmp"}) {
      for (const auto& name : stray_files(dir)) {
        const timeval then[2] = {{std::time(nullptr) - 60, 0}, {std::time(nullptr) - 60, 0}};
        ASSERT_EQ(::utimes((dir + "/" + name).c_str(), then), 0) << name;
      }
    }
  };
  std::vector<std::string> left;
  {
    Process get(args, c.dir() / "killed.log");
    ASSERT_TRUE(eventually([&] { return slow.requests() > 0; }, 30s)) << get.output();
    left = stray_files(c.dir() / "out");
    ASSERT_EQ(left.size(), 2u) << ::testing::PrintToString(left);  // temp output, data directory
    ASSERT_EQ(stray_files(c.dir() / "tmp").size(), 1u);            // the socket directory
    // While it runs, another get of the same output (which then finds no daemon) leaves them.
    ASSERT_NO_FATAL_FAILURE(age_all());
    auto other = run_starling({"get", url, "-o", out, "--socket", c.dir() / "none.sock"},
                              c.dir() / "other.log", 30s);
    EXPECT_EQ(other.code, 1) << other.output;
    EXPECT_EQ(other.output.find("removed"), std::string::npos) << other.output;
    EXPECT_EQ(stray_files(c.dir() / "out"), left);
    EXPECT_EQ(stray_files(c.dir() / "tmp").size(), 1u);
    get.signal(SIGKILL);
    EXPECT_EQ(get.wait(30s), 128 + SIGKILL);
  }
  EXPECT_EQ(stray_files(c.dir() / "out"), left);  // kill -9: nothing could clean up
  ASSERT_NO_FATAL_FAILURE(age_all());
  auto again = run_starling(args, c.dir() / "again.log", 60s);
  ASSERT_EQ(again.code, 0) << again.output;
  const std::string removed =
      "starling get: removed what an earlier get that did not finish "
      "left: " +
      (c.dir() / "out/") + left[0] + " " + (c.dir() / "out/") + left[1] + " " +
      (c.dir() / "tmp/starling-get-");
  EXPECT_NE(again.output.find(removed), std::string::npos) << again.output;
  EXPECT_TRUE(read_text(out) == content);
  EXPECT_EQ(stray_files(c.dir() / "out"), std::vector<std::string>{"killed"});
  EXPECT_TRUE(stray_files(c.dir() / "tmp").empty())
      << ::testing::PrintToString(stray_files(c.dir() / "tmp"));
}

TEST(SystemTest, WrongNetworkKeyIsRefusedAndReported) {
  Cluster c(0);
  auto other = run_starling({"mesh", "init", c.dir() / "other"}, c.dir() / "other.log");
  ASSERT_EQ(other.code, 0) << other.output;
  auto r = run_starling({"peer", "--network", c.dir() / "other", "--data", c.dir() / "intruder",
                         "--supernode", c.supernode_address(), "--listen", "127.0.0.40",
                         "--data-port", "0", "--socket", c.dir() / "intruder.sock"},
                        c.dir() / "intruder.log", 30s);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("starling peer: handshake with " + c.supernode_address() +
                          " refused (wrong network key, or not a Starling node)"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(eventually(
      [&] {
        return c.supernode().output().find("handshake from 127.0.0.1") != std::string::npos ||
               c.supernode().output().find("mesh: handshake from") != std::string::npos;
      },
      5s))
      << c.supernode().output();
  EXPECT_FALSE(fs::exists(c.dir() / "intruder.sock"));
}

// Status is an admin method: `starling status` signs itself an admin certificate with ca.key,
// and without ca.key says so in one line.
TEST(SystemTest, StatusIsAnAdminToolThatNeedsTheCaKey) {
  Cluster c(0);
  auto ok =
      run_starling({"status", "--network", c.dir() / "net", "--supernode", c.supernode_address()},
                   c.dir() / "status.log", 30s);
  EXPECT_EQ(ok.code, 0) << ok.output;
  EXPECT_NE(ok.output.find("node id: "), std::string::npos) << ok.output;

  const std::string dir = c.dir() / "peer-net";
  fs::create_directories(dir);
  for (const std::string f : {"network.secret", "ca.pem"}) {
    fs::copy_file(c.dir() / ("net/" + f), dir + "/" + f);
  }
  auto no_key = run_starling({"status", "--network", dir, "--supernode", c.supernode_address()},
                             c.dir() / "status2.log", 30s);
  EXPECT_EQ(no_key.code, 1) << no_key.output;
  EXPECT_EQ(no_key.output, "starling status needs " + dir + "/ca.key to act as an admin\n");
}

TEST(SystemTest, PeerStartedBeforeItsSupernodeWaitsForIt) {
  TempDir d;
  ASSERT_EQ(run_starling({"mesh", "init", d / "net"}, d / "init.log").code, 0);
  const uint16_t port = free_port("127.0.0.3");
  const std::string supernode = "127.0.0.3:" + std::to_string(port);
  Process peer({"peer", "--network", d / "net", "--data", d / "peer", "--supernode", supernode,
                "--listen", "127.0.0.50", "--data-port", "0", "--socket", d / "peer.sock"},
               d / "peer.log");
  ASSERT_TRUE(eventually(
      [&] { return peer.output().find("peer: waiting for the supernode") != std::string::npos; },
      10s))
      << peer.output();
  EXPECT_TRUE(peer.running());
  Process super({"supernode", "--network", d / "net", "--data", d / "super", "--listen",
                 "127.0.0.3", "--port", std::to_string(port), "--data-port", "0"},
                d / "super.log");
  EXPECT_TRUE(eventually([&] { return fs::exists(d / "peer.sock"); }, 30s))
      << peer.output() << super.output();
  peer.signal(SIGTERM);
  EXPECT_EQ(peer.wait(20s), 0) << peer.output();
  EXPECT_FALSE(fs::exists(d / "peer.sock"));
}

TEST(CliTest, UsageErrorsExitTwoWithOneLine) {
  TempDir d;
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"fly"},
      {"get"},
      {"get", "http://h/f"},
      {"get", "http://h/f", "-o", "x", "--nope"},
      {"supernode", "--data", "d"},
      {"peer"},
      {"mesh", "init"},
      {"status"},
      {"demo", "--peers", "x"},
      {"origin", "--root", "r", "--port", "70000"}};
  for (const auto& args : cases) {
    auto r = run_starling(args, d / "log", 10s);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined << r.output;
    if (!args.empty()) {
      EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << joined << r.output;
    }
  }
}

TEST(CliTest, HelpIsTruthful) {
  TempDir d;
  for (const char* cmd : {"supernode", "peer", "get", "status", "demo", "origin"}) {
    auto r = run_starling({cmd, "--help"}, d / "log", 10s);
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.output.find(std::string("Usage: starling ") + cmd), std::string::npos) << r.output;
  }
  auto r = run_starling({"mesh", "init", "--help"}, d / "log", 10s);
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("Usage: starling mesh init DIR"), std::string::npos) << r.output;
}

TEST(MeshInitTest, CreatesKeyFilesWithPrivateModesAndRefusesToOverwrite) {
  TempDir d;
  auto r = run_starling({"mesh", "init", d / "net"}, d / "log", 10s);
  ASSERT_EQ(r.code, 0) << r.output;
  struct stat st {};
  ASSERT_EQ(::stat((d / "net/network.secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((d / "net/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((d / "net/ca.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0044u);
  const std::string secret = read_text(d / "net/network.secret");
  auto again = run_starling({"mesh", "init", d / "net"}, d / "log", 10s);
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.output.find("a network already exists in"), std::string::npos) << again.output;
  EXPECT_EQ(read_text(d / "net/network.secret"), secret);
}

}  // namespace
}  // namespace starling::testing

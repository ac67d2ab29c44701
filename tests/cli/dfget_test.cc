#include "cli/dfget.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/commands.h"

namespace starling::cli {
namespace {

using std::chrono::milliseconds;

const std::string kMd5 = "0123456789abcdef0123456789abcdef";

// The command line after `dfget` (or `starling dfget`).
Result<DfgetInvocation> dfget(std::vector<std::string> args) {
  args.insert(args.begin(), "dfget");
  auto parsed = parse_args(command_specs(), args);
  if (!parsed) return parsed.error();
  return dfget_invocation(*parsed);
}

std::string error_of(std::vector<std::string> args) {
  auto r = dfget(std::move(args));
  return r ? "(no error)" : r.error().message;
}

TEST(Dfget, DragonflyOnesCommandLine) {
  // What dfget 1's registry hook (dfdaemon) and scripts pass.
  auto r = dfget({"-u",           "https://h/v2/lib/blobs/sha256:ab?key=1&sign=2",
                  "-o",           "/tmp/out",
                  "--md5",        "0123456789ABCDEF0123456789abcdef",
                  "-i",           "layer-1",
                  "-f",           "key&sign",
                  "--header",     "Authorization: Bearer t",
                  "--header",     "X: y",
                  "-e",           "1m30s",
                  "--notbs",      "--dfdaemon",
                  "--callsystem", "hook",
                  "--console",    "--verbose",
                  "--expiretime", "3m",
                  "--alivetime",  "5m",
                  "--home",       "/root/.small-dragonfly"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  const GetRequest& q = r->request;
  EXPECT_EQ(q.url, "https://h/v2/lib/blobs/sha256:ab?key=1&sign=2");
  EXPECT_EQ(q.output, "/tmp/out");
  EXPECT_EQ(q.md5, kMd5);  // lowercased
  EXPECT_EQ(q.digest, "");
  EXPECT_EQ(q.tag, "layer-1");
  EXPECT_EQ(q.filter, (std::vector<std::string>{"key", "sign"}));
  EXPECT_EQ(q.headers, (std::vector<std::string>{"Authorization: Bearer t", "X: y"}));
  EXPECT_EQ(q.timeout, milliseconds(90'000));
  EXPECT_EQ(q.socket, kDefaultSocket);
  EXPECT_FALSE(q.progress);  // dfget shows a bar only with --showbar
  EXPECT_EQ(q.program, "dfget");
  EXPECT_TRUE(q.dfget_success_line);
  EXPECT_TRUE(r->notices.empty());  // nothing given that Starling does not honour
}

TEST(Dfget, DragonflyTwosCommandLine) {
  auto r =
      dfget({"http://h/f.iso", "-O", "f.iso", "--digest", "sha256:" + std::string(64, 'A'), "--tag",
             "t", "-H", "A: 1", "--timeout", "2h", "-b", "--daemon-sock", "/run/d.sock"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->request.url, "http://h/f.iso");
  EXPECT_EQ(r->request.output, "f.iso");
  EXPECT_EQ(r->request.digest, "sha256:" + std::string(64, 'a'));
  EXPECT_EQ(r->request.md5, "");
  EXPECT_EQ(r->request.tag, "t");
  EXPECT_EQ(r->request.headers, std::vector<std::string>{"A: 1"});
  EXPECT_EQ(r->request.timeout, milliseconds(7'200'000));
  EXPECT_TRUE(r->request.progress);
  EXPECT_EQ(r->request.socket, "/run/d.sock");
}

TEST(Dfget, Md5DigestAndSynonymsThatAgree) {
  auto r =
      dfget({"-u", "http://h/f", "-o", "x", "--digest", "md5:" + kMd5, "--md5", kMd5, "http://h/f",
             "--socket", "/s", "--daemon-sock", "/s", "--exceed", "10", "--pattern", "cdn"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->request.md5, kMd5);
  EXPECT_EQ(r->request.socket, "/s");
  EXPECT_EQ(r->request.timeout, milliseconds(10'000));
}

TEST(Dfget, OutputDefaultsToTheUrlsFileName) {
  auto r = dfget({"-u", "http://h:8080/a/b/layer.tar.gz?sig=1#frag"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->request.output, "layer.tar.gz");
  EXPECT_EQ(error_of({"http://h/dir/"}), "missing --output: the URL's path names no file");
  EXPECT_EQ(error_of({"http://h"}), "missing --output: the URL's path names no file");
  EXPECT_EQ(error_of({"http://h/a/.."}), "missing --output: the URL's path names no file");
}

TEST(Dfget, FilterNamesAreSplitOnAmpersands) {
  auto r = dfget({"http://h/f", "-o", "x", "--filter", "&key&&sign&"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->request.filter, (std::vector<std::string>{"key", "sign"}));
}

TEST(Dfget, FlagsStarlingCannotHonourAreNoticed) {
  auto r = dfget({"http://h/f", "-o", "x", "--node", "10.0.0.1:8002=1", "--scheduler",
                  "10.0.0.2:8002", "--totallimit", "20M", "-s", "10M", "--minrate", "1M",
                  "--insecure", "--cacerts", "a.pem", "--cacerts", "b.pem"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->notices,
            (std::vector<std::string>{
                "ignoring --node: a one-shot peer (used when no peer daemon runs) also needs "
                "--network DIR",
                "ignoring --scheduler: the peer daemon's --supernode list is used",
                "ignoring --totallimit: Starling has no rate limits yet",
                "ignoring --locallimit: Starling has no rate limits yet",
                "ignoring --minrate: Starling has no rate limits yet",
                "ignoring --insecure: the supernodes always check the origin's certificate",
                "ignoring --cacerts: the supernodes use their own CA store for the origin",
            }));
}

TEST(Dfget, NodeAndNetworkDescribeAOneShotPeer) {
  // dfget 1's --node: host, optional port (8002), optional weight (ignored); dfget's --ip is
  // its uploader's address, here the one-shot peer's data address.
  auto r = dfget({"http://h/f", "-o", "x", "-n", "10.0.0.1=2,10.0.0.2:9000,,sn3:8003=1",
                  "--network", "/etc/starling/net", "--ip", "10.0.0.9"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->request.supernodes, "10.0.0.1:8002,10.0.0.2:9000,sn3:8003");
  EXPECT_EQ(r->request.network_dir, "/etc/starling/net");
  EXPECT_EQ(r->request.listen_ip, "10.0.0.9");
  EXPECT_EQ(r->request.supernode_flag, "--node");
  EXPECT_TRUE(r->notices.empty());
  // Without both there is no one-shot peer; --ip alone changes nothing.
  auto plain = dfget({"http://h/f", "-o", "x", "--ip", "10.0.0.9"});
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->request.supernodes, "");
  EXPECT_EQ(plain->request.network_dir, "");
  EXPECT_EQ(plain->request.listen_ip, "");
}

TEST(Dfget, BadCommandLinesGiveOneExactError) {
  const std::string u = "http://h/f";
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{}, "missing URL (give it as an argument or with --url)"},
      {{"-o", "x"}, "missing URL (give it as an argument or with --url)"},
      {{"-u", u, "http://h/g", "-o", "x"}, "two URLs given: 'http://h/f' and 'http://h/g'"},
      {{u, "-o", "x", "-O", "y"}, "--output and --O say different things; give one"},
      {{u, "-o", "x", "--md5", "abc"}, "--md5 must be 32 hex digits"},
      {{u, "-o", "x", "--md5", std::string(32, 'g')}, "--md5 must be 32 hex digits"},
      {{u, "-o", "x", "--digest", "md5:12"}, "an md5 --digest must be 32 hex digits"},
      {{u, "-o", "x", "--md5", kMd5, "--digest", "md5:" + std::string(32, '0')},
       "--md5 and --digest name different MD5s"},
      {{u, "-o", "x", "--digest", "sha1:00"},
       "unsupported digest algorithm 'sha1' (only sha256 is supported)"},
      {{u, "-o", "x", "--digest", "sha256:00"}, "sha256 digest must be 64 hex digits"},
      {{u, "-o", "x", "-i", "a", "--tag", "b"},
       "--identifier and --tag say different things; give one"},
      {{u, "-o", "x", "-e", "soon"},
       "--timeout: bad duration 'soon' (e.g. 90s, 5m, 1h30m, or seconds)"},
      {{u, "-o", "x", "--timeout", "1s", "--exceed", "2s"},
       "--timeout and --exceed say different things; give one"},
      {{u, "-o", "x", "-p", "source"},
       "--pattern source (a direct download from the origin) is not supported: only the "
       "supernodes fetch from the origin"},
      {{u, "-o", "x", "-p", "fast"}, "--pattern must be p2p, cdn or source"},
      {{u, "-o", "x", "--socket", "/a", "--daemon-sock", "/b"},
       "--daemon-sock and --socket say different things; give one"},
      {{u, "-o", "x", "--network", "/n"},
       "--network needs --node (the supernodes a one-shot peer joins through)"},
      {{u, "-o", "x", "--network", "/n", "--node", "h:x"},
       "--node: bad supernode 'h:x' (expected HOST[:PORT][=WEIGHT])"},
      {{u, "-o", "x", "--network", "/n", "--node", "a,:8002=1"},
       "--node: bad supernode ':8002=1' (expected HOST[:PORT][=WEIGHT])"},
      {{u, "-o", "x", "--network", "/n", "--node", ",="},
       "--node: bad supernode '=' (expected HOST[:PORT][=WEIGHT])"},
      {{u, "-o", "x", "--network", "/n", "--node", ",,"}, "--node names no supernode"},
  };
  for (const auto& [args, message] : cases) {
    EXPECT_EQ(error_of(args), message) << ::testing::PrintToString(args);
  }
  // The parser's own errors name the command as dfget users know it.
  auto unknown = parse_args(command_specs(), {"dfget", "http://h/f", "--nope"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().message, "dfget: unknown flag --nope");
}

TEST(DfgetDuration, GoDurationsAndWholeSeconds) {
  const std::pair<std::string, int64_t> good[] = {
      {"60", 60'000},      {"90s", 90'000},  {"5m", 300'000},    {"1h30m", 5'400'000},
      {"1.5h", 5'400'000}, {"300ms", 300},   {"1m0.5s", 60'500}, {"2h45m30s", 9'930'000},
      {"1500us", 2},       {"1500000ns", 2}, {"1µs", 1},         {"8784h", 31'622'400'000},
      {".5s", 500},        {"366d", -1},
  };
  for (const auto& [text, ms] : good) {
    auto d = parse_dfget_duration(text);
    if (ms < 0) {
      EXPECT_FALSE(d.ok()) << text;  // Go has no day unit
      continue;
    }
    ASSERT_TRUE(d.ok()) << text << ": " << d.error().message;
    EXPECT_EQ(d->count(), ms) << text;
  }
  const std::pair<std::string, std::string> bad[] = {
      {"", "bad duration '' (e.g. 90s, 5m, 1h30m, or seconds)"},
      {"s", "bad duration 's' (e.g. 90s, 5m, 1h30m, or seconds)"},
      {"5", "(ok)"},
      {"-5s", "bad duration '-5s' (e.g. 90s, 5m, 1h30m, or seconds)"},
      {"5x", "bad duration '5x' (e.g. 90s, 5m, 1h30m, or seconds)"},
      {"1.2.3s", "bad duration '1.2.3s' (e.g. 90s, 5m, 1h30m, or seconds)"},
      {"5 s", "bad duration '5 s' (e.g. 90s, 5m, 1h30m, or seconds)"},
      {"0", "duration '0' must be above 0"},
      {"0s0ms", "duration '0s0ms' must be above 0"},
      {"8785h", "duration '8785h' is longer than 366 days"},
      {"31622400001", "duration '31622400001' is longer than 366 days"},
      {"9999999999999999h", "bad duration '9999999999999999h' (e.g. 90s, 5m, 1h30m, or seconds)"},
  };
  for (const auto& [text, message] : bad) {
    auto d = parse_dfget_duration(text);
    EXPECT_EQ(d ? std::string("(ok)") : d.error().message, message) << text;
  }
}

}  // namespace
}  // namespace starling::cli

#include "cli/args.h"

#include <gtest/gtest.h>

#include "cli/commands.h"

namespace starling::cli {
namespace {

Result<ParsedArgs> parse(std::vector<std::string> args) {
  return parse_args(command_specs(), args);
}

TEST(ParseArgs, GetWithEveryFlagForm) {
  auto p = parse({"get", "http://h/f", "-o", "out", "--digest=sha256:ab", "-H", "A: 1", "--header",
                  "B: 2", "--quiet"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->command->name, "get");
  EXPECT_EQ(p->positionals, std::vector<std::string>{"http://h/f"});
  EXPECT_EQ(p->get("output"), "out");
  EXPECT_EQ(p->get("digest"), "sha256:ab");
  EXPECT_EQ(p->all("header"), (std::vector<std::string>{"A: 1", "B: 2"}));
  EXPECT_TRUE(p->has("quiet"));
  EXPECT_FALSE(p->has("socket"));
  EXPECT_EQ(p->get("socket", "fallback"), "fallback");
}

TEST(ParseArgs, TwoWordCommand) {
  auto p = parse({"mesh", "init", "/tmp/net", "--name", "n"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->command->name, "mesh init");
  EXPECT_EQ(p->positionals, std::vector<std::string>{"/tmp/net"});
}

TEST(ParseArgs, HelpSkipsRequiredChecks) {
  auto p = parse({"get", "--help"});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->help);
}

TEST(ParseArgs, DoubleDashEndsFlags) {
  auto p = parse({"get", "-o", "x", "--", "--weird-url"});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->positionals, std::vector<std::string>{"--weird-url"});
}

TEST(ParseArgs, ErrorsAreOneLineAndExact) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{}, "missing command"},
      {{"fly"}, "unknown command 'fly'"},
      {{"mesh"}, "unknown command 'mesh'"},
      {{"get", "http://h/f", "-o", "x", "--bogus"}, "get: unknown flag --bogus"},
      {{"get", "http://h/f", "-o", "x", "--bogus=1"}, "get: unknown flag --bogus"},
      {{"get", "http://h/f", "-x"}, "get: unknown flag -x"},
      {{"get", "http://h/f", "-o"}, "get: --output needs a value"},
      {{"get", "-o", "x"}, "get: missing URL"},
      {{"get", "http://h/f"}, "get: missing --output"},
      {{"get", "http://h/f", "-o", "x", "extra"}, "get: unexpected argument 'extra'"},
      {{"get", "http://h/f", "-o", "x", "-o", "y"}, "get: --output given twice"},
      {{"get", "http://h/f", "-o", "x", "--quiet=yes"}, "get: --quiet takes no value"},
      {{"supernode", "--network", "n"}, "supernode: missing --data"},
      {{"peer", "--network", "n", "--data", "d"}, "peer: missing --supernode"},
      {{"mesh", "init"}, "mesh init: missing DIR"},
  };
  for (const auto& c : cases) {
    auto p = parse(c.args);
    ASSERT_FALSE(p.ok()) << c.message;
    EXPECT_EQ(p.error().code, kErrUsage);
    EXPECT_EQ(p.error().message, c.message);
    EXPECT_EQ(p.error().message.find('\n'), std::string::npos);
  }
}

TEST(HelpText, ListsEveryFlagWithDefaults) {
  for (const auto& spec : command_specs()) {
    const std::string help = help_text("starling", spec);
    EXPECT_NE(help.find("Usage: starling " + spec.name), std::string::npos);
    for (const auto& f : spec.flags) {
      EXPECT_NE(help.find("--" + f.name), std::string::npos) << spec.name << " --" << f.name;
      if (!f.default_value.empty()) {
        EXPECT_NE(help.find("[default: " + f.default_value + "]"), std::string::npos);
      }
    }
  }
  const std::string overview = overview_text("starling", command_specs());
  for (const char* name : {"supernode", "peer", "get", "mesh init", "status", "demo"}) {
    EXPECT_NE(overview.find(name), std::string::npos) << name;
  }
}

TEST(ParsePort, Bounds) {
  EXPECT_EQ(*parse_port("1", false), 1);
  EXPECT_EQ(*parse_port("65535", false), 65535);
  EXPECT_EQ(*parse_port("0", true), 0);
  EXPECT_FALSE(parse_port("0", false).ok());
  EXPECT_FALSE(parse_port("65536", false).ok());
  EXPECT_FALSE(parse_port("-1", false).ok());
  EXPECT_FALSE(parse_port("8o", false).ok());
  EXPECT_FALSE(parse_port("", false).ok());
}

TEST(ParseHostPort, SplitsAtLastColon) {
  auto hp = parse_host_port("127.0.0.1:8002");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 8002);
  EXPECT_FALSE(parse_host_port("127.0.0.1").ok());
  EXPECT_FALSE(parse_host_port(":80").ok());
  EXPECT_FALSE(parse_host_port("h:0").ok());
}

}  // namespace
}  // namespace starling::cli

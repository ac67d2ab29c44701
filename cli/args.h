// Command-line parsing for the `starling` binary: a pure core (no I/O) driven by a table of
// command specs, so every subcommand parses, errs and documents itself the same way.
//
// Accepted forms: `--flag value`, `--flag=value`, `-f value`, boolean `--flag`, `--` ends
// flags. Errors are one line; the CLI prints them and exits with code 2.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace starling::cli {

inline constexpr char kErrUsage[] = "cli.usage";

struct FlagSpec {
  std::string name;        // long name without dashes: "output"
  char short_name = 0;     // 'o', or 0
  std::string value_name;  // "FILE"; empty = boolean flag
  std::string help;
  bool required = false;
  bool repeatable = false;
  std::string default_value;  // shown in --help; not applied by the parser
};

struct PositionalSpec {
  std::string name;  // "URL"
  std::string help;
  bool required = true;
};

struct CommandSpec {
  std::string name;  // "get", or "mesh init"
  std::string summary;
  std::vector<PositionalSpec> positionals;
  std::vector<FlagSpec> flags;  // --help is implicit
  std::string details;          // extra paragraph for --help
};

struct ParsedArgs {
  const CommandSpec* command = nullptr;
  bool help = false;  // --help/-h was given: print help_text and exit 0
  std::map<std::string, std::vector<std::string>> flags;  // booleans map to {"true"}
  std::vector<std::string> positionals;

  bool has(const std::string& flag) const { return flags.count(flag) != 0; }
  // The last value of a flag, or `fallback`.
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  std::vector<std::string> all(const std::string& flag) const;
};

// `args` excludes the program name. Commands with a space in their name ("mesh init") match
// two words. Errors: "unknown command 'x'", "get: unknown flag --x", "get: --output needs a
// value", "get: missing URL", "get: unexpected argument 'y'", "get: --output given twice".
Result<ParsedArgs> parse_args(const std::vector<CommandSpec>& commands,
                              const std::vector<std::string>& args);

// Usage line, summary, arguments and flags with defaults: what `--help` prints.
std::string help_text(const std::string& program, const CommandSpec& command);
// The command list: what `starling --help` prints.
std::string overview_text(const std::string& program, const std::vector<CommandSpec>& commands);

// The names in a `separator`-separated list, empty ones dropped ("a,,b," gives a, b): get's
// --filter (commas) and dfget's (ampersands).
std::vector<std::string> split_names(std::string_view list, char separator);

// Parses a port number 1..65535 (or 0 when allow_zero), or "HOST:PORT".
Result<uint16_t> parse_port(const std::string& text, bool allow_zero);
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
Result<HostPort> parse_host_port(const std::string& text);
// "HOST:PORT[,HOST:PORT...]" (the --supernode lists); the first bad item's error.
Result<std::vector<HostPort>> parse_host_ports(const std::string& text);

}  // namespace starling::cli

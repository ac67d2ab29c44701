// dfget command lines (cli/dfget.h: Dragonfly's flags from scripts and registry hooks) and
// --timeout values: never crash; an accepted command line names a URL and an output, an
// accepted MD5 is 32 lowercase hex digits, and an accepted duration is within its bounds.
// The input is split on NUL bytes into the arguments after `dfget`.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "cli/dfget.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace starling::cli;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto duration = parse_dfget_duration(text);
  if (duration && (duration->count() <= 0 || *duration > std::chrono::hours(24 * 366))) {
    std::abort();
  }
  if (!duration && duration.error().message.empty()) std::abort();

  std::vector<std::string> args = {"dfget"};
  for (size_t start = 0; start <= text.size();) {
    size_t end = text.find('\0', start);
    if (end == std::string_view::npos) end = text.size();
    args.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  auto parsed = parse_args(command_specs(), args);
  if (!parsed || parsed->command->name != "dfget" || parsed->help) return 0;
  auto invocation = dfget_invocation(*parsed);
  if (!invocation) {
    if (invocation.error().message.empty()) std::abort();
    return 0;
  }
  const GetRequest& r = invocation->request;
  if (r.url.empty() || r.output.empty() || r.socket.empty()) std::abort();
  if (!r.md5.empty() &&
      (r.md5.size() != 32 || r.md5.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    std::abort();
  }
  if (r.timeout.count() < 0) std::abort();
  return 0;
}

// Dragonfly's dfget command line (both dfget 1's `-u URL -o FILE --md5 ...` and dfget 2's
// `URL -O FILE --digest ...`), translated into the GetRequest `starling get` runs, so scripts
// and registry hooks written for dfget work unchanged. Pure: no I/O.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "cli/args.h"
#include "cli/get_request.h"
#include "common/result.h"

namespace starling::cli {

struct DfgetInvocation {
  GetRequest request;
  // One line each, for stderr: flags that were given and that Starling does not honour
  // ("ignoring --totallimit: ..."). Flags that change nothing a user could notice are not listed.
  std::vector<std::string> notices;
};

// `args` as parse_args gave them for the "dfget" command. Errors (code kErrUsage) are one
// line: "missing URL (...)", "two URLs given: ...", "--md5 must be 32 hex digits", ...
Result<DfgetInvocation> dfget_invocation(const ParsedArgs& args);

// Go's time.ParseDuration form, which dfget's --timeout takes ("90s", "1h30m", "1.5h",
// "300ms"; units ns, us, ms, s, m, h), or whole seconds ("60"); above 0, at most 366 days.
Result<std::chrono::milliseconds> parse_dfget_duration(std::string_view text);

}  // namespace starling::cli

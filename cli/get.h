#pragma once

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/get_request.h"

namespace starling::cli {

// Each subcommand returns the process exit code: 0 success, 1 failure (message printed).
int run_get(const ParsedArgs& args);
// Dragonfly's dfget flags (cli/dfget.h): usage errors exit 2 as "dfget: ...".
int run_dfget(const ParsedArgs& args);
// The download both run: 0, or 1 with one line on stderr and nothing written to the output.
int download(const GetRequest& request);
int run_demo(const ParsedArgs& args, const std::string& self_exe);

}  // namespace starling::cli

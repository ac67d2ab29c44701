#pragma once

#include "cli/args.h"
#include "cli/commands.h"

namespace starling::cli {

// Each subcommand returns the process exit code: 0 success, 1 failure (message printed).
int run_get(const ParsedArgs& args);
int run_demo(const ParsedArgs& args, const std::string& self_exe);

}  // namespace starling::cli

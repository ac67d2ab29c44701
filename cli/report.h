// How the `starling` subcommands report: failures as one line on stderr and exit 1, usage
// errors as one line pointing at --help and exit 2.
#pragma once

#include <iostream>
#include <string>

namespace starling::cli {

inline constexpr char kProgram[] = "starling";

// "starling COMMAND: MESSAGE", exit status 1.
inline int fail(const std::string& command, const std::string& message) {
  std::cerr << kProgram << " " << command << ": " << message << "\n";
  return 1;
}

// "starling: MESSAGE (see 'starling --help')", exit status 2.
inline int usage(const std::string& message) {
  std::cerr << kProgram << ": " << message << " (see '" << kProgram << " --help')\n";
  return 2;
}

}  // namespace starling::cli

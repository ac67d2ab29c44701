// The table of `starling` subcommands: names, flags, defaults and help texts. The single
// source of truth for parsing and for --help.
#pragma once

#include <string>
#include <vector>

#include "cli/args.h"

namespace starling::cli {

// Defaults shared by the subcommands and the README (ARCHITECTURE §8).
inline constexpr char kDefaultSocket[] = "/run/starling/peer.sock";
inline constexpr uint16_t kDefaultSupernodePort = 8002;
inline constexpr uint16_t kDefaultPeerDataPort = 65002;

const std::vector<CommandSpec>& command_specs();

}  // namespace starling::cli

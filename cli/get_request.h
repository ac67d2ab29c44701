// What one download asks of the local peer daemon and of `get`'s own checks: built from
// `starling get`'s flags or from Dragonfly's dfget flags (cli/dfget.h). Plain data.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace starling::cli {

struct GetRequest {
  std::string url;
  std::string output;
  std::string socket;  // the peer daemon's local API socket
  // When no daemon answers at `socket`: the supernodes ("HOST:PORT,...") and the network
  // directory a one-shot peer in this process joins with (cli/embedded_peer.h), and its data
  // address (empty: the one that reaches the first supernode). No supernodes: no daemon is an
  // error.
  std::string supernodes;
  std::string network_dir;
  std::string listen_ip;
  std::string supernode_flag = "--supernode";  // the flag that names them, for messages
  std::string digest;                // "sha256:HEX" or empty: names the task; the daemon checks it
  std::string md5;                   // 32 lowercase hex or empty: get checks it before the rename
  std::vector<std::string> headers;  // "NAME: VALUE", for the origin
  std::string tag;
  std::vector<std::string> filter;       // query parameter names that do not identify the content
  std::chrono::milliseconds timeout{0};  // 0: wait as long as the download takes
  bool progress = true;                  // the progress line on stderr
  std::string program = "starling get";  // what error lines start with
  bool dfget_success_line = false;       // "download SUCCESS cost:S length:N" on stdout
};

}  // namespace starling::cli

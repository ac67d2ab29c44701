// The `starling` binary: parses the command line (cli/args.h, cli/commands.cc) and runs one
// subcommand. Exit codes: 0 success, 1 failure (one-line message on stderr), 2 usage error.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/admin_commands.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/embedded_peer.h"
#include "cli/get.h"
#include "cli/report.h"
#include "cli/stop_signals.h"
#include "crypto/keys.h"
#include "crypto/renewal.h"
#include "crypto/x509.h"
#include "mesh/rpc.h"
#include "mirror/mirror.h"
#include "origin/http_origin.h"
#include "peer/daemon.h"
#include "supernode/supernode.h"

namespace starling::cli {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

Result<uint16_t> port_flag(const ParsedArgs& args, const std::string& name, uint16_t fallback) {
  if (!args.has(name)) return fallback;
  auto port = parse_port(args.get(name), true);
  if (!port) return make_error(kErrUsage, "--" + name + ": " + port.error().message);
  return *port;
}

int run_supernode(const ParsedArgs& args) {
  auto port = port_flag(args, "port", kDefaultSupernodePort);
  auto data_port = port_flag(args, "data-port", kDefaultPeerDataPort);
  if (!port) return usage("supernode: " + port.error().message);
  if (!data_port) return usage("supernode: " + data_port.error().message);
  supernode::SupernodeConfig config;
  config.network_dir = args.get("network");
  config.data_dir = args.get("data");
  config.listen_ip = args.get("listen", "127.0.0.1");
  config.mesh_port = *port;
  config.data_port = *data_port;
  if (args.has("members") && args.has("join")) {
    return usage("supernode: give either --members (an initial member) or --join (a new one)");
  }
  if (args.has("members") || args.has("join")) {
    const bool join = args.has("join");
    auto members = supernode::parse_members(args.get(join ? "join" : "members"));
    if (!members) {
      std::string message = members.error().message;
      if (join && message.rfind("--members", 0) == 0) message.replace(0, 9, "--join");
      return usage("supernode: " + message);
    }
    config.members = std::move(members).value();
    config.join = join;
    const std::string id_text = args.get("id", "");
    uint64_t id = 0;
    auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    const bool number = !id_text.empty() && ec == std::errc() &&
                        end == id_text.data() + id_text.size() && id > 0 &&
                        id <= (uint64_t{1} << 63);
    const bool listed = number && supernode::find_member(config.members, raft::NodeId{id});
    if (!join && !listed) return usage("supernode: --id must be the id of one of the --members");
    if (join && (!number || listed || !args.has("id"))) {
      return usage("supernode: --join needs --id N, the new member's id (not one of --join)");
    }
    config.id = raft::NodeId{id};
  } else if (args.has("id") && args.get("id") != "1") {
    return usage("supernode: --id needs --members or --join");
  }
  if (args.has("cert-lifetime")) {
    auto lifetime = crypto::parse_cert_lifetime(args.get("cert-lifetime"));
    if (!lifetime) return usage("supernode: --cert-lifetime: " + lifetime.error().message);
    config.cert_lifetime = *lifetime;
  }
  {
    // --segment-size BYTES|NKiB|NMiB, --seed-lease MS and --snapshot-entries N.
    auto number = [](std::string text, int64_t& out) {
      int64_t unit = 1;
      for (auto [suffix, mult] :
           {std::pair{"KiB", int64_t{1} << 10}, std::pair{"MiB", int64_t{1} << 20}}) {
        const std::string sfx = suffix;
        if (text.size() > sfx.size() &&
            text.compare(text.size() - sfx.size(), sfx.size(), sfx) == 0) {
          text.resize(text.size() - sfx.size());
          unit = mult;
        }
      }
      int64_t v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v <= 0 ||
          v > (int64_t{1} << 34) / unit) {
        return false;
      }
      out = v * unit;
      return true;
    };
    int64_t v = 0;
    if (args.has("segment-size")) {
      if (!number(args.get("segment-size"), v) || v < (int64_t{64} << 10)) {
        return usage("supernode: --segment-size must be 64KiB..16GiB (e.g. 8MiB)");
      }
      config.segment_size = v;
    }
    if (args.has("seed-lease")) {
      if (!number(args.get("seed-lease"), v) || v < 500 || v > 600000) {
        return usage("supernode: --seed-lease must be 500..600000 milliseconds");
      }
      config.seed_lease_timeout = std::chrono::milliseconds(v);
    }
    if (args.has("snapshot-entries")) {
      if (!number(args.get("snapshot-entries"), v) || v < 100 || v > 100000000) {
        return usage("supernode: --snapshot-entries must be 100..100000000");
      }
      config.snapshot_entries = static_cast<uint64_t>(v);
    }
  }
  const sigset_t stop = block_stop_signals();
  auto node = supernode::Supernode::start(config);
  if (!node) return fail("supernode", node.error().message);
  std::cerr << "supernode: listening on " << config.listen_ip << ":" << (*node)->mesh_port()
            << " (mesh), " << config.listen_ip << ":" << (*node)->data_port() << " (data)\n";
  wait_for_stop_signal(stop);
  std::cerr << "supernode: stopping\n";
  return 0;
}

int run_peer(const ParsedArgs& args) {
  auto data_port = port_flag(args, "data-port", kDefaultPeerDataPort);
  if (!data_port) return usage("peer: " + data_port.error().message);
  peer::PeerConfig config;
  auto supernodes = parse_host_ports(args.get("supernode"));  // "A:P,B:P,C:P"
  if (!supernodes) return usage("peer: --supernode: " + supernodes.error().message);
  for (const auto& s : *supernodes) config.supernodes.push_back({s.host, s.port});
  config.network_dir = args.get("network");
  config.data_dir = args.get("data");
  config.listen_ip = args.get("listen", "127.0.0.1");
  config.data_port = *data_port;
  config.socket_path = args.get("socket", kDefaultSocket);
  const sigset_t stop = block_stop_signals();
  // Hosts may start in any order: the daemon waits up to a minute for a supernode.
  int stopped_by = 0;
  auto daemon = start_peer_waiting(
      config, 60s, stop,
      [](const std::string& why) {
        std::cerr << "peer: waiting for the supernode: " << why << "\n";
      },
      stopped_by);
  if (stopped_by != 0) return 0;  // stopped while waiting
  if (!daemon) return fail("peer", daemon.error().message);
  wait_for_stop_signal(stop);
  std::cerr << "peer: stopping\n";
  return 0;
}

int run_mesh_init(const ParsedArgs& args) {
  crypto::init();
  const std::string dir = args.positionals.at(0);
  auto files = crypto::init_network(dir, args.get("name", "starling"), std::time(nullptr));
  if (!files) return fail("mesh init", files.error().message);
  std::cout << "created network in " << dir << "\n"
            << "  " << files->secret_path << "  network secret (0600): give to every node\n"
            << "  " << files->ca_cert_path << "  network CA certificate: give to every node\n"
            << "  " << files->ca_key_path << "  CA private key (0600): supernodes only\n";
  return 0;
}

int run_origin(const ParsedArgs& args) {
  auto port = port_flag(args, "port", 8080);
  if (!port) return usage("origin: " + port.error().message);
  origin::OriginConfig config;
  config.root_dir = args.get("root");
  config.host = args.get("listen", "127.0.0.1");
  config.port = *port;
  config.range_support = !args.has("no-range");
  const sigset_t stop = block_stop_signals();
  auto server = origin::HttpOrigin::start(config);
  if (!server) return fail("origin", server.error().message);
  std::cout << "origin: serving " << config.root_dir << " on http://" << config.host << ":"
            << (*server)->port() << "/" << std::endl;
  wait_for_stop_signal(stop);
  return 0;
}

int run_mirror(const ParsedArgs& args) {
  mirror::MirrorConfig config;
  config.upstream = args.get("upstream");
  config.socket = args.get("socket", kDefaultSocket);
  config.host = "127.0.0.1";
  config.port = 65001;
  if (args.has("listen")) {
    auto at = parse_host_port(args.get("listen"));
    if (!at) return usage("mirror: --listen: " + at.error().message);
    config.host = at->host;
    config.port = at->port;
  }
  const sigset_t stop = block_stop_signals();
  auto server = mirror::Mirror::start(config);
  if (!server) return fail("mirror", server.error().message);
  std::cout << "mirror: registry " << config.upstream << " on http://" << config.host << ":"
            << (*server)->port() << "/ through the peer daemon at " << config.socket << std::endl;
  wait_for_stop_signal(stop);
  return 0;
}

std::string self_exe(const char* argv0) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return argv0;
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace
}  // namespace starling::cli

int main(int argc, char** argv) {
  using namespace starling::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  const auto& specs = command_specs();
  // Run as `dfget` (a link to this binary): Dragonfly's command line, `starling dfget ...`.
  const bool as_dfget = std::filesystem::path(argv[0]).filename() == "dfget";
  if (as_dfget) {
    args.insert(args.begin(), "dfget");
    if (args.size() == 1) {
      std::cerr << "dfget: missing URL (see 'dfget --help')\n";
      return 2;
    }
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << overview_text(kProgram, specs);
    return args.empty() ? 2 : 0;
  }
  auto parsed = parse_args(specs, args);
  if (!parsed && as_dfget) {
    std::cerr << parsed.error().message << " (see 'dfget --help')\n";
    return 2;
  }
  if (!parsed) return usage(parsed.error().message);
  const std::string& name = parsed->command->name;
  if (parsed->help) {
    std::cout << help_text(kProgram, *parsed->command);
    return 0;
  }
  try {
    if (name == "supernode") return run_supernode(*parsed);
    if (name == "peer") return run_peer(*parsed);
    if (name == "get") return run_get(*parsed);
    if (name == "dfget") return run_dfget(*parsed);
    if (name == "mesh init") return run_mesh_init(*parsed);
    if (name == "mesh revoke" || name == "mesh certificates") return run_mesh_admin(*parsed);
    if (name == "status") return run_status(*parsed);
    if (name == "member add" || name == "member remove") return run_member(*parsed);
    if (name.rfind("kv ", 0) == 0) return run_kv(*parsed);
    if (name == "origin") return run_origin(*parsed);
    if (name == "mirror") return run_mirror(*parsed);
    if (name == "demo") return run_demo(*parsed, self_exe(argv[0]));
  } catch (const std::exception& e) {
    std::cerr << kProgram << " " << name << ": " << e.what() << "\n";
    return 1;
  }
  return usage("unknown command '" + name + "'");
}

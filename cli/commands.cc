#include "cli/commands.h"

namespace starling::cli {

namespace {

// Named constructors keep the table readable and every FlagSpec field initialised.
FlagSpec req(std::string name, std::string value, std::string help) {
  return FlagSpec{std::move(name), 0, std::move(value), std::move(help), true, false, ""};
}
FlagSpec opt(std::string name, std::string value, std::string help, std::string def = "") {
  return FlagSpec{std::move(name), 0,     std::move(value), std::move(help),
                  false,           false, std::move(def)};
}
FlagSpec boolean(std::string name, std::string help) {
  return FlagSpec{std::move(name), 0, "", std::move(help), false, false, ""};
}
FlagSpec with_short(FlagSpec f, char c) {
  f.short_name = c;
  return f;
}
FlagSpec repeatable(FlagSpec f) {
  f.repeatable = true;
  return f;
}
PositionalSpec arg(std::string name, std::string help) {
  return PositionalSpec{std::move(name), std::move(help), true};
}

}  // namespace

const std::vector<CommandSpec>& command_specs() {
  static const std::vector<CommandSpec> specs = {
      {"supernode",
       "Run a supernode: the task registry, the origin fetcher and seed, and the mesh "
       "listener peers talk to.",
       {},
       {
           req("network", "DIR", "Network directory made by 'starling mesh init' (needs ca.key)."),
           req("data", "DIR", "State directory: node key, registry database, seeded content."),
           opt("listen", "IP", "Address to listen on (mesh and data).", "127.0.0.1"),
           opt("port", "PORT", "Mesh (control) port.", "8002"),
           opt("data-port", "PORT", "libtorrent SSL data port (0 = any free port).", "65002"),
       },
       "Runs until SIGINT or SIGTERM. Logs to stderr."},
      {"peer",
       "Run a peer daemon: joins the mesh through a supernode, downloads and uploads content, "
       "and serves the local API that 'starling get' uses.",
       {},
       {
           req("network", "DIR", "Network directory holding network.secret and ca.pem."),
           req("data", "DIR", "State directory: node key and content cache."),
           req("supernode", "HOST:PORT", "A supernode's mesh address."),
           opt("listen", "IP", "Address for the data (libtorrent SSL) listener.", "127.0.0.1"),
           opt("data-port", "PORT", "Data port (0 = any free port).", "65002"),
           opt("socket", "PATH", "Local API unix socket.", kDefaultSocket),
       },
       "Runs until SIGINT or SIGTERM. The local API is HTTP over the unix socket, e.g.\n"
       "  curl --unix-socket /run/starling/peer.sock http://localhost/v1/tasks"},
      {"get",
       "Download URL through the local peer daemon and write it to FILE atomically.",
       {arg("URL", "http:// or https:// address of the content at its origin.")},
       {
           with_short(req("output", "FILE", "Where to write the content (temp file + rename)."),
                      'o'),
           opt("digest", "sha256:HEX",
               "Expected digest; the download fails, writing nothing, if the content differs."),
           with_short(repeatable(opt("header", "'NAME: VALUE'",
                                     "HTTP header for the origin (e.g. auth).")),
                      'H'),
           opt("tag", "TAG", "Separates tasks whose URLs are equal."),
           opt("filter", "NAMES",
               "Comma-separated query parameters that do not identify the content (signed "
               "URLs)."),
           opt("socket", "PATH", "The peer daemon's local API socket.", kDefaultSocket),
           with_short(boolean("quiet", "No progress display."), 'q'),
       },
       "Exit status: 0 on success, 1 when the download failed (the reason is printed on one\n"
       "line and nothing is written to FILE), 2 on a usage error."},
      {"mesh init",
       "Create a new network in DIR: a 32-byte network secret and an Ed25519 network CA.",
       {arg("DIR", "Directory to create (refuses to overwrite an existing network).")},
       {opt("name", "NAME", "Network name, shown in the CA certificate.", "starling")},
       "Writes DIR/network.secret (0600), DIR/ca.key (0600) and DIR/ca.pem. Supernodes need\n"
       "all three; peers need network.secret and ca.pem. Keep ca.key off peer machines."},
      {"status",
       "Show a supernode's state: its node id, tasks and announced peers. An admin command: "
       "it needs the network CA key.",
       {},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT", "Supernode mesh address.", "127.0.0.1:8002"),
           boolean("json", "Print the raw JSON answer."),
       },
       "Signs itself a 10-minute admin certificate for a throwaway key with DIR/ca.key and\n"
       "presents it to the supernode (Status is refused to peer certificates). Without\n"
       "DIR/ca.key it prints 'starling status needs DIR/ca.key to act as an admin' and exits 1."},
      {"origin",
       "Serve a directory over plain HTTP (GET, HEAD, Range) and count requests: the origin "
       "used by 'starling demo' and the tests. Not a production web server.",
       {},
       {
           req("root", "DIR", "Directory to serve."),
           opt("listen", "IP", "Address to listen on.", "127.0.0.1"),
           opt("port", "PORT", "Port (0 = any free port; the chosen port is printed).", "8080"),
           boolean("no-range", "Ignore Range requests (always send the whole file)."),
       },
       "GET /_stats answers {\"requests\": N, \"bytes_sent\": N}."},
      {"demo",
       "Run the whole system on this machine: an origin, a supernode and peer daemons on "
       "127.0.0.x, all downloading one generated file at once.",
       {},
       {
           opt("size-mib", "N", "Size of the generated file in MiB.", "256"),
           opt("peers", "N", "Number of peer daemons (1..16).", "4"),
           boolean("keep", "Keep the working directory (logs, outputs) instead of deleting it."),
       },
       "Prints live progress per peer, then a summary: bytes served by the origin, by the\n"
       "supernode's seed and by peers to each other, and whether every output is identical\n"
       "to the origin's file. Ctrl-C stops every process and removes the working directory."},
  };
  return specs;
}

}  // namespace starling::cli

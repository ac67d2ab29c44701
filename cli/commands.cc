#include "cli/commands.h"

#include <cstdint>
#include <string>

#include "supernode/defaults.h"

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

// A byte count the way --segment-size takes it back: "16MiB", "64KiB" or plain bytes.
std::string size_flag_text(int64_t bytes) {
  if (bytes > 0 && bytes % (int64_t{1} << 20) == 0) return std::to_string(bytes >> 20) + "MiB";
  if (bytes > 0 && bytes % (int64_t{1} << 10) == 0) return std::to_string(bytes >> 10) + "KiB";
  return std::to_string(bytes);
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
           opt("id", "N", "This member's Raft id (with --members or --join).", "1"),
           opt("members", "ID=HOST:PORT,...",
               "Every initial member of the cluster, this one included, by Raft id and mesh "
               "address (e.g. 1=10.0.0.1:8002,2=10.0.0.2:8002,3=10.0.0.3:8002). Without it the "
               "supernode is a cluster of one."),
           opt("join", "ID=HOST:PORT,...",
               "Join a running cluster as a new member instead: its current members (this one "
               "not included). The supernode waits, without voting, until an admin runs "
               "'starling member add ID=HOST:PORT' for it, then catches up from the leader."),
           opt("cert-lifetime", "DURATION",
               "Lifetime of the certificates this supernode issues to peers and to itself, "
               "10s..366d (e.g. 90s, 15m, 12h, 7d). Nodes renew at two thirds of it; a revoked "
               "node is shut out of the data plane when its last one expires.",
               "12h"),
           opt("segment-size", "BYTES|NKiB|NMiB",
               "Segment size of the tasks this supernode creates: each segment is a torrent "
               "of its own, published as soon as it is fetched (64KiB..16GiB).",
               size_flag_text(supernode::kDefaultSegmentSize)),
           opt("seed-lease", "MS",
               "Milliseconds a fetching task's seeder may go without renewing its lease "
               "before the leader takes the fetch over (500..600000).",
               std::to_string(supernode::kDefaultSeedLeaseTimeout.count())),
           opt("snapshot-entries", "N",
               "Compact the Raft log into a snapshot of the tracker every N entries (or 64 MiB "
               "of them), 100..100000000; the snapshot is read and written beside the log, "
               "not in its way.",
               "100000"),
       },
       "Runs until SIGINT or SIGTERM. Logs to stderr. A cluster of 3 or 5 members keeps\n"
       "serving while a majority is up: writes and consistent reads need a majority; peer\n"
       "lists are served by any member. Start every member with the same --members; a\n"
       "restarted member keeps its --id and --data and catches up from the others."},
      {"peer",
       "Run a peer daemon: joins the mesh through the supernodes, downloads and uploads "
       "content, and serves the local API that 'starling get' uses.",
       {},
       {
           req("network", "DIR", "Network directory holding network.secret and ca.pem."),
           req("data", "DIR", "State directory: node key and content cache."),
           req("supernode", "HOST:PORT[,...]",
               "Mesh addresses of the supernodes, comma-separated: every member of the cluster "
               "(one for a single supernode)."),
           opt("listen", "IP", "Address for the data (libtorrent SSL) listener.", "127.0.0.1"),
           opt("data-port", "PORT", "Data port (0 = any free port).", "65002"),
           opt("socket", "PATH", "Local API unix socket.", kDefaultSocket),
       },
       "Runs until SIGINT or SIGTERM. Waits up to a minute at startup while no supernode can\n"
       "answer. Requests go to one supernode and move to another when it fails (the user sees\n"
       "no error while a majority of the cluster is up); announces go to every supernode.\n"
       "The certificate from the supernodes is renewed when two thirds of its lifetime have\n"
       "passed; a revoked node's renewal is refused and it stops working when it expires.\n"
       "The local API is HTTP over the unix socket, e.g.\n"
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
           opt("network", "DIR",
               "With --supernode: when no peer daemon answers at --socket, download with a "
               "one-shot peer in this process, joined with this network directory's key."),
           opt("supernode", "HOST:PORT[,...]",
               "With --network: the supernodes the one-shot peer joins through (every member "
               "of the cluster)."),
           opt("listen", "IP",
               "The one-shot peer's data address (default: the local address that reaches the "
               "first supernode)."),
           with_short(boolean("quiet", "No progress display."), 'q'),
       },
       "Exit status: 0 on success, 1 when the download failed (the reason is printed on one\n"
       "line and nothing is written to FILE), 2 on a usage error, 128+N when stopped by\n"
       "signal N (Ctrl-C: 130; nothing is written, the temp file is removed).\n"
       "With a peer daemon the task goes on there after a timeout or Ctrl-C, and its content\n"
       "stays to be served to other peers. A one-shot peer (--network, --supernode) serves\n"
       "other peers only while this get runs; its files, beside FILE, are removed when it\n"
       "ends."},
      {"dfget",
       "Dragonfly's dfget, for scripts and hooks written for it: the same download as 'get', "
       "with dfget's flags. Also runs as 'dfget' (a link named dfget to this binary).",
       {PositionalSpec{"URL", "The content's address (or give it with --url).", false}},
       {
           with_short(opt("url", "URL", "http:// or https:// address of the content."), 'u'),
           with_short(opt("output", "FILE",
                          "Where to write the content (temp file + rename); default: the "
                          "last component of the URL's path, in the current directory."),
                      'o'),
           with_short(opt("O", "FILE", "The same as --output (dfget 2's spelling)."), 'O'),
           with_short(opt("md5", "HEX",
                          "Expected MD5 of the content: checked before FILE is written; "
                          "nothing is written if it differs."),
                      'm'),
           opt("digest", "md5:HEX|sha256:HEX",
               "Expected digest (dfget 2). sha256 also names the task, as 'get --digest'."),
           with_short(
               opt("identifier", "ID", "Separates tasks whose URLs are equal ('get --tag')."), 'i'),
           opt("tag", "TAG", "The same as --identifier (dfget 2)."),
           with_short(opt("filter", "NAMES",
                          "Query parameters that do not identify the content, separated by "
                          "'&' (e.g. 'key&sign')."),
                      'f'),
           with_short(repeatable(opt("header", "'NAME: VALUE'",
                                     "HTTP header for the origin (e.g. auth).")),
                      'H'),
           with_short(opt("timeout", "DURATION",
                          "Give up after this long (e.g. 90s, 5m, 1h30m, or seconds): exit 1, "
                          "nothing written; the task goes on in the peer daemon."),
                      'e'),
           opt("exceed", "DURATION", "The same as --timeout (deprecated in dfget)."),
           with_short(opt("pattern", "p2p|cdn|source",
                          "p2p and cdn download through the mesh (Starling's supernodes are "
                          "its CDN); source, a direct download, is refused."),
                      'p'),
           with_short(boolean("showbar", "Show progress while downloading."), 'b'),
           opt("daemon-sock", "PATH", "The peer daemon's local API socket.", kDefaultSocket),
           opt("socket", "PATH", "The same as --daemon-sock ('get --socket')."),
           boolean("notbs",
                   "Accepted: a Starling peer never downloads from the origin itself "
                   "(only its supernodes do)."),
           boolean("notbacksource", "The same as --notbs."),
           with_short(opt("node", "HOST[:PORT][=WEIGHT],...",
                          "With --network: the supernodes a one-shot peer joins through when no "
                          "peer daemon answers (port 8002 unless given; weights ignored). "
                          "Without --network it is ignored, with a notice."),
                      'n'),
           opt("network", "DIR",
               "Starling's: the network directory (its key) a one-shot peer joins with; needs "
               "--node."),
           opt("scheduler", "ADDRS",
               "Ignored, with a notice (dfget 2's schedulers): the supernodes are the peer "
               "daemon's, or --node's."),
           opt("totallimit", "RATE", "Ignored, with a notice: Starling has no rate limits yet."),
           with_short(opt("locallimit", "RATE", "Ignored, with a notice, as --totallimit."), 's'),
           opt("minrate", "RATE", "Ignored, with a notice, as --totallimit."),
           boolean("insecure",
                   "Ignored, with a notice: the supernodes check the origin's certificate."),
           repeatable(
               opt("cacerts", "FILE", "Ignored, with a notice: the supernodes' CA store is used.")),
           opt("callsystem", "NAME", "Accepted and ignored (dfget's caller name)."),
           boolean("dfdaemon", "Accepted and ignored (set by dfget's registry hook)."),
           boolean("console", "Accepted and ignored (dfget's log switch)."),
           boolean("verbose", "Accepted and ignored (dfget's log switch)."),
           opt("home", "DIR", "Accepted and ignored (dfget's work directory)."),
           opt("ip", "IP",
               "A one-shot peer's data address (with --node and --network); otherwise accepted "
               "and ignored."),
           opt("port", "PORT", "Accepted and ignored (dfget's daemon upload port)."),
           opt("expiretime", "DURATION", "Accepted and ignored (dfget's cache expiry)."),
           opt("alivetime", "DURATION", "Accepted and ignored (dfget's daemon lifetime)."),
           opt("clientqueue", "N", "Accepted and ignored (deprecated in dfget)."),
           boolean("cachefirst", "Accepted and ignored (deprecated in dfget)."),
           boolean("check", "Accepted and ignored (deprecated in dfget)."),
           boolean("createmeta", "Accepted and ignored (deprecated in dfget)."),
           boolean("notmd5", "Accepted and ignored (deprecated in dfget)."),
           boolean("showcenter", "Accepted and ignored (deprecated in dfget)."),
           boolean("usewrap", "Accepted and ignored (deprecated in dfget)."),
           with_short(opt("tasktype", "TYPE", "Accepted and ignored (deprecated in dfget)."), 't'),
           with_short(opt("center", "ADDR", "Accepted and ignored (deprecated in dfget)."), 'c'),
       },
       "Exit status: 0 on success (and 'download SUCCESS cost:S length:N' on stdout), 1 when\n"
       "the download failed (the reason on one line, nothing written to FILE), 2 on a usage\n"
       "error, 128+N when stopped by signal N. Unlike Dragonfly's dfget it never falls back to\n"
       "the origin: only the supernodes fetch it, once. With no peer daemon running, --node\n"
       "and --network start a one-shot peer in this process for the download."},
      {"mirror",
       "Serve a read-only registry mirror for docker, containerd and podman: layer blobs come "
       "through the peer daemon (once from the registry for the whole swarm), everything else "
       "from the registry.",
       {},
       {
           req("upstream", "URL",
               "The registry mirrored, its root URL (e.g. https://registry:5000)."),
           opt("listen", "HOST:PORT", "Address the container runtimes pull from.",
               "127.0.0.1:65001"),
           opt("socket", "PATH", "The peer daemon's local API socket.", kDefaultSocket),
       },
       "Runs until SIGINT or SIGTERM. Plain HTTP: listen on loopback (the default) and point\n"
       "the runtime at it, e.g. docker's daemon.json {\"registry-mirrors\":\n"
       "[\"http://127.0.0.1:65001\"]}, or a [[registry.mirror]] location with insecure = true\n"
       "in podman's registries.conf. GET /v2/NAME/blobs/sha256:HEX becomes a task keyed by\n"
       "the digest, streamed as its segments complete; manifests, tags and /v2/ are proxied\n"
       "with the client's Accept and Authorization headers. Only GET and HEAD."},
      {"mesh init",
       "Create a new network in DIR: a 32-byte network secret and an Ed25519 network CA.",
       {arg("DIR", "Directory to create (refuses to overwrite an existing network).")},
       {opt("name", "NAME", "Network name, shown in the CA certificate.", "starling")},
       "Writes DIR/network.secret (0600), DIR/ca.key (0600) and DIR/ca.pem. Supernodes need\n"
       "all three; peers need network.secret and ca.pem. Keep ca.key off peer machines."},
      {"mesh revoke",
       "Revoke a node for good: every supernode refuses its calls at once and it can never "
       "enrol again. An admin command: it needs the network CA key.",
       {arg("NODE_ID",
            "The node's id (64 hex characters, as 'starling mesh certificates' lists "
            "it), or a unique prefix of at least 8 of them.")},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           opt("reason", "TEXT", "Why; shown in the node's errors (up to 256 bytes on one line)."),
           boolean("json", "Print the answer as JSON."),
       },
       "Replicated through Raft (needs a majority of the supernodes). Each member refuses the\n"
       "node's calls from the moment it applies the revocation, on sessions already open too:\n"
       "no more tasks, announces or enrolment, and it is left out of peer lists. Its data\n"
       "certificate stays valid until it expires (at most 12 hours), so peers that already\n"
       "know it may exchange pieces with it until then. There is no undo: the machine joins\n"
       "again only with a new node key (delete DATA/node.key). Revoking a supernode cuts it\n"
       "off from the other members; the rest must still be a majority of --members."},
      {"mesh certificates",
       "List the certificates the supernodes issued (one line per node, its latest) and the "
       "revoked nodes. An admin command: it needs the network CA key.",
       {},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           boolean("stale",
                   "Read the answering member's copy without asking the leader (works "
                   "without a majority; may be behind)."),
           boolean("json", "Print the answer as JSON."),
       },
       "Columns: node id, role, expiry of the node's latest certificate (UTC), and its state:\n"
       "valid, expired, or 'revoked <time>: <reason>'. Lists what enrolment issued; the\n"
       "supernodes' own certificates and the admin tools' (signed with ca.key outside the\n"
       "cluster) appear only once revoked, with role '-'."},
      {"member add",
       "Add a supernode to the cluster at runtime. An admin command: it needs the network CA "
       "key.",
       {arg("ID=HOST:PORT",
            "The new member's Raft id (never used before in this cluster) and mesh address.")},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           boolean("json", "Print the answer as JSON."),
       },
       "Start the new supernode first with '--id ID --join <current members>'. The member\n"
       "joins as a learner (no vote), receives the registry from the leader, and is made a\n"
       "voter automatically once it has caught up ('starling status' shows it). Its address\n"
       "is replicated with the membership: every member, restart and snapshot knows it.\n"
       "One change at a time; needs a majority. Errors: 'id N is already in use', 'id N\n"
       "belonged to a removed member (ids are never reused)', 'another membership change is\n"
       "in flight', 'no quorum: ...'."},
      {"member remove",
       "Remove a supernode from the cluster at runtime. An admin command: it needs the "
       "network CA key.",
       {arg("ID", "The member's Raft id.")},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           boolean("json", "Print the answer as JSON."),
       },
       "The id is retired for good. Removing the leader makes it step down; the others elect\n"
       "a new one. The removed process keeps running without a vote: stop it. Removing a\n"
       "voter shrinks the majority; the last voter cannot be removed. Needs a majority."},
      {"status",
       "Show a supernode's state: its node id, tasks and announced peers. An admin command: "
       "it needs the network CA key.",
       {},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]",
               "Supernode mesh address(es); every member they know of is asked too.",
               "127.0.0.1:8002"),
           boolean("json", "Print the raw JSON answers."),
       },
       "Prints one line per cluster member: Raft id, address, state (leader, follower,\n"
       "candidate), term, commit and applied index, tasks, peers, health; then the tasks.\n"
       "Signs itself a 1-hour admin certificate for a throwaway key with DIR/ca.key and\n"
       "presents it to the supernodes (Status is refused to peer certificates). Without\n"
       "DIR/ca.key it prints 'starling status needs DIR/ca.key to act as an admin' and exits 1."},
      {"kv get",
       "Read KEY from the cluster's replicated key/value namespace (prints its value).",
       {arg("KEY", "The key.")},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           boolean("stale",
                   "Read the answering member's copy without asking the leader (works "
                   "without a majority; may be behind)."),
           boolean("json", "Print value, create_index and modify_index as JSON."),
       },
       "Consistent (linearizable) by default. Exit 1 with 'key 'K' not found' when absent."},
      {"kv put",
       "Write VALUE under KEY (replicated through Raft before it is acknowledged).",
       {arg("KEY", "The key (1..512 bytes)."), arg("VALUE", "The value (up to 512 KiB).")},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           opt("cas", "INDEX",
               "Write only if the key's modify index is INDEX (0 = only if absent)."),
           boolean("json", "Print the answer as JSON."),
       },
       "Prints the modify index of the write."},
      {"kv cas",
       "Compare-and-set: write VALUE under KEY only if its modify index is INDEX.",
       {arg("KEY", "The key."), arg("VALUE", "The new value.")},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           req("index", "INDEX", "Expected modify index (0 = the key must not exist)."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           boolean("json", "Print the answer as JSON."),
       },
       "Exit 1 with 'key 'K' is at index N, not M' when the index does not match."},
      {"kv delete",
       "Delete KEY.",
       {arg("KEY", "The key.")},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           opt("cas", "INDEX", "Delete only if the key's modify index is INDEX."),
           boolean("json", "Print the answer as JSON."),
       },
       ""},
      {"kv list",
       "List keys (and values) starting with PREFIX, one per line: key, modify index, value.",
       {PositionalSpec{"PREFIX", "Key prefix (default: every key).", false}},
       {
           req("network", "DIR", "Network directory with network.secret, ca.pem and ca.key."),
           opt("supernode", "HOST:PORT[,...]", "Supernodes to ask, in order.", "127.0.0.1:8002"),
           boolean("stale", "Read the answering member's copy without asking the leader."),
           boolean("json", "Print the answer as JSON."),
       },
       ""},
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

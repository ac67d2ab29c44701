#include "cli/dfget.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <utility>

#include "cli/commands.h"
#include "common/hex.h"
#include "common/task_id.h"

namespace starling::cli {
namespace {

using std::chrono::milliseconds;

Error bad(const std::string& message) { return Error{kErrUsage, message}; }

// The value of whichever of two synonymous flags was given; both with different values is
// an error.
Result<std::string> one_of(const ParsedArgs& args, const std::string& a, const std::string& b) {
  if (args.has(a) && args.has(b) && args.get(a) != args.get(b)) {
    return bad("--" + a + " and --" + b + " say different things; give one");
  }
  return args.has(a) ? args.get(a) : args.get(b);
}

// 32 hex digits, lowercased.
Result<std::string> md5_hex(std::string hex, const std::string& flag) {
  if (hex.size() != 32 || !from_hex(hex)) return bad(flag + " must be 32 hex digits");
  std::transform(hex.begin(), hex.end(), hex.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return hex;
}

// The last component of the URL's path ("http://h/a/b.tar?x=1" gives "b.tar"); empty when
// the path ends with '/' or there is none.
std::string file_name_of(std::string_view url) {
  const size_t scheme = url.find("://");
  std::string_view rest = scheme == std::string_view::npos ? url : url.substr(scheme + 3);
  rest = rest.substr(0, std::min(rest.find('?'), rest.find('#')));
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return "";
  rest = rest.substr(slash);
  std::string name(rest.substr(rest.rfind('/') + 1));
  return name == "." || name == ".." ? "" : name;
}

// dfget's --node list ("host[:port][=weight],...", port 8002 by default) as "HOST:PORT,...".
Result<std::string> supernodes_of(std::string_view nodes) {
  std::string out;
  for (const std::string& node : split_names(nodes, ',')) {
    std::string host_port = node.substr(0, node.find('='));
    if (host_port.find(':') == std::string::npos) {
      host_port += ":" + std::to_string(kDefaultSupernodePort);
    }
    auto parsed = parse_host_port(host_port);
    if (!parsed) return bad("--node: bad supernode '" + node + "' (expected HOST[:PORT][=WEIGHT])");
    out += (out.empty() ? "" : ",") + host_port;
  }
  if (out.empty()) return bad("--node names no supernode");
  return out;
}

// Flags dfget users may rely on that Starling cannot honour, and why.
const std::pair<const char*, const char*> kIgnored[] = {
    {"scheduler", "the peer daemon's --supernode list is used"},
    {"totallimit", "Starling has no rate limits yet"},
    {"locallimit", "Starling has no rate limits yet"},
    {"minrate", "Starling has no rate limits yet"},
    {"insecure", "the supernodes always check the origin's certificate"},
    {"cacerts", "the supernodes use their own CA store for the origin"},
};

}  // namespace

Result<milliseconds> parse_dfget_duration(std::string_view text) {
  const std::string shown(text);
  const Error wrong = bad("bad duration '" + shown + "' (e.g. 90s, 5m, 1h30m, or seconds)");
  if (text.empty()) return wrong;
  double total_ms = 0;
  const bool bare =
      std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
  if (bare) {
    if (text.size() > 9) return bad("duration '" + shown + "' is longer than 366 days");
    total_ms = std::stod(shown) * 1000;
  } else {
    static const std::pair<std::string_view, double> kUnits[] = {
        {"ns", 1e-6}, {"us", 1e-3}, {"µs", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 6e4}, {"h", 3.6e6}};
    while (!text.empty()) {
      size_t digits = 0;
      bool dot = false;
      while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) != 0 ||
                                      (text[digits] == '.' && !dot))) {
        dot = dot || text[digits] == '.';
        ++digits;
      }
      const std::string_view number = text.substr(0, digits);
      if (number.empty() || number == "." || digits > 15) return wrong;
      text.remove_prefix(digits);
      // The table lists "ms" before "m" and "ns", "us" before "s": the first match is right.
      const auto unit = std::find_if(std::begin(kUnits), std::end(kUnits),
                                     [&](const auto& u) { return text.starts_with(u.first); });
      if (unit == std::end(kUnits)) return wrong;
      text.remove_prefix(unit->first.size());
      total_ms += std::stod(std::string(number)) * unit->second;
      if (total_ms > 366.0 * 86400e3)
        return bad("duration '" + shown + "' is longer than 366 days");
    }
  }
  if (total_ms > 366.0 * 86400e3) return bad("duration '" + shown + "' is longer than 366 days");
  const auto ms = static_cast<int64_t>(std::ceil(total_ms));
  if (ms <= 0) return bad("duration '" + shown + "' must be above 0");
  return milliseconds(ms);
}

Result<DfgetInvocation> dfget_invocation(const ParsedArgs& args) {
  DfgetInvocation out;
  GetRequest& r = out.request;
  r.program = "dfget";
  r.dfget_success_line = true;
  r.progress = args.has("showbar");

  const std::string positional = args.positionals.empty() ? "" : args.positionals.front();
  if (!positional.empty() && args.has("url") && args.get("url") != positional) {
    return bad("two URLs given: '" + args.get("url") + "' and '" + positional + "'");
  }
  r.url = args.has("url") ? args.get("url") : positional;
  if (r.url.empty()) return bad("missing URL (give it as an argument or with --url)");

  auto output = one_of(args, "output", "O");
  if (!output) return output.error();
  r.output = *output;
  if (r.output.empty()) {
    r.output = file_name_of(r.url);
    if (r.output.empty()) return bad("missing --output: the URL's path names no file");
  }

  if (args.has("md5")) {
    auto md5 = md5_hex(args.get("md5"), "--md5");
    if (!md5) return md5.error();
    r.md5 = *md5;
  }
  if (args.has("digest")) {
    const std::string digest = args.get("digest");
    if (digest.starts_with("md5:")) {
      auto md5 = md5_hex(digest.substr(4), "an md5 --digest");
      if (!md5) return md5.error();
      if (!r.md5.empty() && r.md5 != *md5) return bad("--md5 and --digest name different MD5s");
      r.md5 = *md5;
    } else {
      auto parsed = parse_digest(digest);
      if (!parsed) return bad(parsed.error().message);
      r.digest = parsed->str();
    }
  }

  auto tag = one_of(args, "identifier", "tag");
  if (!tag) return tag.error();
  r.tag = *tag;
  r.filter = split_names(args.get("filter"), '&');
  r.headers = args.all("header");

  auto timeout = one_of(args, "timeout", "exceed");
  if (!timeout) return timeout.error();
  if (!timeout->empty()) {
    auto d = parse_dfget_duration(*timeout);
    if (!d) return bad("--timeout: " + d.error().message);
    r.timeout = *d;
  }

  const std::string pattern = args.get("pattern", "p2p");
  if (pattern == "source") {
    return bad(
        "--pattern source (a direct download from the origin) is not supported: only the "
        "supernodes fetch from the origin");
  }
  if (pattern != "p2p" && pattern != "cdn") return bad("--pattern must be p2p, cdn or source");

  auto socket = one_of(args, "daemon-sock", "socket");
  if (!socket) return socket.error();
  r.socket = socket->empty() ? std::string(kDefaultSocket) : *socket;

  // A one-shot peer when no daemon answers: dfget's supernode list, Starling's network key,
  // and dfget's --ip (its uploader's address) as the peer's data address.
  if (args.has("network") && !args.has("node")) {
    return bad("--network needs --node (the supernodes a one-shot peer joins through)");
  }
  if (args.has("node") && args.has("network")) {
    auto supernodes = supernodes_of(args.get("node"));
    if (!supernodes) return supernodes.error();
    r.supernodes = *supernodes;
    r.network_dir = args.get("network");
    r.listen_ip = args.get("ip");
    r.supernode_flag = "--node";
  } else if (args.has("node")) {
    out.notices.push_back(
        "ignoring --node: a one-shot peer (used when no peer daemon runs) also needs --network "
        "DIR");
  }

  for (const auto& [flag, why] : kIgnored) {
    if (args.has(flag)) out.notices.push_back("ignoring --" + std::string(flag) + ": " + why);
  }
  return out;
}

}  // namespace starling::cli

#include "cli/admin_commands.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/admin.h"
#include "cli/commands.h"
#include "cli/report.h"
#include "supernode/members.h"

namespace starling::cli {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// "starling status needs DIR/ca.key to act as an admin"
int fail_admin(const std::string& command, const Error& e) {
  if (e.code == kErrAdmin) {
    std::cerr << kProgram << " " << command << " " << e.message << "\n";
    return 1;
  }
  return fail(command, e.message);
}

// Errors after which another supernode may answer: it could not be reached, or it could not
// reach the majority (writes and consistent reads go through the Raft leader).
bool try_another(const Error& e) {
  if (e.code == "cluster.bad_member_change")
    return false;  // the cluster's answer, not the member's
  return e.code.rfind("mesh.", 0) == 0 || e.code.rfind("raft.", 0) == 0 ||
         e.code.rfind("cluster.", 0) == 0;
}

std::string address(const HostPort& hp) { return hp.host + ":" + std::to_string(hp.port); }

// One call, to the first supernode that answers it.
Result<json> call_any(const mesh::MeshConfig& mesh, const std::vector<HostPort>& supernodes,
                      const std::string& method, const json& params) {
  Error last = make_error("cluster.unavailable", "no supernode given");
  for (const auto& s : supernodes) {
    auto client = admin_connect(mesh, s.host, s.port, 5s);
    if (!client) {
      last = client.error();
      continue;
    }
    auto result = (*client)->call(method, params, 15s);
    if (result.ok() || !try_another(result.error())) return result;
    last = result.error();
  }
  return last;
}

std::string cell(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return "-";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-26 17:50:00 UTC"
std::string utc_time(int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  if (gmtime_r(&tt, &tm) == nullptr) return std::to_string(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

bool is_hex(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
}

// The Certificates RPC's list, or the error.
Result<json> certificates(const mesh::MeshConfig& mesh, const std::vector<HostPort>& supernodes,
                          bool stale) {
  auto result = call_any(mesh, supernodes, "Certificates", {{"stale", stale}});
  if (!result) return result.error();
  auto it = result->find("certificates");
  if (it == result->end() || !it->is_array()) {
    return make_error("cli.bad_answer", "the supernode answered Certificates without a list");
  }
  return *it;
}

}  // namespace

int run_mesh_admin(const ParsedArgs& args) {
  if (args.command->name == "mesh revoke") return run_mesh_revoke(args);
  return run_mesh_certificates(args);
}

int run_mesh_revoke(const ParsedArgs& args) {
  const std::string name = "mesh revoke";
  auto supernodes = parse_host_ports(args.get("supernode", "127.0.0.1:8002"));
  if (!supernodes) return usage(name + ": --supernode: " + supernodes.error().message);
  std::string node = args.positionals.at(0);
  std::transform(node.begin(), node.end(), node.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!is_hex(node) || node.size() < 8 || node.size() > 64) {
    return usage(name + ": NODE_ID must be a node id (64 hex characters) or at least 8 of its " +
                 "first characters, not '" + args.positionals[0] + "'");
  }
  const std::string reason = args.get("reason");
  auto mesh = admin_mesh_config(args.get("network"));
  if (!mesh) return fail_admin(name, mesh.error());
  if (node.size() < 64) {
    // A prefix, as the peer daemon's log shows it: resolve it against the record.
    auto list = certificates(*mesh, *supernodes, /*stale=*/false);
    if (!list) return fail(name, list.error().message);
    std::vector<std::string> matches;
    for (const auto& c : *list) {
      const std::string id = c.value("node_id", "");
      if (id.rfind(node, 0) == 0) matches.push_back(id);
    }
    if (matches.empty()) {
      return fail(name, "no node id starting with " + node +
                            " is on record (give the whole 64-character id to revoke a node "
                            "that never enrolled through the supernodes)");
    }
    if (matches.size() > 1) {
      return fail(name, std::to_string(matches.size()) + " node ids start with " + node +
                            "; give more characters");
    }
    node = matches[0];
  }
  auto result = call_any(*mesh, *supernodes, "Revoke", {{"node_id", node}, {"reason", reason}});
  if (!result) return fail(name, result.error().message);
  if (args.has("json")) {
    std::cout << json{{"node_id", node}, {"result", *result}}.dump(2) << "\n";
    return 0;
  }
  const std::string when = utc_time(result->value("revoked_at", int64_t{0}));
  if (result->value("already_revoked", false)) {
    std::cout << "node " << node << " was already revoked (" << when << ")\n";
  } else {
    std::cout << "revoked node " << node << " at " << when << (reason.empty() ? "" : ": " + reason)
              << "\n";
  }
  return 0;
}

int run_mesh_certificates(const ParsedArgs& args) {
  const std::string name = "mesh certificates";
  auto supernodes = parse_host_ports(args.get("supernode", "127.0.0.1:8002"));
  if (!supernodes) return usage(name + ": --supernode: " + supernodes.error().message);
  auto mesh = admin_mesh_config(args.get("network"));
  if (!mesh) return fail_admin(name, mesh.error());
  auto list = certificates(*mesh, *supernodes, args.has("stale"));
  if (!list) return fail(name, list.error().message);
  if (args.has("json")) {
    std::cout << json{{"certificates", *list}}.dump(2) << "\n";
    return 0;
  }
  const int64_t now = unix_now();
  std::cout << std::left << std::setw(66) << "NODE ID" << std::setw(11) << "ROLE" << std::setw(25)
            << "EXPIRES"
            << "STATE\n";
  for (const auto& c : *list) {
    const bool issued = c.contains("issued_index");
    const int64_t not_after = c.value("not_after", int64_t{0});
    std::string state;
    if (c.value("revoked", false)) {
      const std::string reason = c.value("reason", "");
      state = "revoked " + utc_time(c.value("revoked_at", int64_t{0})) +
              (reason.empty() ? "" : ": " + reason);
    } else {
      state = not_after > now ? "valid" : "expired";
    }
    std::cout << std::setw(66) << c.value("node_id", "") << std::setw(11)
              << (issued ? c.value("role", "-") : "-") << std::setw(25)
              << (issued ? utc_time(not_after) : "-") << state << "\n";
  }
  return 0;
}

int run_member(const ParsedArgs& args) {
  const std::string& name = args.command->name;  // "member add" / "member remove"
  auto supernodes = parse_host_ports(args.get("supernode", "127.0.0.1:8002"));
  if (!supernodes) return usage(name + ": --supernode: " + supernodes.error().message);
  const std::string& what = args.positionals.at(0);
  json params;
  std::string method;
  std::string done;
  if (name == "member add") {
    auto m = supernode::parse_member(what);
    if (!m) return usage(name + ": " + m.error().message);
    method = "MemberAdd";
    params = {{"id", m->id.get()}, {"address", m->address()}};
    done = "added member " + std::to_string(m->id.get()) + " at " + m->address() +
           " as a learner; it becomes a voter once it has caught up";
  } else {
    uint64_t id = 0;
    auto [end, ec] = std::from_chars(what.data(), what.data() + what.size(), id);
    if (what.empty() || ec != std::errc() || end != what.data() + what.size() || id == 0) {
      return usage(name + ": ID must be a member id (a number from 1), not '" + what + "'");
    }
    method = "MemberRemove";
    params = {{"id", id}};
    done = "removed member " + std::to_string(id);
  }
  auto mesh = admin_mesh_config(args.get("network"));
  if (!mesh) return fail_admin(name, mesh.error());
  auto result = call_any(*mesh, *supernodes, method, params);
  if (!result) return fail(name, result.error().message);
  if (args.has("json")) {
    std::cout << json{{"request", params}, {"result", *result}}.dump(2) << "\n";
    return 0;
  }
  std::cout << done << "\n";
  return 0;
}

int run_status(const ParsedArgs& args) {
  auto given = parse_host_ports(args.get("supernode", "127.0.0.1:8002"));
  if (!given) return usage("status: --supernode: " + given.error().message);
  auto mesh = admin_mesh_config(args.get("network"));
  if (!mesh) return fail_admin("status", mesh.error());

  // Every member the given supernodes know of, in id order, plus the given ones.
  std::vector<std::string> addresses;
  auto add = [&](const std::string& a) {
    if (std::find(addresses.begin(), addresses.end(), a) == addresses.end()) {
      addresses.push_back(a);
    }
  };
  std::vector<std::pair<std::string, Result<json>>> answers;
  for (const auto& s : *given) {
    auto client = admin_connect(*mesh, s.host, s.port, 5s);
    Result<json> status =
        client ? (*client)->call("Status", json::object(), 5s) : Result<json>(client.error());
    if (status) {
      for (const auto& m : status->value("raft", json::object()).value("members", json::array())) {
        add(m.value("address", ""));
      }
    }
    add(address(s));
    answers.emplace_back(address(s), std::move(status));
  }
  json members = json::array();
  int healthy = 0;
  for (const auto& a : addresses) {
    Result<json> status = make_error("cluster.unknown", "not asked");
    bool found = false;
    for (auto& [addr, answer] : answers) {
      if (addr == a) {
        status = answer;
        found = true;
      }
    }
    if (!found) {
      auto hp = parse_host_port(a);
      auto client = hp ? admin_connect(*mesh, hp->host, hp->port, 3s)
                       : Result<std::unique_ptr<mesh::RpcClient>>(hp.error());
      status =
          client ? (*client)->call("Status", json::object(), 5s) : Result<json>(client.error());
    }
    if (status) {
      ++healthy;
      json s = *status;
      s["address"] = a;
      s["health"] = "ok";
      members.push_back(std::move(s));
    } else {
      members.push_back(
          {{"address", a},
           {"health", "unreachable"},
           {"error", {{"code", status.error().code}, {"message", status.error().message}}}});
    }
  }
  if (args.has("json")) {
    std::cout << json{{"members", members}}.dump(2) << "\n";
    return healthy > 0 ? 0 : 1;
  }
  if (healthy == 0) {
    return fail("status", "no supernode answered: " + members[0]["error"].value("message", ""));
  }
  std::string leader = "none";
  std::string term = "-";
  for (const auto& m : members) {
    if (!m.contains("raft")) continue;
    const json& r = m["raft"];
    if (r.value("state", "") == "leader") {
      leader = std::to_string(r.value("id", uint64_t{0})) + " (" + m.value("address", "") + ")";
      term = std::to_string(r.value("term", uint64_t{0}));
    }
  }
  std::cout << "cluster: " << members.size() << " members, " << healthy << " answering, leader "
            << leader << ", term " << term << "\n";
  std::cout << std::left << std::setw(4) << "ID" << std::setw(22) << "ADDRESS" << std::setw(14)
            << "STATE" << std::setw(6) << "TERM" << std::setw(9) << "COMMIT" << std::setw(9)
            << "APPLIED" << std::setw(7) << "TASKS" << std::setw(7) << "PEERS"
            << "HEALTH\n";
  for (const auto& m : members) {
    if (!m.contains("raft")) {
      std::cout << std::setw(4) << "?" << std::setw(22) << m.value("address", "")
                << "unreachable: " << m["error"].value("message", "") << "\n";
      continue;
    }
    const json& r = m["raft"];
    std::cout << std::setw(4) << cell(r, "id") << std::setw(22) << m.value("address", "")
              << std::setw(14) << cell(r, "state") << std::setw(6) << cell(r, "term")
              << std::setw(9) << cell(r, "commit") << std::setw(9) << cell(r, "applied")
              << std::setw(7) << m.value("tasks", json::array()).size() << std::setw(7)
              << cell(m, "peers") << "ok\n";
  }
  // The registry as the first answering member sees it.
  for (const auto& m : members) {
    if (!m.contains("raft")) continue;
    std::cout << "node id: " << m.value("node_id", "?") << " (" << m.value("address", "") << ")\n";
    const json tasks = m.value("tasks", json::array());
    std::cout << "tasks:   " << tasks.size() << "\n";
    for (const auto& t : tasks) {
      std::cout << "  " << t.value("task_id", "").substr(0, 16) << "  " << t.value("state", "")
                << "  " << t.value("size", int64_t{0}) << " bytes  " << t.value("url", "") << "\n";
    }
    std::cout << "kv keys: " << m.value("kv_keys", 0) << "\n";
    break;
  }
  return 0;
}

int run_kv(const ParsedArgs& args) {
  const std::string& name = args.command->name;  // "kv get", "kv put", ...
  const std::string verb = name.substr(3);
  auto supernodes = parse_host_ports(args.get("supernode", "127.0.0.1:8002"));
  if (!supernodes) return usage(name + ": --supernode: " + supernodes.error().message);
  const std::vector<std::string>& pos = args.positionals;
  json params;
  std::string method;
  if (verb == "get") {
    method = "KvGet";
    params = {{"key", pos.at(0)}, {"stale", args.has("stale")}};
  } else if (verb == "list") {
    method = "KvList";
    params = {{"prefix", pos.empty() ? std::string() : pos[0]}, {"stale", args.has("stale")}};
  } else if (verb == "put" || verb == "cas") {
    method = "KvPut";
    params = {{"key", pos.at(0)}, {"value", pos.at(1)}};
  } else {
    method = "KvDelete";
    params = {{"key", pos.at(0)}};
  }
  if (verb == "cas" || args.has("cas")) {
    const std::string text = args.get(verb == "cas" ? "index" : "cas");
    uint64_t index = 0;
    size_t used = 0;
    try {
      index = std::stoull(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || text[0] == '-') {
      return usage(name + ": the modify index must be a number, not '" + text + "'");
    }
    params["cas"] = index;
  }
  auto mesh = admin_mesh_config(args.get("network"));
  if (!mesh) return fail_admin(name, mesh.error());
  auto result = call_any(*mesh, *supernodes, method, params);
  if (!result) return fail(name, result.error().message);
  if (args.has("json")) {
    std::cout << result->dump(2) << "\n";
    return 0;
  }
  if (verb == "get") {
    std::cout << result->value("value", "") << "\n";
  } else if (verb == "list") {
    for (const auto& item : result->value("items", json::array())) {
      std::cout << item.value("key", "") << "\t" << item.value("modify_index", uint64_t{0}) << "\t"
                << item.value("value", "") << "\n";
    }
  } else if (verb == "delete") {
    if (result->value("deleted", false)) {
      std::cout << "deleted " << pos[0] << "\n";
    } else {
      std::cout << "no key " << pos[0] << " (nothing deleted)\n";
    }
  } else {
    std::cout << "wrote " << pos[0] << " at index " << result->value("index", uint64_t{0}) << "\n";
  }
  return 0;
}

}  // namespace starling::cli

#include "supernode/tracker/command.h"

#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "common/hex.h"

namespace starling::tracker {
namespace {

using nlohmann::json;

Error bad(const std::string& why) { return make_error(kErrBadCommand, "tracker command: " + why); }

bool is_task_id(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Field readers: each checks presence and JSON type before touching the value, so nothing
// below can throw.
std::optional<std::string> get_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<int64_t> get_int(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    auto v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  return std::nullopt;
}

std::optional<TaskId> get_task_id(const json& j) {
  auto s = get_string(j, "task_id");
  if (!s || !is_task_id(*s)) return std::nullopt;
  return TaskId(*s);
}

// Every key of `j` must be in `allowed` (plus "v" and "type").
bool only_keys(const json& j, std::initializer_list<const char*> allowed) {
  std::set<std::string> keys{"v", "type"};
  for (const char* k : allowed) keys.insert(k);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!keys.contains(it.key())) return false;
  }
  return true;
}

struct Encoder {
  json operator()(const CreateTask& c) const {
    json j = {{"type", "CreateTask"},
              {"task_id", c.task_id.get()},
              {"url", c.url},
              {"created_at", c.created_at}};
    if (c.digest) j["digest"] = *c.digest;
    return j;
  }
  json operator()(const MarkTaskReady& c) const {
    return {{"type", "MarkTaskReady"},
            {"task_id", c.task_id.get()},
            {"size", c.size},
            {"sha256", c.sha256},
            {"metainfo",
             to_hex(reinterpret_cast<const uint8_t*>(c.metainfo.data()), c.metainfo.size())}};
  }
  json operator()(const MarkTaskFailed& c) const {
    return {{"type", "MarkTaskFailed"},
            {"task_id", c.task_id.get()},
            {"code", c.code},
            {"message", c.message}};
  }
  json operator()(const RestartTask& c) const {
    return {{"type", "RestartTask"}, {"task_id", c.task_id.get()}};
  }
};

}  // namespace

const char* command_name(const Command& command) {
  switch (command.index()) {
    case 0:
      return "CreateTask";
    case 1:
      return "MarkTaskReady";
    case 2:
      return "MarkTaskFailed";
    default:
      return "RestartTask";
  }
}

std::string encode_command(const Command& command) {
  json j = std::visit(Encoder{}, command);
  j["v"] = kCommandVersion;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Command> decode_command(std::string_view bytes) {
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("not JSON");
  if (!j.is_object()) return bad("not a JSON object");
  auto version = get_int(j, "v");
  if (!version) return bad("missing version");
  if (*version != kCommandVersion) return bad("unsupported version " + std::to_string(*version));
  auto type = get_string(j, "type");
  if (!type) return bad("missing type");
  auto task_id = get_task_id(j);
  if (!task_id) return bad("missing or malformed task_id");

  if (*type == "CreateTask") {
    if (!only_keys(j, {"task_id", "url", "digest", "created_at"})) return bad("unknown field");
    auto url = get_string(j, "url");
    auto created_at = get_int(j, "created_at");
    if (!url || !created_at) return bad("CreateTask: missing url or created_at");
    CreateTask c{*task_id, *url, std::nullopt, *created_at};
    if (j.contains("digest")) {
      auto digest = get_string(j, "digest");
      if (!digest) return bad("CreateTask: digest is not a string");
      c.digest = *digest;
    }
    return Command(std::move(c));
  }
  if (*type == "MarkTaskReady") {
    if (!only_keys(j, {"task_id", "size", "sha256", "metainfo"})) return bad("unknown field");
    auto size = get_int(j, "size");
    auto sha256 = get_string(j, "sha256");
    auto metainfo_hex = get_string(j, "metainfo");
    if (!size || *size < 0 || !sha256 || !metainfo_hex) {
      return bad("MarkTaskReady: missing or invalid size, sha256 or metainfo");
    }
    auto metainfo = from_hex(*metainfo_hex);
    if (!metainfo) return bad("MarkTaskReady: metainfo is not hex");
    return Command(
        MarkTaskReady{*task_id, *size, *sha256, std::string(metainfo->begin(), metainfo->end())});
  }
  if (*type == "MarkTaskFailed") {
    if (!only_keys(j, {"task_id", "code", "message"})) return bad("unknown field");
    auto code = get_string(j, "code");
    auto message = get_string(j, "message");
    if (!code || !message) return bad("MarkTaskFailed: missing code or message");
    return Command(MarkTaskFailed{*task_id, *code, *message});
  }
  if (*type == "RestartTask") {
    if (!only_keys(j, {"task_id"})) return bad("unknown field");
    return Command(RestartTask{*task_id});
  }
  return bad("unknown type");
}

}  // namespace starling::tracker

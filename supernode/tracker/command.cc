#include "supernode/tracker/command.h"

#include <array>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "common/hex.h"

namespace starling::tracker {
namespace {

using nlohmann::json;

Error bad(const std::string& why) { return make_error(kErrBadCommand, "tracker command: " + why); }

bool is_lower_hex(std::string_view s) {
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

std::optional<uint64_t> get_uint(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) {
    auto v = it->get<int64_t>();
    if (v < 0) return std::nullopt;
    return static_cast<uint64_t>(v);
  }
  return std::nullopt;
}

// Every key of `j` must be in `allowed`.
bool only_keys(const json& j, std::initializer_list<const char*> allowed) {
  std::set<std::string> keys;
  for (const char* k : allowed) keys.insert(k);
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!keys.contains(it.key())) return false;
  }
  return true;
}

// An optional cas field: absent -> nullopt; present -> must be an unsigned integer.
// Returns false when present and malformed.
bool read_cas(const json& j, std::optional<uint64_t>& out) {
  if (!j.contains("cas")) return true;
  auto cas = get_uint(j, "cas");
  if (!cas) return false;
  out = *cas;
  return true;
}

struct Encoder {
  json operator()(const CreateTask& c) const {
    json j = {{"type", "CreateTask"}, {"task_id", c.task_id.get()},
              {"url", c.url},         {"created_at", c.created_at},
              {"seeder", c.seeder},   {"segment_size", c.segment_size}};
    if (c.digest) j["digest"] = *c.digest;
    return j;
  }
  json operator()(const MarkTaskReady& c) const {
    return {{"type", "MarkTaskReady"}, {"task_id", c.task_id.get()}, {"epoch", c.epoch},
            {"size", c.size},          {"sha256", c.sha256},         {"seed_ip", c.seed_ip},
            {"seed_port", c.seed_port}};
  }
  json operator()(const MarkTaskFailed& c) const {
    json j = {{"type", "MarkTaskFailed"},
              {"task_id", c.task_id.get()},
              {"code", c.code},
              {"message", c.message}};
    if (c.epoch) j["epoch"] = *c.epoch;
    if (c.seed_lost) j["seed_lost"] = true;
    return j;
  }
  json operator()(const PublishSegment& c) const {
    return {{"type", "PublishSegment"},
            {"task_id", c.task_id.get()},
            {"epoch", c.epoch},
            {"index", c.index},
            {"offset", c.offset},
            {"size", c.size},
            {"metainfo",
             to_hex(reinterpret_cast<const uint8_t*>(c.metainfo.data()), c.metainfo.size())},
            {"seed_ip", c.seed_ip},
            {"seed_port", c.seed_port}};
  }
  json operator()(const RenewSeedLease& c) const {
    return {{"type", "RenewSeedLease"}, {"task_id", c.task_id.get()}, {"epoch", c.epoch}};
  }
  json operator()(const TakeOverSeed& c) const { return seed_handover("TakeOverSeed", c); }
  json operator()(const ReseedTask& c) const { return seed_handover("ReseedTask", c); }
  template <typename C>
  static json seed_handover(const char* type, const C& c) {
    return {{"type", type},
            {"task_id", c.task_id.get()},
            {"expected_epoch", c.expected_epoch},
            {"new_seeder", c.new_seeder},
            {"seed_ip", c.seed_ip},
            {"seed_port", c.seed_port}};
  }
  json operator()(const RestartTask& c) const {
    return {{"type", "RestartTask"}, {"task_id", c.task_id.get()}, {"seeder", c.seeder}};
  }
  json operator()(const KvPut& c) const {
    json j = {{"type", "KvPut"}, {"key", c.key}, {"value", to_base64(c.value)}};
    if (c.cas) j["cas"] = *c.cas;
    return j;
  }
  json operator()(const KvDelete& c) const {
    json j = {{"type", "KvDelete"}, {"key", c.key}};
    if (c.cas) j["cas"] = *c.cas;
    return j;
  }
  json operator()(const IssueCertificate& c) const {
    return {{"type", "IssueCertificate"},
            {"node_id", c.node_id},
            {"role", c.role},
            {"not_before", c.not_before},
            {"not_after", c.not_after}};
  }
  json operator()(const RevokeCertificate& c) const {
    return {{"type", "RevokeCertificate"},
            {"node_id", c.node_id},
            {"reason", c.reason},
            {"revoked_at", c.revoked_at}};
  }
};

struct Validator {
  Status task(const TaskId& id) const {
    if (!is_node_id(id.get())) return bad("task_id is not 64 lowercase hex");
    return {};
  }
  Status seeder(const std::string& s) const {
    if (!is_node_id(s)) return bad("seeder is not a node id (64 lowercase hex)");
    return {};
  }
  Status port(const char* what, int64_t p) const {
    if (p < 0 || p > 65535) return bad(std::string(what) + ": seed_port out of range");
    return {};
  }
  Status epoch(const char* what, uint64_t e) const {
    if (e == 0 || e > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return bad(std::string(what) + ": epoch is not a log index (1..2^63-1)");
    }
    return {};
  }
  Status operator()(const CreateTask& c) const {
    if (Status st = task(c.task_id); !st.ok()) return st;
    if (c.segment_size < 1 || c.segment_size > kMaxSegmentSize) {
      return bad("CreateTask: segment_size outside 1.." + std::to_string(kMaxSegmentSize));
    }
    return seeder(c.seeder);
  }
  Status operator()(const MarkTaskReady& c) const {
    if (Status st = task(c.task_id); !st.ok()) return st;
    if (Status st = epoch("MarkTaskReady", c.epoch); !st.ok()) return st;
    if (c.size < 0) return bad("MarkTaskReady: negative size");
    return port("MarkTaskReady", c.seed_port);
  }
  Status operator()(const MarkTaskFailed& c) const {
    if (Status st = task(c.task_id); !st.ok()) return st;
    if (c.seed_lost && !c.epoch) return bad("MarkTaskFailed: seed_lost without an epoch");
    if (c.epoch) return epoch("MarkTaskFailed", *c.epoch);
    return {};
  }
  Status operator()(const PublishSegment& c) const {
    if (Status st = task(c.task_id); !st.ok()) return st;
    if (Status st = epoch("PublishSegment", c.epoch); !st.ok()) return st;
    if (c.index < 0 || c.offset < 0) return bad("PublishSegment: negative index or offset");
    if (c.size < 1 || c.size > kMaxSegmentSize) return bad("PublishSegment: size out of range");
    if (c.offset > std::numeric_limits<int64_t>::max() - c.size) {
      return bad("PublishSegment: offset + size overflows");
    }
    if (c.metainfo.empty() || c.metainfo.size() > kMaxSegmentMetainfoBytes) {
      return bad("PublishSegment: metainfo empty or too large");
    }
    return port("PublishSegment", c.seed_port);
  }
  Status operator()(const RenewSeedLease& c) const {
    if (Status st = task(c.task_id); !st.ok()) return st;
    return epoch("RenewSeedLease", c.epoch);
  }
  Status operator()(const TakeOverSeed& c) const { return seed_handover("TakeOverSeed", c); }
  Status operator()(const ReseedTask& c) const { return seed_handover("ReseedTask", c); }
  template <typename C>
  Status seed_handover(const char* type, const C& c) const {
    if (Status st = task(c.task_id); !st.ok()) return st;
    if (Status st = epoch(type, c.expected_epoch); !st.ok()) return st;
    if (Status st = seeder(c.new_seeder); !st.ok()) return st;
    return port(type, c.seed_port);
  }
  Status operator()(const RestartTask& c) const {
    if (Status st = task(c.task_id); !st.ok()) return st;
    return seeder(c.seeder);
  }
  Status operator()(const KvPut& c) const {
    if (Status st = validate_kv_key(c.key); !st.ok()) return st;
    if (c.value.size() > kMaxKvValueBytes) {
      return bad("kv value of " + std::to_string(c.value.size()) + " bytes exceeds " +
                 std::to_string(kMaxKvValueBytes));
    }
    return {};
  }
  Status operator()(const KvDelete& c) const { return validate_kv_key(c.key); }
  Status operator()(const IssueCertificate& c) const {
    if (!is_node_id(c.node_id)) return bad("IssueCertificate: node_id is not 64 lowercase hex");
    if (!is_certificate_role(c.role)) {
      return bad("IssueCertificate: role is not \"peer\", \"supernode\" or \"admin\"");
    }
    if (c.not_before < 0 || c.not_after <= c.not_before) {
      return bad("IssueCertificate: validity is not 0 <= not_before < not_after");
    }
    return {};
  }
  Status operator()(const RevokeCertificate& c) const {
    if (!is_node_id(c.node_id)) return bad("RevokeCertificate: node_id is not 64 lowercase hex");
    if (c.revoked_at < 0) return bad("RevokeCertificate: negative revoked_at");
    return validate_revoke_reason(c.reason);
  }
};

Result<Command> decode_command_object(const json& j) {
  if (!j.is_object()) return bad("command is not a JSON object");
  auto type = get_string(j, "type");
  if (!type) return bad("missing command type");
  auto task_id = [&]() -> std::optional<TaskId> {
    auto s = get_string(j, "task_id");
    if (!s) return std::nullopt;
    return TaskId(*s);
  };

  if (*type == "CreateTask") {
    if (!only_keys(j,
                   {"type", "task_id", "url", "digest", "created_at", "seeder", "segment_size"})) {
      return bad("CreateTask: unknown field");
    }
    auto id = task_id();
    auto url = get_string(j, "url");
    auto created_at = get_int(j, "created_at");
    auto seeder = get_string(j, "seeder");
    auto segment_size = get_int(j, "segment_size");
    if (!id || !url || !created_at || !seeder || !segment_size) {
      return bad(
          "CreateTask: missing or mistyped task_id, url, created_at, seeder or segment_size");
    }
    CreateTask c{*id, *url, std::nullopt, *created_at, *seeder, *segment_size};
    if (j.contains("digest")) {
      auto digest = get_string(j, "digest");
      if (!digest) return bad("CreateTask: digest is not a string");
      c.digest = *digest;
    }
    return Command(std::move(c));
  }
  if (*type == "MarkTaskReady") {
    if (!only_keys(j, {"type", "task_id", "epoch", "size", "sha256", "seed_ip", "seed_port"})) {
      return bad("MarkTaskReady: unknown field");
    }
    auto id = task_id();
    auto epoch = get_uint(j, "epoch");
    auto size = get_int(j, "size");
    auto sha256 = get_string(j, "sha256");
    auto seed_ip = get_string(j, "seed_ip");
    auto seed_port = get_int(j, "seed_port");
    if (!id || !epoch || !size || !sha256 || !seed_ip || !seed_port) {
      return bad(
          "MarkTaskReady: missing or mistyped task_id, epoch, size, sha256, seed_ip or "
          "seed_port");
    }
    return Command(MarkTaskReady{*id, *epoch, *size, *sha256, *seed_ip, *seed_port});
  }
  if (*type == "MarkTaskFailed") {
    if (!only_keys(j, {"type", "task_id", "code", "message", "epoch", "seed_lost"})) {
      return bad("MarkTaskFailed: unknown field");
    }
    auto id = task_id();
    auto code = get_string(j, "code");
    auto message = get_string(j, "message");
    if (!id || !code || !message) {
      return bad("MarkTaskFailed: missing or mistyped task_id, code or message");
    }
    MarkTaskFailed c{*id, *code, *message, std::nullopt};
    if (j.contains("epoch")) {
      auto epoch = get_uint(j, "epoch");
      if (!epoch) return bad("MarkTaskFailed: epoch is not an unsigned integer");
      c.epoch = *epoch;
    }
    if (j.contains("seed_lost")) {
      if (!j["seed_lost"].is_boolean()) return bad("MarkTaskFailed: seed_lost is not a boolean");
      c.seed_lost = j["seed_lost"].get<bool>();
    }
    return Command(std::move(c));
  }
  if (*type == "PublishSegment") {
    if (!only_keys(j, {"type", "task_id", "epoch", "index", "offset", "size", "metainfo", "seed_ip",
                       "seed_port"})) {
      return bad("PublishSegment: unknown field");
    }
    auto id = task_id();
    auto epoch = get_uint(j, "epoch");
    auto index = get_int(j, "index");
    auto offset = get_int(j, "offset");
    auto size = get_int(j, "size");
    auto metainfo_hex = get_string(j, "metainfo");
    auto seed_ip = get_string(j, "seed_ip");
    auto seed_port = get_int(j, "seed_port");
    if (!id || !epoch || !index || !offset || !size || !metainfo_hex || !seed_ip || !seed_port) {
      return bad("PublishSegment: missing or mistyped field");
    }
    // Bound the work before decoding.
    if (metainfo_hex->size() > 2 * kMaxSegmentMetainfoBytes) {
      return bad("PublishSegment: metainfo too large");
    }
    auto metainfo = from_hex(*metainfo_hex);
    if (!metainfo) return bad("PublishSegment: metainfo is not hex");
    return Command(PublishSegment{*id, *epoch, *index, *offset, *size,
                                  std::string(metainfo->begin(), metainfo->end()), *seed_ip,
                                  *seed_port});
  }
  if (*type == "RenewSeedLease") {
    if (!only_keys(j, {"type", "task_id", "epoch"})) return bad("RenewSeedLease: unknown field");
    auto id = task_id();
    auto epoch = get_uint(j, "epoch");
    if (!id || !epoch) return bad("RenewSeedLease: missing or mistyped task_id or epoch");
    return Command(RenewSeedLease{*id, *epoch});
  }
  if (*type == "TakeOverSeed" || *type == "ReseedTask") {
    const std::string name = *type;
    if (!only_keys(j,
                   {"type", "task_id", "expected_epoch", "new_seeder", "seed_ip", "seed_port"})) {
      return bad(name + ": unknown field");
    }
    auto id = task_id();
    auto epoch = get_uint(j, "expected_epoch");
    auto seeder = get_string(j, "new_seeder");
    auto seed_ip = get_string(j, "seed_ip");
    auto seed_port = get_int(j, "seed_port");
    if (!id || !epoch || !seeder || !seed_ip || !seed_port) {
      return bad(name + ": missing or mistyped field");
    }
    if (name == "ReseedTask") {
      return Command(ReseedTask{*id, *epoch, *seeder, *seed_ip, *seed_port});
    }
    return Command(TakeOverSeed{*id, *epoch, *seeder, *seed_ip, *seed_port});
  }
  if (*type == "RestartTask") {
    if (!only_keys(j, {"type", "task_id", "seeder"})) return bad("RestartTask: unknown field");
    auto id = task_id();
    auto seeder = get_string(j, "seeder");
    if (!id || !seeder) return bad("RestartTask: missing or mistyped task_id or seeder");
    return Command(RestartTask{*id, *seeder});
  }
  if (*type == "KvPut") {
    if (!only_keys(j, {"type", "key", "value", "cas"})) return bad("KvPut: unknown field");
    auto key = get_string(j, "key");
    auto value_b64 = get_string(j, "value");
    if (!key || !value_b64) return bad("KvPut: missing or mistyped key or value");
    // Bound the work before decoding: base64 of the largest value.
    if (value_b64->size() > (kMaxKvValueBytes + 2) / 3 * 4) return bad("KvPut: value too large");
    auto value = from_base64(*value_b64);
    if (!value) return bad("KvPut: value is not canonical base64");
    KvPut c{*key, std::move(*value), std::nullopt};
    if (!read_cas(j, c.cas)) return bad("KvPut: cas is not an unsigned integer");
    return Command(std::move(c));
  }
  if (*type == "KvDelete") {
    if (!only_keys(j, {"type", "key", "cas"})) return bad("KvDelete: unknown field");
    auto key = get_string(j, "key");
    if (!key) return bad("KvDelete: missing or mistyped key");
    KvDelete c{*key, std::nullopt};
    if (!read_cas(j, c.cas)) return bad("KvDelete: cas is not an unsigned integer");
    return Command(std::move(c));
  }
  if (*type == "IssueCertificate") {
    if (!only_keys(j, {"type", "node_id", "role", "not_before", "not_after"})) {
      return bad("IssueCertificate: unknown field");
    }
    auto node = get_string(j, "node_id");
    auto role = get_string(j, "role");
    auto not_before = get_int(j, "not_before");
    auto not_after = get_int(j, "not_after");
    if (!node || !role || !not_before || !not_after) {
      return bad("IssueCertificate: missing or mistyped node_id, role, not_before or not_after");
    }
    return Command(IssueCertificate{*node, *role, *not_before, *not_after});
  }
  if (*type == "RevokeCertificate") {
    if (!only_keys(j, {"type", "node_id", "reason", "revoked_at"})) {
      return bad("RevokeCertificate: unknown field");
    }
    auto node = get_string(j, "node_id");
    auto reason = get_string(j, "reason");
    auto revoked_at = get_int(j, "revoked_at");
    if (!node || !reason || !revoked_at) {
      return bad("RevokeCertificate: missing or mistyped node_id, reason or revoked_at");
    }
    return Command(RevokeCertificate{*node, *reason, *revoked_at});
  }
  return bad("unknown command type");
}

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> base64_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kBase64Alphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr std::array<int8_t, 256> kBase64Values = base64_table();

}  // namespace

const char* command_name(const Command& command) {
  switch (command.index()) {
    case 0:
      return "CreateTask";
    case 1:
      return "MarkTaskReady";
    case 2:
      return "MarkTaskFailed";
    case 3:
      return "RestartTask";
    case 4:
      return "KvPut";
    case 5:
      return "KvDelete";
    case 6:
      return "IssueCertificate";
    case 7:
      return "RevokeCertificate";
    case 8:
      return "PublishSegment";
    case 9:
      return "RenewSeedLease";
    case 10:
      return "TakeOverSeed";
    default:
      return "ReseedTask";
  }
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;  // continuation byte, overlong lead (c0, c1) or beyond U+10FFFF
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3fu);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;  // overlong
    if (cp >= 0xd800 && cp <= 0xdfff) return false;                        // surrogate
    if (cp > 0x10ffff) return false;
    i += n + 1;
  }
  return true;
}

Status validate_kv_key(std::string_view key) {
  if (key.empty()) return bad("kv key is empty");
  if (key.size() > kMaxKvKeyBytes) {
    return bad("kv key of " + std::to_string(key.size()) + " bytes exceeds " +
               std::to_string(kMaxKvKeyBytes));
  }
  if (key.find('\0') != std::string_view::npos) return bad("kv key contains NUL");
  if (!is_valid_utf8(key)) return bad("kv key is not valid UTF-8");
  return {};
}

bool is_client_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxClientIdChars && is_lower_hex(id);
}

bool is_node_id(std::string_view id) { return id.size() == 64 && is_lower_hex(id); }

bool is_certificate_role(std::string_view role) {
  return role == "peer" || role == "supernode" || role == "admin";
}

Status validate_revoke_reason(std::string_view reason) {
  if (reason.size() > kMaxRevokeReasonBytes) {
    return bad("revocation reason of " + std::to_string(reason.size()) + " bytes exceeds " +
               std::to_string(kMaxRevokeReasonBytes));
  }
  if (!is_valid_utf8(reason)) return bad("revocation reason is not valid UTF-8");
  for (char ch : reason) {
    auto c = static_cast<uint8_t>(ch);
    if (c < 0x20 || c == 0x7f) return bad("revocation reason contains a control character");
  }
  return {};
}

Status validate_command(const Command& command) { return std::visit(Validator{}, command); }

Status validate_proposal(const Proposal& proposal) {
  if (!is_client_id(proposal.client_id)) return bad("client_id is not 1..64 lowercase hex");
  return validate_command(proposal.command);
}

std::string encode_proposal(const Proposal& p) {
  json j = {{"v", kCommandVersion},
            {"client_id", p.client_id},
            {"seq", p.seq},
            {"command", std::visit(Encoder{}, p.command)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Proposal> decode_proposal(std::string_view bytes) {
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("not JSON");
  if (!j.is_object()) return bad("not a JSON object");
  auto version = get_int(j, "v");
  if (!version) return bad("missing version");
  if (*version != kCommandVersion) return bad("unsupported version " + std::to_string(*version));
  if (!only_keys(j, {"v", "client_id", "seq", "command"})) return bad("unknown field");
  auto client_id = get_string(j, "client_id");
  if (!client_id) return bad("missing or mistyped client_id");
  auto seq = get_uint(j, "seq");
  if (!seq) return bad("missing or mistyped seq");
  auto it = j.find("command");
  if (it == j.end()) return bad("missing command");
  auto command = decode_command_object(*it);
  if (!command.ok()) return command.error();
  Proposal p{std::move(*client_id), *seq, std::move(*command)};
  if (Status st = validate_proposal(p); !st.ok()) return st.error();
  return p;
}

std::string to_base64(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(kBase64Alphabet[(v >> 6) & 63]);
    out.push_back(kBase64Alphabet[v & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t v = at(i) << 16;
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out += "==";
  } else if (rest == 2) {
    uint32_t v = (at(i) << 16) | (at(i + 1) << 8);
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(kBase64Alphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> from_base64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    size_t pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      uint32_t d = 0;
      if (k < 4 - pad) {
        int8_t x = kBase64Values[static_cast<uint8_t>(text[i + k])];
        if (x < 0) return std::nullopt;
        d = static_cast<uint32_t>(x);
      }
      v = (v << 6) | d;
    }
    out.push_back(static_cast<char>((v >> 16) & 0xff));
    if (pad == 2) {
      if ((v & 0xffff) != 0) return std::nullopt;  // non-zero unused bits: not canonical
      break;
    }
    out.push_back(static_cast<char>((v >> 8) & 0xff));
    if (pad == 1) {
      if ((v & 0xff) != 0) return std::nullopt;
      break;
    }
    out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

}  // namespace starling::tracker

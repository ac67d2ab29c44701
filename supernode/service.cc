#include "supernode/service.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "common/hex.h"
#include "common/task_id.h"
#include "crypto/base64.h"
#include "crypto/x509.h"
#include "mesh/rpc.h"
#include "supernode/fetch/origin_fetch.h"
#include "supernode/scheduler.h"

namespace starling::supernode {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One line per event on stderr, written with a single call so lines from threads do not mix.
__attribute__((format(printf, 1, 2))) void log_line(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "supernode: %s\n", buf);
}

Error bad_message(const std::string& what) {
  return make_error(mesh::kErrBadMessage, "bad request: " + what);
}

// Field readers for untrusted params: they check the JSON type before reading, so nothing
// here throws.
Result<std::string> need_string(const json& p, const char* key) {
  auto it = p.find(key);
  if (it == p.end() || !it->is_string()) {
    return bad_message(std::string("\"") + key + "\" must be a string");
  }
  return it->get<std::string>();
}

Result<std::optional<std::string>> opt_string(const json& p, const char* key) {
  auto it = p.find(key);
  if (it == p.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return bad_message(std::string("\"") + key + "\" must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::vector<std::string>> opt_strings(const json& p, const char* key) {
  std::vector<std::string> out;
  auto it = p.find(key);
  if (it == p.end() || it->is_null()) return out;
  if (!it->is_array()) return bad_message(std::string("\"") + key + "\" must be a list");
  for (const auto& v : *it) {
    if (!v.is_string()) return bad_message(std::string("\"") + key + "\" must hold strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<int64_t> need_count(const json& p, const char* key, int64_t max) {
  auto it = p.find(key);
  bool ok = it != p.end() && it->is_number_integer();
  if (ok && it->is_number_unsigned()) {
    auto v = it->get<uint64_t>();
    if (v <= static_cast<uint64_t>(max)) return static_cast<int64_t>(v);
  } else if (ok) {
    auto v = it->get<int64_t>();
    if (v >= 0 && v <= max) return v;
  }
  return bad_message(std::string("\"") + key + "\" must be an integer in 0.." +
                     std::to_string(max));
}

bool is_lower_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<TaskId> need_task_id(const json& p) {
  auto s = need_string(p, "task_id");
  if (!s.ok()) return s.error();
  if (!is_lower_hex64(*s)) return bad_message("\"task_id\" must be 64 lowercase hex characters");
  return TaskId(*s);
}

// "Name: value" with no line breaks (they would let a caller inject headers into the origin
// request) and a non-empty name.
bool valid_header(const std::string& h) {
  auto colon = h.find(':');
  if (colon == std::string::npos || colon == 0) return false;
  for (char c : h) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

bool valid_ip(const std::string& ip) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, ip.c_str(), buf) == 1 || inet_pton(AF_INET6, ip.c_str(), buf) == 1;
}

// The X25519 (Noise) form of an Ed25519 key, or nullopt for a key that is not a valid point.
// Not crypto::x25519_public_from_ed25519, which aborts on an invalid point: callers here pass
// untrusted keys.
std::optional<crypto::X25519Key> noise_key_of(const crypto::PublicKey& pk) {
  crypto::X25519Key x{};
  if (crypto_sign_ed25519_pk_to_curve25519(x.data(), pk.data()) != 0) return std::nullopt;
  return x;
}

// Which roles may call which method (Enroll is open to any PSK holder and not listed).
bool role_permits(crypto::Role role, const std::string& method) {
  switch (role) {
    case crypto::Role::kSupernode:
      return true;
    case crypto::Role::kAdmin:
      if (method == "Status" || method.rfind("Kv", 0) == 0 || method == "Revoke" ||
          method == "Certificates") {
        return true;
      }
      [[fallthrough]];
    case crypto::Role::kPeer:
      return method == "RegisterTask" || method == "GetTask" || method == "Announce";
  }
  return false;
}

bool known_method(const std::string& method) {
  return method == "Enroll" || method == "RegisterTask" || method == "GetTask" ||
         method == "Announce" || method == "Status" || method == "KvGet" || method == "KvPut" ||
         method == "KvDelete" || method == "KvList" || method == "Raft" || method == "Propose" ||
         method == "ReadIndex" || method == "Revoke" || method == "Certificates";
}

// kv keys: 1..512 bytes, no NUL; values up to 512 KiB (tracker/command.h).
constexpr size_t kMaxKeyBytes = 512;
constexpr size_t kMaxValueBytes = 512 * 1024;

Result<std::string> need_key(const json& p) {
  auto key = need_string(p, "key");
  if (!key.ok()) return key;
  if (key->empty() || key->size() > kMaxKeyBytes || key->find('\0') != std::string::npos) {
    return bad_message("\"key\" must be 1..512 bytes without NUL");
  }
  return key;
}

// "cas": absent or null = unconditional; 0 = only if absent; n = only at modify index n.
Result<std::optional<uint64_t>> opt_cas(const json& p) {
  auto it = p.find("cas");
  if (it == p.end() || it->is_null()) return std::optional<uint64_t>();
  if (!it->is_number_unsigned()) return bad_message("\"cas\" must be a modify index (>= 0)");
  return std::optional<uint64_t>(it->get<uint64_t>());
}

bool opt_bool(const json& p, const char* key) {
  auto it = p.find(key);
  return it != p.end() && it->is_boolean() && it->get<bool>();
}

json kv_json(const tracker::KvRecord& r) {
  return {{"key", r.key},
          {"value", r.value},
          {"create_index", r.create_index},
          {"modify_index", r.modify_index}};
}

// The tracker's result text of an applied command (JSON it produced itself).
json parse_result(const std::string& text) {
  auto j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? json::object() : j;
}

constexpr char kNeedCertificate[] =
    "this method needs a certificate issued by the network CA; enrol first";

// "node <id> was revoked: <reason>" (the tracker's own wording for kErrCertRevoked).
std::string revoked_message(const std::string& node, const tracker::Revocation& r) {
  return "node " + node + " was revoked" +
         (r.reason.empty() ? std::string(" (no reason given)") : ": " + r.reason);
}

json certificate_json(const tracker::CertificateRecord& c) {
  json out = {{"node_id", c.node_id}, {"revoked", c.revoked()}};
  if (c.issued_index.get() != 0) {
    out["role"] = c.role;
    out["not_before"] = c.not_before;
    out["not_after"] = c.not_after;
    out["issued_index"] = c.issued_index.get();
  }
  if (c.revocation) {
    out["revoked_at"] = c.revocation->revoked_at;
    out["reason"] = c.revocation->reason;
    out["revoked_index"] = c.revocation->index.get();
  }
  return out;
}

}  // namespace

SupernodeService::SupernodeService(ServiceConfig config, ClusterLog& log,
                                   tracker::TrackerStateMachine& tracker,
                                   peer::TorrentEngine& engine)
    : config_(std::move(config)),
      node_id_(crypto::node_id_of(config_.node_key.public_key)),
      log_(log),
      tracker_(tracker),
      engine_(engine) {}

SupernodeService::~SupernodeService() { stop(); }

void SupernodeService::stop() {
  std::list<Worker> workers;
  {
    std::lock_guard lock(workers_mu_);
    stopping_ = true;
    abort_ = true;
    workers.swap(workers_);
  }
  for (auto& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
}

std::string SupernodeService::content_path(const TaskId& task) const {
  return (fs::path(config_.data_dir) / "tasks" / task.get() / "content").string();
}

void SupernodeService::resume() {
  std::lock_guard lock(workers_mu_);
  if (stopping_) return;
  Worker& w = workers_.emplace_back();
  w.thread = std::thread([this, &w] {
    resume_tasks();
    w.done = true;
  });
}

void SupernodeService::resume_tasks() {
  auto tasks = tracker_.list_tasks();
  if (!tasks.ok()) {
    log_line("cannot list tasks: %s", tasks.error().message.c_str());
    return;
  }
  for (const auto& t : *tasks) {
    if (abort_) return;
    const char* id = t.task_id.get().c_str();
    if (t.seeder != node_id_.get()) continue;  // another member fetches and seeds it
    if (t.state == tracker::TaskState::kFetching) {
      log_line("task %s: origin fetch interrupted by a restart; marking failed", id);
      fail_task(t.task_id, make_error(kErrInterrupted,
                                      "the origin fetch was interrupted by a supernode restart; "
                                      "register the task again"));
      continue;
    }
    if (t.state != tracker::TaskState::kReady) continue;
    std::string path = content_path(t.task_id);
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    // TODO: re-hash on start (or keep a verified marker); the size check catches a missing or
    // truncated file, not a corrupted one (peers would still reject its pieces).
    if (ec || size != static_cast<uintmax_t>(t.size)) {
      log_line("task %s: content %s missing or wrong size; marking failed", id, path.c_str());
      fail_task(t.task_id, make_error(kErrContentMissing,
                                      "the supernode lost the content of "
                                      "this task; register the task again"));
      continue;
    }
    Status st = engine_.add_seed(t.task_id, t.metainfo, path);
    if (!st.ok()) {
      log_line("task %s: re-seeding failed: %s", id, st.error().message.c_str());
      continue;
    }
    log_line("task %s: seeding (resumed, %lld bytes)", id, static_cast<long long>(t.size));
  }
}

Result<json> SupernodeService::handle(const mesh::RemotePeer& from, const std::string& method,
                                      const json& params) {
  if (!params.is_object()) return bad_message("params must be an object");
  if (!known_method(method)) {
    return make_error(mesh::kErrUnknownMethod, "unknown method \"" + method + "\"");
  }
  try {
    if (method == "Enroll") return enroll(from, params);
    auto caller = authenticate(from);
    if (!caller.ok()) return caller.error();
    if (!role_permits(caller->role, method)) {
      return make_error(kErrForbidden, std::string("a ") + crypto::role_name(caller->role) +
                                           " certificate does not permit " + method);
    }
    if (method == "RegisterTask") return register_task(params);
    if (method == "GetTask") return get_task(params);
    if (method == "Announce") return announce(*caller, params);
    if (method == "Status") return status();
    if (method.rfind("Kv", 0) == 0) return kv(method, params);
    if (method == "Revoke") return revoke(*caller, params);
    if (method == "Certificates") return certificates(params);
    if (auto member = log_.handle(method, params)) return std::move(*member);
  } catch (const std::exception& e) {
    // The readers above check every type, so this is a bug; answer rather than crash.
    log_line("internal error in %s: %s", method.c_str(), e.what());
    return make_error(mesh::kErrBadMessage, std::string("internal error: ") + e.what());
  }
  return make_error(mesh::kErrUnknownMethod, "unknown method \"" + method + "\"");
}

Result<crypto::CertInfo> SupernodeService::authenticate(const mesh::RemotePeer& from) const {
  if (from.payload.empty()) return make_error(kErrUnauthenticated, kNeedCertificate);
  // Checked on every call rather than once per session, so a certificate that expires while
  // its session is open stops working at once. The X.509 work (signature, names, key) is done
  // once per (certificate, session key): every Raft batch is an RPC, and re-verifying was
  // 40-55 % of a supernode's CPU. A remembered certificate is re-checked only against the
  // clock; outside its validity (boundaries included) the full check runs and gives its error.
  const int64_t now = unix_now();
  std::string cache_key = from.payload;
  cache_key.append(reinterpret_cast<const char*>(from.static_key.data()), from.static_key.size());
  std::optional<crypto::CertInfo> remembered;
  {
    std::lock_guard lock(verified_mu_);
    auto it = verified_.find(cache_key);
    if (it != verified_.end() && it->second.not_before < now && now < it->second.not_after) {
      remembered = it->second;
    }
  }
  Result<crypto::CertInfo> info =
      remembered
          ? Result<crypto::CertInfo>(*remembered)
          : crypto::verify_session_certificate(config_.ca_pem, from.payload, from.static_key, now);
  if (!info.ok()) {
    return make_error(kErrUnauthenticated,
                      std::string(kNeedCertificate) + " (" + info.error().message + ")");
  }
  if (!remembered) {
    std::lock_guard lock(verified_mu_);
    if (verified_.size() >= kMaxVerifiedCertificates) verified_.clear();
    verified_.emplace(std::move(cache_key), *info);
  }
  // A revoked node is refused from the moment this replica applied the revocation, on open
  // sessions too. The lookup is in memory: it never waits for the tracker's disk.
  auto revoked = tracker_.revocation(info->node.get());
  if (!revoked.ok()) return revoked.error();
  if (*revoked) {
    const tracker::Revocation& r = **revoked;
    return make_error(kErrUnauthenticated,
                      "the certificate of node " + info->node.get() +
                          " is no longer accepted (node revoked" +
                          (r.reason.empty() ? std::string() : ": " + r.reason) + ")");
  }
  return info;
}

Result<json> SupernodeService::enroll(const mesh::RemotePeer& from, const json& params) {
  auto key_hex = need_string(params, "public_key");
  if (!key_hex.ok()) return key_hex.error();
  auto role = need_string(params, "role");
  if (!role.ok()) return role.error();
  if (*role != "peer") return bad_message("role must be \"peer\"");
  auto key = from_hex(*key_hex);
  if (!key || key->size() != 32) {
    return bad_message("\"public_key\" must be 64 hex characters (an Ed25519 public key)");
  }
  crypto::PublicKey pk{};
  std::copy(key->begin(), key->end(), pk.begin());
  auto x = noise_key_of(pk);
  if (!x) {
    return make_error(kErrKeyMismatch,
                      "enrolment refused: the public key is not a valid "
                      "Ed25519 key");
  }
  if (sodium_memcmp(x->data(), from.static_key.data(), x->size()) != 0) {
    return make_error(kErrKeyMismatch,
                      "enrolment refused: the public key does not match the "
                      "caller's mesh key");
  }
  const std::string node = crypto::node_id_of(pk).get();
  // Fast refusal from this replica; the state machine refuses again (deterministically) if the
  // revocation committed but has not reached this member yet.
  auto revoked = tracker_.revocation(node);
  if (!revoked.ok()) return revoked.error();
  if (*revoked) return make_error(kErrEnrollRevoked, revoked_message(node, **revoked));
  const int64_t now = unix_now();
  auto leaf = crypto::issue_leaf(config_.ca_key, config_.ca_pem, pk, crypto::Role::kPeer, now,
                                 kLeafValiditySeconds);
  if (!leaf.ok()) return leaf.error();
  // The leaf leaves this process only once its issuance is committed: every certificate a
  // supernode hands out is on record on a majority of members.
  auto issued = log_.propose(tracker::IssueCertificate{node, crypto::role_name(crypto::Role::kPeer),
                                                       now, now + kLeafValiditySeconds});
  if (!issued.ok()) {
    if (issued.error().code == tracker::kErrCertRevoked) {
      return make_error(kErrEnrollRevoked, issued.error().message);
    }
    log_line("enrolment of %s not recorded: %s", node.c_str(), issued.error().message.c_str());
    return issued.error();
  }
  log_line("enrolled peer %s from %s", node.c_str(), from.address.c_str());
  return json{{"cert_pem", *leaf}, {"ca_pem", config_.ca_pem}};
}

Result<json> SupernodeService::revoke(const crypto::CertInfo& caller, const json& params) {
  auto node = need_string(params, "node_id");
  if (!node.ok()) return node.error();
  if (!is_lower_hex64(*node)) return bad_message("\"node_id\" must be 64 lowercase hex characters");
  auto reason = opt_string(params, "reason");
  if (!reason.ok()) return reason.error();
  const std::string why = reason->value_or("");
  if (Status st = tracker::validate_revoke_reason(why); !st.ok()) {
    return bad_message("\"reason\" must be at most 256 bytes of UTF-8 on one line");
  }
  auto result = log_.propose(tracker::RevokeCertificate{*node, why, unix_now()});
  if (!result.ok()) return result.error();
  json out = parse_result(*result);
  if (out.value("already_revoked", false)) {
    log_line("node %s: already revoked (Revoke by %s %s)", node->c_str(),
             crypto::role_name(caller.role), caller.node.get().c_str());
  } else {
    log_line("node %s revoked by %s %s%s%s", node->c_str(), crypto::role_name(caller.role),
             caller.node.get().c_str(), why.empty() ? "" : ": ", why.c_str());
  }
  return out;
}

Result<json> SupernodeService::certificates(const json& params) {
  if (Status st = read_barrier(params); !st.ok()) return st.error();
  auto list = tracker_.list_certificates();
  if (!list.ok()) return list.error();
  json out = json::array();
  for (const auto& c : *list) out.push_back(certificate_json(c));
  return json{{"certificates", std::move(out)}};
}

Result<json> SupernodeService::register_task(const json& params) {
  auto url = need_string(params, "url");
  if (!url.ok()) return url.error();
  auto digest_text = opt_string(params, "digest");
  if (!digest_text.ok()) return digest_text.error();
  auto headers = opt_strings(params, "headers");
  if (!headers.ok()) return headers.error();
  auto tag = opt_string(params, "tag");
  if (!tag.ok()) return tag.error();
  auto filter = opt_strings(params, "filter");
  if (!filter.ok()) return filter.error();
  for (const auto& h : *headers) {
    if (!valid_header(h)) return bad_message("headers must be \"Name: value\" without line breaks");
  }
  if (Status st = validate_url(*url); !st.ok()) return st.error();

  TaskKey key{*url, std::nullopt, tag->value_or(""), *filter};
  if (*digest_text) {
    auto digest = parse_digest(**digest_text);
    if (!digest.ok()) return digest.error();
    key.digest = *digest;
  }
  auto id = derive_task_id(key);
  if (!id.ok()) return id.error();

  FetchJob job{*id, *url, *headers, std::nullopt};
  if (key.digest) job.sha256 = key.digest->hex;
  json result = {{"task_id", id->get()}};

  auto existing = tracker_.get_task(*id);
  if (!existing.ok()) return existing.error();
  if (!existing->has_value()) {
    // The record shows the URL without its filtered (signed) parameters.
    std::string shown = filter_url(*url, *filter);
    std::optional<std::string> digest;
    if (key.digest) digest = key.digest->str();
    auto index = log_.propose(tracker::CreateTask{*id, shown, digest, unix_now(), node_id_.get()});
    if (!index.ok()) {
      // Another caller created it between our read and our proposal: it owns the fetch.
      if (index.error().code == tracker::kErrTaskExists) return result;
      return index.error();
    }
    log_line("task %s registered url=%s", id->get().c_str(), shown.c_str());
    start_worker(std::move(job));
    return result;
  }
  if ((*existing)->state == tracker::TaskState::kFailed) {
    auto index = log_.propose(tracker::RestartTask{*id, node_id_.get()});
    if (!index.ok()) {
      if (index.error().code == tracker::kErrBadTransition) return result;  // restarted already
      return index.error();
    }
    log_line("task %s restarted url=%s (was %s)", id->get().c_str(), (*existing)->url.c_str(),
             (*existing)->error ? (*existing)->error->code.c_str() : "failed");
    start_worker(std::move(job));
  }
  // fetching or ready: the running fetch (or the seed) serves this caller too.
  return result;
}

std::optional<int64_t> SupernodeService::origin_bytes(const TaskId& task) const {
  std::lock_guard lock(origin_mu_);
  auto it = origin_bytes_.find(task);
  if (it == origin_bytes_.end()) return std::nullopt;
  return it->second;
}

Status SupernodeService::read_barrier(const json& params) {
  if (opt_bool(params, "stale")) return {};
  return log_.read_barrier();
}

Result<json> SupernodeService::get_task(const json& params) {
  auto id = need_task_id(params);
  if (!id.ok()) return id.error();
  if (Status st = read_barrier(params); !st.ok()) return st.error();
  auto rec = tracker_.get_task(*id);
  if (!rec.ok()) return rec.error();
  if (!rec->has_value()) return make_error(kErrTaskUnknownRpc, "unknown task " + id->get());
  const tracker::TaskRecord& t = **rec;
  json out = {
      {"task_id", t.task_id.get()}, {"url", t.url}, {"state", tracker::task_state_name(t.state)}};
  if (t.state == tracker::TaskState::kReady) {
    out["size"] = t.size;
    out["sha256"] = t.sha256;
    out["metainfo"] = crypto::base64_encode(t.metainfo);
  }
  if (t.state == tracker::TaskState::kFailed && t.error) {
    out["error"] = {{"code", t.error->code}, {"message", t.error->message}};
  }
  if (auto bytes = origin_bytes(t.task_id)) out["origin_bytes"] = *bytes;
  return out;
}

Result<json> SupernodeService::announce(const crypto::CertInfo& caller, const json& params) {
  auto id = need_task_id(params);
  if (!id.ok()) return id.error();
  auto node = need_string(params, "node_id");
  if (!node.ok()) return node.error();
  if (!is_lower_hex64(*node)) return bad_message("\"node_id\" must be 64 lowercase hex characters");
  if (*node != caller.node.get()) {
    return make_error(kErrForbidden, "cannot announce as node " + *node +
                                         ": the caller's certificate is for node " +
                                         caller.node.get());
  }
  auto ip = need_string(params, "ip");
  if (!ip.ok()) return ip.error();
  if (!valid_ip(*ip)) return bad_message("\"ip\" must be an IPv4 or IPv6 address");
  auto port = need_count(params, "port", 65535);
  if (!port.ok()) return port.error();
  if (*port == 0) return bad_message("\"port\" must be in 1..65535");
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto done = need_count(params, "done_bytes", kMax);
  if (!done.ok()) return done.error();
  auto total = need_count(params, "total_bytes", kMax);
  if (!total.ok()) return total.error();
  auto uploaded = need_count(params, "uploaded_bytes", kMax);
  if (!uploaded.ok()) return uploaded.error();

  auto rec = tracker_.get_task(*id);
  if (!rec.ok()) return rec.error();
  if (!rec->has_value()) return make_error(kErrTaskUnknownRpc, "unknown task " + id->get());
  bool ready = (*rec)->state == tracker::TaskState::kReady;

  // The swarm entry is the certificate's node, so one node cannot announce (or poison the
  // peer list) as another; the parameter is kept for the wire format and must agree.
  const NodeId& requester = caller.node;
  std::vector<Candidate> candidates;
  {
    std::lock_guard lock(swarm_mu_);
    auto now = SwarmClock::now();
    swarm_.expire(now);
    swarm_.announce(
        Announcement{*id, requester, *ip, static_cast<uint16_t>(*port), *done, *total, *uploaded},
        now);
    for (const auto& m : swarm_.members(*id, now)) {
      // A revoked node's announcements stay in the soft state until they expire; nobody is
      // sent to it meanwhile.
      auto revoked = tracker_.is_revoked(m.node.get());
      if (!revoked.ok() || *revoked) continue;
      candidates.push_back(
          Candidate{m.node, m.ip, m.port, m.done_bytes, m.uploaded_bytes, m.complete()});
    }
  }
  json peers = json::array();
  size_t limit = kMaxAnnouncePeers;
  const tracker::TaskRecord& task = **rec;
  auto seeder_revoked = tracker_.is_revoked(task.seeder);
  if (ready && requester.get() != task.seeder && task.seed_port > 0 && seeder_revoked.ok() &&
      !*seeder_revoked) {
    peers.push_back(
        {{"node_id", task.seeder}, {"ip", task.seed_ip}, {"port", task.seed_port}, {"seed", true}});
    --limit;
  }
  for (const auto& c : rank(requester, std::move(candidates), limit)) {
    peers.push_back({{"node_id", c.node.get()}, {"ip", c.ip}, {"port", c.port}, {"seed", c.seed}});
  }
  return json{{"peers", std::move(peers)}};
}

Result<json> SupernodeService::status() {
  auto tasks = tracker_.list_tasks();
  if (!tasks.ok()) return tasks.error();
  json list = json::array();
  for (const auto& t : *tasks) {
    list.push_back({{"task_id", t.task_id.get()},
                    {"url", t.url},
                    {"state", tracker::task_state_name(t.state)},
                    {"size", t.size}});
  }
  size_t peers;
  {
    std::lock_guard lock(swarm_mu_);
    peers = swarm_.live_nodes(SwarmClock::now());
  }
  auto keys = tracker_.kv_count();
  if (!keys.ok()) return keys.error();
  return json{{"node_id", node_id_.get()}, {"role", "supernode"},
              {"tasks", std::move(list)},  {"peers", peers},
              {"kv_keys", *keys},          {"raft", log_.status()}};
}

Result<json> SupernodeService::kv(const std::string& method, const json& params) {
  if (method == "KvList") {
    auto prefix = opt_string(params, "prefix");
    if (!prefix.ok()) return prefix.error();
    if (Status st = read_barrier(params); !st.ok()) return st.error();
    auto items = tracker_.kv_list(prefix->value_or(""));
    if (!items.ok()) return items.error();
    json out = json::array();
    for (const auto& r : *items) out.push_back(kv_json(r));
    return json{{"items", std::move(out)}};
  }
  auto key = need_key(params);
  if (!key.ok()) return key.error();
  if (method == "KvGet") {
    if (Status st = read_barrier(params); !st.ok()) return st.error();
    auto record = tracker_.kv_get(*key);
    if (!record.ok()) return record.error();
    if (!*record) return make_error(tracker::kErrKeyUnknown, "key '" + *key + "' not found");
    return kv_json(**record);
  }
  auto cas = opt_cas(params);
  if (!cas.ok()) return cas.error();
  if (method == "KvPut") {
    auto value = need_string(params, "value");
    if (!value.ok()) return value.error();
    if (value->size() > kMaxValueBytes) return bad_message("\"value\" is larger than 512 KiB");
    auto result = log_.propose(tracker::KvPut{*key, *value, *cas});
    if (!result.ok()) return result.error();
    return parse_result(*result);
  }
  auto result = log_.propose(tracker::KvDelete{*key, *cas});  // KvDelete
  if (!result.ok()) return result.error();
  return parse_result(*result);
}

void SupernodeService::start_worker(FetchJob job) {
  std::lock_guard lock(workers_mu_);
  if (stopping_) {
    // Shutting down: the task stays "fetching" and resume() marks it interrupted next start.
    return;
  }
  // Reap finished workers so the list does not grow with every task.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  Worker& w = workers_.emplace_back();
  w.thread = std::thread([this, &w, job = std::move(job)] {
    run_worker(job);
    w.done = true;
  });
}

void SupernodeService::fail_task(const TaskId& task, const Error& error) {
  auto index = log_.propose(tracker::MarkTaskFailed{task, error.code, error.message});
  if (!index.ok()) {
    log_line("task %s: cannot record failure: %s", task.get().c_str(),
             index.error().message.c_str());
  }
}

void SupernodeService::run_worker(const FetchJob& job) {
  const char* id = job.task.get().c_str();
  auto started = std::chrono::steady_clock::now();
  auto fail = [&](const Error& e) {
    log_line("task %s failed: %s: %s", id, e.code.c_str(), e.message.c_str());
    fail_task(job.task, e);
  };

  std::string path = content_path(job.task);
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) {
    fail(make_error(kErrOriginIo, "cannot create " + fs::path(path).parent_path().string() + ": " +
                                      ec.message()));
    return;
  }

  int64_t base = origin_bytes(job.task).value_or(0);
  FetchRequest req;
  req.url = job.url;
  req.headers = job.headers;
  req.sha256 = job.sha256;
  req.output_path = path;
  req.abort = &abort_;
  req.on_progress = [this, &job, base](int64_t done, int64_t) {
    std::lock_guard lock(origin_mu_);
    origin_bytes_[job.task] = base + done;
  };
  log_line("task %s: fetching from origin", id);
  auto fetched = fetch_to_file(req);
  if (!fetched.ok()) {
    if (abort_) {
      log_line("task %s: origin fetch aborted by shutdown", id);
      return;  // stays "fetching"; resume() marks it interrupted on the next start
    }
    fail(fetched.error());
    return;
  }
  {
    std::lock_guard lock(origin_mu_);
    origin_bytes_[job.task] = base + fetched->size;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  log_line("task %s: fetched %lld bytes in %.3f s", id, static_cast<long long>(fetched->size),
           secs);

  auto metainfo = peer::build_metainfo(path, config_.ca_pem, 0);
  if (!metainfo.ok()) {
    fail(make_error(kErrSeed, "cannot build metainfo: " + metainfo.error().message));
    return;
  }
  if (Status st = engine_.add_seed(job.task, *metainfo, path); !st.ok()) {
    fail(make_error(kErrSeed, "cannot seed: " + st.error().message));
    return;
  }
  auto index = log_.propose(tracker::MarkTaskReady{
      job.task, fetched->size, fetched->sha256, *metainfo, config_.listen_ip, engine_.ssl_port()});
  if (!index.ok()) {
    log_line("task %s: cannot record ready: %s", id, index.error().message.c_str());
    return;
  }
  log_line("task %s: seeding (%lld bytes, sha256 %s)", id, static_cast<long long>(fetched->size),
           fetched->sha256.c_str());
}

}  // namespace starling::supernode

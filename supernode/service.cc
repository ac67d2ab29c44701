#include "supernode/service.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <unordered_map>

#include "common/hex.h"
#include "common/task_id.h"
#include "crypto/base64.h"
#include "crypto/hash.h"
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

// Whether GetTask and Announce hand out the task's seeder's data endpoint: as soon as it has
// published a segment, unless it was revoked.
bool seed_listed(const tracker::TrackerStateMachine& tracker, const tracker::TaskRecord& t) {
  if (t.segments.empty() || t.seed_ip.empty() || t.seed_port <= 0 || t.seed_port > 65535) {
    return false;
  }
  auto revoked = tracker.is_revoked(t.seeder);
  return revoked.ok() && !*revoked;
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
          method == "Certificates" || method == "MemberAdd" || method == "MemberRemove") {
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
         method == "ReadIndex" || method == "Revoke" || method == "Certificates" ||
         method == "MemberAdd" || method == "MemberRemove" || method == "ChangeMembership";
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
      engine_(engine),
      seeders_(config_.seed_lease_timeout) {}

SupernodeService::~SupernodeService() { stop(); }

void SupernodeService::stop() {
  std::list<Worker> workers;
  {
    std::lock_guard lock(workers_mu_);
    stopping_ = true;
    abort_ = true;
    for (auto& w : workers_) w.abort = true;
    workers.swap(workers_);
  }
  if (lease_watch_.joinable()) lease_watch_.join();
  for (auto& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
}

std::string SupernodeService::task_dir(const TaskId& task) const {
  return (fs::path(config_.data_dir) / "tasks" / task.get()).string();
}

std::string SupernodeService::segment_path(const TaskId& task, int64_t index) const {
  return (fs::path(task_dir(task)) / ("seg-" + std::to_string(index))).string();
}

void SupernodeService::resume() {
  std::lock_guard lock(workers_mu_);
  if (stopping_) return;
  Worker& w = workers_.emplace_back();
  w.thread = std::thread([this, &w] {
    resume_tasks();
    w.done = true;
  });
  if (!lease_watch_.joinable()) lease_watch_ = std::thread([this] { watch_leases(); });
}

void SupernodeService::resume_tasks() {
  auto tasks = tracker_.list_tasks();
  if (!tasks.ok()) {
    log_line("cannot list tasks: %s", tasks.error().message.c_str());
    return;
  }
  // Seeding what the local replica says at once is harmless even if it is stale (another member
  // seeding the same bytes too); failing a task is not: one whose files are gone here is failed
  // only once this member has caught up with the log (while it was down another member may have
  // re-seeded it: ReseedTask).
  std::vector<TaskId> lost;
  for (const auto& t : *tasks) {
    if (abort_) return;
    const char* id = t.task_id.get().c_str();
    if (t.seeder != node_id_.get()) continue;  // another member fetches and seeds it
    if (t.state == tracker::TaskState::kFetching) {
      // Our lease is not renewed while we were down: the leader hands the fetch over (to us
      // again if we lead) once it expires, and the new holder resumes after the published
      // segments. Taking it back here without a new epoch could race that takeover.
      log_line("task %s: origin fetch interrupted by a restart; the leader will hand it over", id);
      continue;
    }
    if (t.state != tracker::TaskState::kReady) continue;
    // TODO: re-hash on start (or keep a verified marker); the size check catches a missing or
    // truncated file, not a corrupted one (peers would still reject its pieces).
    const bool present = std::all_of(t.segments.begin(), t.segments.end(), [&](const auto& seg) {
      std::error_code ec;
      const std::string path = segment_path(t.task_id, seg.index);
      auto size = fs::file_size(path, ec);
      if (ec || size != static_cast<uintmax_t>(seg.size)) {
        log_line("task %s: segment %s missing or wrong size", id, path.c_str());
        return false;
      }
      return true;
    });
    if (!present) {
      lost.push_back(t.task_id);
      continue;
    }
    for (const auto& seg : t.segments) {
      if (Status st = engine_.add_seed(segment_torrent_id(t.task_id, seg.index), seg.metainfo,
                                       segment_path(t.task_id, seg.index));
          !st.ok()) {
        log_line("task %s: re-seeding segment %lld failed: %s", id,
                 static_cast<long long>(seg.index), st.error().message.c_str());
      }
    }
    log_line("task %s: seeding (resumed, %lld bytes in %zu segments)", id,
             static_cast<long long>(t.size), t.segments.size());
  }
  if (lost.empty()) return;
  for (bool logged = false; !abort_;) {
    Status st = log_.read_barrier();
    if (st.ok()) break;
    if (!logged) {
      log_line("waiting for the cluster before failing tasks whose content is gone: %s",
               st.error().message.c_str());
      logged = true;
    }
    for (int i = 0; i < 10 && !abort_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  for (const auto& task : lost) {
    if (abort_) return;
    auto rec = tracker_.get_task(task);
    const char* id = task.get().c_str();
    if (!rec.ok() || !rec->has_value() || (*rec)->state != tracker::TaskState::kReady ||
        (*rec)->seeder != node_id_.get()) {
      log_line("task %s: another member seeds it now; not failing it", id);
      continue;
    }
    log_line("task %s: its content is gone; marking failed", id);
    fail_task(task,
              make_error(kErrContentMissing,
                         "the supernode lost the content of this task; register the task again"),
              (*rec)->lease_epoch.get(), /*seed_lost=*/true);
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
    if (method == "MemberAdd" || method == "MemberRemove") {
      return change_member(*caller, method, params);
    }
    if (method == "Raft") {
      // Every live member answers the leader's heartbeats: the leader's sign of a seeder's life.
      std::lock_guard lock(seeders_mu_);
      seeders_.heard(caller->node.get(), std::chrono::steady_clock::now());
    }
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
                                 config_.leaf_validity_seconds);
  if (!leaf.ok()) return leaf.error();
  // The leaf leaves this process only once its issuance is committed: every certificate a
  // supernode hands out is on record on a majority of members.
  auto issued = log_.propose(tracker::IssueCertificate{node, crypto::role_name(crypto::Role::kPeer),
                                                       now, now + config_.leaf_validity_seconds});
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

Result<json> SupernodeService::change_member(const crypto::CertInfo& caller,
                                             const std::string& method, const json& params) {
  auto id = params.find("id");
  if (id == params.end() || !id->is_number_unsigned() || id->get<uint64_t>() == 0 ||
      id->get<uint64_t>() > (uint64_t{1} << 63)) {
    return bad_message("\"id\" must be a member id from 1");
  }
  const raft::NodeId member{id->get<uint64_t>()};
  if (method == "MemberRemove") {
    if (Status st = log_.remove_member(member); !st.ok()) return st.error();
    log_line("member %llu removed by %s %s", static_cast<unsigned long long>(member.get()),
             crypto::role_name(caller.role), caller.node.get().c_str());
    return json::object();
  }
  auto address = need_string(params, "address");
  if (!address.ok()) return address.error();
  auto m = parse_member(std::to_string(member.get()) + "=" + *address);
  if (!m.ok()) return bad_message(m.error().message);
  if (Status st = log_.add_member(*m); !st.ok()) return st.error();
  log_line("member %llu at %s added by %s %s", static_cast<unsigned long long>(member.get()),
           address->c_str(), crypto::role_name(caller.role), caller.node.get().c_str());
  return json::object();
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
  remember_job(job);

  auto existing = tracker_.get_task(*id);
  if (!existing.ok()) return existing.error();
  if (!existing->has_value()) {
    // The record shows the URL without its filtered (signed) parameters.
    std::string shown = filter_url(*url, *filter);
    std::optional<std::string> digest;
    if (key.digest) digest = key.digest->str();
    auto index = log_.propose(
        tracker::CreateTask{*id, shown, digest, unix_now(), node_id_.get(), config_.segment_size});
    if (!index.ok()) {
      // Another caller created it between our read and our proposal: it owns the fetch.
      if (index.error().code == tracker::kErrTaskExists) return result;
      return index.error();
    }
    log_line("task %s registered url=%s", id->get().c_str(), shown.c_str());
    start_worker(std::move(job), parse_result(*index).value("epoch", uint64_t{0}));
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
    start_worker(std::move(job), parse_result(*index).value("epoch", uint64_t{0}));
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
  // "from_segment": n leaves out the segments before n while the task is fetching: a polling
  // peer has those already, and without it every answer would carry every metainfo again (a
  // poll every 300 ms from every peer, growing with the content). A ready answer lists them
  // all: the peer checks that they cover the content.
  int64_t from_segment = 0;
  if (auto it = params.find("from_segment"); it != params.end() && !it->is_null()) {
    auto from = need_count(params, "from_segment", std::numeric_limits<int32_t>::max());
    if (!from.ok()) return from.error();
    from_segment = *from;
  }
  if (Status st = read_barrier(params); !st.ok()) return st.error();
  auto rec = tracker_.get_task(*id);
  if (!rec.ok()) return rec.error();
  if (!rec->has_value()) return make_error(kErrTaskUnknownRpc, "unknown task " + id->get());
  const tracker::TaskRecord& t = **rec;
  json segments = json::array();
  for (const auto& seg : t.segments) {
    if (t.state != tracker::TaskState::kReady && seg.index < from_segment) continue;
    segments.push_back({{"index", seg.index},
                        {"offset", seg.offset},
                        {"size", seg.size},
                        {"metainfo", crypto::base64_encode(seg.metainfo)}});
  }
  json out = {{"task_id", t.task_id.get()},
              {"url", t.url},
              {"state", tracker::task_state_name(t.state)},
              {"segment_size", t.segment_size},
              {"segments", std::move(segments)},
              {"seeder", t.seeder}};
  if (t.state == tracker::TaskState::kReady) {
    out["size"] = t.size;
    out["sha256"] = t.sha256;
  }
  if (t.state == tracker::TaskState::kFailed && t.error) {
    out["error"] = {{"code", t.error->code}, {"message", t.error->message}};
  }
  // So that a peer adds each new segment with the seed already dialed instead of waiting for
  // its next Announce (peer/engine/README.md "Peers known at add time").
  if (seed_listed(tracker_, t)) out["seed"] = {{"ip", t.seed_ip}, {"port", t.seed_port}};
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
  // "segments" (optional for older peers): the segment indices the caller has added.
  std::vector<int64_t> segments;
  if (auto it = params.find("segments"); it != params.end() && !it->is_null()) {
    if (!it->is_array() || it->size() > kMaxAnnounceSegments) {
      return bad_message("\"segments\" must be a list of at most " +
                         std::to_string(kMaxAnnounceSegments) + " segment indices");
    }
    for (const auto& v : *it) {
      const bool in_range =
          v.is_number_unsigned()
              ? v.get<uint64_t>() < kMaxAnnounceSegments
              : v.is_number_integer() && v.get<int64_t>() >= 0 &&
                    static_cast<uint64_t>(v.get<int64_t>()) < kMaxAnnounceSegments;
      if (!in_range) {
        return bad_message("\"segments\" must hold segment indices in 0.." +
                           std::to_string(kMaxAnnounceSegments - 1));
      }
      segments.push_back(v.get<int64_t>());
    }
  }

  auto rec = tracker_.get_task(*id);
  if (!rec.ok()) return rec.error();
  if (!rec->has_value()) return make_error(kErrTaskUnknownRpc, "unknown task " + id->get());

  // The swarm entry is the certificate's node, so one node cannot announce (or poison the
  // peer list) as another; the parameter is kept for the wire format and must agree.
  const NodeId& requester = caller.node;
  std::vector<Candidate> candidates;
  {
    std::lock_guard lock(swarm_mu_);
    auto now = SwarmClock::now();
    swarm_.expire(now);
    swarm_.announce(Announcement{*id, requester, *ip, static_cast<uint16_t>(*port), *done, *total,
                                 *uploaded, std::move(segments)},
                    now);
    for (const auto& m : swarm_.members(*id, now)) {
      // A revoked node's announcements stay in the soft state until they expire; nobody is
      // sent to it meanwhile.
      auto revoked = tracker_.is_revoked(m.node.get());
      if (!revoked.ok() || *revoked) continue;
      candidates.push_back(Candidate{m.node, m.ip, m.port, m.done_bytes, m.uploaded_bytes,
                                     m.complete(), m.segments});
    }
  }
  json peers = json::array();
  size_t limit = kMaxAnnouncePeers;
  const tracker::TaskRecord& task = **rec;
  // The seeder's data endpoint first (pipelining: peers start on segment 0 while it still
  // fetches the rest); it holds every published segment.
  if (requester.get() != task.seeder && seed_listed(tracker_, task)) {
    json published = json::array();
    for (const auto& s : task.segments) published.push_back(s.index);
    peers.push_back({{"node_id", task.seeder},
                     {"ip", task.seed_ip},
                     {"port", task.seed_port},
                     {"seed", task.state == tracker::TaskState::kReady},
                     {"segments", std::move(published)}});
    --limit;
  }
  for (const auto& c : rank(requester, std::move(candidates), limit)) {
    if (c.node.get() == task.seeder && !task.segments.empty()) continue;  // listed above
    peers.push_back({{"node_id", c.node.get()},
                     {"ip", c.ip},
                     {"port", c.port},
                     {"seed", c.seed},
                     {"segments", c.segments}});
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

void SupernodeService::remember_job(const FetchJob& job) {
  std::lock_guard lock(jobs_mu_);
  if (jobs_.size() >= kMaxRememberedJobs) jobs_.clear();
  jobs_[job.task] = job;
}

SupernodeService::FetchJob SupernodeService::job_for(const tracker::TaskRecord& t) const {
  {
    std::lock_guard lock(jobs_mu_);
    auto it = jobs_.find(t.task_id);
    if (it != jobs_.end()) return it->second;
  }
  // Never saw a RegisterTask for it: no headers, and the URL as recorded (without filtered
  // parameters).
  FetchJob job{t.task_id, t.url, {}, std::nullopt};
  if (t.digest && t.digest->rfind("sha256:", 0) == 0) job.sha256 = t.digest->substr(7);
  return job;
}

bool SupernodeService::start_worker(FetchJob job, uint64_t epoch, Work work) {
  std::lock_guard lock(workers_mu_);
  if (stopping_) {
    // Shutting down: the task stays "fetching"; its lease expires and the leader hands it over.
    return false;
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
  for (const auto& w : workers_) {
    if (w.task == job.task) return false;  // one worker per task on a member
  }
  Worker& w = workers_.emplace_back();
  w.task = job.task;
  w.thread = std::thread([this, &w, job = std::move(job), epoch, work] {
    if (work == Work::kFetch) {
      run_worker(job, epoch, w);
    } else {
      run_reseed(job, epoch, w);
    }
    w.done = true;
  });
  return true;
}

bool SupernodeService::busy_with(const TaskId& task) {
  std::lock_guard lock(workers_mu_);
  if (stopping_) return true;
  for (const auto& worker : workers_) {
    if (worker.task == task && !worker.done) return true;
  }
  return false;
}

void SupernodeService::fail_task(const TaskId& task, const Error& error, uint64_t epoch,
                                 bool seed_lost) {
  auto index =
      log_.propose(tracker::MarkTaskFailed{task, error.code, error.message, epoch, seed_lost});
  if (!index.ok()) {
    log_line("task %s: cannot record failure: %s", task.get().c_str(),
             index.error().message.c_str());
  }
}

void SupernodeService::add_origin_bytes(const TaskId& task, int64_t bytes) {
  std::lock_guard lock(origin_mu_);
  origin_bytes_[task] += bytes;
}

namespace {

// Whether the file at `path` is exactly the published segment (same bytes give the same
// metainfo: build_metainfo is deterministic).
bool segment_matches(const std::string& path, const tracker::SegmentRecord& seg,
                     const std::string& ca_pem) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec || size != static_cast<uintmax_t>(seg.size)) return false;
  auto metainfo = peer::build_metainfo(path, ca_pem, 0);
  return metainfo.ok() && *metainfo == seg.metainfo;
}

bool lease_lost(const Error& e) {
  return e.code == tracker::kErrStaleLease || e.code == tracker::kErrBadTransition ||
         e.code == tracker::kErrTaskUnknown;
}

// How long a swarm download of an earlier segment may make no progress before the segment is
// fetched from the origin by Range instead.
constexpr std::chrono::seconds kSwarmStall{4};
// How long after the first peer connected to a swarm download of an earlier segment the pieces
// no connected peer has are taken to be missing from the swarm (bitfields exchanged).
constexpr std::chrono::seconds kBitfieldsKnown{2};

}  // namespace

Status SupernodeService::obtain_segments(const FetchJob& job,
                                         const std::vector<tracker::SegmentRecord>& segments,
                                         int64_t segment_size, Worker& self) {
  // 1. Those on disk already (this member fetched them before, e.g. before a restart) are
  //    seeded; the others are obtained one at a time, the last first: peers complete segments
  //    in order, so the last ones are those they may still be waiting for. (All at once, the
  //    segments every peer has took the link from the one they lacked: a 30 s stall in the
  //    lab's kill9-seeder fault.)
  std::vector<const tracker::SegmentRecord*> pending;
  for (const auto& seg : segments) {
    const TaskId tid = segment_torrent_id(job.task, seg.index);
    const std::string path = segment_path(job.task, seg.index);
    (void)engine_.remove(tid);
    if (segment_matches(path, seg, config_.ca_pem)) {
      if (Status st = engine_.add_seed(tid, seg.metainfo, path); !st.ok()) return st;
      continue;
    }
    std::error_code ec;
    fs::remove(path, ec);
    pending.push_back(&seg);
  }
  std::sort(pending.begin(), pending.end(),
            [](const auto* a, const auto* b) { return a->index > b->index; });
  for (const tracker::SegmentRecord* seg : pending) {
    if (self.abort) return make_error(kErrOriginAborted, "aborted");
    auto from_swarm = swarm_segment(job, *seg, self);
    if (!from_swarm.ok()) return from_swarm.error();
    if (*from_swarm) continue;
    // 2. Not from the swarm: the whole segment from the origin by Range (or the whole body,
    //    discarded around it, without Range), checked against its published metainfo.
    if (Status st = origin_segment(job, *seg, segment_size, self); !st.ok()) return st;
  }
  return {};
}

Result<bool> SupernodeService::swarm_segment(const FetchJob& job, const tracker::SegmentRecord& seg,
                                             Worker& self) {
  const char* id = job.task.get().c_str();
  const TaskId tid = segment_torrent_id(job.task, seg.index);
  const std::string path = segment_path(job.task, seg.index);
  if (!engine_.add_download(tid, seg.metainfo, path, {}).ok()) return false;
  auto drop = [&] {
    (void)engine_.remove(tid);
    std::error_code ec;
    fs::remove(path, ec);
  };
  // Every member hears every peer's announces: connect to the peers that announced the
  // segment. The pieces no peer has come from the origin: at once when no peer announced the
  // segment, else once the swarm made no progress for kSwarmStall.
  // What the origin was asked for so far: nothing, the pieces no connected peer had, or every
  // missing piece.
  enum class Asked { kNothing, kNowhere, kEverything } asked = Asked::kNothing;
  bool from_origin = false;  // some piece came from the origin
  int64_t best = -1;
  std::optional<std::chrono::steady_clock::time_point> peers_since;  // first peer connected
  auto last_progress = std::chrono::steady_clock::now();
  auto last_connect = last_progress - std::chrono::seconds(10);
  for (;;) {
    if (self.abort) {
      (void)engine_.remove(tid);
      return make_error(kErrOriginAborted, "aborted");
    }
    const auto now = std::chrono::steady_clock::now();
    bool announced = true;
    if (now - last_connect >= std::chrono::seconds(1)) {
      last_connect = now;
      std::vector<SwarmMember> members;
      {
        std::lock_guard lock(swarm_mu_);
        members = swarm_.members(job.task, SwarmClock::now());
      }
      announced = false;
      for (const auto& m : members) {
        if (std::find(m.segments.begin(), m.segments.end(), seg.index) != m.segments.end()) {
          announced = true;
          (void)engine_.connect_peer(tid, peer::Endpoint{m.ip, m.port});
        }
      }
    }
    auto progress = engine_.progress(tid);
    if (!progress.ok() || progress->state == peer::TorrentState::kError) {
      drop();
      return false;
    }
    if (progress->total_bytes > 0 && progress->done_bytes >= progress->total_bytes) {
      log_line(from_origin ? "task %s: segment %lld complete, with pieces from the origin"
                           : "task %s: segment %lld obtained from the swarm",
               id, static_cast<long long>(seg.index));
      return true;  // the engine seeds it from now on
    }
    // Connected for a while (bitfields exchanged): what no peer has is needed from the origin
    // whatever the swarm delivers meanwhile, so fetch it now.
    if (progress->num_peers > 0 && !peers_since) peers_since = now;
    if (asked == Asked::kNothing && peers_since && now - *peers_since >= kBitfieldsKnown) {
      asked = Asked::kNowhere;
      auto fill = fill_from_origin(job, seg, tid, /*nowhere_only=*/true, self);
      if (!fill.ok()) {
        (void)engine_.remove(tid);
        return fill.error();
      }
      from_origin = *fill > 0;
      continue;
    }
    if (progress->done_bytes > best) {
      best = progress->done_bytes;
      last_progress = now;
    } else if (now - last_progress >= kSwarmStall || (!announced && asked != Asked::kEverything)) {
      // Still stalled with the origin's pieces: a piece failed its check.
      if (asked == Asked::kEverything) {
        drop();
        return false;
      }
      // The swarm gave what it has; the pieces no peer holds (those a dead seeder sent to
      // nobody) come from the origin, each checked by the engine against the metainfo.
      auto fill = fill_from_origin(job, seg, tid, /*nowhere_only=*/false, self);
      if (!fill.ok()) {
        (void)engine_.remove(tid);
        return fill.error();
      }
      if (*fill < 0) {
        drop();
        return false;
      }
      asked = Asked::kEverything;
      from_origin = from_origin || *fill > 0;
      last_progress = std::chrono::steady_clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Status SupernodeService::origin_segment(const FetchJob& job, const tracker::SegmentRecord& seg,
                                        int64_t segment_size, Worker& self) {
  const char* id = job.task.get().c_str();
  const TaskId tid = segment_torrent_id(job.task, seg.index);
  const std::string path = segment_path(job.task, seg.index);
  log_line("task %s: segment %lld: not available from the swarm; fetching it from the origin", id,
           static_cast<long long>(seg.index));
  SegmentFetchRequest req;
  req.url = job.url;
  req.headers = job.headers;
  // With the task's segment size, [offset, offset + size) is exactly one segment of the fetch.
  req.segment_size = segment_size;
  req.start_offset = seg.offset;
  req.end_offset = seg.offset + seg.size;
  const std::string fetched_path = path + ".range";
  req.segment_path = [&](int64_t) { return fetched_path; };
  req.abort = &self.abort;
  int64_t counted = 0;
  req.on_progress = [&](int64_t bytes) {
    add_origin_bytes(job.task, bytes - counted);
    counted = bytes;
  };
  auto fetched = fetch_segments(req);
  if (!fetched.ok()) return fetched.error();
  std::error_code ec;
  fs::rename(fetched_path, path, ec);
  if (ec) return make_error(kErrOriginIo, "cannot rename " + fetched_path + ": " + ec.message());
  if (!segment_matches(path, seg, config_.ca_pem)) {
    fs::remove(path, ec);
    return make_error(kErrDigestMismatch,
                      "segment " + std::to_string(seg.index) + " of " + job.url +
                          " differs from the one published: the content changed at the origin");
  }
  return engine_.add_seed(tid, seg.metainfo, path);
}

Result<int64_t> SupernodeService::fill_from_origin(const FetchJob& job,
                                                   const tracker::SegmentRecord& seg,
                                                   const TaskId& torrent, bool nowhere_only,
                                                   Worker& self) {
  const char* id = job.task.get().c_str();
  auto missing = engine_.missing_pieces(torrent);
  if (!missing.ok()) return -1;
  const std::vector<int>& pieces = nowhere_only ? missing->nowhere : missing->pieces;
  const int64_t piece_size = missing->piece_size;
  if (pieces.empty()) return 0;
  if (piece_size <= 0 || seg.offset % piece_size != 0 || missing->total_bytes != seg.size) {
    return -1;  // fetch_segments cuts the content at multiples of its segment size
  }
  // One Range request per run of consecutive missing pieces; each piece is handed to the
  // engine as it arrives.
  for (size_t first = 0; first < pieces.size();) {
    size_t last = first;
    while (last + 1 < pieces.size() && pieces[last + 1] == pieces[last] + 1) ++last;
    SegmentFetchRequest req;
    req.url = job.url;
    req.headers = job.headers;
    req.segment_size = piece_size;  // each "segment" of this fetch is one piece
    req.start_offset = seg.offset + pieces[first] * piece_size;
    req.end_offset = seg.offset + std::min<int64_t>((pieces[last] + 1) * piece_size, seg.size);
    req.on_segment_bytes = [&](const FetchedSegment& f, std::string bytes) {
      const auto piece = static_cast<int>((f.offset - seg.offset) / piece_size);
      return engine_.add_piece(torrent, piece, bytes);
    };
    req.abort = &self.abort;
    int64_t counted = 0;
    req.on_progress = [&](int64_t bytes) {
      add_origin_bytes(job.task, bytes - counted);
      counted = bytes;
    };
    auto fetched = fetch_segments(req);
    if (!fetched.ok()) return fetched.error();
    if (!fetched->range_honoured) {
      log_line("task %s: segment %lld: the origin ignores Range; fetching the whole segment", id,
               static_cast<long long>(seg.index));
      return -1;
    }
    first = last + 1;
  }
  log_line("task %s: segment %lld: %zu of %lld pieces fetched from the origin (%s)", id,
           static_cast<long long>(seg.index), pieces.size(),
           static_cast<long long>((seg.size + piece_size - 1) / piece_size),
           nowhere_only ? "no connected peer had them" : "the swarm did not deliver them");
  return static_cast<int64_t>(pieces.size());
}

std::optional<tracker::TaskRecord> SupernodeService::task_at(const TaskId& task, uint64_t epoch,
                                                             tracker::TaskState state,
                                                             const char* work) const {
  auto rec = tracker_.get_task(task);
  if (!rec.ok() || !rec->has_value()) {
    log_line("task %s: not in the tracker; not %s", task.get().c_str(), work);
    return std::nullopt;
  }
  if ((*rec)->state != state || (*rec)->lease_epoch.get() != epoch) {
    log_line("task %s: lease %llu moved on; not %s", task.get().c_str(),
             static_cast<unsigned long long>(epoch), work);
    return std::nullopt;
  }
  return std::move(**rec);
}

void SupernodeService::run_worker(const FetchJob& job, uint64_t epoch, Worker& self) {
  const std::string id_text = job.task.get();
  const char* id = id_text.c_str();
  if (epoch == 0) {
    log_line("task %s: no lease epoch; not fetching", id);
    return;
  }
  // A member that forwarded its CreateTask to the leader may not have applied it yet: read
  // up to the commit index first (without a majority the lease lapses and another takes over).
  if (Status st = log_.read_barrier(); !st.ok()) {
    log_line("task %s: cannot catch up with the log: %s", id, st.error().message.c_str());
  }
  auto rec = task_at(job.task, epoch, tracker::TaskState::kFetching, "fetching");
  if (!rec) return;
  const tracker::TaskRecord task = std::move(*rec);
  auto started = std::chrono::steady_clock::now();
  std::vector<TaskId> seeded;  // removed again if the lease is lost
  std::atomic<bool> lost{false};

  // The lease keeper: a renewal every seed_lease_timeout / 3 until the worker ends.
  std::mutex keeper_mu;
  std::condition_variable keeper_cv;
  bool finished = false;
  std::thread keeper([&] {
    std::unique_lock lock(keeper_mu);
    while (!keeper_cv.wait_for(lock, config_.seed_lease_timeout / 3, [&] { return finished; })) {
      lock.unlock();
      auto r = log_.propose(tracker::RenewSeedLease{job.task, epoch}, config_.seed_lease_timeout);
      lock.lock();
      if (!r.ok() && lease_lost(r.error())) {
        lost = true;
        self.abort = true;
        break;
      }
    }
  });
  struct KeeperStop {
    std::function<void()> f;
    ~KeeperStop() { f(); }
  } keeper_stop{[&] {
    {
      std::lock_guard lock(keeper_mu);
      finished = true;
    }
    keeper_cv.notify_all();
    keeper.join();
  }};

  auto give_up = [&](const Error& e) {
    if (lost || lease_lost(e)) {
      lost = true;
      log_line("task %s: seed lease %llu lost (%s); stopping and dropping its seeds", id,
               static_cast<unsigned long long>(epoch), e.message.c_str());
      for (const auto& tid : seeded) (void)engine_.remove(tid);
      return;
    }
    if (abort_) {
      log_line("task %s: origin fetch stopped by shutdown", id);
      return;  // stays "fetching": the lease expires and the leader hands it over
    }
    log_line("task %s failed: %s: %s", id, e.code.c_str(), e.message.c_str());
    fail_task(job.task, e, epoch, /*seed_lost=*/false);
  };

  std::error_code ec;
  fs::create_directories(task_dir(job.task), ec);
  if (ec) {
    give_up(make_error(kErrOriginIo, "cannot create " + task_dir(job.task) + ": " + ec.message()));
    return;
  }

  // Resume after what is published (a takeover), or start at zero.
  int64_t offset = 0;
  bool complete = false;
  for (const auto& seg : task.segments) offset += seg.size;
  if (!task.segments.empty() && task.segments.back().size < task.segment_size) complete = true;
  if (!task.segments.empty()) {
    log_line("task %s: taking over at byte %lld (%zu segments published)", id,
             static_cast<long long>(offset), task.segments.size());
  }

  auto publish = [&](const FetchedSegment& f) -> Status {
    auto metainfo = peer::build_metainfo(f.path, config_.ca_pem, 0);
    if (!metainfo.ok()) {
      return make_error(kErrSeed, "cannot build the metainfo of segment " +
                                      std::to_string(f.index) + ": " + metainfo.error().message);
    }
    const TaskId tid = segment_torrent_id(job.task, f.index);
    (void)engine_.remove(tid);
    if (Status st = engine_.add_seed(tid, *metainfo, f.path); !st.ok()) {
      return make_error(
          kErrSeed, "cannot seed segment " + std::to_string(f.index) + ": " + st.error().message);
    }
    seeded.push_back(tid);
    auto r =
        log_.propose(tracker::PublishSegment{job.task, epoch, f.index, f.offset, f.size, *metainfo,
                                             config_.listen_ip, engine_.ssl_port()});
    if (!r.ok()) return r.error();
    log_line("task %s: segment %lld published (%lld bytes at %lld)", id,
             static_cast<long long>(f.index), static_cast<long long>(f.size),
             static_cast<long long>(f.offset));
    return {};
  };

  // The rest from the origin first (peers are waiting for it); the earlier segments after.
  if (!complete) {
    SegmentFetchRequest req;
    req.url = job.url;
    req.headers = job.headers;
    req.segment_size = task.segment_size;
    req.start_offset = offset;
    req.segment_path = [&](int64_t i) { return segment_path(job.task, i); };
    req.on_segment = publish;
    req.abort = &self.abort;
    int64_t counted = 0;
    req.on_progress = [&](int64_t bytes) {
      add_origin_bytes(job.task, bytes - counted);
      counted = bytes;
    };
    log_line("task %s: fetching from origin%s", id, offset > 0 ? " (Range)" : "");
    auto fetched = fetch_segments(req);
    if (!fetched.ok()) {
      give_up(fetched.error());
      return;
    }
    if (!fetched->range_honoured) {
      log_line("task %s: the origin ignores Range: read %lld bytes to resume at %lld", id,
               static_cast<long long>(fetched->origin_bytes), static_cast<long long>(offset));
    }
    offset = fetched->end;
  }
  if (!task.segments.empty() && !self.abort) {
    if (Status st = obtain_segments(job, task.segments, task.segment_size, self); !st.ok()) {
      give_up(st.error());
      return;
    }
    for (const auto& seg : task.segments) {
      seeded.push_back(segment_torrent_id(job.task, seg.index));
    }
  }
  if (self.abort) {
    give_up(make_error(kErrOriginAborted, "aborted"));
    return;
  }

  // The whole content's SHA-256, over every segment in order (those from a previous seeder
  // included). A follower's own replica may not have applied its last PublishSegment yet
  // (the leader answered once it committed): wait for a read barrier first.
  // A leader change may fail a barrier: retry for as long as a lease could survive.
  Status barrier = log_.read_barrier();
  for (int tries = 1; !barrier.ok() && tries < 6 && !self.abort; ++tries) {
    barrier = log_.read_barrier();
  }
  if (!barrier.ok()) {
    give_up(barrier.error());
    return;
  }
  auto now_rec = tracker_.get_task(job.task);
  if (!now_rec.ok() || !now_rec->has_value()) {
    give_up(make_error(tracker::kErrTaskUnknown, "task vanished"));
    return;
  }
  crypto::Sha256 hash;
  int64_t total = 0;
  std::vector<char> buf(1 << 20);
  for (const auto& seg : (*now_rec)->segments) {
    std::ifstream in(segment_path(job.task, seg.index), std::ios::binary);
    int64_t got = 0;
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const auto n = in.gcount();
      if (n <= 0) break;
      hash.update(buf.data(), static_cast<size_t>(n));
      got += n;
    }
    if (got != seg.size) {
      give_up(make_error(kErrOriginIo, "segment " + std::to_string(seg.index) + " is " +
                                           std::to_string(got) + " bytes on disk, not " +
                                           std::to_string(seg.size)));
      return;
    }
    total += got;
  }
  const std::string sha256 = hash.finish_hex();
  if (total != offset) {
    give_up(make_error(kErrOriginIo, "published " + std::to_string(total) + " bytes but fetched " +
                                         std::to_string(offset)));
    return;
  }
  if (job.sha256 && *job.sha256 != sha256) {
    give_up(make_error(kErrDigestMismatch, "digest mismatch for " + job.url + ": expected sha256:" +
                                               *job.sha256 + ", got sha256:" + sha256));
    return;
  }
  auto ready = log_.propose(tracker::MarkTaskReady{job.task, epoch, total, sha256,
                                                   config_.listen_ip, engine_.ssl_port()});
  if (!ready.ok()) {
    give_up(ready.error());
    return;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  log_line("task %s: seeding (%lld bytes in %zu segments, sha256 %s, %.3f s)", id,
           static_cast<long long>(total), (*now_rec)->segments.size(), sha256.c_str(), secs);
}

void SupernodeService::watch_leases() {
  struct Watch {
    uint64_t epoch = 0;
    uint64_t updated = 0;
    std::chrono::steady_clock::time_point since;
  };
  std::unordered_map<TaskId, Watch> watched;
  bool was_leader = false;
  while (!abort_) {
    for (int i = 0; i < 5 && !abort_; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (abort_) return;
    const bool leader = log_.status().value("state", "") == "leader";
    if (!leader) {
      was_leader = false;
      continue;
    }
    if (!was_leader) {
      watched.clear();  // a new term: every timer starts now
      std::lock_guard lock(seeders_mu_);
      seeders_.lead(std::chrono::steady_clock::now());
    }
    was_leader = true;
    auto tasks = tracker_.list_tasks();
    if (!tasks.ok()) continue;
    const auto now = std::chrono::steady_clock::now();
    std::unordered_map<TaskId, Watch> next;
    for (const auto& t : *tasks) {
      if (t.state != tracker::TaskState::kFetching) continue;
      Watch w{t.lease_epoch.get(), t.updated_index.get(), now};
      auto it = watched.find(t.task_id);
      if (it != watched.end() && it->second.epoch == w.epoch && it->second.updated == w.updated) {
        w.since = it->second.since;
      }
      next[t.task_id] = w;
      if (now - w.since < config_.seed_lease_timeout) continue;
      if (busy_with(t.task_id)) continue;  // our own worker holds or is leaving it
      auto r = log_.propose(tracker::TakeOverSeed{t.task_id, w.epoch, node_id_.get(),
                                                  config_.listen_ip, engine_.ssl_port()});
      if (!r.ok()) {
        log_line("task %s: takeover failed: %s", t.task_id.get().c_str(),
                 r.error().message.c_str());
        continue;
      }
      const uint64_t epoch = parse_result(*r).value("epoch", uint64_t{0});
      log_line("task %s: seed lease %llu of %s expired; taking over with epoch %llu",
               t.task_id.get().c_str(), static_cast<unsigned long long>(w.epoch), t.seeder.c_str(),
               static_cast<unsigned long long>(epoch));
      start_worker(job_for(t), epoch);
    }
    watched = std::move(next);
    reseed_silent_seeders();
  }
}

void SupernodeService::reseed_silent_seeders() {
  auto tasks = tracker_.list_tasks();
  if (!tasks.ok()) return;
  std::vector<SeededTask> ready;
  std::unordered_map<TaskId, const tracker::TaskRecord*> records;
  for (const auto& t : *tasks) {
    // An empty content has nothing to seed.
    if (t.state != tracker::TaskState::kReady || t.segments.empty()) continue;
    ready.push_back(SeededTask{t.task_id, t.seeder, t.lease_epoch.get()});
    records[t.task_id] = &t;
  }
  std::vector<SeededTask> silent;
  {
    std::lock_guard lock(seeders_mu_);
    silent = seeders_.silent(ready, node_id_.get(), std::chrono::steady_clock::now());
  }
  for (const auto& s : silent) {
    const char* id = s.task.get().c_str();
    if (busy_with(s.task)) continue;
    auto r = log_.propose(tracker::ReseedTask{s.task, s.epoch, node_id_.get(), config_.listen_ip,
                                              engine_.ssl_port()});
    if (!r.ok()) {
      log_line("task %s: re-seed failed: %s", id, r.error().message.c_str());
      continue;
    }
    const uint64_t epoch = parse_result(*r).value("epoch", uint64_t{0});
    log_line("task %s: seeder %s of the ready task went silent; re-seeding it with epoch %llu", id,
             s.seeder.c_str(), static_cast<unsigned long long>(epoch));
    start_worker(job_for(*records.at(s.task)), epoch, Work::kReseed);
  }
}

void SupernodeService::run_reseed(const FetchJob& job, uint64_t epoch, Worker& self) {
  const std::string id_text = job.task.get();
  const char* id = id_text.c_str();
  auto started = std::chrono::steady_clock::now();
  // The ReseedTask was committed on the leader, which is this member: its replica has it.
  auto rec = task_at(job.task, epoch, tracker::TaskState::kReady, "re-seeding");
  if (!rec) return;
  const tracker::TaskRecord task = std::move(*rec);
  auto obtain = [&]() -> Status {
    std::error_code ec;
    fs::create_directories(task_dir(job.task), ec);
    if (ec) {
      return make_error(kErrOriginIo, "cannot create " + task_dir(job.task) + ": " + ec.message());
    }
    return obtain_segments(job, task.segments, task.segment_size, self);
  };
  const Status st = obtain();
  if (st.ok() && !self.abort) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log_line("task %s: seeding (re-seeded, %lld bytes in %zu segments, %.3f s)", id,
             static_cast<long long>(task.size), task.segments.size(), secs);
    return;
  }
  for (const auto& seg : task.segments) {
    (void)engine_.remove(segment_torrent_id(job.task, seg.index));
  }
  if (self.abort || abort_) {
    log_line("task %s: re-seeding stopped by shutdown", id);
    return;
  }
  log_line("task %s: re-seeding failed: %s: %s", id, st.error().code.c_str(),
           st.error().message.c_str());
  // Failed only if nobody handed it on meanwhile: checked against this replica here, and
  // fenced by the epoch when committed (another leader may re-seed it in between).
  auto now_rec = tracker_.get_task(job.task);
  if (now_rec.ok() && now_rec->has_value() && (*now_rec)->state == tracker::TaskState::kReady &&
      (*now_rec)->lease_epoch.get() == epoch) {
    fail_task(job.task,
              make_error(st.error().code,
                         "its seeder was lost and the content could not be "
                         "obtained again: " +
                             st.error().message),
              epoch, /*seed_lost=*/true);
  }
}

}  // namespace starling::supernode

// Tracker commands and the proposals that carry them: the payload of every entry of the
// replicated log (ARCHITECTURE §5). Pure: no I/O, no SQLite, no clock. The supernodes propose
// encode_proposal() bytes to Raft; every replica decodes the committed entry with
// decode_proposal() and applies it (state_machine.h). The decoder reads bytes that came over
// the network, so it is strict and total: it never throws and never crashes on any input
// (fuzzed by tests/fuzz/command_fuzz.cc).
//
// Version 2 (this one) added the seeder fields, the kv commands and the Proposal envelope
// (client_id, seq); the certificate commands (IssueCertificate, RevokeCertificate) are new
// command types within version 2, so entries already in a log stay readable. Version 1 was only
// ever written by the single-member LocalLog, whose entries were never stored as log entries, so
// there is nothing to migrate: version 1 bytes are refused like any other malformed input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/ids.h"
#include "common/result.h"

namespace starling::tracker {

inline constexpr char kErrBadCommand[] = "tracker.bad_command";

// The encoding version written by encode_proposal; decode_proposal accepts only this one.
inline constexpr int kCommandVersion = 2;

// Limits of the kv namespace.
inline constexpr size_t kMaxKvKeyBytes = 512;
inline constexpr size_t kMaxKvValueBytes = 512 * 1024;
// Limits of a proposal's client id.
inline constexpr size_t kMaxClientIdChars = 64;
// Limit of a revocation reason.
inline constexpr size_t kMaxRevokeReasonBytes = 256;

// A new task in state "fetching". `created_at` is unix seconds chosen by the proposer (the
// state machine never reads a clock, so every replica applies the same value). `seeder` is the
// node id (64 lowercase hex) of the supernode that fetches it from the origin and seeds it.
struct CreateTask {
  TaskId task_id;
  std::string url;
  std::optional<std::string> digest;  // "sha256:<hex>" when the caller gave one
  int64_t created_at = 0;
  std::string seeder;
  bool operator==(const CreateTask&) const = default;
};

// The origin fetch of a fetching task finished: its size, SHA-256 (lowercase hex), the
// metainfo (bencoded .torrent, raw bytes) and the seeder's libtorrent SSL endpoint
// (`seed_ip`, `seed_port` in 0..65535; 0 = not listening).
struct MarkTaskReady {
  TaskId task_id;
  int64_t size = 0;
  std::string sha256;
  std::string metainfo;
  std::string seed_ip;
  int64_t seed_port = 0;
  bool operator==(const MarkTaskReady&) const = default;
};

// The task failed; `code`/`message` are the Error shown to users by GetTask.
struct MarkTaskFailed {
  TaskId task_id;
  std::string code;
  std::string message;
  bool operator==(const MarkTaskFailed&) const = default;
};

// A failed task goes back to "fetching" (a new origin fetch starts on `seeder`).
struct RestartTask {
  TaskId task_id;
  std::string seeder;
  bool operator==(const RestartTask&) const = default;
};

// Consul-style kv writes. Keys: 1..kMaxKvKeyBytes bytes of valid UTF-8 without NUL. Values:
// any bytes, at most kMaxKvValueBytes. `cas`: nullopt = unconditional; 0 = only if the key
// does not exist; n = only if the key exists and its modify_index is n.
struct KvPut {
  std::string key;
  std::string value;
  std::optional<uint64_t> cas;
  bool operator==(const KvPut&) const = default;
};
struct KvDelete {
  std::string key;
  std::optional<uint64_t> cas;
  bool operator==(const KvDelete&) const = default;
};

// A certificate the network CA issued through a supernode (issue 5 item 1): the record of
// who holds a certificate, with which role, valid when. `node_id`: 64 lowercase hex (the
// node's Ed25519 key); `role`: "peer", "supernode" or "admin"; `not_before` < `not_after`,
// unix seconds, both >= 0 (the certificate's own validity, chosen by the issuer). Refused with
// kErrCertRevoked (state_machine.h) when the node was revoked: revocation is sticky.
struct IssueCertificate {
  std::string node_id;
  std::string role;
  int64_t not_before = 0;
  int64_t not_after = 0;
  bool operator==(const IssueCertificate&) const = default;
};

// `node_id` may no longer call the supernodes or enrol again, ever. `reason`: at most
// kMaxRevokeReasonBytes bytes of valid UTF-8 without control characters (it is shown on one
// line in errors); may be empty. `revoked_at`: unix seconds (>= 0) chosen by the proposer.
// A node need not have a recorded issuance to be revoked (certificates signed outside the
// cluster with ca.key, e.g. a supernode's own, are not recorded).
struct RevokeCertificate {
  std::string node_id;
  std::string reason;
  int64_t revoked_at = 0;
  bool operator==(const RevokeCertificate&) const = default;
};

using Command = std::variant<CreateTask, MarkTaskReady, MarkTaskFailed, RestartTask, KvPut,
                             KvDelete, IssueCertificate, RevokeCertificate>;

// The payload of every Raft entry the supernodes propose: who proposed it (`client_id`: 1..64
// characters of [0-9a-f]), its sequence number, and the command. (client_id, seq) makes
// application exactly-once: a retried proposal that was already applied has no second effect.
// A proposer keeps one client_id and never reuses a seq under it.
struct Proposal {
  std::string client_id;
  uint64_t seq = 0;
  Command command;
  bool operator==(const Proposal&) const = default;
};

// "CreateTask", "MarkTaskReady", ... (for logs).
const char* command_name(const Command& command);

// The field rules decode_proposal enforces, for values built in memory: task ids, seeders and
// certificate node ids 64 lowercase hex, sizes >= 0, ports 0..65535, kv keys and values within
// the limits above, certificate roles, validities and revocation reasons as described there.
// kErrBadCommand with the reason otherwise. Proposers check before proposing; the state
// machine checks again before applying.
Status validate_command(const Command& command);
// validate_command plus the client id rule.
Status validate_proposal(const Proposal& proposal);
// Key rule alone (also used for prefixes by callers that want the same check).
Status validate_kv_key(std::string_view key);
// Client id rule alone.
bool is_client_id(std::string_view id);
// Node id rule alone: 64 lowercase hex characters.
bool is_node_id(std::string_view id);
// "peer", "supernode" or "admin".
bool is_certificate_role(std::string_view role);
// Revocation reason rule alone (see RevokeCertificate).
Status validate_revoke_reason(std::string_view reason);
// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::string_view s);

// JSON: {"v":2,"client_id":"..","seq":N,"command":{"type":"KvPut",...}}. Binary fields
// (metainfo, kv values) are hex (metainfo) and standard padded base64 (values). Strings that
// are not valid UTF-8 are encoded with U+FFFD replacements rather than throwing; a proposal
// that passes validate_proposal has no such string where it matters (kv keys).
std::string encode_proposal(const Proposal& p);

// Strict: the version must be kCommandVersion, the command type known, every required field
// present with the right JSON type, no unknown field, and validate_proposal must pass. Any
// other input gives kErrBadCommand. Never throws.
Result<Proposal> decode_proposal(std::string_view bytes);

// Standard base64 with padding (RFC 4648 §4). The decoder accepts only the canonical form
// (padding present, unused bits zero), so every value has exactly one encoding.
std::string to_base64(std::string_view bytes);
std::optional<std::string> from_base64(std::string_view text);

}  // namespace starling::tracker

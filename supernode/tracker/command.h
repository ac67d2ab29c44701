// Tracker commands and the proposals that carry them: the payload of every entry of the
// replicated log (ARCHITECTURE §5). Pure: no I/O, no SQLite, no clock. The supernodes propose
// encode_proposal() bytes to Raft; every replica decodes the committed entry with
// decode_proposal() and applies it (state_machine.h). The decoder reads bytes that came over
// the network, so it is strict and total: it never throws and never crashes on any input
// (fuzzed by tests/fuzz/command_fuzz.cc).
//
// Version 3 (this one) added segments and seed leases (issue 4 items 4-5): CreateTask carries
// the segment size, MarkTaskReady and MarkTaskFailed the lease epoch (MarkTaskReady no longer
// carries a whole-content metainfo: each segment is published by PublishSegment), and
// PublishSegment, RenewSeedLease and TakeOverSeed are new. Version 2 (the seeder fields, the kv
// and certificate commands, the Proposal envelope) is refused: its MarkTaskReady has no
// meaning in the segmented model, and no cluster with version-2 logs was deployed. Version 1
// was only ever written by the single-member LocalLog and is refused too.
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
inline constexpr int kCommandVersion = 3;

// Limits of the kv namespace.
inline constexpr size_t kMaxKvKeyBytes = 512;
inline constexpr size_t kMaxKvValueBytes = 512 * 1024;
// Limits of a proposal's client id.
inline constexpr size_t kMaxClientIdChars = 64;
// Limit of a revocation reason.
inline constexpr size_t kMaxRevokeReasonBytes = 256;
// Limits of a segment: its size (CreateTask.segment_size) and its metainfo.
inline constexpr int64_t kMaxSegmentSize = int64_t{1} << 34;  // 16 GiB
inline constexpr size_t kMaxSegmentMetainfoBytes = 4 * 1024 * 1024;

// A new task in state "fetching". `created_at` is unix seconds chosen by the proposer (the
// state machine never reads a clock, so every replica applies the same value). `seeder` is the
// node id (64 lowercase hex) of the supernode that fetches it from the origin and seeds it; the
// entry's log index is its seed lease epoch. `segment_size` (1..kMaxSegmentSize) is fixed for
// the task's life.
struct CreateTask {
  TaskId task_id;
  std::string url;
  std::optional<std::string> digest;  // "sha256:<hex>" when the caller gave one
  int64_t created_at = 0;
  std::string seeder;
  int64_t segment_size = 0;
  bool operator==(const CreateTask&) const = default;
};

// The origin fetch of a fetching task finished: its size (the sum of the published segment
// sizes), SHA-256 of the whole content (lowercase hex) and the seeder's libtorrent SSL endpoint
// (`seed_ip`, `seed_port` in 0..65535; 0 = not listening). Fenced: `epoch` must be the task's
// current lease epoch.
struct MarkTaskReady {
  TaskId task_id;
  uint64_t epoch = 0;
  int64_t size = 0;
  std::string sha256;
  std::string seed_ip;
  int64_t seed_port = 0;
  bool operator==(const MarkTaskReady&) const = default;
};

// The task failed; `code`/`message` are the Error shown to users by GetTask. `epoch`: when
// given, it must be the current lease epoch: of a fetching task (a seeder reporting its own
// fetch failed), or with `seed_lost` of a ready task (its seeder lost the content or could not
// obtain it again). So a fenced-off seeder cannot fail a fetch another member took over, nor a
// ready task another member re-seeds; and a fetch's failure never fails a task that became
// ready at the same epoch (a MarkTaskReady whose proposal reported an error may still have
// committed). Without an epoch the failure is unconditional. `seed_lost` was added after
// version 3 of the encoding, like ReseedTask: every member must know it before one proposes it.
struct MarkTaskFailed {
  TaskId task_id;
  std::string code;
  std::string message;
  std::optional<uint64_t> epoch;
  bool seed_lost = false;  // with epoch: fences a ready task's seed, not a fetch
  bool operator==(const MarkTaskFailed&) const = default;
};

// Segment `index` of a fetching task was fetched, hashed and added as a seed by the lease
// holder: [offset, offset + size) of the content, `metainfo` the bencoded torrent of those
// bytes (raw, 1..kMaxSegmentMetainfoBytes), and the seeder's data endpoint. Accepted only when
// `epoch` is the current lease epoch, `index` the number of segments published so far,
// `offset` the sum of their sizes, 1 <= size <= segment_size, and every earlier segment was
// full (only the last may be shorter). It also renews the lease.
struct PublishSegment {
  TaskId task_id;
  uint64_t epoch = 0;
  int64_t index = 0;
  int64_t offset = 0;
  int64_t size = 0;
  std::string metainfo;
  std::string seed_ip;
  int64_t seed_port = 0;
  bool operator==(const PublishSegment&) const = default;
};

// The lease holder is alive and fetching (sent about every lease_timeout / 3). Fenced by
// `epoch` like PublishSegment.
struct RenewSeedLease {
  TaskId task_id;
  uint64_t epoch = 0;
  bool operator==(const RenewSeedLease&) const = default;
};

// The leader saw the lease of a fetching task expire (no renewal within lease_timeout, judged on
// its own clock) and hands the fetch to `new_seeder` (with its data endpoint). Accepted only when
// the task is fetching and `expected_epoch` is still its lease epoch; the entry's index becomes
// the new epoch, so the old seeder's later PublishSegment/RenewSeedLease/MarkTaskReady are
// refused (kErrStaleLease).
struct TakeOverSeed {
  TaskId task_id;
  uint64_t expected_epoch = 0;
  std::string new_seeder;
  std::string seed_ip;
  int64_t seed_port = 0;
  bool operator==(const TakeOverSeed&) const = default;
};

// The leader has not heard from the seeder of a ready task for lease_timeout (the seeder's Raft
// traffic, judged on the leader's own clock; a ready task holds no lease renewals) and makes
// `new_seeder` (with its data endpoint) seed it instead: the new seeder obtains every segment
// (from the swarm, else from the origin by Range, checked against the published metainfo) and
// seeds them. Accepted only when the task is ready and `expected_epoch` is its lease epoch; it
// stays ready and the entry's index becomes the epoch (a later failure report of the new seeder
// is fenced by it). Added after version 3 without a version change: earlier members never
// propose it, and a log that holds one must not be applied by a member older than it.
struct ReseedTask {
  TaskId task_id;
  uint64_t expected_epoch = 0;
  std::string new_seeder;
  std::string seed_ip;
  int64_t seed_port = 0;
  bool operator==(const ReseedTask&) const = default;
};

// A failed task goes back to "fetching" (a new origin fetch starts on `seeder`, from zero: the
// published segments are dropped); the entry's index is the new lease epoch.
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
                             KvDelete, IssueCertificate, RevokeCertificate, PublishSegment,
                             RenewSeedLease, TakeOverSeed, ReseedTask>;

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
// certificate node ids 64 lowercase hex, sizes >= 0, ports 0..65535, segment sizes and
// metainfo within the limits above, epochs >= 1, kv keys and values within
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

// JSON: {"v":3,"client_id":"..","seq":N,"command":{"type":"KvPut",...}}. Binary fields
// (metainfo, kv values) are hex (segment metainfo) and standard padded base64 (values). Strings
// that are not valid UTF-8 are encoded with U+FFFD replacements rather than throwing; a proposal
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

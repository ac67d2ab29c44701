// The tracker's snapshot format: the whole replicated state as bytes, carried by a Raft
// snapshot to a follower that fell behind the compacted log. Pure (no SQLite): the fuzz build
// links it alone (tests/fuzz/tracker_snapshot_fuzz.cc).
//
// Layout (integers little-endian; str = u32 length + bytes; opt = u8 0|1 then the value):
//   "STRKSNAP" u32 version(=3) u64 applied_index
//   u64 n, n x task:   str task_id, str url, opt str digest, i64 created_at, u8 state,
//                      str seeder, i64 segment_size, u64 lease_epoch,
//                      u64 m, m x (i64 index, i64 offset, i64 size, str metainfo) segments,
//                      i64 size, str sha256, str seed_ip, i64 seed_port,
//                      opt (str code, str message) error, u64 updated_index
//   u64 n, n x kv:     str key, str value, u64 create_index, u64 modify_index
//   u64 n, n x cert:   str node_id, str role, i64 not_before, i64 not_after, u64 issued_index,
//                      opt (i64 revoked_at, str reason, u64 revoked_index) revocation
//   u64 n, n x result: str client_id, u64 seq, u64 index, u8 ok, str result-or-error-code,
//                      str error-message
// and nothing after. No checksum: snapshots travel inside the authenticated mesh and are
// stored by the Raft storage, which checksums them.
//
// decode_snapshot is strict and total: it accepts exactly the states the state machine can
// reach — ids and keys valid as in command.h, records sorted by their key with no duplicate,
// every index in 1..applied_index, create_index <= modify_index, an error iff the task failed,
// segment_size in 1..kMaxSegmentSize, 1 <= lease_epoch <= updated_index, segments numbered
// 0..m-1 with contiguous offsets, sizes 1..segment_size and only the last short, a ready task's
// size the sum of its segments,
// a certificate either issued (known role, 0 <= not_before < not_after) or, with no issuance
// (issued_index 0, role "", validity 0), revoked; an issuance never after the revocation;
// flags 0 or 1 — and nothing else, so encode_snapshot(decode_snapshot(b)) == b.
//
// Version 3 added segments and seed leases (and dropped the whole-content metainfo); version 2
// snapshots are refused (command.h explains why nothing of version 2 is migrated). Version 2
// added the certificates. Version 1 was never stored by a deployment (the tracker
// became replicated in the same release), so it is refused like any other version.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "supernode/tracker/state_machine.h"

namespace starling::tracker {

inline constexpr uint32_t kSnapshotVersion = 3;

// The outcome recorded for one (client_id, seq).
struct ResultRecord {
  std::string client_id;
  uint64_t seq = 0;
  LogIndex index;              // where it was applied
  std::optional<Error> error;  // a deterministic rejection; nullopt = success
  std::string result;          // the success JSON (empty when error)
};

struct SnapshotData {
  LogIndex applied_index;
  std::vector<TaskRecord> tasks;                // ordered by task_id
  std::vector<KvRecord> kv;                     // ordered by key (bytewise)
  std::vector<CertificateRecord> certificates;  // ordered by node_id
  std::vector<ResultRecord> results;            // ordered by (client_id, seq)
};

// REQUIRES: `data` satisfies the rules above (it was read from a state machine).
std::string encode_snapshot(const SnapshotData& data);
// kErrBadSnapshot with the reason on anything malformed. Never throws.
Result<SnapshotData> decode_snapshot(std::string_view bytes);

}  // namespace starling::tracker

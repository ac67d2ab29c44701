// The Raft wire codec: a batch of Messages for one destination, as sent between supernodes
// (the mesh transport carries the bytes; the Driver hands it the decoded batch). Pure; no I/O.
//
// Format, version 2 (all integers little-endian, fixed width):
//   u8 version (= 2), u32 message count, then each message:
//     u8 type, u64 from, u64 to, u64 term, u64 log_term, u64 index, u64 commit,
//     u8 reject (0/1), u64 reject_hint,
//     u32 entry count, each entry: u64 term, u64 index, u8 type, u32 length, data;
//     u8 has_snapshot (0/1), if 1: u64 index, u64 term, voters, learners, removed
//       (each u32 count then u64 ids, strictly increasing, the three lists disjoint),
//       addresses (u32 count, each: u64 id, u32 length, address of at most kMaxConfContext
//       bytes; ids strictly increasing, each a voter or learner), u64 length, data;
//     u32 length, context.
// The encoding is canonical: decode_messages accepts exactly what encode_messages produces
// for some batch, so encode(decode(b)) == b whenever decode succeeds (the fuzzer checks it).
//
// The codec is a faithful serialization of `Message`: it does not check Raft semantics
// (consecutive entries, which types carry a snapshot); the peer is an authenticated supernode
// and the core tolerates lost, duplicated and reordered messages.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "supernode/raft/types.h"

namespace starling::raft {

inline constexpr char kErrBadMessage[] = "raft.bad_message";
inline constexpr uint8_t kWireVersion = 2;  // 2: snapshot addresses

// A batch of messages for one destination, versioned (first byte = kWireVersion).
// REQUIRES: every entry's data and every context shorter than 4 GiB; at most 2^32-1 messages,
// entries per message and ids per membership list (aborts otherwise: the core never builds
// such a message).
std::string encode_messages(const std::vector<Message>& batch);

// Strict and total: any bytes give the batch or kErrBadMessage with context
// ("raft message 3: truncated entry data"). Never throws; never allocates more than the input
// justifies (every count and length is checked against the remaining bytes first); rejects an
// unknown version, message type, entry type or flag value, unsorted or overlapping membership
// lists, and trailing bytes.
Result<std::vector<Message>> decode_messages(std::string_view bytes);

}  // namespace starling::raft

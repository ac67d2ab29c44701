// Task identity (ARCHITECTURE §3). Pure: no I/O.
//
// When the content digest is known the task id derives from the digest alone, so one blob
// reached through different URLs is one task. Otherwise it derives from the URL with the
// filtered query parameters removed, plus an optional tag.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/ids.h"
#include "common/result.h"

namespace starling {

inline constexpr char kErrBadDigest[] = "task.bad_digest";
inline constexpr char kErrBadUrl[] = "task.bad_url";

// A content digest "sha256:<64 lowercase hex>".
struct Digest {
  std::string algorithm;  // only "sha256" for now
  std::string hex;        // lowercase
  std::string str() const { return algorithm + ":" + hex; }
  bool operator==(const Digest&) const = default;
};

// Parses "sha256:<64 hex>" (hex in any case, normalised to lowercase).
Result<Digest> parse_digest(std::string_view text);

struct TaskKey {
  std::string url;
  std::optional<Digest> digest;
  std::string tag;                  // optional; separates otherwise equal URLs
  std::vector<std::string> filter;  // query parameter names ignored for identity
};

// Checks the URL is http:// or https:// with a host.
Status validate_url(std::string_view url);

// Removes the query parameters named in `filter` ("a=1&sig=x&b=2" with filter {"sig"} gives
// "a=1&b=2"); drops a fragment; keeps everything else byte for byte.
std::string filter_url(std::string_view url, const std::vector<std::string>& filter);

// 64 lowercase hex characters: SHA-256 over a domain-separated encoding of the key.
Result<TaskId> derive_task_id(const TaskKey& key);

// The id under which segment `index` (>= 0) of `task` is a torrent of its own (the engine keys
// torrents by it; ARCHITECTURE §3): 64 lowercase hex, SHA-256 over a domain-separated encoding,
// so it never equals a task id or another segment's id.
TaskId segment_torrent_id(const TaskId& task, int64_t index);

}  // namespace starling

// What a peer learns about a segmented task from the supernodes (ARCHITECTURE §3,
// notes/segments_contract.md), and how it checks the finished segments, which are the content.
//
// A task is a sequence of segments; segment i covers [i*segment_size, min((i+1)*segment_size,
// size)) and is its own torrent (engine key segment_torrent_id(task, i)). The seeder publishes
// segments in index order while it is still fetching, so a GetTask answer lists a prefix of
// them until the task is ready.
//
// parse_get_task() is the pure parser of a GetTask answer (untrusted input: it never throws
// and never crashes; fuzzed by tests/fuzz/get_task_fuzz.cc). digest_parts() is the I/O shell
// that checks the finished segments end to end. No state, no threads: callers own what they parse.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "peer/engine/torrent_engine.h"

namespace starling::crypto {
class Sha256;
}  // namespace starling::crypto

namespace starling::peer {

// A GetTask answer that breaks the segment rules (bad index, offset, size, metainfo).
inline constexpr char kErrBadTaskInfo[] = "peer.bad_task_info";

struct PublishedSegment {
  int64_t index = 0;
  int64_t offset = 0;    // == index * segment_size
  int64_t size = 0;      // 1..segment_size
  std::string metainfo;  // raw bencoded bytes (decoded from base64)
};

struct PublishedTask {
  std::string state;  // "fetching", "ready" or "failed" (any other string is kept as is)
  int64_t segment_size = 0;
  std::vector<PublishedSegment> segments;  // by index, no duplicates
  std::optional<int64_t> size;             // ready: the whole content's size
  std::string sha256;                      // ready: lowercase hex of the whole content
  std::optional<Error> error;              // failed: the supernode's error
  std::optional<Endpoint> seed;            // the seeder's data endpoint, once it has one
};

// Parses {"state", "segment_size", "segments": [{"index","offset","size","metainfo"}],
// "seed"?: {"ip","port"}, "size"?, "sha256"?, "error"?}. A seed must be an IPv4 or IPv6
// address and a port in 1..65535. Checks each segment's geometry against segment_size (offset =
// index * segment_size, 0 < size <= segment_size), that indices are distinct, and, when the
// task is ready, that the segments cover exactly [0, size) (indices 0..n-1, every one but the
// last full; none when size is 0) and sha256 is 64 lowercase hex. kErrBadTaskInfo otherwise,
// naming the field.
Result<PublishedTask> parse_get_task(const nlohmann::json& answer);

// True when the task is ready and every one of its segments is listed (parse_get_task
// guarantees this for a parsed ready task; kept as the one place the rule is stated).
bool all_segments_known(const PublishedTask& task);

// The SHA-256 (lowercase hex) and total size of the concatenation of `parts`, in order, read
// in place: a finished task's segment files are its content (nothing is copied into one file;
// `starling get` reads the parts in order). I/O failures are kErrParts ("cannot read PATH:
// reason").
inline constexpr char kErrParts[] = "peer.parts";
struct PartsDigest {
  std::string sha256;
  int64_t size = 0;
};
Result<PartsDigest> digest_parts(const std::vector<std::string>& parts);

// digest_parts() one part at a time, so that a download can hash each segment as soon as it
// and every one before it are complete and has only the last one left to read at the end.
class PartsHasher {
 public:
  PartsHasher();
  ~PartsHasher();
  PartsHasher(const PartsHasher&) = delete;
  PartsHasher& operator=(const PartsHasher&) = delete;

  // Reads `part` and hashes it after the parts added before. On an error (kErrParts) the
  // hasher is left unusable: the digest of a partly read part means nothing.
  Status add(const std::string& part);
  // How many parts were added.
  size_t count() const { return count_; }
  // The digest of the parts added, in order; once, after the last add().
  PartsDigest finish();

 private:
  std::unique_ptr<crypto::Sha256> hash_;
  int64_t size_ = 0;
  size_t count_ = 0;
};

}  // namespace starling::peer

// Fetches content from the origin over HTTP(S) with libcurl (the seeder's back-to-source).
// Blocking; run it on a worker thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace starling::supernode {

inline constexpr char kErrOriginUnreachable[] = "origin.unreachable";  // DNS, connect, TLS
inline constexpr char kErrOriginStatus[] = "origin.http_status";       // 4xx/5xx
inline constexpr char kErrOriginIo[] = "origin.io";                    // local disk
inline constexpr char kErrDigestMismatch[] = "origin.digest_mismatch";
inline constexpr char kErrOriginAborted[] = "origin.aborted";
inline constexpr char kErrOriginRequest[] = "origin.bad_request";  // bad URL, scheme or header

struct FetchRequest {
  std::string url;
  std::vector<std::string> headers;   // "Name: value", passed to the origin (auth)
  std::optional<std::string> sha256;  // expected lowercase hex; checked before success
  std::string output_path;            // written via output_path + ".part", then renamed
  std::chrono::seconds connect_timeout{10};
  // Called from the fetching thread as bytes arrive (may be empty).
  std::function<void(int64_t done, int64_t total_or_minus1)> on_progress;
  const std::atomic<bool>* abort = nullptr;  // set to stop early (kErrOriginAborted)
};

struct FetchResult {
  int64_t size = 0;
  std::string sha256;  // lowercase hex of what was written
};

// Errors, one line each: "origin unreachable: http://h/f: Couldn't connect to server",
// "origin returned HTTP 404 for http://h/f", "digest mismatch for http://h/f: expected
// sha256:…, got sha256:…". Nothing is left at output_path on failure.
Result<FetchResult> fetch_to_file(const FetchRequest& request);

// One completed segment of a segmented fetch: bytes [offset, offset + size) of the content,
// fsynced and renamed to `path` (empty when the fetch keeps segments in memory).
struct FetchedSegment {
  int64_t index = 0;
  int64_t offset = 0;
  int64_t size = 0;
  std::string path;
};

// A fetch that splits the content into segments of `segment_size` bytes (issue 4 items 4-5):
// segment i is [i * segment_size, min((i + 1) * segment_size, size)), written to
// segment_path(i) (via segment_path(i) + ".part", fsynced, renamed) and handed to on_segment
// as soon as it is complete, while the rest is still arriving.
//
// Resuming: with start_offset > 0 (a multiple of segment_size) the request carries
// "Range: bytes=<start_offset>-" (or "<start_offset>-<end_offset - 1>" when end_offset is
// set). A 206 answer must start at start_offset (its Content-Range is checked); a 200 answer
// (an origin without Range support) is read from zero and the bytes before start_offset are
// discarded (they still count in origin_bytes); a 416 answer means the content ends exactly at
// start_offset (zero bytes, success). With end_offset set (> start_offset), the fetch stops
// after byte end_offset - 1 even when the origin sends more.
struct SegmentFetchRequest {
  std::string url;
  std::vector<std::string> headers;  // "Name: value", passed to the origin (auth)
  int64_t segment_size = 0;          // > 0
  int64_t start_offset = 0;          // >= 0, multiple of segment_size
  int64_t end_offset = -1;           // -1 = to the end of the content
  std::function<std::string(int64_t index)> segment_path;
  // Called on the fetching thread after each segment is complete, in index order. An error
  // stops the fetch and is returned as the fetch's error. May block (the transfer waits).
  std::function<Status(const FetchedSegment&)> on_segment;
  // Instead of segment_path and on_segment: segments are kept in memory (nothing is written to
  // disk) and each is handed over with its bytes when complete, same order and error rule.
  // For small segments, e.g. single pieces a re-seed needs from the origin.
  std::function<Status(const FetchedSegment&, std::string bytes)> on_segment_bytes;
  // Called as bytes arrive with the bytes received from the origin so far (discarded ones
  // included).
  std::function<void(int64_t origin_bytes)> on_progress;
  std::chrono::seconds connect_timeout{10};
  const std::atomic<bool>* abort = nullptr;  // set to stop early (kErrOriginAborted)
};

struct SegmentFetchResult {
  int64_t end = 0;             // offset after the last byte written (= content size unless
                               // end_offset cut it)
  int64_t origin_bytes = 0;    // body bytes received from the origin, discarded ones included
  bool range_honoured = true;  // false: the origin answered 200 to a Range request
  int64_t segments = 0;        // segments completed by this call
};

// Errors as fetch_to_file. On failure the segments already handed to on_segment stay (they are
// complete); the partial one is removed.
Result<SegmentFetchResult> fetch_segments(const SegmentFetchRequest& request);

}  // namespace starling::supernode

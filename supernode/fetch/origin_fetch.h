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

}  // namespace starling::supernode

#include "common/task_id.h"

#include <sodium.h>

#include <algorithm>
#include <cctype>

#include "common/hex.h"

namespace starling {

Result<Digest> parse_digest(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return make_error(kErrBadDigest, "digest must look like sha256:<64 hex digits>");
  }
  std::string algorithm(text.substr(0, colon));
  std::string hex(text.substr(colon + 1));
  if (algorithm != "sha256") {
    return make_error(kErrBadDigest, "unsupported digest algorithm '" + algorithm +
                                         "' (only sha256 is supported)");
  }
  if (hex.size() != 64 || !from_hex(hex)) {
    return make_error(kErrBadDigest, "sha256 digest must be 64 hex digits");
  }
  std::transform(hex.begin(), hex.end(), hex.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return Digest{algorithm, hex};
}

Status validate_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return make_error(kErrBadUrl, "URL must start with http:// or https://: " + std::string(url));
  }
  const auto host_end = rest.find_first_of("/?#");
  if (rest.substr(0, host_end).empty()) {
    return make_error(kErrBadUrl, "URL has no host: " + std::string(url));
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return make_error(kErrBadUrl, "URL contains a space or control character");
    }
  }
  return {};
}

std::string filter_url(std::string_view url, const std::vector<std::string>& filter) {
  url = url.substr(0, url.find('#'));
  const auto q = url.find('?');
  if (q == std::string_view::npos || filter.empty()) return std::string(url);
  std::string out(url.substr(0, q));
  std::string_view query = url.substr(q + 1);
  std::string kept;
  while (true) {
    const auto amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    std::string_view name = param.substr(0, param.find('='));
    if (!param.empty() && std::find(filter.begin(), filter.end(), name) == filter.end()) {
      if (!kept.empty()) kept += '&';
      kept += param;
    }
    if (amp == std::string_view::npos) break;
    query = query.substr(amp + 1);
  }
  if (!kept.empty()) out += "?" + kept;
  return out;
}

Result<TaskId> derive_task_id(const TaskKey& key) {
  // Length-prefixed fields under a version label, so no two keys encode alike.
  std::string material = "starling-task-v1";
  const auto field = [&material](std::string_view name, std::string_view value) {
    material += '\n';
    material += name;
    material += ' ';
    material += std::to_string(value.size());
    material += ':';
    material += value;
  };
  if (key.digest) {
    auto digest = parse_digest(key.digest->str());
    if (!digest) return digest.error();
    field("digest", digest->str());
  } else {
    if (auto ok = validate_url(key.url); !ok) return ok.error();
    field("url", filter_url(key.url, key.filter));
    field("tag", key.tag);
  }
  uint8_t out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const uint8_t*>(material.data()), material.size());
  return TaskId(to_hex(out, sizeof out));
}

TaskId segment_torrent_id(const TaskId& task, int64_t index) {
  const std::string material =
      "starling-segment-v1\ntask " + task.get() + "\nindex " + std::to_string(index);
  uint8_t out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(out, reinterpret_cast<const uint8_t*>(material.data()), material.size());
  return TaskId(to_hex(out, sizeof out));
}

}  // namespace starling

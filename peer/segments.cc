#include "peer/segments.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include "crypto/base64.h"
#include "crypto/hash.h"

namespace starling::peer {
namespace {

using nlohmann::json;

Error bad(const std::string& what) {
  return make_error(kErrBadTaskInfo, "supernode sent bad task info: " + what);
}

// A non-negative integer field, or nullopt (absent, wrong type, negative, too large).
std::optional<int64_t> count_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  const auto v = it->get<int64_t>();
  if (v < 0) return std::nullopt;
  return v;
}

std::string string_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool lower_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// {"ip": IPv4 or IPv6 address, "port": 1..65535}, or nullopt.
std::optional<Endpoint> endpoint_field(const json& j) {
  if (!j.is_object()) return std::nullopt;
  const std::string ip = string_field(j, "ip");
  auto port = count_field(j, "port");
  unsigned char addr[sizeof(struct in6_addr)];
  if (ip.find('\0') != std::string::npos) return std::nullopt;
  if (inet_pton(AF_INET, ip.c_str(), addr) != 1 && inet_pton(AF_INET6, ip.c_str(), addr) != 1) {
    return std::nullopt;
  }
  if (!port || *port == 0 || *port > 65535) return std::nullopt;
  return Endpoint{ip, static_cast<uint16_t>(*port)};
}

Error io_error(const std::string& what, const std::string& path) {
  return make_error(kErrParts, "cannot " + what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

Result<PublishedTask> parse_get_task(const json& answer) {
  if (!answer.is_object()) return bad("not an object");
  PublishedTask t;
  t.state = string_field(answer, "state");
  if (t.state.empty()) return bad("no \"state\"");
  if (t.state == "failed") {
    auto it = answer.find("error");
    const json e = it != answer.end() && it->is_object() ? *it : json::object();
    const std::string code = string_field(e, "code");
    const std::string message = string_field(e, "message");
    t.error = make_error(code.empty() ? "task.failed" : code,
                         message.empty() ? "the supernode could not fetch the content" : message);
    return t;
  }
  auto segment_size = count_field(answer, "segment_size");
  auto segments = answer.find("segments");
  const bool has_segments = segments != answer.end() && segments->is_array();
  if (segments != answer.end() && !segments->is_null() && !has_segments) {
    return bad("\"segments\" is not a list");
  }
  if (has_segments && !segments->empty() && (!segment_size || *segment_size == 0)) {
    return bad("segments without a positive \"segment_size\"");
  }
  t.segment_size = segment_size.value_or(0);
  std::set<int64_t> seen;
  if (has_segments) {
    for (const json& s : *segments) {
      if (!s.is_object()) return bad("a segment is not an object");
      auto index = count_field(s, "index");
      auto offset = count_field(s, "offset");
      auto size = count_field(s, "size");
      if (!index || !offset || !size) return bad("a segment lacks index, offset or size");
      if (*index > std::numeric_limits<int64_t>::max() / t.segment_size ||
          *offset != *index * t.segment_size) {
        return bad("segment " + std::to_string(*index) + " has offset " + std::to_string(*offset));
      }
      if (*size == 0 || *size > t.segment_size) {
        return bad("segment " + std::to_string(*index) + " has size " + std::to_string(*size));
      }
      if (!seen.insert(*index).second) {
        return bad("segment " + std::to_string(*index) + " is listed twice");
      }
      auto metainfo = crypto::base64_decode(string_field(s, "metainfo"));
      if (!metainfo || metainfo->empty()) {
        return bad("segment " + std::to_string(*index) + " has no base64 metainfo");
      }
      t.segments.push_back(PublishedSegment{*index, *offset, *size, std::move(*metainfo)});
    }
  }
  if (auto seed = answer.find("seed"); seed != answer.end() && !seed->is_null()) {
    t.seed = endpoint_field(*seed);
    if (!t.seed) return bad("\"seed\" is not {\"ip\", \"port\"} of a data endpoint");
  }
  std::sort(t.segments.begin(), t.segments.end(),
            [](const PublishedSegment& a, const PublishedSegment& b) { return a.index < b.index; });
  if (t.state != "ready") return t;

  t.size = count_field(answer, "size");
  if (!t.size) return bad("a ready task without \"size\"");
  t.sha256 = string_field(answer, "sha256");
  if (!lower_hex64(t.sha256)) return bad("a ready task without a sha256");
  int64_t covered = 0;
  for (size_t i = 0; i < t.segments.size(); ++i) {
    const PublishedSegment& s = t.segments[i];
    const bool last = i + 1 == t.segments.size();
    if (s.index != static_cast<int64_t>(i) || (!last && s.size != t.segment_size)) {
      return bad("segments do not cover the content (segment " + std::to_string(s.index) + ")");
    }
    covered = s.offset + s.size;
  }
  if (covered != *t.size) {
    return bad("segments cover " + std::to_string(covered) + " of " + std::to_string(*t.size) +
               " bytes");
  }
  return t;
}

bool all_segments_known(const PublishedTask& task) {
  if (task.state != "ready" || !task.size) return false;
  int64_t covered = 0;
  for (const auto& s : task.segments) covered += s.size;
  return covered == *task.size;
}

PartsHasher::PartsHasher() : hash_(std::make_unique<crypto::Sha256>()) {}
PartsHasher::~PartsHasher() = default;

Status PartsHasher::add(const std::string& part) {
  std::vector<char> buf(1 << 20);
  const int in = ::open(part.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return io_error("read", part);
  while (true) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e = io_error("read", part);
      ::close(in);
      return e;
    }
    if (n == 0) break;
    hash_->update(buf.data(), static_cast<size_t>(n));
    size_ += n;
  }
  ::close(in);
  ++count_;
  return {};
}

PartsDigest PartsHasher::finish() { return {hash_->finish_hex(), size_}; }

Result<PartsDigest> digest_parts(const std::vector<std::string>& parts) {
  PartsHasher hasher;
  for (const auto& part : parts) {
    if (Status st = hasher.add(part); !st) return st.error();
  }
  return hasher.finish();
}

}  // namespace starling::peer

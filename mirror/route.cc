#include "mirror/route.h"

#include <algorithm>
#include <cctype>

namespace starling::mirror {
namespace {

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool hex_digit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool valid_component(std::string_view c) {
  if (c.empty() || !lower_alnum(c.front()) || !lower_alnum(c.back())) return false;
  for (size_t i = 0; i < c.size();) {
    if (lower_alnum(c[i])) {
      ++i;
      continue;
    }
    size_t run = i;
    while (run < c.size() && !lower_alnum(c[run])) ++run;
    const std::string_view sep = c.substr(i, run - i);
    const bool dashes = std::all_of(sep.begin(), sep.end(), [](char x) { return x == '-'; });
    if (sep != "." && sep != "_" && sep != "__" && !dashes) return false;
    i = run;
  }
  return true;
}

bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  const auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t.front())) return false;
  return std::all_of(t.begin(), t.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

// "sha256:<64 hex>" lowercased, or "" when it is not one.
std::string sha256_digest(std::string_view d) {
  if (!d.starts_with("sha256:") || d.size() != 7 + 64) return "";
  std::string out(d);
  for (size_t i = 7; i < out.size(); ++i) {
    if (!hex_digit(out[i])) return "";
    out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[i])));
  }
  return out;
}

// Manifest references: a tag, or a digest "ALGORITHM:HEX" the upstream checks itself.
bool valid_manifest_reference(std::string_view r) {
  if (valid_tag(r)) return true;
  const size_t colon = r.find(':');
  if (colon == std::string_view::npos || colon == 0 || r.size() - colon - 1 < 32 ||
      r.size() > 7 + 128) {
    return false;
  }
  const auto alg = r.substr(0, colon);
  const auto hex = r.substr(colon + 1);
  return std::all_of(alg.begin(), alg.end(), [](char c) { return lower_alnum(c) || c == '+'; }) &&
         std::all_of(hex.begin(), hex.end(), hex_digit);
}

// The query of tags/list: n=DIGITS and last=TAG, in any order, each at most once.
bool valid_tags_query(std::string_view q) {
  bool n = false, last = false;
  while (!q.empty()) {
    const size_t amp = std::min(q.find('&'), q.size());
    const std::string_view kv = q.substr(0, amp);
    q.remove_prefix(std::min(amp + 1, q.size()));
    if (kv.starts_with("n=") && !n) {
      const auto v = kv.substr(2);
      if (v.empty() || v.size() > 6 ||
          !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return false;
      }
      n = true;
    } else if (kv.starts_with("last=") && !last && valid_tag(kv.substr(5))) {
      last = true;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

bool valid_repository_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  while (true) {
    const size_t slash = name.find('/');
    if (!valid_component(name.substr(0, slash))) return false;
    if (slash == std::string_view::npos) return true;
    name.remove_prefix(slash + 1);
  }
}

RoutedRequest route(std::string_view target) {
  RoutedRequest r;
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const bool has_query = q != std::string_view::npos;
  if (path == "/v2/" || path == "/v2") {
    if (!has_query) r.route = Route::kBase;
    return r;
  }
  if (!path.starts_with("/v2/")) return r;
  const std::string_view rest = path.substr(4);
  const auto split = [&](std::string_view marker, std::string_view& name, std::string_view& tail) {
    const size_t at = rest.rfind(marker);
    if (at == std::string_view::npos || at == 0) return false;
    name = rest.substr(0, at);
    tail = rest.substr(at + marker.size());
    return true;
  };
  std::string_view name, tail;
  if (split("/blobs/", name, tail)) {
    std::string digest = sha256_digest(tail);
    if (has_query || digest.empty() || !valid_repository_name(name)) return r;
    r = {Route::kBlob, std::string(name), std::move(digest)};
  } else if (split("/manifests/", name, tail)) {
    if (has_query || !valid_manifest_reference(tail) || !valid_repository_name(name)) return r;
    r = {Route::kManifest, std::string(name), std::string(tail)};
  } else if (rest.ends_with("/tags/list") && rest.size() > 10) {
    name = rest.substr(0, rest.size() - 10);
    if (!valid_repository_name(name) || (has_query && !valid_tags_query(target.substr(q + 1)))) {
      return r;
    }
    r = {Route::kTags, std::string(name), ""};
  }
  return r;
}

}  // namespace starling::mirror

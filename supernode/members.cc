#include "supernode/members.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace starling::supernode {

namespace {

constexpr size_t kMaxMembers = 9;

Error bad(const std::string& what) { return make_error(kErrBadMembers, "--members: " + what); }

template <class T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-';
  });
}

}  // namespace

Result<Member> parse_member(std::string_view text) {
  if (text.find(',') != std::string_view::npos) {
    return make_error(kErrBadMembers, "\"" + std::string(text) + "\" is not one ID=HOST:PORT");
  }
  auto one = parse_members(text);
  if (!one.ok()) {
    Error e = one.error();
    if (e.message.rfind("--members: ", 0) == 0) e.message = e.message.substr(11);
    return e;
  }
  return one->front();
}

std::vector<Member> members_of(const raft::ConfState& conf, const std::vector<Member>& fallback) {
  std::vector<raft::NodeId> ids = conf.voters;
  ids.insert(ids.end(), conf.learners.begin(), conf.learners.end());
  std::sort(ids.begin(), ids.end());
  std::vector<Member> out;
  for (raft::NodeId id : ids) {
    if (const raft::MemberAddress* a = raft::find_address(conf, id)) {
      auto m = parse_member(std::to_string(id.get()) + "=" + a->address);
      if (m.ok()) {
        out.push_back(std::move(m).value());
        continue;
      }
    }
    if (auto m = find_member(fallback, id)) out.push_back(*m);
  }
  return out;
}

raft::ConfState bootstrap_conf(const std::vector<Member>& members) {
  raft::ConfState conf;
  for (const auto& m : members) {
    conf.voters.push_back(m.id);
    conf.addresses.push_back(raft::MemberAddress{m.id, m.address()});
  }
  std::sort(conf.voters.begin(), conf.voters.end());
  std::sort(
      conf.addresses.begin(), conf.addresses.end(),
      [](const raft::MemberAddress& a, const raft::MemberAddress& b) { return a.node < b.node; });
  return conf;
}

Result<std::vector<Member>> parse_members(std::string_view text) {
  std::vector<Member> out;
  std::set<uint64_t> ids;
  std::set<std::string> addresses;
  if (text.empty()) return bad("empty; expected ID=HOST:PORT[,ID=HOST:PORT...]");
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(pos, comma - pos);
    const std::string shown(item);
    size_t eq = item.find('=');
    size_t colon = item.rfind(':');
    if (eq == std::string_view::npos || colon == std::string_view::npos || colon < eq) {
      return bad("\"" + shown + "\" is not ID=HOST:PORT");
    }
    auto id = parse_number<uint64_t>(item.substr(0, eq));
    if (!id || *id == 0 || *id > (uint64_t{1} << 63)) {
      return bad("\"" + shown + "\": the id must be a number from 1");
    }
    std::string_view host = item.substr(eq + 1, colon - eq - 1);
    if (!valid_host(host)) return bad("\"" + shown + "\": bad host");
    auto port = parse_number<uint16_t>(item.substr(colon + 1));
    if (!port || *port == 0) return bad("\"" + shown + "\": the port must be in 1..65535");
    Member m{raft::NodeId{*id}, std::string(host), *port};
    if (!ids.insert(*id).second) return bad("id " + std::to_string(*id) + " appears twice");
    if (!addresses.insert(m.address()).second) return bad(m.address() + " appears twice");
    out.push_back(std::move(m));
    if (out.size() > kMaxMembers) return bad("at most 9 members");
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end(),
            [](const Member& a, const Member& b) { return a.id.get() < b.id.get(); });
  return out;
}

std::optional<Member> find_member(const std::vector<Member>& members, raft::NodeId id) {
  for (const auto& m : members) {
    if (m.id == id) return m;
  }
  return std::nullopt;
}

}  // namespace starling::supernode

// The supernodes of a cluster as configured on the command line (`--members
// 1=10.0.0.1:8002,2=10.0.0.2:8002,3=10.0.0.3:8002`): each member's Raft id and mesh address.
// Pure: parsing and lookups only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "supernode/raft/types.h"

namespace starling::supernode {

inline constexpr char kErrBadMembers[] = "cluster.bad_members";

struct Member {
  raft::NodeId id;
  std::string host;  // an IPv4 address or a host name
  uint16_t port = 0;
  std::string address() const { return host + ":" + std::to_string(port); }
  bool operator==(const Member&) const = default;
};

// "ID=HOST:PORT[,ID=HOST:PORT...]": ids 1..2^63, unique, ports 1..65535, addresses unique,
// at most 9 members. Sorted by id. kErrBadMembers naming the offending item otherwise.
Result<std::vector<Member>> parse_members(std::string_view text);

// One "ID=HOST:PORT" (the `starling member add` argument), same rules as parse_members.
Result<Member> parse_member(std::string_view text);

// The member with `id`, or nullopt.
std::optional<Member> find_member(const std::vector<Member>& members, raft::NodeId id);

// The members of a Raft membership (voters and learners, sorted by id) with their addresses:
// the address replicated with the membership (raft::ConfState::addresses, "HOST:PORT"), else
// the one in `fallback` (the command line: stores made before addresses were replicated, and
// a joining member before it received the membership). A member with neither (or with an
// address that does not parse) is left out: nobody can reach it.
std::vector<Member> members_of(const raft::ConfState& conf, const std::vector<Member>& fallback);

// The Raft bootstrap membership for `members`: all voters, with their addresses.
raft::ConfState bootstrap_conf(const std::vector<Member>& members);

}  // namespace starling::supernode

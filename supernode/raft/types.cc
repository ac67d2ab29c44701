#include "supernode/raft/types.h"

namespace starling::raft {

std::string encode_conf_change(const ConfChange& cc) {
  std::string out;
  out.push_back('C');
  out.push_back(static_cast<char>(cc.type));
  uint64_t v = cc.node.get();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  out += cc.context;  // the rest of the bytes (none in entries written before contexts)
  return out;
}

std::optional<ConfChange> decode_conf_change(const std::string& data) {
  if (data.size() < 10 || data.size() > 10 + kMaxConfContext || data[0] != 'C') {
    return std::nullopt;
  }
  auto type = static_cast<uint8_t>(data[1]);
  if (type < 1 || type > 3) return std::nullopt;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(data[static_cast<size_t>(2 + i)])) << (8 * i);
  }
  ConfChange cc{static_cast<ConfChangeType>(type), NodeId{v}, data.substr(10)};
  if (!cc.context.empty() && cc.type != ConfChangeType::kAddLearner) return std::nullopt;
  return cc;
}

const MemberAddress* find_address(const ConfState& conf, NodeId node) {
  for (const auto& a : conf.addresses) {
    if (a.node == node) return &a;
  }
  return nullptr;
}

const char* role_name(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "?";
}

const char* message_type_name(MessageType type) {
  switch (type) {
    case MessageType::kApp:
      return "App";
    case MessageType::kAppResp:
      return "AppResp";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResp:
      return "VoteResp";
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResp:
      return "PreVoteResp";
    case MessageType::kSnap:
      return "Snap";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResp:
      return "HeartbeatResp";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
  }
  return "?";
}

}  // namespace starling::raft

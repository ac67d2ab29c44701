#include "supernode/swarm_registry.h"

#include <algorithm>
#include <set>

namespace starling::supernode {

void SwarmRegistry::announce(const Announcement& a, SwarmClock::time_point now) {
  std::vector<int64_t> segments = a.segments;
  std::sort(segments.begin(), segments.end());
  segments.erase(std::unique(segments.begin(), segments.end()), segments.end());
  swarms_[a.task][a.node] = SwarmMember{
      a.node, a.ip, a.port, a.done_bytes, a.total_bytes, a.uploaded_bytes, std::move(segments),
      now};
}

std::vector<SwarmMember> SwarmRegistry::members(const TaskId& task,
                                                SwarmClock::time_point now) const {
  std::vector<SwarmMember> out;
  auto it = swarms_.find(task);
  if (it == swarms_.end()) return out;
  for (const auto& [node, m] : it->second) {
    if (live(m, now)) out.push_back(m);
  }
  return out;
}

size_t SwarmRegistry::live_nodes(SwarmClock::time_point now) const {
  std::set<NodeId> nodes;
  for (const auto& [task, swarm] : swarms_) {
    for (const auto& [node, m] : swarm) {
      if (live(m, now)) nodes.insert(node);
    }
  }
  return nodes.size();
}

void SwarmRegistry::expire(SwarmClock::time_point now) {
  for (auto it = swarms_.begin(); it != swarms_.end();) {
    auto& swarm = it->second;
    std::erase_if(swarm, [&](const auto& entry) { return !live(entry.second, now); });
    it = swarm.empty() ? swarms_.erase(it) : std::next(it);
  }
}

}  // namespace starling::supernode

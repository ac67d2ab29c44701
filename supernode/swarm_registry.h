// The swarm registry (ARCHITECTURE §5): soft state, fed by Announce, never replicated. Which
// nodes announced which task, where their data port is, how far they are and which of the
// task's segments (each its own torrent, ARCHITECTURE §3) they have added. Entries expire
// `ttl` after their last announce. Pure: every call takes `now`; no clock, no I/O.
//
// Not thread-safe: one owner (the service serialises access).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/ids.h"

namespace starling::supernode {

using SwarmClock = std::chrono::steady_clock;

struct Announcement {
  TaskId task;
  NodeId node;
  std::string ip;
  uint16_t port = 0;  // SSL data port
  int64_t done_bytes = 0;
  int64_t total_bytes = 0;
  int64_t uploaded_bytes = 0;
  std::vector<int64_t> segments;  // indices the node has added (downloading or complete)
};

struct SwarmMember {
  NodeId node;
  std::string ip;
  uint16_t port = 0;
  int64_t done_bytes = 0;
  int64_t total_bytes = 0;
  int64_t uploaded_bytes = 0;
  std::vector<int64_t> segments;  // ascending, distinct: as of its last announce
  SwarmClock::time_point last_seen;
  bool complete() const { return total_bytes > 0 && done_bytes >= total_bytes; }
};

class SwarmRegistry {
 public:
  static constexpr std::chrono::seconds kDefaultTtl{30};

  explicit SwarmRegistry(SwarmClock::duration ttl = kDefaultTtl) : ttl_(ttl) {}

  // Records (or refreshes) `a.node` in the swarm of `a.task`, last seen at `now`. Its segment
  // list replaces the previous one (sorted, duplicates dropped).
  void announce(const Announcement& a, SwarmClock::time_point now);
  // Live members of the task's swarm (last seen less than ttl before `now`), by node id.
  std::vector<SwarmMember> members(const TaskId& task, SwarmClock::time_point now) const;
  // Distinct live nodes across all tasks.
  size_t live_nodes(SwarmClock::time_point now) const;
  // Drops every expired entry (and tasks left empty).
  void expire(SwarmClock::time_point now);

 private:
  bool live(const SwarmMember& m, SwarmClock::time_point now) const {
    return now - m.last_seen < ttl_;
  }

  SwarmClock::duration ttl_;
  std::unordered_map<TaskId, std::map<NodeId, SwarmMember>> swarms_;
};

}  // namespace starling::supernode

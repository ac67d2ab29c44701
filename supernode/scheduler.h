// The scheduler (ARCHITECTURE §5): a pure function that ranks the peers a requester should
// connect to. No I/O, no clock, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/ids.h"

namespace starling::supernode {

struct Candidate {
  NodeId node;
  std::string ip;
  uint16_t port = 0;              // SSL data port
  int64_t done_bytes = 0;         // verified bytes it holds
  int64_t uploaded_bytes = 0;     // its upload so far: a proxy for its load
  bool seed = false;              // holds the whole content
  std::vector<int64_t> segments;  // segment indices it has added (carried through unchanged)
  bool operator==(const Candidate&) const = default;
};

// Ranks `candidates` for `requester`, best first, at most `limit` entries:
//  - never the requester itself; one entry per node (the first occurrence wins);
//  - more done_bytes first (they hold pieces the requester lacks);
//  - then fewer uploaded_bytes (less loaded);
//  - then node id ascending, so equal candidates come out in a stable order.
// Each candidate comes out unchanged (endpoint, seed flag, segment list): the requester
// connects to it for the segments it lists.
std::vector<Candidate> rank(const NodeId& requester, std::vector<Candidate> candidates,
                            size_t limit);

}  // namespace starling::supernode

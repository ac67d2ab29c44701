#include "supernode/scheduler.h"

#include <algorithm>
#include <unordered_set>

namespace starling::supernode {

std::vector<Candidate> rank(const NodeId& requester, std::vector<Candidate> candidates,
                            size_t limit) {
  std::vector<Candidate> out;
  out.reserve(candidates.size());
  std::unordered_set<NodeId> seen{requester};
  for (auto& c : candidates) {
    if (seen.insert(c.node).second) out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    if (a.done_bytes != b.done_bytes) return a.done_bytes > b.done_bytes;
    if (a.uploaded_bytes != b.uploaded_bytes) return a.uploaded_bytes < b.uploaded_bytes;
    return a.node < b.node;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace starling::supernode

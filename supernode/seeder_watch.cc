#include "supernode/seeder_watch.h"

#include <algorithm>

namespace starling::supernode {

void SeederWatch::heard(const std::string& node, Clock::time_point at) {
  auto& last = heard_[node];
  last = std::max(last, at);
}

void SeederWatch::lead(Clock::time_point at) { leading_since_ = at; }

std::vector<SeededTask> SeederWatch::silent(const std::vector<SeededTask>& ready,
                                            const std::string& self, Clock::time_point now) const {
  std::vector<SeededTask> out;
  for (const auto& t : ready) {
    if (t.seeder == self) continue;
    Clock::time_point since = leading_since_;
    if (auto it = heard_.find(t.seeder); it != heard_.end()) since = std::max(since, it->second);
    if (now - since >= timeout_) out.push_back(t);
  }
  return out;
}

}  // namespace starling::supernode

#include "peer/engine/reveal_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace starling::peer {

int reveal_window(int64_t upload_bytes_per_second, int64_t piece_size) {
  if (upload_bytes_per_second <= 0 || piece_size <= 0) return kMinRevealWindow;
  const double pieces =
      static_cast<double>(upload_bytes_per_second) * kRevealLead / static_cast<double>(piece_size);
  if (pieces >= kMaxRevealWindow) return kMaxRevealWindow;
  const int whole = static_cast<int>(std::ceil(pieces));
  return whole < kMinRevealWindow ? kMinRevealWindow : whole;
}

namespace {
constexpr int64_t kNever = std::numeric_limits<int64_t>::min();
}  // namespace

RevealPlan::RevealPlan(int pieces, int64_t second_copy_delay_ms)
    : count_(static_cast<size_t>(pieces > 0 ? pieces : 0), 0),
      shown_at_(count_.size(), kNever),
      second_copy_delay_ms_(second_copy_delay_ms) {}

size_t RevealPlan::live_index(int peer) const {
  if (peer < 0 || static_cast<size_t>(peer) >= peers_.size() ||
      !peers_[static_cast<size_t>(peer)].live) {
    std::abort();  // a slot this plan never gave out: a caller bug
  }
  return static_cast<size_t>(peer);
}

int RevealPlan::add_peer() {
  size_t slot = 0;
  while (slot < peers_.size() && peers_[slot].live) ++slot;
  if (slot == peers_.size()) peers_.emplace_back();
  Peer& p = peers_[slot];
  p.live = true;
  p.state.assign(count_.size(), kNone);
  p.outstanding = 0;
  return static_cast<int>(slot);
}

void RevealPlan::remove_peer(int peer) {
  Peer& p = at(peer);
  // A complete downloader left this seed, not the swarm (reveal_plan.h): its copies stay.
  const bool complete =
      std::all_of(p.state.begin(), p.state.end(), [](uint8_t s) { return s == kHas; });
  if (!complete) {
    for (size_t i = 0; i < p.state.size(); ++i) {
      if (p.state[i] != kNone) --count_[i];
    }
  }
  p.live = false;
  p.state.clear();
  p.outstanding = 0;
}

void RevealPlan::peer_has(int peer, int piece) {
  Peer& p = at(peer);
  if (piece < 0 || static_cast<size_t>(piece) >= count_.size()) return;  // a bad HAVE
  uint8_t& s = p.state[static_cast<size_t>(piece)];
  if (s == kHas) return;
  if (s == kShown) {
    --p.outstanding;
  } else {
    ++count_[static_cast<size_t>(piece)];
  }
  s = kHas;
}

int RevealPlan::outstanding(int peer) const { return peers_[live_index(peer)].outstanding; }

int RevealPlan::next_for(int peer, int64_t now_ms) {
  Peer& p = at(peer);
  const size_t n = count_.size();
  if (n == 0) return -1;
  // Slots 0, 1, 2, ... start at 0, n/2, n/4, 3n/4, ...: apart, whatever the number of slots.
  size_t offset = 0;
  for (size_t bit = 1, k = static_cast<size_t>(peer); k != 0; bit <<= 1, k >>= 1) {
    if (k & 1) offset += n / (bit * 2);
  }
  int best = -1;
  for (size_t j = 0; j < n; ++j) {
    const size_t i = (offset + j) % n;
    if (p.state[i] != kNone) continue;
    if (count_[i] > 0 && shown_at_[i] != kNever && now_ms - shown_at_[i] < second_copy_delay_ms_) {
      continue;  // a second copy, and the swarm may still pass the first one on
    }
    if (best < 0 || count_[i] < count_[static_cast<size_t>(best)]) best = static_cast<int>(i);
    if (count_[i] == 0) break;  // nobody has it: as rare as it gets
  }
  if (best < 0) return -1;
  p.state[static_cast<size_t>(best)] = kShown;
  shown_at_[static_cast<size_t>(best)] = now_ms;
  ++p.outstanding;
  ++count_[static_cast<size_t>(best)];
  return best;
}

}  // namespace starling::peer

// RevealPlan: which piece a segment's seed shows each downloader next (the seed's half of
// "seed sharing", peer/engine/README.md). Pure: no libtorrent, no I/O, no clock.
//
// Every downloader would otherwise ask the seed for whatever it lacks, and libtorrent picks
// independently in each of them: the seed sent each piece to 2.2 downloaders on average and its
// uplink, not the downloaders', bounded the swarm (docs/bench/headline.md). With a plan the
// seed shows a downloader only a few pieces at a time (`window`), each time the piece the
// fewest downloaders have or were shown, so every piece leaves the seed about once and the
// downloaders trade the rest among themselves. With a second-copy delay a piece the swarm
// already has is shown again only after the delay, so the seed's uplink carries first copies
// while the downloaders pass pieces on (peer/engine/README.md, "Second copies wait").
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace starling::peer {

// How many pieces a seed keeps shown to one downloader and not yet had by it: enough for
// kRevealLead of the connection's current upload rate, at least kMinRevealWindow, at most
// kMaxRevealWindow. A fixed 4 capped one loopback connection at ~110 MB/s (each next piece is
// shown only after a HAVE came back, docs/bench/tls.md); on a 100 Mbit/s link shared by
// several downloaders it stays 4, so a piece still leaves the seed about once.
inline constexpr int kMinRevealWindow = 4;
inline constexpr int kMaxRevealWindow = 64;
inline constexpr double kRevealLead = 0.25;  // seconds
int reveal_window(int64_t upload_bytes_per_second, int64_t piece_size);

// How long a seed waits before it shows a piece some downloader has or was shown to another
// one: long enough for the downloaders to pass it on among themselves (on 100 Mbit/s links a
// 1 MiB piece takes ~0.1 s per hop), short enough that a downloader nobody else serves still
// gets every piece from the seed. Measured in the 8-peer lab (bench/README.md): with 8 s the
// seed sends 1.00 x the file; 3 s (with an earlier variant of the rule) 1.11-1.18 x.
inline constexpr int64_t kSecondCopyDelayMs = 8000;

class RevealPlan {
 public:
  // second_copy_delay_ms 0: a piece is shown again as soon as it is the rarest one left.
  explicit RevealPlan(int pieces, int64_t second_copy_delay_ms = 0);

  // A new downloader: its slot (slots of removed downloaders are reused).
  int add_peer();
  // The downloader left: what it had or was shown no longer counts, unless it had every piece.
  // A downloader that completes becomes a seed, and libtorrent closes connections between seeds:
  // it left this seed, not the swarm, and still serves the others (if it left the swarm too, a
  // piece waits at most the delay).
  void remove_peer(int peer);
  // The downloader has `piece` (it said so: HAVE, a bitfield, have-all).
  void peer_has(int peer, int piece);
  // Pieces shown to `peer` that it does not have yet.
  int outstanding(int peer) const;
  // The next piece to show `peer`, marked shown: one it neither has nor was shown, the one the
  // fewest downloaders have or were shown; among equals the first at or after an offset that
  // differs per slot (so downloaders starting together start apart). A piece some downloader
  // has or was shown qualifies only when second_copy_delay_ms have passed since it was last
  // shown (or it never was: a downloader had it from elsewhere). -1 when there is none.
  // now_ms: any monotonic clock in milliseconds, never decreasing between calls.
  int next_for(int peer, int64_t now_ms = 0);

  int pieces() const { return static_cast<int>(count_.size()); }
  // How many downloaders have or were shown `piece`.
  int count(int piece) const { return count_[static_cast<size_t>(piece)]; }

 private:
  enum : uint8_t { kNone = 0, kShown = 1, kHas = 2 };
  struct Peer {
    bool live = false;
    std::vector<uint8_t> state;  // per piece: kNone, kShown or kHas
    int outstanding = 0;
  };
  // The index of a live slot this plan gave out; aborts on any other (a caller bug).
  size_t live_index(int peer) const;
  Peer& at(int peer) { return peers_[live_index(peer)]; }

  std::vector<int> count_;         // per piece: live downloaders with kShown or kHas
  std::vector<int64_t> shown_at_;  // per piece: now_ms when last shown, kNever if never
  int64_t second_copy_delay_ms_;
  std::vector<Peer> peers_;
};

}  // namespace starling::peer

// RevealPlan, the pure core of seed sharing: which piece a seed shows each downloader next.
#include "peer/engine/reveal_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <random>
#include <set>
#include <vector>

namespace starling::peer {
namespace {

// Downloaders asking in turn, each keeping `window` pieces shown: the first `pieces` pieces
// shown are all different (each leaves the seed once before any leaves it twice).
TEST(RevealPlan, EveryPieceIsShownOnceBeforeAnyTwice) {
  for (int peers : {1, 2, 3, 8, 13}) {
    RevealPlan plan(64);
    std::vector<int> slots;
    for (int p = 0; p < peers; ++p) slots.push_back(plan.add_peer());
    std::vector<int> shown;
    for (int round = 0; shown.size() < 64; ++round) {
      for (int s : slots) {
        const int piece = plan.next_for(s);
        ASSERT_GE(piece, 0);
        shown.push_back(piece);
        plan.peer_has(s, piece);  // it downloaded it at once
      }
    }
    std::set<int> distinct(shown.begin(), shown.begin() + 64);
    EXPECT_EQ(distinct.size(), 64u) << peers << " downloaders";
  }
}

TEST(RevealPlan, DownloadersStartingTogetherStartApart) {
  RevealPlan plan(64);
  std::vector<int> first;
  for (int p = 0; p < 4; ++p) first.push_back(plan.next_for(plan.add_peer()));
  EXPECT_EQ(first, (std::vector<int>{0, 32, 16, 48}));
}

TEST(RevealPlan, PrefersThePieceFewestHaveAndNeverShowsOneTwiceToTheSamePeer) {
  RevealPlan plan(4);
  const int a = plan.add_peer();
  const int b = plan.add_peer();
  const int c = plan.add_peer();
  plan.peer_has(a, 0);
  plan.peer_has(a, 1);
  plan.peer_has(b, 1);
  plan.peer_has(b, 2);
  // Counts: 0 -> 1, 1 -> 2, 2 -> 1, 3 -> 0.
  EXPECT_EQ(plan.next_for(c), 3);
  EXPECT_EQ(plan.count(3), 1);
  EXPECT_EQ(plan.next_for(c), 2);  // 0 and 2 tie at 1: the first from c's offset (slot 2: 1)
  EXPECT_EQ(plan.next_for(c), 0);
  EXPECT_EQ(plan.next_for(c), 1);
  EXPECT_EQ(plan.next_for(c), -1);  // shown everything
  EXPECT_EQ(plan.outstanding(c), 4);
  plan.peer_has(c, 3);
  plan.peer_has(c, 3);  // a repeated HAVE changes nothing
  EXPECT_EQ(plan.outstanding(c), 3);
  EXPECT_EQ(plan.count(3), 1);
  // b has 1 and 2: it is shown 3 (count 1) before 0 (count 2).
  EXPECT_EQ(plan.next_for(b), 3);
  EXPECT_EQ(plan.next_for(b), 0);
  EXPECT_EQ(plan.next_for(b), -1);
  plan.peer_has(b, 99);  // a HAVE for a piece that does not exist is ignored
  plan.peer_has(b, -1);
  EXPECT_EQ(plan.outstanding(b), 2);
}

TEST(RevealPlan, ALeavingDownloaderNoLongerCounts) {
  RevealPlan plan(2);
  const int a = plan.add_peer();
  EXPECT_EQ(plan.next_for(a), 0);
  plan.peer_has(a, 1);
  EXPECT_EQ(plan.count(0), 1);
  EXPECT_EQ(plan.count(1), 1);
  plan.remove_peer(a);
  EXPECT_EQ(plan.count(0), 0);
  EXPECT_EQ(plan.count(1), 0);
  const int b = plan.add_peer();
  EXPECT_EQ(b, a);  // the slot is reused, clean
  EXPECT_EQ(plan.outstanding(b), 0);
  EXPECT_EQ(plan.next_for(b), 0);
}

TEST(RevealWindow, FollowsTheConnectionsRateWithinItsBounds) {
  constexpr int64_t kMiB = 1024 * 1024;
  EXPECT_EQ(reveal_window(0, kMiB), kMinRevealWindow);  // a new connection: no rate yet
  EXPECT_EQ(reveal_window(-5, kMiB), kMinRevealWindow);
  EXPECT_EQ(reveal_window(100 * kMiB, 0), kMinRevealWindow);
  // A 100 Mbit/s link, even unshared: 12.5 MB/s x 0.25 s = 3 MiB, fewer than the minimum.
  EXPECT_EQ(reveal_window(12'500'000, kMiB), kMinRevealWindow);
  // 110 MB/s with 2 MiB pieces: 13.1 pieces in 0.25 s -> 14; 300 MB/s -> 36.
  EXPECT_EQ(reveal_window(110'000'000, 2 * kMiB), 14);
  EXPECT_EQ(reveal_window(300'000'000, 2 * kMiB), 36);
  EXPECT_EQ(reveal_window(32 * kMiB, kMiB), 8);  // exactly 8 pieces: not rounded up
  EXPECT_EQ(reveal_window(int64_t{1} << 40, 16 * 1024), kMaxRevealWindow);
  EXPECT_EQ(reveal_window(std::numeric_limits<int64_t>::max(), 1), kMaxRevealWindow);
}

// With a second-copy delay, a piece shown to one downloader is shown to another only once the
// delay has passed since it was last shown: meanwhile the downloaders pass it on.
TEST(RevealPlan, SecondCopiesWaitForTheDelay) {
  RevealPlan plan(4, 1000);
  const int a = plan.add_peer();
  const int b = plan.add_peer();
  EXPECT_EQ(plan.next_for(a, 0), 0);
  EXPECT_EQ(plan.next_for(a, 0), 1);
  EXPECT_EQ(plan.next_for(b, 10), 2);  // slot 1 starts at 2: a first copy, at once
  EXPECT_EQ(plan.next_for(b, 10), 3);
  EXPECT_EQ(plan.next_for(b, 500), -1);  // all four have a first copy out
  plan.peer_has(a, 0);
  plan.peer_has(a, 1);
  EXPECT_EQ(plan.next_for(b, 999), -1);
  EXPECT_EQ(plan.next_for(b, 1000), 0);  // 0 and 1 were shown at 0
  EXPECT_EQ(plan.next_for(b, 1000), 1);
  EXPECT_EQ(plan.next_for(a, 1000), -1);  // 2 and 3 were shown at 10
  EXPECT_EQ(plan.next_for(a, 1010), 2);
  const int c = plan.add_peer();
  // 0 and 1 were shown again at 1000 and 2 at 1010: each waits a delay from then.
  EXPECT_EQ(plan.next_for(c, 1500), 3);
  EXPECT_EQ(plan.next_for(c, 1999), -1);
  EXPECT_EQ(plan.next_for(c, 2000), 1);  // slot 2 starts at 1
  EXPECT_EQ(plan.next_for(c, 2000), 0);
  EXPECT_EQ(plan.next_for(c, 2009), -1);
  EXPECT_EQ(plan.next_for(c, 2010), 2);
}

// A first copy shown to a downloader that leaves before it has the piece is nobody's: the piece
// is shown again at once. A piece a downloader had from elsewhere (never shown) does not wait.
TEST(RevealPlan, ALostOrNeverShownCopyDoesNotWait) {
  RevealPlan plan(2, 1000);
  const int a = plan.add_peer();
  EXPECT_EQ(plan.next_for(a, 0), 0);
  plan.remove_peer(a);
  const int b = plan.add_peer();
  EXPECT_EQ(plan.next_for(b, 1), 0);
  const int c = plan.add_peer();
  plan.peer_has(c, 1);  // from another downloader, say
  EXPECT_EQ(plan.next_for(b, 2), 1);
}

// A downloader that completes and disconnects (libtorrent closes seed-to-seed connections after
// a minute with nothing to trade) still serves the swarm: its copies keep counting, so the
// others wait for the delay.
TEST(RevealPlan, ACompleteDownloaderThatLeavesStillCounts) {
  RevealPlan plan(2, 1000);
  const int a = plan.add_peer();
  EXPECT_EQ(plan.next_for(a, 0), 0);
  EXPECT_EQ(plan.next_for(a, 0), 1);
  plan.peer_has(a, 0);
  plan.peer_has(a, 1);
  plan.remove_peer(a);
  EXPECT_EQ(plan.count(0), 1);
  EXPECT_EQ(plan.count(1), 1);
  const int b = plan.add_peer();
  EXPECT_EQ(plan.next_for(b, 999), -1);
  EXPECT_EQ(plan.next_for(b, 1000), 0);
  // One that had only part of the file is gone with what it had.
  const int c = plan.add_peer();
  plan.peer_has(c, 1);
  EXPECT_EQ(plan.count(1), 2);
  plan.remove_peer(c);
  EXPECT_EQ(plan.count(1), 1);
}

TEST(RevealPlan, NoPiecesNoReveals) {
  RevealPlan plan(0);
  EXPECT_EQ(plan.next_for(plan.add_peer()), -1);
}

// Random joins, leaves, HAVEs and reveals on a clock that moves 0-9 ms per step, with second
// copies delayed 0, 5 or 50 ms; after every step each piece's count is the number of live
// downloaders that have it or were shown it, and each outstanding() is the number of pieces
// shown to it that it does not have. Every reveal is one the rules allow and the rarest of
// those; -1 only when none is allowed. Seeded; the seed is printed.
TEST(RevealPlan, FollowsItsRulesUnderRandomEvents) {
  const uint64_t seed = std::random_device{}();
  std::printf("RevealPlan random events seed %llu\n", static_cast<unsigned long long>(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  constexpr int64_t kNever = -1;
  for (int run = 0; run < 300; ++run) {
    const int pieces = static_cast<int>(rng() % 20);
    const int64_t delay = std::vector<int64_t>{0, 5, 50}[rng() % 3];
    RevealPlan plan(pieces, delay);
    // The model: per live slot, per piece: 0 none, 1 shown, 2 has; per piece: last shown.
    std::vector<std::vector<int>> model;
    std::vector<bool> live;
    std::vector<int64_t> shown_at(static_cast<size_t>(pieces), kNever);
    std::vector<int> retired(static_cast<size_t>(pieces), 0);  // complete downloaders that left
    int64_t now = 0;
    const auto count = [&](int piece) {
      int n = retired[static_cast<size_t>(piece)];
      for (size_t t = 0; t < live.size(); ++t) {
        if (live[t] && model[t][static_cast<size_t>(piece)] != 0) ++n;
      }
      return n;
    };
    const auto allowed = [&](const std::vector<int>& m, int piece) {
      const auto i = static_cast<size_t>(piece);
      return m[i] == 0 &&
             (count(piece) == 0 || shown_at[i] == kNever || now - shown_at[i] >= delay);
    };
    for (int step = 0; step < 300; ++step) {
      now += static_cast<int64_t>(rng() % 10);
      const int what = static_cast<int>(rng() % 10);
      std::vector<int> slots;
      for (size_t s = 0; s < live.size(); ++s) {
        if (live[s]) slots.push_back(static_cast<int>(s));
      }
      if (what == 0 || slots.empty()) {
        const int s = plan.add_peer();
        if (static_cast<size_t>(s) >= live.size()) {
          live.resize(static_cast<size_t>(s) + 1, false);
          model.resize(static_cast<size_t>(s) + 1);
        }
        ASSERT_FALSE(live[static_cast<size_t>(s)]);
        live[static_cast<size_t>(s)] = true;
        model[static_cast<size_t>(s)].assign(static_cast<size_t>(pieces), 0);
        continue;
      }
      const int s = slots[rng() % slots.size()];
      auto& m = model[static_cast<size_t>(s)];
      if (what == 1) {
        plan.remove_peer(s);
        live[static_cast<size_t>(s)] = false;
        if (std::all_of(m.begin(), m.end(), [](int v) { return v == 2; })) {
          for (int& r : retired) ++r;
        }
      } else if (what < 5 && pieces > 0) {
        const int piece = static_cast<int>(rng() % static_cast<uint64_t>(pieces));
        plan.peer_has(s, piece);
        m[static_cast<size_t>(piece)] = 2;
      } else {
        int rarest = -1;  // the lowest count among the allowed pieces
        for (int i = 0; i < pieces; ++i) {
          if (allowed(m, i) && (rarest < 0 || count(i) < rarest)) rarest = count(i);
        }
        const int piece = plan.next_for(s, now);
        if (piece < 0) {
          ASSERT_EQ(rarest, -1) << "an allowed piece was left unshown at step " << step;
        } else {
          ASSERT_TRUE(allowed(m, piece)) << "piece " << piece << " at step " << step;
          ASSERT_EQ(count(piece), rarest) << "not the rarest, step " << step;
          m[static_cast<size_t>(piece)] = 1;
          shown_at[static_cast<size_t>(piece)] = now;
        }
      }
      for (int i = 0; i < pieces; ++i) {
        ASSERT_EQ(plan.count(i), count(i)) << "piece " << i << " at step " << step;
      }
      for (size_t t = 0; t < live.size(); ++t) {
        if (!live[t]) continue;
        int shown = 0;
        for (int v : model[t]) shown += v == 1 ? 1 : 0;
        ASSERT_EQ(plan.outstanding(static_cast<int>(t)), shown);
      }
    }
  }
}

}  // namespace
}  // namespace starling::peer

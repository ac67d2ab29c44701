// The Raft paper's rules (Ongaro & Ousterhout, §5) as unit tests, in the spirit of etcd-raft's
// raft_paper_test.go: one RawNode at a time, messages stepped in by hand, outputs inspected.
#include <gtest/gtest.h>

#include <set>

#include "supernode/raft/raw_node.h"
#include "tests/raft/network.h"

namespace starling::raft::testing {
namespace {

ConfState voters(std::vector<uint64_t> ids) {
  ConfState c;
  for (uint64_t i : ids) c.voters.push_back(nid(i));
  return c;
}

// Appends entries with the given terms at indexes 1..n.
void load(MemoryStorage& s, std::vector<uint64_t> terms) {
  std::vector<Entry> ents;
  for (size_t i = 0; i < terms.size(); ++i) {
    ents.push_back(Entry{tm(terms[i]), li(i + 1), EntryType::kNormal, "x"});
  }
  s.append(ents);
}

Config cfg(uint64_t id, bool pre_vote = false) {
  Config c;
  c.id = nid(id);
  c.pre_vote = pre_vote;
  c.seed = id;
  return c;
}

// Handles one Ready as the driver would: persist, then hand back the messages.
std::vector<Message> take(RawNode& n, MemoryStorage& s) {
  Ready rd = n.ready();
  s.append(rd.entries);
  if (rd.hard_state) s.set_hard_state(*rd.hard_state);
  n.advance(rd);
  return rd.messages;
}

Message msg(MessageType type, uint64_t from, uint64_t to, uint64_t term) {
  Message m;
  m.type = type;
  m.from = nid(from);
  m.to = nid(to);
  m.term = tm(term);
  return m;
}

// Makes node 1 of `ids` leader at term+1 by stepping in votes.
void make_leader(RawNode& n, const std::vector<uint64_t>& ids) {
  n.campaign();
  for (uint64_t id : ids) {
    if (id == 1) continue;
    (void)n.step(msg(MessageType::kVoteResp, id, 1, n.term().get()));
  }
  ASSERT_EQ(n.role(), Role::kLeader);
}

// §5.2: a follower that hears nothing within its election timeout becomes a candidate, votes
// for itself, and asks every other voter, at term + 1.
TEST(RaftPaper, FollowerStartsElectionOnTimeout) {
  MemoryStorage s(voters({1, 2, 3}));
  RawNode n(cfg(1), s);
  for (int i = 0; i < 2 * 10; ++i) n.tick();
  EXPECT_EQ(n.role(), Role::kCandidate);
  EXPECT_EQ(n.term(), tm(1));
  EXPECT_EQ(n.vote(), nid(1));
  auto out = take(n, s);
  std::set<uint64_t> to;
  for (auto& m : out) {
    EXPECT_EQ(m.type, MessageType::kVote);
    EXPECT_EQ(m.term, tm(1));
    to.insert(m.to.get());
  }
  EXPECT_EQ(to, (std::set<uint64_t>{2, 3}));
}

// §5.2: election timeouts are randomized in [et, 2et) and differ between nodes.
TEST(RaftPaper, ElectionTimeoutIsRandomized) {
  std::set<int> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    MemoryStorage s(voters({1, 2, 3}));
    Config c = cfg(1);
    c.seed = seed;
    RawNode n(c, s);
    int t = n.randomized_election_timeout();
    EXPECT_GE(t, 10);
    EXPECT_LT(t, 20);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 5u);
  // Same seed, same timeout: determinism.
  MemoryStorage s1(voters({1})), s2(voters({1}));
  Config c = cfg(1);
  c.seed = 42;
  EXPECT_EQ(RawNode(c, s1).randomized_election_timeout(),
            RawNode(c, s2).randomized_election_timeout());
}

// §5.2: a candidate wins with a majority, becomes leader, and sends an empty entry of its term.
TEST(RaftPaper, CandidateWinsWithMajority) {
  for (size_t size : {1u, 3u, 5u}) {
    std::vector<uint64_t> ids;
    for (uint64_t i = 1; i <= size; ++i) ids.push_back(i);
    MemoryStorage s(voters(ids));
    RawNode n(cfg(1), s);
    n.campaign();
    for (size_t i = 2; i <= size / 2 + 1; ++i) {
      EXPECT_NE(n.role(), Role::kLeader) << size;
      (void)n.step(msg(MessageType::kVoteResp, i, 1, 1));
    }
    EXPECT_EQ(n.role(), Role::kLeader) << size;
    EXPECT_EQ(n.log().last_index(), li(1));
    EXPECT_EQ(n.log().last_term(), tm(1));
  }
}

// §5.2: with a majority of rejections, the candidate returns to follower.
TEST(RaftPaper, CandidateLosesWithMajorityRejecting) {
  MemoryStorage s(voters({1, 2, 3, 4, 5}));
  RawNode n(cfg(1), s);
  n.campaign();
  Message r = msg(MessageType::kVoteResp, 2, 1, 1);
  r.reject = true;
  (void)n.step(r);
  r.from = nid(3);
  (void)n.step(r);
  EXPECT_EQ(n.role(), Role::kCandidate);
  r.from = nid(4);
  (void)n.step(r);
  EXPECT_EQ(n.role(), Role::kFollower);
}

// §5.2: a candidate that hears from a leader of its term becomes its follower.
TEST(RaftPaper, CandidateYieldsToLeaderOfSameTerm) {
  MemoryStorage s(voters({1, 2, 3}));
  RawNode n(cfg(1), s);
  n.campaign();
  Message app = msg(MessageType::kApp, 2, 1, 1);
  (void)n.step(app);
  EXPECT_EQ(n.role(), Role::kFollower);
  EXPECT_EQ(n.lead(), nid(2));
}

// §5.1: any node seeing a higher term adopts it and becomes a follower (leader included).
TEST(RaftPaper, HigherTermMakesFollower) {
  for (Role start : {Role::kFollower, Role::kCandidate, Role::kLeader}) {
    MemoryStorage s(voters({1, 2, 3}));
    RawNode n(cfg(1), s);
    if (start == Role::kCandidate) n.campaign();
    if (start == Role::kLeader) make_leader(n, {1, 2, 3});
    (void)n.step(msg(MessageType::kApp, 2, 1, 5));
    EXPECT_EQ(n.role(), Role::kFollower) << role_name(start);
    EXPECT_EQ(n.term(), tm(5));
    EXPECT_EQ(n.lead(), nid(2));
  }
}

// §5.1: a message of an older term is not obeyed; the sender learns the newer term.
TEST(RaftPaper, StaleTermIsRejected) {
  MemoryStorage s(voters({1, 2, 3}));
  s.set_hard_state(HardState{tm(3), kNoNode, li(0)});
  RawNode n(cfg(1), s);
  (void)n.step(msg(MessageType::kApp, 2, 1, 2));
  auto out = take(n, s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, MessageType::kAppResp);
  EXPECT_EQ(out[0].term, tm(3));
  EXPECT_EQ(n.lead(), kNoNode);
}

// §5.2: at most one vote per term, first come first served; repeated requests from the
// same candidate are granted again.
TEST(RaftPaper, VoteOncePerTerm) {
  MemoryStorage s(voters({1, 2, 3}));
  RawNode n(cfg(1), s);
  Message v = msg(MessageType::kVote, 2, 1, 1);
  (void)n.step(v);
  v.from = nid(3);
  (void)n.step(v);
  v.from = nid(2);
  (void)n.step(v);
  auto out = take(n, s);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_TRUE(out[1].reject);
  EXPECT_FALSE(out[2].reject);
  EXPECT_EQ(n.vote(), nid(2));
  EXPECT_EQ(n.hard_state().vote, nid(2));
}

// §5.4.1: a voter denies its vote to a candidate whose log is less up to date.
TEST(RaftPaper, VoterRejectsLessUpToDateLog) {
  struct Case {
    uint64_t last_index, last_term;
    bool granted;
  } cases[] = {
      {3, 2, true},   // same
      {4, 2, true},   // same term, longer
      {2, 2, false},  // same term, shorter
      {9, 1, false},  // older last term, however long
      {1, 3, true},   // newer last term, however short
  };
  for (const Case& c : cases) {
    MemoryStorage s(voters({1, 2, 3}));
    load(s, {1, 2, 2});
    s.set_hard_state(HardState{tm(2), kNoNode, li(0)});
    RawNode n(cfg(1), s);
    Message v = msg(MessageType::kVote, 2, 1, 3);
    v.index = li(c.last_index);
    v.log_term = tm(c.last_term);
    (void)n.step(v);
    auto out = take(n, s);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(!out[0].reject, c.granted) << c.last_index << "/" << c.last_term;
  }
}

// §5.3 log matching: a follower refuses entries whose predecessor does not match, and
// replaces a conflicting suffix by the leader's entries.
TEST(RaftPaper, FollowerChecksPredecessorAndTruncatesConflicts) {
  MemoryStorage s(voters({1, 2, 3}));
  load(s, {1, 1, 2, 2});
  s.set_hard_state(HardState{tm(2), kNoNode, li(1)});
  RawNode n(cfg(1), s);

  Message bad = msg(MessageType::kApp, 2, 1, 3);
  bad.index = li(4);
  bad.log_term = tm(3);  // we have term 2 at 4
  (void)n.step(bad);
  auto out = take(n, s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].reject);
  // The hint points below the conflict: the last index whose term is <= 3 is 4, but the
  // leader's term at 4 is 3, so the leader will look for its own last index of term <= 2.
  EXPECT_LE(out[0].reject_hint, li(4));

  Message good = msg(MessageType::kApp, 2, 1, 3);
  good.index = li(2);
  good.log_term = tm(1);
  good.entries = {Entry{tm(3), li(3), EntryType::kNormal, "a"}};
  good.commit = li(3);
  (void)n.step(good);
  out = take(n, s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].reject);
  EXPECT_EQ(out[0].index, li(3));
  EXPECT_EQ(n.log().last_index(), li(3));  // entry 4 (term 2) removed
  EXPECT_EQ(n.log().term_or_zero(li(3)), tm(3));
  EXPECT_EQ(n.log().committed(), li(3));
}

// §5.3: the leader finds the point of agreement quickly: the reject hint skips a whole
// term's worth of divergent entries per round trip instead of one entry.
TEST(RaftPaper, FastBacktrackingNeedsFewRoundTrips) {
  Network net({1, 2, 3}, [](Config& c) { c.pre_vote = false; });
  // Node 2 holds 100 entries of term 2 that never committed; 1 and 3 hold 5 of term 1 and a
  // later term; 1 becomes leader at term 4.
  std::vector<uint64_t> long_log(5, 1);
  long_log.insert(long_log.end(), 100, 2);
  load(net.storage(2), long_log);
  net.storage(2).set_hard_state(HardState{tm(2), kNoNode, li(5)});
  for (uint64_t id : {1u, 3u}) {
    load(net.storage(id), {1, 1, 1, 1, 1, 3, 3});
    net.storage(id).set_hard_state(HardState{tm(3), kNoNode, li(5)});
  }
  for (uint64_t id : {1u, 2u, 3u}) net.restart(id);
  net.elect(1);
  ASSERT_EQ(net.leader(), 1u);
  size_t apps_to_2 = 0;
  for (const Message& m : net.delivered) {
    if (m.type == MessageType::kApp && m.to == nid(2)) ++apps_to_2;
  }
  EXPECT_LE(apps_to_2, 4u);
  EXPECT_EQ(net.node(2).log().last_index(), net.node(1).log().last_index());
  EXPECT_EQ(net.node(2).log().term_or_zero(li(6)), tm(3));
}

// §5.3: an entry is committed once the leader replicated it on a majority.
TEST(RaftPaper, LeaderCommitsOnMajority) {
  MemoryStorage s(voters({1, 2, 3, 4, 5}));
  RawNode n(cfg(1), s);
  make_leader(n, {1, 2, 3});
  ASSERT_TRUE(n.propose("a").ok());
  EXPECT_EQ(n.log().last_index(), li(2));
  (void)take(n, s);  // the leader's own copy counts once durable
  Message r = msg(MessageType::kAppResp, 2, 1, 1);
  r.index = li(2);
  (void)n.step(r);
  EXPECT_EQ(n.log().committed(), li(0));
  r.from = nid(3);
  (void)n.step(r);
  EXPECT_EQ(n.log().committed(), li(2));
}

// Raft thesis §10.2.1: the leader may send its entries before writing them to its disk, so its
// own copy counts toward the quorum only once durable (advance() after persisting), and a
// quorum of followers commits without it.
TEST(RaftPaper, LeaderCountsItsOwnEntryOnlyOnceDurable) {
  MemoryStorage s(voters({1, 2, 3}));
  RawNode n(cfg(1), s);
  make_leader(n, {1, 2});
  (void)take(n, s);  // the term's empty entry at 1, durable
  Message r = msg(MessageType::kAppResp, 2, 1, 1);
  r.index = li(1);
  (void)n.step(r);
  ASSERT_EQ(n.log().committed(), li(1));
  (void)take(n, s);
  ASSERT_TRUE(n.propose("a").ok());
  Ready rd = n.ready();  // sent (the kApps) but not yet persisted
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_FALSE(rd.hard_state_sync);
  r.index = li(2);
  (void)n.step(r);  // follower 2 has it durably: 1 copy of 3, the leader's does not count
  EXPECT_EQ(n.log().committed(), li(1));
  s.append(rd.entries);
  n.advance(rd);  // now the leader's copy is durable: 2 of 3
  EXPECT_EQ(n.log().committed(), li(2));
  // Two followers commit without the leader's copy.
  ASSERT_TRUE(n.propose("b").ok());
  Ready rd2 = n.ready();
  r.index = li(3);
  (void)n.step(r);
  r.from = nid(3);
  (void)n.step(r);
  EXPECT_EQ(n.log().committed(), li(3));
  s.append(rd2.entries);
  n.advance(rd2);
  // A commit-only hard state does not need a sync; a new term does.
  Ready rd3 = n.ready();
  ASSERT_TRUE(rd3.hard_state.has_value());
  EXPECT_EQ(rd3.hard_state->commit, li(3));
  EXPECT_FALSE(rd3.must_sync());
  n.advance(rd3);
}

// §5.4.2, Figure 8: a leader never commits an entry of an earlier term by counting replicas;
// it commits it only indirectly, once an entry of its own term is on a majority.
TEST(RaftPaper, Figure8OnlyCurrentTermEntriesCommitByCounting) {
  MemoryStorage s(voters({1, 2, 3, 4, 5}));
  load(s, {1, 2});  // index 2 was written by the term-2 leader (S1 in the figure)
  s.set_hard_state(HardState{tm(3), kNoNode, li(1)});
  RawNode n(cfg(1), s);
  make_leader(n, {1, 2, 3});  // term 4
  ASSERT_EQ(n.term(), tm(4));
  ASSERT_EQ(n.log().last_index(), li(3));  // the term-4 empty entry
  (void)take(n, s);
  Message r = msg(MessageType::kAppResp, 2, 1, 4);
  r.index = li(2);
  (void)n.step(r);
  r.from = nid(3);
  (void)n.step(r);
  // Index 2 (term 2) is now on S1, S2, S3: a majority, yet not committed (Figure 8 (c)).
  EXPECT_EQ(n.log().committed(), li(1));
  r.index = li(3);
  (void)n.step(r);
  r.from = nid(2);
  (void)n.step(r);
  EXPECT_EQ(n.log().committed(), li(3));  // (e): the term-4 entry commits, and 2 with it
}

// Figure 8 (d) end to end: the uncommitted term-2 entry can be overwritten by a leader of a
// later term that never saw it, and every node converges on that leader's log.
TEST(RaftPaper, Figure8UncommittedOlderEntryCanBeReplaced) {
  Network net({1, 2, 3, 4, 5}, [](Config& c) { c.pre_vote = false; });
  for (uint64_t id : {1u, 2u}) {
    load(net.storage(id), {1, 2});
    net.storage(id).set_hard_state(HardState{tm(2), kNoNode, li(1)});
  }
  load(net.storage(5), {1, 3});
  net.storage(5).set_hard_state(HardState{tm(3), kNoNode, li(1)});
  for (uint64_t id : {3u, 4u}) {
    load(net.storage(id), {1});
    net.storage(id).set_hard_state(HardState{tm(3), kNoNode, li(1)});
  }
  for (uint64_t id = 1; id <= 5; ++id) net.restart(id);
  net.elect(5);  // S5 wins with votes from S3, S4 (their logs are not more up to date)
  ASSERT_EQ(net.leader(), 5u);
  for (uint64_t id = 1; id <= 5; ++id) {
    EXPECT_EQ(net.node(id).log().term_or_zero(li(2)), tm(3)) << id;
    EXPECT_EQ(net.node(id).log().committed(), li(3)) << id;
  }
}

// §5.4.1 leader completeness: a node missing a committed entry cannot be elected.
TEST(RaftPaper, LaggingNodeCannotWin) {
  Network net({1, 2, 3}, [](Config& c) { c.pre_vote = false; });
  net.elect(1);
  net.cut(1, 3);
  ASSERT_TRUE(net.node(1).propose("committed").ok());
  net.stabilize();
  ASSERT_EQ(net.node(2).log().committed(), li(2));
  net.isolate(1);
  net.heal();
  net.isolate(1);
  net.elect(3);
  EXPECT_NE(net.node(3).role(), Role::kLeader);
  // 3 may have raised its term while failing; 2 wins within a couple of attempts.
  for (int i = 0; i < 3 && net.node(2).role() != Role::kLeader; ++i) net.elect(2);
  EXPECT_EQ(net.node(2).role(), Role::kLeader);
  EXPECT_EQ(net.node(2).log().term_or_zero(li(2)), tm(1));
}

// §5.3 state machine safety in the small: every node applies the same entries in order.
TEST(RaftPaper, AllNodesApplySameSequence) {
  Network net({1, 2, 3});
  net.elect(1);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(net.node(1).propose("v" + std::to_string(i)).ok());
    net.stabilize();
  }
  for (uint64_t id : {1u, 2u, 3u}) {
    ASSERT_EQ(net.test_node(id).applied.size(), 10u);
    EXPECT_EQ(net.test_node(id).applied, net.test_node(1).applied);
  }
}

// Proposals go to the leader only.
TEST(RaftPaper, FollowerRejectsProposal) {
  Network net({1, 2, 3});
  net.elect(1);
  auto st = net.node(2).propose("x");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, kErrNotLeader);
}

// The persisted hard state survives a restart: the node does not vote twice in a term.
TEST(RaftPaper, VoteSurvivesRestart) {
  Network net({1, 2, 3}, [](Config& c) { c.pre_vote = false; });
  net.isolate(1);
  net.isolate(3);
  Message v = msg(MessageType::kVote, 3, 2, 1);
  (void)net.node(2).step(v);
  net.stabilize();  // persists vote for 3
  net.restart(2);
  Message v1 = msg(MessageType::kVote, 1, 2, 1);
  (void)net.node(2).step(v1);
  Ready rd = net.node(2).ready();
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_TRUE(rd.messages[0].reject);
  net.node(2).advance(rd);
}

}  // namespace
}  // namespace starling::raft::testing

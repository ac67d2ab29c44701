// Scenario tests over the in-process network (tests/raft/network.h): drops, partitions and
// isolation, as a user of the cluster would see them.
#include <gtest/gtest.h>

#include "tests/raft/network.h"

namespace starling::raft::testing {
namespace {

bool has_read(TestNode& n, const std::string& ctx) {
  for (auto& r : n.read_states) {
    if (r.context == ctx) return true;
  }
  return false;
}

// A partitioned node keeps timing out; with pre-vote it never raises its term, so when it
// rejoins the leader is not disturbed.
TEST(RaftScenario, PreVotePreventsDisruptiveRejoin) {
  Network net({1, 2, 3});
  net.elect(1);
  ASSERT_EQ(net.leader(), 1u);
  net.isolate(3);
  net.run(100);
  EXPECT_EQ(net.node(3).term(), tm(1));
  EXPECT_NE(net.node(3).role(), Role::kLeader);
  net.heal();
  net.run(30);
  EXPECT_EQ(net.leader(), 1u);
  EXPECT_EQ(net.node(1).term(), tm(1));
  EXPECT_EQ(net.node(3).lead(), nid(1));
}

// The counterfactual: without pre-vote (and without check-quorum's lease) the rejoining node
// has inflated its term and deposes a healthy leader.
TEST(RaftScenario, WithoutPreVoteRejoinDisrupts) {
  Network net({1, 2, 3}, [](Config& c) {
    c.pre_vote = false;
    c.check_quorum = false;
  });
  net.elect(1);
  net.isolate(3);
  net.run(100);
  EXPECT_GT(net.node(3).term(), tm(2));
  net.heal();
  net.run(30);
  EXPECT_GT(net.node(1).term(), tm(1));
}

// Check-quorum: a leader that cannot hear a majority for an election timeout steps down,
// and the majority elects a new leader.
TEST(RaftScenario, LeaderStepsDownWithoutQuorum) {
  Network net({1, 2, 3});
  net.elect(1);
  net.isolate(1);
  net.run(25);
  EXPECT_EQ(net.node(1).role(), Role::kFollower);
  uint64_t l = net.leader();
  EXPECT_TRUE(l == 2 || l == 3) << l;
}

// ReadIndex on a healthy leader answers with an index covering every acknowledged write.
TEST(RaftScenario, ReadIndexCoversCommittedWrites) {
  Network net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.node(1).propose("w1").ok());
  net.stabilize();
  LogIndex committed = net.node(1).log().committed();
  ASSERT_TRUE(net.node(1).read_index("r1").ok());
  net.stabilize();
  ASSERT_EQ(net.test_node(1).read_states.size(), 1u);
  EXPECT_EQ(net.test_node(1).read_states[0].context, "r1");
  EXPECT_GE(net.test_node(1).read_states[0].index, committed);
  // A follower does not serve ReadIndex itself.
  EXPECT_EQ(net.node(2).read_index("r2").error().code, kErrNotLeader);
}

// A new leader refuses reads until it committed an entry of its own term.
TEST(RaftScenario, NewLeaderReadsWaitForItsFirstCommit) {
  Network net({1, 2, 3});
  net.drop_type(MessageType::kApp);  // votes pass, the leader's empty entry does not
  net.elect(1);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).read_index("r").error().code, kErrNotReady);
  net.heal();
  net.run(2);
  EXPECT_TRUE(net.node(1).read_index("r").ok());
}

// A leader that was deposed behind a partition never answers a read, even one it accepted
// while it still believed it led; the new leader's reads see the new writes.
TEST(RaftScenario, DeposedLeaderNeverAnswersRead) {
  Network net({1, 2, 3, 4, 5});
  net.elect(1);
  ASSERT_TRUE(net.node(1).propose("x=1").ok());
  net.stabilize();
  net.partition({{1, 2}, {3, 4, 5}});
  ASSERT_TRUE(net.node(1).read_index("stale").ok());  // accepted: 1 still thinks it leads
  net.stabilize();
  // The majority side times out and elects a new leader; node 1's clock is frozen, so it
  // still believes it leads (no check-quorum step-down yet).
  uint64_t fresh = 0;
  for (int i = 0; i < 40 && fresh == 0; ++i) {
    for (uint64_t id : {3u, 4u, 5u}) net.tick(id);
    net.stabilize();
    for (uint64_t id : {3u, 4u, 5u}) {
      if (net.node(id).role() == Role::kLeader) fresh = id;
    }
  }
  ASSERT_NE(fresh, 0u);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  ASSERT_TRUE(net.node(fresh).propose("x=2").ok());
  net.stabilize();
  EXPECT_FALSE(has_read(net.test_node(1), "stale"));
  // Reconnect: node 1's next heartbeats (which carry the read's round too) meet the new term.
  net.heal();
  ASSERT_TRUE(net.node(1).read_index("stale2").ok());
  net.run(30);
  EXPECT_FALSE(has_read(net.test_node(1), "stale"));
  EXPECT_FALSE(has_read(net.test_node(1), "stale2"));
  EXPECT_NE(net.node(1).role(), Role::kLeader);
  uint64_t l = net.leader();
  ASSERT_NE(l, 0u);
  ASSERT_TRUE(net.node(l).read_index("fresh").ok());
  net.stabilize();
  ASSERT_TRUE(has_read(net.test_node(l), "fresh"));
  EXPECT_GE(net.test_node(l).read_states.back().index, li(4));  // covers x=2
}

// A read on an isolated leader is never answered even if it keeps leading (check-quorum off).
TEST(RaftScenario, IsolatedLeaderWithoutCheckQuorumNeverAnswersRead) {
  Network net({1, 2, 3}, [](Config& c) { c.check_quorum = false; });
  net.elect(1);
  net.isolate(1);
  ASSERT_TRUE(net.node(1).read_index("r").ok());
  net.run(100);
  EXPECT_FALSE(has_read(net.test_node(1), "r"));
}

// Leadership transfer to an up-to-date follower: it campaigns at once and wins.
TEST(RaftScenario, LeadershipTransfer) {
  Network net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.node(1).transfer_leadership(nid(2)).ok());
  net.stabilize();
  EXPECT_EQ(net.leader(), 2u);
  EXPECT_EQ(net.node(2).term(), tm(2));
  EXPECT_EQ(net.node(1).lead(), nid(2));
}

// Transfer to a lagging follower: the leader first catches it up, refusing proposals
// meanwhile, then hands over.
TEST(RaftScenario, LeadershipTransferToLaggingFollower) {
  Network net({1, 2, 3});
  net.elect(1);
  net.cut(1, 3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.node(1).propose("v").ok());
  net.stabilize();
  ASSERT_TRUE(net.node(1).transfer_leadership(nid(3)).ok());
  EXPECT_EQ(net.node(1).propose("during").error().code, kErrProposalDropped);
  net.heal();
  net.stabilize();
  net.run(3);
  EXPECT_EQ(net.leader(), 3u);
  EXPECT_EQ(net.node(3).log().committed(), net.node(1).log().committed());
}

// A transfer to an unreachable node is abandoned after an election timeout.
TEST(RaftScenario, LeadershipTransferTimesOut) {
  Network net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  ASSERT_TRUE(net.node(1).transfer_leadership(nid(3)).ok());
  net.run(11);
  EXPECT_EQ(net.node(1).lead_transferee(), kNoNode);
  EXPECT_EQ(net.leader(), 1u);
  EXPECT_TRUE(net.node(1).propose("after").ok());
}

// A follower that fell behind a compacted log is brought up by a snapshot, then by entries.
TEST(RaftScenario, SnapshotInstallToLaggingFollower) {
  Network net({1, 2, 3});
  net.elect(1);
  net.isolate(3);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(net.node(1).propose("e" + std::to_string(i)).ok());
    net.stabilize();
  }
  net.compact(1);
  net.compact(2);
  ASSERT_GT(net.storage(1).first_index(), li(10));
  net.heal();
  net.run(5);
  bool snap_sent = false;
  for (auto& m : net.delivered) snap_sent |= m.type == MessageType::kSnap && m.to == nid(3);
  EXPECT_TRUE(snap_sent);
  EXPECT_EQ(net.storage(3).snapshot()->meta.index, net.storage(1).snapshot()->meta.index);
  EXPECT_EQ(net.storage(3).snapshot()->data, net.storage(1).snapshot()->data);
  ASSERT_TRUE(net.node(1).propose("after").ok());
  net.stabilize();
  EXPECT_EQ(net.node(3).log().committed(), net.node(1).log().committed());
  ASSERT_FALSE(net.test_node(3).applied.empty());
  EXPECT_EQ(net.test_node(3).applied.back().data, "after");
}

// Membership: a new node joins as a learner, catches up, is promoted automatically; a member
// is removed and its id can never be added again; one change at a time.
TEST(RaftScenario, MembershipChange) {
  Network net({1, 2, 3});
  net.elect(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.node(1).propose("v").ok());
  net.stabilize();
  ASSERT_TRUE(net.node(1).propose_conf_change({ConfChangeType::kAddLearner, nid(4)}).ok());
  ConfState told = net.node(1).conf_state();
  told.learners.push_back(nid(4));
  net.add_blank_node(4, told);
  EXPECT_NE(net.node(4).role(), Role::kCandidate);
  EXPECT_EQ(net.node(1).propose_conf_change({ConfChangeType::kAddLearner, nid(5)}).error().code,
            kErrConfChangeInFlight);
  net.stabilize();
  net.run(3);
  for (uint64_t id : {1u, 2u, 3u, 4u}) {
    EXPECT_EQ(net.node(id).conf_state().voters,
              (std::vector<NodeId>{nid(1), nid(2), nid(3), nid(4)}))
        << id;
  }
  EXPECT_EQ(net.test_node(4).applied.size(), 5u);  // caught up before promotion

  ASSERT_TRUE(net.node(1).propose_conf_change({ConfChangeType::kRemove, nid(3)}).ok());
  net.stabilize();
  net.run(2);
  EXPECT_EQ(net.node(1).conf_state().voters, (std::vector<NodeId>{nid(1), nid(2), nid(4)}));
  EXPECT_EQ(net.node(1).conf_state().removed, (std::vector<NodeId>{nid(3)}));
  auto again = net.node(1).propose_conf_change({ConfChangeType::kAddLearner, nid(3)});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, kErrBadConfChange);

  // The new three-voter group still commits with node 3 gone.
  net.isolate(3);
  ASSERT_TRUE(net.node(1).propose("after").ok());
  net.stabilize();
  EXPECT_EQ(net.test_node(4).applied.back().data, "after");
  // Membership survives a restart (persisted with the applied state).
  net.restart(4);
  EXPECT_EQ(net.node(4).conf_state().voters, (std::vector<NodeId>{nid(1), nid(2), nid(4)}));
}

// A node started without a membership (the supernode's --join) never campaigns and refuses
// entries — replaying the log from index 1 would build a wrong membership, since the
// bootstrap one is outside the log — until a snapshot brings the membership; the address
// carried by the change is recorded on every member and dropped on removal.
TEST(RaftScenario, NodeWithoutMembershipJoinsOnlyThroughASnapshot) {
  Network net({1, 2, 3});
  net.elect(1);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.node(1).propose("v").ok());
  net.stabilize();
  net.add_blank_node(4, ConfState{});
  net.run(40);
  EXPECT_EQ(net.node(4).role(), Role::kFollower);
  EXPECT_EQ(net.node(4).term(), Term{0});  // never campaigned; nobody talks to it yet
  auto in_use = net.node(1).propose_conf_change({ConfChangeType::kAddLearner, nid(2)});
  ASSERT_FALSE(in_use.ok());
  ASSERT_TRUE(
      net.node(1).propose_conf_change({ConfChangeType::kAddLearner, nid(4), "h4:8002"}).ok());
  net.stabilize();
  net.run(5);
  for (uint64_t id : {1u, 2u, 3u}) {
    const MemberAddress* a = find_address(net.node(id).conf_state(), nid(4));
    ASSERT_NE(a, nullptr) << id;
    EXPECT_EQ(a->address, "h4:8002");
  }
  // The leader still has the log from index 1: node 4 refuses it and stays empty.
  EXPECT_EQ(net.node(4).log().last_index(), li(0));
  EXPECT_TRUE(net.node(4).conf_state().voters.empty());
  EXPECT_EQ(net.node(1).conf_state().learners, std::vector<NodeId>{nid(4)});
  // Once the leader compacted (the driver does at every membership change), a snapshot.
  net.compact(1);
  net.run(5);
  net.stabilize();
  net.run(5);
  EXPECT_EQ(net.node(4).conf_state().voters, (std::vector<NodeId>{nid(1), nid(2), nid(3), nid(4)}));
  EXPECT_NE(find_address(net.node(4).conf_state(), nid(4)), nullptr);
  ASSERT_TRUE(net.node(1).propose("after").ok());
  net.stabilize();
  EXPECT_EQ(net.test_node(4).applied.back().data, "after");

  ASSERT_TRUE(net.node(1).propose_conf_change({ConfChangeType::kRemove, nid(4)}).ok());
  net.stabilize();
  EXPECT_EQ(find_address(net.node(1).conf_state(), nid(4)), nullptr);
  EXPECT_TRUE(net.node(1).conf_state().addresses.empty());
  auto reuse = net.node(1).propose_conf_change({ConfChangeType::kAddLearner, nid(4), "h4:1"});
  ASSERT_FALSE(reuse.ok());
  EXPECT_EQ(reuse.error().message, "raft: node 4 was removed (ids are never reused)");
  EXPECT_EQ(in_use.error().message, "raft: node 2 is already a member");
}

// Regression (simulation seed 6708 with empty-membership spares): a removed node that still
// granted votes let a lagging node, counting by a membership two changes old, win an
// election without a majority of the current membership and lose a committed entry. A node
// that applied its own removal refuses every vote and pre-vote.
TEST(RaftScenario, RemovedNodeNeverVotes) {
  Network net({1, 2, 3});
  net.add_blank_node(9, ConfState{{nid(1), nid(2), nid(3)}, {}, {nid(9)}});
  for (MessageType type : {MessageType::kPreVote, MessageType::kVote}) {
    Message m;
    m.type = type;
    m.from = nid(2);
    m.to = nid(9);
    m.term = Term{7};
    ASSERT_TRUE(net.node(9).step(m).ok());
    ASSERT_TRUE(net.node(9).has_ready());
    Ready rd = net.node(9).ready();
    ASSERT_EQ(rd.messages.size(), 1u) << message_type_name(type);
    EXPECT_TRUE(rd.messages[0].reject) << message_type_name(type);
    net.node(9).advance(rd);
  }
}

// Removing the leader: it stops leading once the change applies, and the rest elect anew.
TEST(RaftScenario, RemoveLeader) {
  Network net({1, 2, 3});
  net.elect(1);
  ASSERT_TRUE(net.node(1).propose_conf_change({ConfChangeType::kRemove, nid(1)}).ok());
  net.stabilize();
  EXPECT_NE(net.node(1).role(), Role::kLeader);
  net.isolate(1);
  net.run(40);
  uint64_t l = net.leader();
  EXPECT_TRUE(l == 2 || l == 3) << l;
  ASSERT_TRUE(net.node(l).propose("ok").ok());
  net.stabilize();
  EXPECT_EQ(net.test_node(2).applied.back().data, "ok");
}

}  // namespace
}  // namespace starling::raft::testing

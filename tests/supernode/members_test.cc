// --members parsing: what `starling supernode` accepts and the one-line errors it gives.
#include "supernode/members.h"

#include <gtest/gtest.h>

namespace starling::supernode {
namespace {

TEST(Members, ParsesAndSortsById) {
  auto m = parse_members("3=10.0.0.3:8002,1=10.0.0.1:8002,2=host-b.example:9000");
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0], (Member{raft::NodeId{1}, "10.0.0.1", 8002}));
  EXPECT_EQ((*m)[1].address(), "host-b.example:9000");
  EXPECT_EQ((*m)[2].id, raft::NodeId{3});
  EXPECT_EQ(find_member(*m, raft::NodeId{2})->host, "host-b.example");
  EXPECT_FALSE(find_member(*m, raft::NodeId{4}).has_value());
}

TEST(Members, RefusesBadInputWithTheItemNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "--members: empty; expected ID=HOST:PORT[,ID=HOST:PORT...]"},
      {"x", "--members: \"x\" is not ID=HOST:PORT"},
      {"1=a:1,", "--members: \"\" is not ID=HOST:PORT"},
      {"0=a:1", "--members: \"0=a:1\": the id must be a number from 1"},
      {"-1=a:1", "--members: \"-1=a:1\": the id must be a number from 1"},
      {"1=:1", "--members: \"1=:1\": bad host"},
      {"1=a b:1", "--members: \"1=a b:1\": bad host"},
      {"1=a:0", "--members: \"1=a:0\": the port must be in 1..65535"},
      {"1=a:65536", "--members: \"1=a:65536\": the port must be in 1..65535"},
      {"1=a:1,1=b:2", "--members: id 1 appears twice"},
      {"1=a:1,2=a:1", "--members: a:1 appears twice"},
      {"1=a:1,2=a:2,3=a:3,4=a:4,5=a:5,6=a:6,7=a:7,8=a:8,9=a:9,10=a:10",
       "--members: at most 9 members"},
  };
  for (const auto& [text, message] : cases) {
    auto m = parse_members(text);
    ASSERT_FALSE(m.ok()) << text;
    EXPECT_EQ(m.error().code, kErrBadMembers) << text;
    EXPECT_EQ(m.error().message, message) << text;
  }
}

TEST(Members, ParsesOneMember) {
  auto m = parse_member("4=10.0.0.4:8002");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(*m, (Member{raft::NodeId{4}, "10.0.0.4", 8002}));
  const std::pair<const char*, const char*> cases[] = {
      {"4-10.0.0.4:8002", "\"4-10.0.0.4:8002\" is not ID=HOST:PORT"},
      {"0=a:1", "\"0=a:1\": the id must be a number from 1"},
      {"4=a:1,5=b:2", "\"4=a:1,5=b:2\" is not one ID=HOST:PORT"},
      {"", "empty; expected ID=HOST:PORT[,ID=HOST:PORT...]"},
  };
  for (const auto& [text, message] : cases) {
    auto bad = parse_member(text);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_EQ(bad.error().code, kErrBadMembers) << text;
    EXPECT_EQ(bad.error().message, message) << text;
  }
}

TEST(Members, BootstrapMembershipCarriesTheAddresses) {
  auto m = parse_members("2=b:2,1=a:1");
  ASSERT_TRUE(m.ok());
  raft::ConfState conf = bootstrap_conf(*m);
  EXPECT_EQ(conf.voters, (std::vector<raft::NodeId>{raft::NodeId{1}, raft::NodeId{2}}));
  EXPECT_TRUE(conf.learners.empty());
  ASSERT_EQ(conf.addresses.size(), 2u);
  EXPECT_EQ(conf.addresses[0], (raft::MemberAddress{raft::NodeId{1}, "a:1"}));
  EXPECT_EQ(conf.addresses[1], (raft::MemberAddress{raft::NodeId{2}, "b:2"}));
  // And back: the members of that membership are the ones given.
  EXPECT_EQ(members_of(conf, {}), *m);
}

// The replicated address wins; the command line fills in members recorded without one (a
// store made before addresses were replicated); members nobody can reach are left out.
TEST(Members, MembersOfAMembershipUseReplicatedAddressesFirst) {
  raft::ConfState conf;
  conf.voters = {raft::NodeId{1}, raft::NodeId{2}, raft::NodeId{5}};
  conf.learners = {raft::NodeId{4}};
  conf.removed = {raft::NodeId{3}};
  conf.addresses = {
      {raft::NodeId{2}, "new-b:22"}, {raft::NodeId{4}, "d:4"}, {raft::NodeId{5}, "not an address"}};
  auto fallback = parse_members("1=a:1,2=b:2,3=c:3");
  ASSERT_TRUE(fallback.ok());
  auto ms = members_of(conf, *fallback);
  ASSERT_EQ(ms.size(), 3u);
  EXPECT_EQ(ms[0], (Member{raft::NodeId{1}, "a", 1}));
  EXPECT_EQ(ms[1], (Member{raft::NodeId{2}, "new-b", 22}));
  EXPECT_EQ(ms[2], (Member{raft::NodeId{4}, "d", 4}));
  EXPECT_TRUE(members_of(raft::ConfState{}, *fallback).empty());
}

}  // namespace
}  // namespace starling::supernode

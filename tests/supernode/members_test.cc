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

}  // namespace
}  // namespace starling::supernode

#include "common/task_id.h"

#include <gtest/gtest.h>

namespace starling {
namespace {

const std::string kHex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

TEST(ParseDigest, AcceptsSha256AndNormalisesCase) {
  auto d = parse_digest("sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->str(), "sha256:" + kHex);
}

TEST(ParseDigest, RejectsMalformedDigests) {
  struct Case {
    std::string text;
    std::string message_part;
  };
  const Case cases[] = {
      {"", "digest must look like"},
      {kHex, "digest must look like"},
      {"md5:" + kHex, "unsupported digest algorithm 'md5'"},
      {"sha256:" + kHex.substr(1), "64 hex digits"},
      {"sha256:" + kHex + "0", "64 hex digits"},
      {"sha256:" + kHex.substr(1) + "g", "64 hex digits"},
  };
  for (const auto& c : cases) {
    auto d = parse_digest(c.text);
    ASSERT_FALSE(d.ok()) << c.text;
    EXPECT_EQ(d.error().code, kErrBadDigest);
    EXPECT_NE(d.error().message.find(c.message_part), std::string::npos) << d.error().message;
  }
}

TEST(ValidateUrl, AcceptsHttpAndHttpsOnly) {
  EXPECT_TRUE(validate_url("http://h/f").ok());
  EXPECT_TRUE(validate_url("https://h:8080/f?x=1").ok());
  EXPECT_TRUE(validate_url("http://127.0.0.1").ok());
  EXPECT_FALSE(validate_url("ftp://h/f").ok());
  EXPECT_FALSE(validate_url("http:///f").ok());
  EXPECT_FALSE(validate_url("http://").ok());
  EXPECT_FALSE(validate_url("http://h/a b").ok());
  EXPECT_FALSE(validate_url("file").ok());
}

TEST(FilterUrl, RemovesOnlyNamedParameters) {
  EXPECT_EQ(filter_url("http://h/f?a=1&sig=x&b=2", {"sig"}), "http://h/f?a=1&b=2");
  EXPECT_EQ(filter_url("http://h/f?sig=x", {"sig"}), "http://h/f");
  EXPECT_EQ(filter_url("http://h/f?sig=x&Expires=3", {"sig", "Expires"}), "http://h/f");
  EXPECT_EQ(filter_url("http://h/f?signature=x", {"sig"}), "http://h/f?signature=x");
  EXPECT_EQ(filter_url("http://h/f?a=1#frag", {}), "http://h/f?a=1");
  EXPECT_EQ(filter_url("http://h/f?a=1&&b", {"x"}), "http://h/f?a=1&b");
}

TEST(DeriveTaskId, DigestDecidesWhenKnown) {
  Digest d{"sha256", kHex};
  auto a = derive_task_id({"http://one/x", d, "", {}});
  auto b = derive_task_id({"http://two/y", d, "tag", {}});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_EQ(a->get().size(), 64u);
}

TEST(DeriveTaskId, UrlFilterAndTagDecideOtherwise) {
  auto plain = derive_task_id({"http://h/f?a=1", std::nullopt, "", {}});
  auto signed1 = derive_task_id({"http://h/f?a=1&sig=1", std::nullopt, "", {"sig"}});
  auto signed2 = derive_task_id({"http://h/f?a=1&sig=2", std::nullopt, "", {"sig"}});
  auto tagged = derive_task_id({"http://h/f?a=1", std::nullopt, "v2", {}});
  auto other = derive_task_id({"http://h/g?a=1", std::nullopt, "", {}});
  ASSERT_TRUE(plain && signed1 && signed2 && tagged && other);
  EXPECT_EQ(plain->get(), signed1->get());
  EXPECT_EQ(signed1->get(), signed2->get());
  EXPECT_NE(plain->get(), tagged->get());
  EXPECT_NE(plain->get(), other->get());
}

TEST(DeriveTaskId, FieldsCannotBleedIntoEachOther) {
  // Without length prefixes "u" + tag "rl" could collide with "ur" + tag "l".
  auto a = derive_task_id({"http://h/u", std::nullopt, "rl", {}});
  auto b = derive_task_id({"http://h/ur", std::nullopt, "l", {}});
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->get(), b->get());
}

TEST(DeriveTaskId, KnownValueIsStable) {
  // Pinned so that a change of encoding (which would orphan every cached task) is noticed.
  auto id = derive_task_id({"http://example/file", std::nullopt, "", {}});
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->get(), "f7fade4db5f591eac2005cd3dfba51a4702f856a8a7912eef879d3aa6cb547ff");
}

TEST(DeriveTaskId, BadInputIsAnError) {
  EXPECT_EQ(derive_task_id({"ftp://h/f", std::nullopt, "", {}}).error().code, kErrBadUrl);
}

TEST(SegmentTorrentId, DistinctPerTaskAndIndexAndFromTheTaskId) {
  const TaskId task = *derive_task_id({"http://one/x", std::nullopt, "", {}});
  const TaskId other = *derive_task_id({"http://two/x", std::nullopt, "", {}});
  const TaskId s0 = segment_torrent_id(task, 0);
  EXPECT_EQ(s0.get().size(), 64u);
  EXPECT_EQ(s0, segment_torrent_id(task, 0));  // deterministic
  EXPECT_NE(s0, segment_torrent_id(task, 1));
  EXPECT_NE(s0, segment_torrent_id(other, 0));
  EXPECT_NE(s0, task);
  EXPECT_EQ(s0.get().find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace starling

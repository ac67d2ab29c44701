// The peer's view of a segmented task: parse_get_task (the GetTask answer, untrusted) and
// digest_parts (size and SHA-256 of the segment files in order, read in place).
#include "peer/segments.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "crypto/base64.h"
#include "crypto/hash.h"

namespace starling::peer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kSha(64, 'a');

json seg(int64_t index, int64_t offset, int64_t size, std::string metainfo = "d4:infoe") {
  return {{"index", index},
          {"offset", offset},
          {"size", size},
          {"metainfo", crypto::base64_encode(metainfo)}};
}

json fetching(json segments) {
  return {{"task_id", std::string(64, 'f')},
          {"url", "http://o/f"},
          {"state", "fetching"},
          {"segment_size", 10},
          {"segments", std::move(segments)}};
}

json ready(json segments, int64_t size) {
  json j = fetching(std::move(segments));
  j["state"] = "ready";
  j["size"] = size;
  j["sha256"] = kSha;
  return j;
}

TEST(ParseGetTask, AcceptsWhatTheContractDescribes) {
  auto f = parse_get_task(fetching({seg(0, 0, 10)}));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->state, "fetching");
  ASSERT_EQ(f->segments.size(), 1u);
  EXPECT_EQ(f->segments[0].metainfo, "d4:infoe");  // decoded from base64
  EXPECT_FALSE(f->size.has_value());
  EXPECT_FALSE(all_segments_known(*f));

  auto none_yet = parse_get_task(fetching(json::array()));
  ASSERT_TRUE(none_yet.ok());
  EXPECT_TRUE(none_yet->segments.empty());

  // Listed out of order: sorted by index.
  auto r = parse_get_task(ready({seg(2, 20, 5), seg(0, 0, 10), seg(1, 10, 10)}, 25));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->segments.size(), 3u);
  EXPECT_EQ(r->segments[0].index, 0);
  EXPECT_EQ(r->segments[2].index, 2);
  EXPECT_EQ(*r->size, 25);
  EXPECT_EQ(r->sha256, kSha);
  EXPECT_TRUE(all_segments_known(*r));

  // Empty content: ready, zero segments.
  auto empty = parse_get_task(ready(json::array(), 0));
  ASSERT_TRUE(empty.ok()) << empty.error().message;
  EXPECT_TRUE(all_segments_known(*empty));

  // The seeder's data endpoint, IPv4 or IPv6; absent or null means none known.
  EXPECT_FALSE(f->seed.has_value());
  json with_seed = fetching({seg(0, 0, 10)});
  with_seed["seed"] = {{"ip", "198.18.0.4"}, {"port", 65002}};
  auto s4 = parse_get_task(with_seed);
  ASSERT_TRUE(s4.ok()) << s4.error().message;
  ASSERT_TRUE(s4->seed.has_value());
  EXPECT_EQ(s4->seed->ip, "198.18.0.4");
  EXPECT_EQ(s4->seed->port, 65002);
  with_seed["seed"] = {{"ip", "2001:db8::1"}, {"port", 1}};
  auto s6 = parse_get_task(with_seed);
  ASSERT_TRUE(s6.ok()) << s6.error().message;
  EXPECT_EQ(s6->seed->ip, "2001:db8::1");
  with_seed["seed"] = nullptr;
  auto null_seed = parse_get_task(with_seed);
  ASSERT_TRUE(null_seed.ok());
  EXPECT_FALSE(null_seed->seed.has_value());

  auto failed = parse_get_task(
      {{"state", "failed"}, {"error", {{"code", "origin.http"}, {"message", "HTTP 404"}}}});
  ASSERT_TRUE(failed.ok());
  ASSERT_TRUE(failed->error.has_value());
  EXPECT_EQ(failed->error->code, "origin.http");
  EXPECT_EQ(failed->error->message, "HTTP 404");
}

TEST(ParseGetTask, RefusesAnswersThatBreakTheSegmentRules) {
  struct Case {
    const char* name;
    json answer;
    std::string message;
  };
  json no_state = fetching({});
  no_state.erase("state");
  json no_size = ready({seg(0, 0, 10)}, 10);
  no_size.erase("size");
  json bad_sha = ready({seg(0, 0, 10)}, 10);
  bad_sha["sha256"] = "ABC";
  json no_segment_size = fetching({seg(0, 0, 10)});
  no_segment_size.erase("segment_size");
  auto with_seed = [](json seed) {
    json j = fetching({seg(0, 0, 10)});
    j["seed"] = std::move(seed);
    return j;
  };
  const std::string kBadSeed = "\"seed\" is not {\"ip\", \"port\"}";
  const Case cases[] = {
      {"not an object", json::array(), "not an object"},
      {"no state", no_state, "no \"state\""},
      {"segments not a list", fetching("x"), "\"segments\" is not a list"},
      {"no segment size", no_segment_size, "without a positive \"segment_size\""},
      {"segment not an object", fetching({1}), "a segment is not an object"},
      {"negative index", fetching({seg(-1, 0, 10)}), "lacks index, offset or size"},
      {"wrong offset", fetching({seg(1, 5, 10)}), "segment 1 has offset 5"},
      {"huge index", fetching({seg(int64_t{1} << 62, 0, 10)}), "has offset"},
      {"empty segment", fetching({seg(0, 0, 0)}), "segment 0 has size 0"},
      {"oversized segment", fetching({seg(0, 0, 11)}), "segment 0 has size 11"},
      {"listed twice", fetching({seg(0, 0, 10), seg(0, 0, 10)}), "segment 0 is listed twice"},
      {"not base64", fetching({{{"index", 0}, {"offset", 0}, {"size", 10}, {"metainfo", "*"}}}),
       "segment 0 has no base64 metainfo"},
      {"ready without size", no_size, "without \"size\""},
      {"ready without sha256", bad_sha, "without a sha256"},
      {"ready with a gap", ready({seg(0, 0, 10), seg(2, 20, 5)}, 25), "do not cover"},
      {"ready with a short middle", ready({seg(0, 0, 4), seg(1, 10, 5)}, 15), "do not cover"},
      {"ready with too few bytes", ready({seg(0, 0, 10)}, 15), "cover 10 of 15 bytes"},
      {"ready with too many bytes", ready({seg(0, 0, 10)}, 5), "cover 10 of 5 bytes"},
      {"seed not an object", with_seed("198.18.0.4:65002"), kBadSeed},
      {"seed without ip", with_seed({{"port", 65002}}), kBadSeed},
      {"seed with a host name", with_seed({{"ip", "seed.example"}, {"port", 65002}}), kBadSeed},
      {"seed with a NUL in its ip",
       with_seed({{"ip", std::string("198.18.0.4\0x", 12)}, {"port", 65002}}), kBadSeed},
      {"seed with port 0", with_seed({{"ip", "198.18.0.4"}, {"port", 0}}), kBadSeed},
      {"seed with port 65536", with_seed({{"ip", "198.18.0.4"}, {"port", 65536}}), kBadSeed},
      {"seed with a string port", with_seed({{"ip", "198.18.0.4"}, {"port", "1"}}), kBadSeed},
  };
  for (const Case& c : cases) {
    auto r = parse_get_task(c.answer);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.error().code, kErrBadTaskInfo) << c.name;
    EXPECT_NE(r.error().message.find(c.message), std::string::npos)
        << c.name << ": " << r.error().message;
  }
}

class DigestParts : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/segments_test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << bytes;
    return dir_ + "/" + name;
  }
  std::string dir_;
};

TEST_F(DigestParts, HashesTheConcatenationInOrderWithoutWritingAnything) {
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 4096);
  const auto a = write("seg-0", big);
  const auto b = write("seg-1", "tail");
  const auto whole = write("whole", big + "tail");
  auto sum = digest_parts({a, b});
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  EXPECT_EQ(sum->size, static_cast<int64_t>(big.size() + 4));
  EXPECT_EQ(sum->sha256, *crypto::sha256_file(whole));
  // Order matters: the same parts swapped are other content.
  auto swapped = digest_parts({b, a});
  ASSERT_TRUE(swapped.ok());
  EXPECT_NE(swapped->sha256, sum->sha256);
  EXPECT_EQ(static_cast<size_t>(std::distance(fs::directory_iterator(dir_), {})), 3u);

  auto empty = digest_parts({});  // empty content
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size, 0);
  EXPECT_EQ(empty->sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_F(DigestParts, OnePartAtATimeGivesTheSameDigest) {
  std::string big(2 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 13 + i / 1000);
  const auto a = write("seg-0", big);
  const auto b = write("seg-1", big.substr(7));
  const auto c = write("seg-2", "");
  auto whole = digest_parts({a, b, c});
  ASSERT_TRUE(whole.ok()) << whole.error().message;

  PartsHasher hasher;
  EXPECT_EQ(hasher.count(), 0u);
  ASSERT_TRUE(hasher.add(a).ok());
  ASSERT_TRUE(hasher.add(b).ok());
  ASSERT_TRUE(hasher.add(c).ok());
  EXPECT_EQ(hasher.count(), 3u);
  const PartsDigest sum = hasher.finish();
  EXPECT_EQ(sum.sha256, whole->sha256);
  EXPECT_EQ(sum.size, whole->size);

  PartsHasher missing;
  ASSERT_TRUE(missing.add(a).ok());
  Status st = missing.add(dir_ + "/seg-9");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, kErrParts);
  EXPECT_EQ(st.error().message, "cannot read " + dir_ + "/seg-9: No such file or directory");
  EXPECT_EQ(missing.count(), 1u);
}

TEST_F(DigestParts, AMissingPartIsAnError) {
  const auto a = write("seg-0", "abc");
  auto sum = digest_parts({a, dir_ + "/seg-1"});
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.error().code, kErrParts);
  EXPECT_EQ(sum.error().message, "cannot read " + dir_ + "/seg-1: No such file or directory");
  auto dir = digest_parts({dir_});
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().message, "cannot read " + dir_ + ": Is a directory");
}

}  // namespace
}  // namespace starling::peer

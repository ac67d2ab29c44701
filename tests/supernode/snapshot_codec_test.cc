#include "supernode/tracker/snapshot_codec.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace starling::tracker {
namespace {

TaskRecord make_task(char c, TaskState state, uint64_t updated) {
  TaskRecord t;
  t.task_id = TaskId(std::string(64, c));
  t.url = "http://h/" + std::string(1, c);
  t.created_at = 5;
  t.state = state;
  t.seeder = std::string(64, '7');
  t.updated_index = LogIndex(updated);
  t.segment_size = 4;
  t.lease_epoch = LogIndex(updated > 1 ? updated - 1 : 1);
  if (state == TaskState::kReady) {
    t.segments = {SegmentRecord{0, 0, 4, std::string("d\0\xff", 3)}, SegmentRecord{1, 4, 4, "m1"},
                  SegmentRecord{2, 8, 2, "m2"}};
    t.size = 10;
    t.sha256 = std::string(64, 'e');
    t.seed_ip = "10.0.0.2";
    t.seed_port = 6881;
  }
  if (state == TaskState::kFetching) t.segments = {SegmentRecord{0, 0, 4, "f0"}};
  if (state == TaskState::kFailed) t.error = make_error("origin.io", "reset");
  return t;
}

CertificateRecord make_certificate(char c, const char* role, uint64_t issued,
                                   std::optional<Revocation> revocation) {
  CertificateRecord r;
  r.node_id = std::string(64, c);
  r.role = role;
  if (issued != 0) {
    r.not_before = 100;
    r.not_after = 200;
  }
  r.issued_index = LogIndex(issued);
  r.revocation = std::move(revocation);
  return r;
}

SnapshotData sample() {
  SnapshotData d;
  d.applied_index = LogIndex(40);
  d.tasks = {make_task('a', TaskState::kReady, 3), make_task('b', TaskState::kFailed, 4),
             make_task('c', TaskState::kFetching, 40)};
  d.tasks[0].digest = "sha256:" + std::string(64, '0');
  d.kv = {KvRecord{"a", std::string("\0\1", 2), 5, 9}, KvRecord{"a/b", "", 6, 6},
          KvRecord{"\xc3\xa9", "x", 40, 40}};
  d.certificates = {
      make_certificate('1', "peer", 8, std::nullopt),
      make_certificate('2', "admin", 9, Revocation{1700000000, "lost laptop", LogIndex(12)}),
      make_certificate('3', "", 0, Revocation{0, "", LogIndex(40)}),  // revoked, never issued
      make_certificate('4', "supernode", 40, std::nullopt)};
  d.results = {ResultRecord{"aa", 1, LogIndex(5), std::nullopt, R"({"index":5})"},
               ResultRecord{"aa", 18446744073709551615ull, LogIndex(7),
                            make_error("kv.cas_failed", "key 'a' is at index 5, not 1"), ""},
               ResultRecord{"b", 0, LogIndex(40), std::nullopt, "{}"}};
  return d;
}

TEST(SnapshotCodec, RoundTripsExactly) {
  std::string bytes = encode_snapshot(sample());
  auto decoded = decode_snapshot(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  EXPECT_EQ(decoded->applied_index, LogIndex(40));
  ASSERT_EQ(decoded->tasks.size(), 3u);
  ASSERT_EQ(decoded->tasks[0].segments.size(), 3u);
  EXPECT_EQ(decoded->tasks[0].segments[0].metainfo, std::string("d\0\xff", 3));
  EXPECT_EQ(decoded->tasks[0].segments, sample().tasks[0].segments);
  EXPECT_EQ(decoded->tasks[2].segments, sample().tasks[2].segments);
  EXPECT_EQ(decoded->tasks[0].lease_epoch, LogIndex(2));
  EXPECT_EQ(decoded->tasks[0].segment_size, 4);
  EXPECT_EQ(decoded->tasks[0].digest, "sha256:" + std::string(64, '0'));
  ASSERT_TRUE(decoded->tasks[1].error.has_value());
  EXPECT_EQ(decoded->tasks[1].error->message, "reset");
  EXPECT_EQ(decoded->kv, sample().kv);
  ASSERT_EQ(decoded->results.size(), 3u);
  EXPECT_EQ(decoded->results[1].seq, 18446744073709551615ull);
  EXPECT_EQ(decoded->results[1].error->code, "kv.cas_failed");
  EXPECT_EQ(decoded->certificates, sample().certificates);
  EXPECT_EQ(encode_snapshot(*decoded), bytes);
  // The empty state too.
  SnapshotData empty;
  auto e = decode_snapshot(encode_snapshot(empty));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->applied_index, LogIndex(0));
}

TEST(SnapshotCodec, RefusesStatesNoTrackerCanReach) {
  const std::pair<const char*, std::function<void(SnapshotData&)>> cases[] = {
      {"tasks out of order", [](SnapshotData& d) { std::swap(d.tasks[0], d.tasks[1]); }},
      {"duplicate task", [](SnapshotData& d) { d.tasks[1].task_id = d.tasks[0].task_id; }},
      {"bad task id", [](SnapshotData& d) { d.tasks[0].task_id = TaskId("A"); }},
      {"bad seeder", [](SnapshotData& d) { d.tasks[0].seeder = ""; }},
      {"negative size", [](SnapshotData& d) { d.tasks[0].size = -1; }},
      {"port", [](SnapshotData& d) { d.tasks[0].seed_port = 70000; }},
      {"error on ready", [](SnapshotData& d) { d.tasks[0].error = make_error("x", "y"); }},
      {"failed without error", [](SnapshotData& d) { d.tasks[1].error.reset(); }},
      {"task index 0", [](SnapshotData& d) { d.tasks[2].updated_index = LogIndex(0); }},
      {"task index > applied", [](SnapshotData& d) { d.tasks[2].updated_index = LogIndex(41); }},
      {"segment size 0", [](SnapshotData& d) { d.tasks[1].segment_size = 0; }},
      {"segment size too big",
       [](SnapshotData& d) { d.tasks[1].segment_size = kMaxSegmentSize + 1; }},
      {"lease epoch 0", [](SnapshotData& d) { d.tasks[1].lease_epoch = LogIndex(0); }},
      {"lease epoch > updated", [](SnapshotData& d) { d.tasks[1].lease_epoch = LogIndex(5); }},
      {"ready size not the sum", [](SnapshotData& d) { d.tasks[0].size = 11; }},
      {"segment gap", [](SnapshotData& d) { d.tasks[0].segments[1].offset = 5; }},
      {"segment index", [](SnapshotData& d) { d.tasks[0].segments[1].index = 2; }},
      {"short segment not last", [](SnapshotData& d) { d.tasks[0].segments[0].size = 3; }},
      {"oversize segment", [](SnapshotData& d) { d.tasks[2].segments[0].size = 5; }},
      {"empty segment", [](SnapshotData& d) { d.tasks[2].segments[0].size = 0; }},
      {"empty segment metainfo", [](SnapshotData& d) { d.tasks[2].segments[0].metainfo = ""; }},
      {"kv out of order", [](SnapshotData& d) { std::swap(d.kv[0], d.kv[1]); }},
      {"duplicate key", [](SnapshotData& d) { d.kv[1].key = "a"; }},
      {"empty key", [](SnapshotData& d) { d.kv[0].key = ""; }},
      {"invalid utf-8 key", [](SnapshotData& d) { d.kv[2].key = "\xff"; }},
      {"oversize value",
       [](SnapshotData& d) { d.kv[0].value = std::string(kMaxKvValueBytes + 1, 'v'); }},
      {"create > modify", [](SnapshotData& d) { d.kv[0].create_index = 10; }},
      {"create 0", [](SnapshotData& d) { d.kv[0].create_index = 0; }},
      {"modify > applied", [](SnapshotData& d) { d.kv[2].modify_index = 41; }},
      {"results out of order", [](SnapshotData& d) { std::swap(d.results[0], d.results[1]); }},
      {"duplicate result", [](SnapshotData& d) { d.results[1].seq = 1; }},
      {"bad client", [](SnapshotData& d) { d.results[2].client_id = "B"; }},
      {"result index > applied", [](SnapshotData& d) { d.results[2].index = LogIndex(41); }},
      {"empty error code", [](SnapshotData& d) { d.results[1].error->code = ""; }},
      {"certificates out of order",
       [](SnapshotData& d) { std::swap(d.certificates[0], d.certificates[1]); }},
      {"duplicate certificate",
       [](SnapshotData& d) { d.certificates[1].node_id = d.certificates[0].node_id; }},
      {"bad certificate node", [](SnapshotData& d) { d.certificates[0].node_id = "ab"; }},
      {"uppercase certificate node",
       [](SnapshotData& d) { d.certificates[3].node_id = std::string(64, 'F'); }},
      {"unknown role", [](SnapshotData& d) { d.certificates[0].role = "root"; }},
      {"empty role on an issuance", [](SnapshotData& d) { d.certificates[0].role = ""; }},
      {"role without issuance", [](SnapshotData& d) { d.certificates[2].role = "peer"; }},
      {"validity without issuance", [](SnapshotData& d) { d.certificates[2].not_after = 5; }},
      {"neither issued nor revoked", [](SnapshotData& d) { d.certificates[2].revocation.reset(); }},
      {"empty validity", [](SnapshotData& d) { d.certificates[0].not_after = 100; }},
      {"negative not_before", [](SnapshotData& d) { d.certificates[0].not_before = -1; }},
      {"issued index > applied",
       [](SnapshotData& d) { d.certificates[3].issued_index = LogIndex(41); }},
      {"revocation index 0",
       [](SnapshotData& d) { d.certificates[1].revocation->index = LogIndex(0); }},
      {"revocation index > applied",
       [](SnapshotData& d) { d.certificates[1].revocation->index = LogIndex(41); }},
      {"issued after revocation",
       [](SnapshotData& d) { d.certificates[1].issued_index = LogIndex(12); }},
      {"negative revoked_at",
       [](SnapshotData& d) { d.certificates[1].revocation->revoked_at = -1; }},
      {"reason too long",
       [](SnapshotData& d) { d.certificates[1].revocation->reason = std::string(257, 'r'); }},
      {"reason with a newline",
       [](SnapshotData& d) { d.certificates[1].revocation->reason = "a\nb"; }},
      {"reason not utf-8", [](SnapshotData& d) { d.certificates[1].revocation->reason = "\xff"; }},
  };
  for (const auto& [name, edit] : cases) {
    SnapshotData d = sample();
    edit(d);
    auto decoded = decode_snapshot(encode_snapshot(d));
    EXPECT_FALSE(decoded.ok()) << name;
    if (!decoded.ok()) {
      EXPECT_EQ(decoded.error().code, kErrBadSnapshot) << name;
    }
  }
}

TEST(SnapshotCodec, RefusesMalformedBytes) {
  std::string good = encode_snapshot(sample());
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(decode_snapshot(good.substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(decode_snapshot(good + '\0').ok());
  // Flags other than 0/1: the digest flag of the first task.
  std::string flag = good;
  size_t digest_flag = 8 + 4 + 8 + 8 + (4 + 64) + (4 + sample().tasks[0].url.size());
  ASSERT_EQ(flag[digest_flag], 1);
  flag[digest_flag] = 2;
  EXPECT_FALSE(decode_snapshot(flag).ok());
  // A huge count with no records behind it fails without allocating for it.
  std::string huge(good.begin(), good.begin() + 20);
  huge += std::string(8, '\xff');
  EXPECT_FALSE(decode_snapshot(huge).ok());
  // A huge string length.
  std::string long_str(good.begin(), good.begin() + 28);
  long_str += std::string(4, '\xff');
  EXPECT_FALSE(decode_snapshot(long_str).ok());
  // Versions 1 (before certificates), 2 (before segments) and unknown versions are refused.
  for (char v : {char{1}, char{2}, char{4}}) {
    std::string version = good;
    version[8] = v;
    EXPECT_FALSE(decode_snapshot(version).ok()) << int{v};
  }
}

}  // namespace
}  // namespace starling::tracker

// fetch_segments (issue 4 items 4-5) against the real static origin, with and without Range
// support: segments appear in order as they complete, a resumed fetch asks for a Range and an
// origin that ignores Range is read from zero with the first bytes discarded.
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "origin/http_origin.h"
#include "supernode/fetch/origin_fetch.h"
#include "tests/http/http_test_util.h"

namespace starling::supernode {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

constexpr int64_t kSeg = 256 * 1024;
constexpr size_t kSize = 5 * kSeg + 1234;  // five full segments and a short last one

class SegmentFetchTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "root");
    fs::create_directories(dir_ / "out");
    blob_ = testing::random_bytes(kSize, 11);
    testing::write_file(dir_ / "root/blob.bin", blob_);
    origin::OriginConfig config;
    config.root_dir = dir_ / "root";
    config.range_support = GetParam();
    auto o = origin::HttpOrigin::start(config);
    ASSERT_TRUE(o.ok()) << o.error().message;
    origin_ = std::move(o).value();
  }

  SegmentFetchRequest request() {
    SegmentFetchRequest r;
    r.url = "http://127.0.0.1:" + std::to_string(origin_->port()) + "/blob.bin";
    r.segment_size = kSeg;
    r.segment_path = [this](int64_t i) { return path(i); };
    r.on_segment = [this](const FetchedSegment& s) {
      seen_.push_back(s);
      // The segment is complete on disk when it is handed out.
      EXPECT_EQ(testing::read_file(s.path),
                blob_.substr(static_cast<size_t>(s.offset), static_cast<size_t>(s.size)));
      return Status{};
    };
    return r;
  }
  std::string path(int64_t i) const { return dir_ / ("out/seg-" + std::to_string(i)); }

  TempDir dir_;
  std::string blob_;
  std::unique_ptr<origin::HttpOrigin> origin_;
  std::vector<FetchedSegment> seen_;
};

TEST_P(SegmentFetchTest, WholeFetchHandsOutEverySegmentInOrder) {
  auto r = fetch_segments(request());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->end, static_cast<int64_t>(kSize));
  EXPECT_EQ(r->origin_bytes, static_cast<int64_t>(kSize));
  EXPECT_TRUE(r->range_honoured);
  ASSERT_EQ(seen_.size(), 6u);
  for (size_t i = 0; i < seen_.size(); ++i) {
    EXPECT_EQ(seen_[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(seen_[i].offset, static_cast<int64_t>(i) * kSeg);
    EXPECT_EQ(seen_[i].size, i < 5 ? kSeg : 1234);
  }
  EXPECT_FALSE(fs::exists(path(5) + ".part"));
}

TEST_P(SegmentFetchTest, ResumeFromAnOffsetWithOrWithoutRange) {
  auto req = request();
  req.start_offset = 3 * kSeg;
  auto r = fetch_segments(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->end, static_cast<int64_t>(kSize));
  ASSERT_EQ(seen_.size(), 3u);
  EXPECT_EQ(seen_[0].index, 3);
  EXPECT_FALSE(fs::exists(path(0)));  // nothing written before the offset
  const bool range = GetParam();
  EXPECT_EQ(r->range_honoured, range);
  // With Range the origin sends only the rest; without, everything (counted at the origin
  // too), and the first bytes are dropped.
  const int64_t expect_sent =
      range ? static_cast<int64_t>(kSize) - 3 * kSeg : static_cast<int64_t>(kSize);
  EXPECT_EQ(r->origin_bytes, expect_sent);
  EXPECT_EQ(origin_->stats().bytes_sent, expect_sent);
}

TEST_P(SegmentFetchTest, OneSegmentByRange) {
  auto req = request();
  req.start_offset = kSeg;
  req.end_offset = 2 * kSeg;
  auto r = fetch_segments(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->end, 2 * kSeg);
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].index, 1);
  EXPECT_EQ(seen_[0].size, kSeg);
  EXPECT_FALSE(fs::exists(path(2) + ".part"));
  EXPECT_FALSE(fs::exists(path(2)));
}

TEST_P(SegmentFetchTest, ResumingAtTheEndIsEmptySuccess) {
  // A file of exactly 2 segments: resuming at its end gets a 416 (Range) or a 200 exactly as
  // long as the offset; either way nothing is left to write.
  testing::write_file(dir_ / "root/even.bin", blob_.substr(0, 2 * kSeg));
  auto req = request();
  req.url = "http://127.0.0.1:" + std::to_string(origin_->port()) + "/even.bin";
  req.start_offset = 2 * kSeg;
  auto r = fetch_segments(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->end, 2 * kSeg);
  EXPECT_TRUE(seen_.empty());
}

TEST_P(SegmentFetchTest, AnErrorFromOnSegmentStopsTheFetch) {
  auto req = request();
  req.on_segment = [](const FetchedSegment& s) -> Status {
    if (s.index == 1) return make_error("tracker.stale_lease", "fenced");
    return {};
  };
  auto r = fetch_segments(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "tracker.stale_lease");
  EXPECT_FALSE(fs::exists(path(2)));
  EXPECT_FALSE(fs::exists(path(2) + ".part"));
}

TEST_P(SegmentFetchTest, SegmentsKeptInMemoryAreHandedOverWithTheirBytes) {
  // Pieces 1-2 of segment 3, as a re-seed asks for them: nothing touches the disk.
  auto req = request();
  req.segment_path = nullptr;
  req.on_segment = nullptr;
  constexpr int64_t kPiece = 64 * 1024;
  req.segment_size = kPiece;
  req.start_offset = 3 * kSeg + kPiece;
  req.end_offset = 3 * kSeg + 3 * kPiece;
  req.on_segment_bytes = [this](const FetchedSegment& s, std::string bytes) {
    seen_.push_back(s);
    EXPECT_TRUE(s.path.empty());
    EXPECT_EQ(bytes, blob_.substr(static_cast<size_t>(s.offset), static_cast<size_t>(s.size)));
    return Status{};
  };
  auto r = fetch_segments(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->end, 3 * kSeg + 3 * kPiece);
  EXPECT_EQ(r->segments, 2);
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[0].offset, 3 * kSeg + kPiece);
  EXPECT_EQ(seen_[1].index, (3 * kSeg + 2 * kPiece) / kPiece);
  EXPECT_EQ(seen_[1].size, kPiece);
  EXPECT_TRUE(fs::is_empty(dir_ / "out"));
  EXPECT_EQ(r->range_honoured, GetParam());

  // A short last piece, and an error from the callback stops the fetch with that error.
  seen_.clear();
  req.start_offset = 5 * kSeg;
  req.end_offset = -1;
  auto whole = fetch_segments(req);
  ASSERT_TRUE(whole.ok()) << whole.error().message;
  ASSERT_EQ(seen_.size(), 1u);
  EXPECT_EQ(seen_[0].size, 1234);
  req.start_offset = 0;
  req.on_segment_bytes = [](const FetchedSegment& s, std::string) -> Status {
    if (s.index == 1) return make_error("engine.bad_piece", "refused");
    return {};
  };
  auto refused = fetch_segments(req);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "engine.bad_piece");
}

TEST_P(SegmentFetchTest, EitherFilesOrMemoryNotBoth) {
  auto req = request();
  req.on_segment_bytes = [](const FetchedSegment&, std::string) { return Status{}; };
  auto both = fetch_segments(req);
  ASSERT_FALSE(both.ok());
  EXPECT_EQ(both.error().code, kErrOriginRequest);
  req.segment_path = nullptr;
  req.on_segment_bytes = nullptr;
  auto neither = fetch_segments(req);
  ASSERT_FALSE(neither.ok());
  EXPECT_EQ(neither.error().code, kErrOriginRequest);
  EXPECT_TRUE(seen_.empty());
}

TEST_P(SegmentFetchTest, NotFound) {
  auto req = request();
  req.url += ".missing";
  req.start_offset = kSeg;
  auto r = fetch_segments(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginStatus);
  EXPECT_TRUE(seen_.empty());
}

INSTANTIATE_TEST_SUITE_P(Origin, SegmentFetchTest, ::testing::Values(true, false),
                         [](const auto& p) { return p.param ? "WithRange" : "NoRange"; });

}  // namespace
}  // namespace starling::supernode

// build_metainfo / check_metainfo: determinism and rejection of everything that is not a
// private single-file v1 SSL torrent.
#include <gtest/gtest.h>

#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/file_storage.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/torrent_info.hpp>

#include "peer/engine/torrent_engine.h"
#include "tests/engine/test_files.h"
#include "tests/engine/test_pki.h"

namespace starling::peer {
namespace {

namespace lt = libtorrent;
using testing::TempDir;

class MetainfoTest : public ::testing::Test {
 protected:
  void SetUp() override { ca_ = testing::make_ca("test"); }

  // A torrent built by hand with libtorrent, for the shapes build_metainfo never makes.
  std::string handmade(bool priv, bool ssl, int num_files) {
    lt::file_storage fs;
    for (int i = 0; i < num_files; ++i) fs.add_file("dir/f" + std::to_string(i), 40000);
    lt::create_torrent ct(fs, 16384, lt::create_torrent::v1_only);
    ct.set_priv(priv);
    ct.set_creation_date(0);
    if (ssl) ct.set_root_cert(ca_.cert_pem);
    for (lt::piece_index_t i{0}; i < fs.end_piece(); ++i)
      ct.set_hash(i, lt::sha1_hash("01234567890123456789"));
    std::string out;
    lt::bencode(std::back_inserter(out), ct.generate());
    return out;
  }

  TempDir dir_;
  testing::TestCa ca_;
};

TEST_F(MetainfoTest, SameBytesGiveIdenticalMetainfo) {
  testing::write_random_file(dir_ / "a", 3 * 1024 * 1024 + 17, 1);
  testing::write_random_file(dir_ / "b", 3 * 1024 * 1024 + 17, 1);  // same bytes, other name
  auto first = build_metainfo(dir_ / "a", ca_.cert_pem, 0);
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = build_metainfo(dir_ / "a", ca_.cert_pem, 0);
  ASSERT_TRUE(second.ok()) << second.error().message;
  auto other_name = build_metainfo(dir_ / "b", ca_.cert_pem, 0);
  ASSERT_TRUE(other_name.ok()) << other_name.error().message;
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(*first, *other_name);
  EXPECT_EQ(first->find("creation date"), std::string::npos);
  EXPECT_EQ(first->find("created by"), std::string::npos);

  auto size = check_metainfo(*first);
  ASSERT_TRUE(size.ok()) << size.error().message;
  EXPECT_EQ(*size, 3 * 1024 * 1024 + 17);

  lt::error_code ec;
  lt::torrent_info ti(
      lt::span<const char>(first->data(), static_cast<std::ptrdiff_t>(first->size())), ec,
      lt::from_span);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(ti.name(), "content");
  EXPECT_EQ(ti.piece_length(), 1024 * 1024);
  EXPECT_TRUE(ti.priv());
  EXPECT_EQ(std::string(ti.ssl_cert()), ca_.cert_pem);
  EXPECT_TRUE(ti.trackers().empty());
}

TEST_F(MetainfoTest, DifferentContentOrPieceSizeGivesDifferentMetainfo) {
  testing::write_random_file(dir_ / "a", 100000, 1);
  testing::write_random_file(dir_ / "b", 100000, 2);
  auto a = build_metainfo(dir_ / "a", ca_.cert_pem, 0);
  auto b = build_metainfo(dir_ / "b", ca_.cert_pem, 0);
  auto a16 = build_metainfo(dir_ / "a", ca_.cert_pem, 16384);
  ASSERT_TRUE(a.ok() && b.ok() && a16.ok());
  EXPECT_NE(*a, *b);
  EXPECT_NE(*a, *a16);
  EXPECT_TRUE(check_metainfo(*a16).ok());
}

TEST_F(MetainfoTest, RejectsBadInputsToBuild) {
  testing::write_random_file(dir_ / "a", 1000, 1);
  testing::write_random_file(dir_ / "empty", 0, 1);
  auto empty = build_metainfo(dir_ / "empty", ca_.cert_pem, 0);
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, kErrMetainfo);
  EXPECT_EQ(empty.error().message, "empty content cannot be shared as a torrent");
  EXPECT_FALSE(build_metainfo(dir_ / "missing", ca_.cert_pem, 0).ok());
  EXPECT_FALSE(build_metainfo(dir_.path(), ca_.cert_pem, 0).ok());  // a directory
  EXPECT_FALSE(build_metainfo(dir_ / "a", "", 0).ok());
  EXPECT_FALSE(build_metainfo(dir_ / "a", ca_.cert_pem, 3000).ok());      // not a power of 2
  EXPECT_FALSE(build_metainfo(dir_ / "a", ca_.cert_pem, 8192).ok());      // too small
  EXPECT_FALSE(build_metainfo(dir_ / "a", ca_.cert_pem, 32 << 20).ok());  // too large
  EXPECT_FALSE(build_metainfo(dir_ / "a", ca_.cert_pem, -16384).ok());
}

TEST_F(MetainfoTest, CheckRejectsGarbageAndTruncation) {
  testing::write_random_file(dir_ / "a", 200000, 3);
  auto good = build_metainfo(dir_ / "a", ca_.cert_pem, 16384);
  ASSERT_TRUE(good.ok());
  const std::vector<std::string> bad = {"",
                                        "garbage",
                                        "d",
                                        "de",
                                        "le",
                                        "i42e",
                                        std::string(1000, '\xff'),
                                        "d4:infod4:name1:xee",
                                        good->substr(0, good->size() / 2),
                                        good->substr(0, good->size() - 1),
                                        good->substr(1)};
  for (const auto& b : bad) {
    auto r = check_metainfo(b);
    ASSERT_FALSE(r.ok()) << "accepted " << b.size() << " bytes";
    EXPECT_EQ(r.error().code, kErrMetainfo);
  }
}

TEST_F(MetainfoTest, CheckRejectsWrongShapes) {
  auto good = check_metainfo(handmade(true, true, 1));
  ASSERT_TRUE(good.ok()) << good.error().message;

  auto not_private = check_metainfo(handmade(false, true, 1));
  ASSERT_FALSE(not_private.ok());
  EXPECT_NE(not_private.error().message.find("private"), std::string::npos);

  auto no_cert = check_metainfo(handmade(true, false, 1));
  ASSERT_FALSE(no_cert.ok());
  EXPECT_NE(no_cert.error().message.find("ssl-cert"), std::string::npos);

  auto two_files = check_metainfo(handmade(true, true, 2));
  ASSERT_FALSE(two_files.ok());
  EXPECT_NE(two_files.error().message.find("files"), std::string::npos);
}

}  // namespace
}  // namespace starling::peer

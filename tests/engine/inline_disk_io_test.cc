// The engine's disk I/O (peer/engine/inline_disk_io.h) driven directly through libtorrent's
// disk_interface, the way libtorrent's network thread drives it: real files in a temp dir,
// handlers run from the io_context. The swarm tests (torrent_engine_test.cc) run it under
// real transfers.
#include "peer/engine/inline_disk_io.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/aux_/vector.hpp>
#include <libtorrent/disk_buffer_holder.hpp>
#include <libtorrent/error_code.hpp>
#include <libtorrent/file_storage.hpp>
#include <libtorrent/hasher.hpp>
#include <libtorrent/peer_request.hpp>
#include <libtorrent/performance_counters.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/storage_defs.hpp>
#include <libtorrent/torrent_flags.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/engine/test_files.h"

namespace starling::peer {
namespace {

namespace lt = libtorrent;
using testing::TempDir;

constexpr int kPiece = 32 * 1024;  // two blocks per piece
constexpr int kBlock = 16 * 1024;

class InlineDiskIoTest : public ::testing::Test {
 protected:
  // Two files, "t/a" (40000 bytes) and "t/b" (50000): piece 1 spans both.
  void SetUp() override {
    files_.set_piece_length(kPiece);
    files_.add_file("t/a", 40000);
    files_.add_file("t/b", 50000);
    files_.set_num_pieces(static_cast<int>((files_.total_size() + kPiece - 1) / kPiece));
    std::mt19937 rng(7);
    data_.resize(static_cast<size_t>(files_.total_size()));
    for (char& c : data_) c = static_cast<char>(rng());
    disk_ = make_inline_disk_io(ioc_, settings_, counters_);
  }

  lt::storage_holder add(const lt::file_storage* renamed = nullptr) {
    lt::storage_params p(files_, renamed, dir_.path(), lt::storage_mode_sparse, prio_,
                         lt::sha1_hash());
    return disk_->new_torrent(p, nullptr);
  }

  // Runs the handlers libtorrent would run on its network thread.
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  lt::storage_error write_piece(lt::storage_index_t s, int piece) {
    lt::storage_error out;
    const int size = files_.piece_size(lt::piece_index_t{piece});
    for (int off = 0; off < size; off += kBlock) {
      lt::peer_request r{lt::piece_index_t{piece}, off, std::min(kBlock, size - off)};
      const bool backlog = disk_->async_write(s, r, data_.data() + piece * kPiece + off, nullptr,
                                              [&out](const lt::storage_error& e) {
                                                if (e) out = e;
                                              },
                                              {});
      EXPECT_FALSE(backlog);
    }
    run();
    return out;
  }

  std::optional<std::string> read(lt::storage_index_t s, int piece, int off, int len,
                                  lt::storage_error* error = nullptr) {
    std::optional<std::string> got;
    disk_->async_read(s, lt::peer_request{lt::piece_index_t{piece}, off, len},
                      [&](lt::disk_buffer_holder b, const lt::storage_error& e) {
                        if (error) *error = e;
                        if (e) return;
                        // The request's bytes, then room libtorrent may append its next
                        // message to (kSendRoom), which a sender must be able to use.
                        EXPECT_GE(b.size(), len + 13);
                        got = std::string(b.data(), static_cast<size_t>(len));
                      });
    run();
    return got;
  }

  lt::sha1_hash hash(lt::storage_index_t s, int piece, lt::storage_error* error = nullptr) {
    lt::sha1_hash got;
    disk_->async_hash(s, lt::piece_index_t{piece}, {}, lt::disk_interface::v1_hash,
                      [&](lt::piece_index_t p, const lt::sha1_hash& h, const lt::storage_error& e) {
                        EXPECT_EQ(p, lt::piece_index_t{piece});
                        if (error) *error = e;
                        got = h;
                      });
    run();
    return got;
  }

  lt::sha1_hash expected_hash(int piece) const {
    const int size = files_.piece_size(lt::piece_index_t{piece});
    return lt::hasher(data_.data() + piece * kPiece, size).final();
  }

  std::pair<lt::status_t, lt::storage_error> check(lt::storage_index_t s, bool seed) {
    lt::add_torrent_params atp;
    if (seed) atp.flags |= lt::torrent_flags::seed_mode;
    std::pair<lt::status_t, lt::storage_error> out{lt::status_t::no_error, {}};
    disk_->async_check_files(s, &atp, {}, [&](lt::status_t st, const lt::storage_error& e) {
      out = {st, e};
    });
    run();
    return out;
  }

  TempDir dir_;
  lt::io_context ioc_;
  lt::settings_pack settings_;
  lt::counters counters_;
  lt::file_storage files_;
  lt::aux::vector<lt::download_priority_t, lt::file_index_t> prio_;
  std::string data_;
  std::unique_ptr<lt::disk_interface> disk_;
};

TEST_F(InlineDiskIoTest, WrittenPiecesLandInTheirFilesAndReadAndHashBack) {
  lt::storage_holder s = add();
  const int pieces = files_.num_pieces();
  for (int p = pieces - 1; p >= 0; --p)
    ASSERT_FALSE(write_piece(lt::storage_index_t(s), p)) << p;  // any order

  EXPECT_EQ(testing::read_all(dir_ / "t/a"), data_.substr(0, 40000));
  EXPECT_EQ(testing::read_all(dir_ / "t/b"), data_.substr(40000));
  for (int p = 0; p < pieces; ++p) {
    const int size = files_.piece_size(lt::piece_index_t{p});
    for (int off = 0; off < size; off += kBlock) {
      const int len = std::min(kBlock, size - off);
      EXPECT_EQ(read(lt::storage_index_t(s), p, off, len),
                data_.substr(static_cast<size_t>(p * kPiece + off), static_cast<size_t>(len)))
          << "piece " << p << " offset " << off;
    }
    lt::storage_error e;
    EXPECT_EQ(hash(lt::storage_index_t(s), p, &e), expected_hash(p)) << p;
    EXPECT_FALSE(e) << e.ec.message();
  }
}

TEST_F(InlineDiskIoTest, AFileIsCreatedAtItsFullSizeOnItsFirstWrite) {
  lt::storage_holder s = add();
  ASSERT_FALSE(write_piece(lt::storage_index_t(s), 0));  // the first 32 KiB of t/a only
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "t/a").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 40000);
  EXPECT_NE(::stat((dir_ / "t/b").c_str(), &st), 0);  // not touched yet
}

TEST_F(InlineDiskIoTest, HashingAPieceThatIsNotOnDiskGivesAWrongHashNotAnError) {
  lt::storage_holder s = add();
  lt::storage_error e;
  EXPECT_NE(hash(lt::storage_index_t(s), 0, &e), expected_hash(0));
  EXPECT_FALSE(e) << e.ec.message();
  ASSERT_FALSE(write_piece(lt::storage_index_t(s), 0));
  EXPECT_NE(hash(lt::storage_index_t(s), 1, &e), expected_hash(1));  // half on disk, half zeros
  EXPECT_FALSE(e);
  EXPECT_EQ(hash(lt::storage_index_t(s), 0, &e), expected_hash(0));
}

TEST_F(InlineDiskIoTest, ReadingAMissingFileIsAFileOpenErrorNamingTheFile) {
  lt::storage_holder s = add();
  lt::storage_error e;
  EXPECT_FALSE(read(lt::storage_index_t(s), 2, 0, kBlock, &e));  // piece 2 lies in t/b
  EXPECT_EQ(e.ec, lt::error_code(ENOENT, lt::system_category()));
  EXPECT_EQ(e.file(), lt::file_index_t{1});
  EXPECT_EQ(e.operation, lt::operation_t::file_open);
}

TEST_F(InlineDiskIoTest, ReadingPastTheEndOfAShortFileIsAnError) {
  lt::storage_holder s = add();
  std::filesystem::create_directories(dir_ / "t");
  std::ofstream(dir_ / "t/a", std::ios::binary) << data_.substr(0, 1000);  // truncated file
  lt::storage_error e;
  EXPECT_FALSE(read(lt::storage_index_t(s), 0, 0, kBlock, &e));
  EXPECT_EQ(e.ec, lt::error_code(boost::asio::error::eof));
  EXPECT_EQ(e.file(), lt::file_index_t{0});
  EXPECT_EQ(e.operation, lt::operation_t::file_read);
}

TEST_F(InlineDiskIoTest, AWriteThatCannotCreateItsFileFailsWithTheReason) {
  std::ofstream(dir_ / "t") << "a file where the directory should be";
  lt::storage_holder s = add();
  lt::storage_error e = write_piece(lt::storage_index_t(s), 0);
  EXPECT_EQ(e.ec, lt::error_code(ENOTDIR, lt::system_category()));
  EXPECT_EQ(e.file(), lt::file_index_t{0});
  EXPECT_EQ(e.operation, lt::operation_t::file_open);
}

TEST_F(InlineDiskIoTest, RenamedFilesAreWhereTheEngineRenamedThem) {
  lt::file_storage renamed = files_;
  renamed.rename_file(lt::file_index_t{0}, "content-a");
  lt::storage_holder s = add(&renamed);
  ASSERT_FALSE(write_piece(lt::storage_index_t(s), 0));
  EXPECT_EQ(testing::read_all(dir_ / "content-a").substr(0, kPiece), data_.substr(0, kPiece));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "t/a"));
}

TEST_F(InlineDiskIoTest, CheckFilesAsksForAFullCheckOnlyWhenADownloadFindsBytesOnDisk) {
  lt::storage_holder s = add();
  EXPECT_EQ(check(lt::storage_index_t(s), false).first,
            lt::status_t::no_error);  // a fresh download
  ASSERT_FALSE(write_piece(lt::storage_index_t(s), 0));
  EXPECT_EQ(check(lt::storage_index_t(s), false).first, lt::status_t::need_full_check);
}

TEST_F(InlineDiskIoTest, ASeedWithAMissingOrShortFileIsAFatalDiskError) {
  lt::storage_holder s = add();
  auto [st, e] = check(lt::storage_index_t(s), true);
  EXPECT_EQ(st, lt::status_t::fatal_disk_error);
  EXPECT_EQ(e.ec, lt::error_code(ENOENT, lt::system_category()));
  EXPECT_EQ(e.file(), lt::file_index_t{0});

  for (int p = 0; p < files_.num_pieces(); ++p)
    ASSERT_FALSE(write_piece(lt::storage_index_t(s), p));
  EXPECT_EQ(check(lt::storage_index_t(s), true).first, lt::status_t::no_error);

  ASSERT_EQ(::truncate((dir_ / "t/b").c_str(), 100), 0);
  std::tie(st, e) = check(lt::storage_index_t(s), true);
  EXPECT_EQ(st, lt::status_t::fatal_disk_error);
  EXPECT_EQ(e.ec, lt::error_code(lt::errors::mismatching_file_size));
  EXPECT_EQ(e.file(), lt::file_index_t{1});
}

TEST_F(InlineDiskIoTest, ReleasedFilesReopenAndDeletedFilesAreGone) {
  lt::storage_holder s = add();
  ASSERT_FALSE(write_piece(lt::storage_index_t(s), 0));
  bool released = false;
  disk_->async_release_files(lt::storage_index_t(s), [&] { released = true; });
  run();
  EXPECT_TRUE(released);
  EXPECT_EQ(read(lt::storage_index_t(s), 0, 0, kBlock),
            data_.substr(0, kBlock));  // reopened on demand

  lt::storage_error e(lt::error_code(EIO, lt::system_category()));
  disk_->async_delete_files(lt::storage_index_t(s), {}, [&](const lt::storage_error& r) { e = r; });
  run();
  EXPECT_FALSE(e);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "t/a"));
}

TEST_F(InlineDiskIoTest, MovingStorageIsRefusedNotFaked) {
  lt::storage_holder s = add();
  lt::status_t st = lt::status_t::no_error;
  disk_->async_move_storage(
      lt::storage_index_t(s), dir_ / "elsewhere", {},
      [&](lt::status_t r, const std::string&, const lt::storage_error&) { st = r; });
  run();
  EXPECT_EQ(st, lt::status_t::fatal_disk_error);
}

}  // namespace
}  // namespace starling::peer

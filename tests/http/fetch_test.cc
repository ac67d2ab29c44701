#include "supernode/fetch/origin_fetch.h"

#include <sodium.h>

#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "common/hex.h"
#include "origin/http_origin.h"
#include "tests/http/http_test_util.h"

namespace starling::supernode {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;
namespace http = testing::http;

std::string sha256_hex(const std::string& data) {
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(d, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return to_hex(d, sizeof(d));
}

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    fs::create_directories(dir_ / "root");
    fs::create_directories(dir_ / "out");
    blob_ = testing::random_bytes(2 * 1024 * 1024 + 3, 7);
    testing::write_file(dir_ / "root/blob.bin", blob_);
    origin::OriginConfig config;
    config.root_dir = dir_ / "root";
    auto o = origin::HttpOrigin::start(config);
    ASSERT_TRUE(o.ok()) << o.error().message;
    origin_ = std::move(o).value();
    base_ = "http://127.0.0.1:" + std::to_string(origin_->port());
  }

  FetchRequest request(const std::string& path) {
    FetchRequest r;
    r.url = base_ + path;
    r.output_path = dir_ / "out/file";
    return r;
  }

  // Nothing at all in the output folder: no file, no .part.
  void expect_nothing_left() {
    EXPECT_TRUE(fs::is_empty(dir_ / "out")) << "leftover files in " << (dir_ / "out");
  }

  TempDir dir_;
  std::string blob_;
  std::unique_ptr<origin::HttpOrigin> origin_;
  std::string base_;
};

TEST_F(FetchTest, SuccessWritesIdenticalBytesAndChecksDigest) {
  auto req = request("/blob.bin");
  req.sha256 = sha256_hex(blob_);
  int64_t last_done = 0;
  int64_t last_total = 0;
  int calls = 0;
  req.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
    ++calls;
  };
  auto r = fetch_to_file(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->size, static_cast<int64_t>(blob_.size()));
  EXPECT_EQ(r->sha256, *req.sha256);
  EXPECT_TRUE(testing::read_file(req.output_path) == blob_);
  EXPECT_FALSE(fs::exists(req.output_path + ".part"));
  EXPECT_GT(calls, 0);
  EXPECT_EQ(last_done, static_cast<int64_t>(blob_.size()));
  EXPECT_EQ(last_total, static_cast<int64_t>(blob_.size()));
  EXPECT_EQ((fs::status(req.output_path).permissions() & fs::perms::all),
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                fs::perms::others_read);
  EXPECT_EQ(origin_->stats().requests, 1);
}

TEST_F(FetchTest, WithoutExpectedDigestReportsIt) {
  auto req = request("/blob.bin");
  auto r = fetch_to_file(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->sha256, sha256_hex(blob_));
}

TEST_F(FetchTest, NotFoundHasExactMessageAndLeavesNothing) {
  auto req = request("/missing.bin");
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginStatus);
  EXPECT_EQ(r.error().message, "origin returned HTTP 404 for " + req.url);
  expect_nothing_left();
}

TEST_F(FetchTest, UnreachableOrigin) {
  // A port that was just free: bind, learn it, close.
  uint16_t port = 0;
  {
    testing::asio::io_context io;
    testing::tcp::acceptor a(
        io, testing::tcp::endpoint(testing::asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  FetchRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/blob.bin";
  req.output_path = dir_ / "out/file";
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginUnreachable);
  EXPECT_EQ(r.error().message.rfind("origin unreachable: " + req.url + ": ", 0), 0u)
      << r.error().message;
  EXPECT_NE(r.error().message.find("Couldn't connect to server"), std::string::npos)
      << r.error().message;
  expect_nothing_left();
}

TEST_F(FetchTest, DigestMismatchHasExactMessageAndLeavesNothing) {
  auto req = request("/blob.bin");
  const std::string wrong(64, '0');
  req.sha256 = wrong;
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrDigestMismatch);
  EXPECT_EQ(r.error().message, "digest mismatch for " + req.url + ": expected sha256:" + wrong +
                                   ", got sha256:" + sha256_hex(blob_));
  expect_nothing_left();
}

TEST_F(FetchTest, OutputDirectoryMissingIsIoError) {
  auto req = request("/blob.bin");
  req.output_path = dir_ / "no/such/dir/file";
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginIo);
}

TEST_F(FetchTest, OnlyHttpSchemes) {
  testing::write_file(dir_ / "local", "x");
  auto req = request("");
  req.url = "file://" + (dir_ / "local");
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginRequest);
  expect_nothing_left();
}

TEST_F(FetchTest, SendsHeadersAndFollowsRedirects) {
  std::string seen_auth;
  testing::ScriptedServer server([&](testing::tcp::socket& s,
                                     const http::request<http::string_body>& req,
                                     testing::ScriptedServer&) {
    if (req.target() == "/hop") {
      testing::write_response(s, 302, "", {{"Location", "/final"}});
      return;
    }
    auto it = req.find("Authorization");
    seen_auth = it == req.end() ? "" : std::string(it->value());
    testing::write_response(s, 200, "payload:" + seen_auth);
  });
  FetchRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/hop";
  req.output_path = dir_ / "out/file";
  req.headers = {"Authorization: Bearer t0ken"};
  auto r = fetch_to_file(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(seen_auth, "Bearer t0ken");
  EXPECT_EQ(testing::read_file(req.output_path), "payload:Bearer t0ken");
}

TEST_F(FetchTest, RedirectLoopFails) {
  testing::ScriptedServer server([&](testing::tcp::socket& s,
                                     const http::request<http::string_body>&,
                                     testing::ScriptedServer&) {
    testing::write_response(s, 302, "", {{"Location", "/loop"}});
  });
  FetchRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/loop";
  req.output_path = dir_ / "out/file";
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  expect_nothing_left();
}

TEST_F(FetchTest, HeaderInjectionRejected) {
  auto req = request("/blob.bin");
  req.headers = {"X-A: 1\r\nX-B: 2"};
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginRequest);
  expect_nothing_left();
}

TEST_F(FetchTest, AbortFromProgressStopsAndLeavesNothing) {
  auto req = request("/blob.bin");
  std::atomic<bool> abort{false};
  req.abort = &abort;
  req.on_progress = [&](int64_t, int64_t) { abort = true; };
  auto r = fetch_to_file(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginAborted);
  expect_nothing_left();
}

TEST_F(FetchTest, AbortWhileOriginStalls) {
  // The origin promises 1 MiB, sends a few bytes and then nothing.
  testing::ScriptedServer server([](testing::tcp::socket& s,
                                    const http::request<http::string_body>&,
                                    testing::ScriptedServer& self) {
    std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\nabc";
    boost::system::error_code ec;
    testing::asio::write(s, testing::asio::buffer(head), ec);
    while (!self.stopping()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  FetchRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/stall";
  req.output_path = dir_ / "out/file";
  std::atomic<bool> abort{false};
  req.abort = &abort;
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    abort = true;
  });
  auto r = fetch_to_file(req);
  aborter.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kErrOriginAborted);
  expect_nothing_left();
}

TEST_F(FetchTest, ReplacesExistingOutputOnSuccess) {
  auto req = request("/blob.bin");
  testing::write_file(req.output_path, "old contents");
  auto r = fetch_to_file(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(testing::read_file(req.output_path) == blob_);
}

}  // namespace
}  // namespace starling::supernode

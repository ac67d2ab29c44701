#include "origin/http_origin.h"

#include <sys/socket.h>

#include <filesystem>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "tests/http/http_test_util.h"

namespace starling::origin {
namespace {

using testing::Client;
using testing::http_get;
using testing::TempDir;
namespace http = testing::http;

constexpr size_t kBlobSize = 3 * 1024 * 1024 + 17;  // several streaming chunks, odd tail

class OriginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_ / "root/sub");
    blob_ = testing::random_bytes(kBlobSize, 42);
    testing::write_file(dir_ / "root/blob.bin", blob_);
    testing::write_file(dir_ / "root/sub/a.txt", "hello\n");
    testing::write_file(dir_ / "root/empty", "");
    testing::write_file(dir_ / "secret", "TOP-SECRET\n");
    std::filesystem::create_symlink(dir_ / "secret", dir_ / "root/escape");
  }

  std::unique_ptr<HttpOrigin> start(bool range_support = true) {
    OriginConfig config;
    config.root_dir = dir_ / "root";
    config.range_support = range_support;
    auto origin = HttpOrigin::start(config);
    EXPECT_TRUE(origin.ok()) << (origin.ok() ? "" : origin.error().message);
    return std::move(origin).value();
  }

  TempDir dir_;
  std::string blob_;
};

TEST_F(OriginTest, FullGetIsByteIdenticalAndKeepsAlive) {
  auto origin = start();
  Client client(origin->port());
  for (int i = 0; i < 2; ++i) {  // the second request reuses the connection
    auto r = client.request(http::verb::get, "/blob.bin");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header(http::field::content_length), std::to_string(kBlobSize));
    EXPECT_EQ(r.header(http::field::accept_ranges), "bytes");
    ASSERT_EQ(r.body.size(), blob_.size());
    EXPECT_TRUE(r.body == blob_);
  }
  auto r = client.request(http::verb::get, "/sub/a.txt");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello\n");
  r = client.request(http::verb::get, "/empty");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
}

TEST_F(OriginTest, HeadSendsLengthWithoutBody) {
  auto origin = start();
  Client client(origin->port());
  auto r = client.request(http::verb::head, "/blob.bin");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header(http::field::content_length), std::to_string(kBlobSize));
  EXPECT_TRUE(r.body.empty());
  // The connection is still in sync: no body bytes were sent after the HEAD.
  r = client.request(http::verb::get, "/sub/a.txt");
  EXPECT_EQ(r.body, "hello\n");
  EXPECT_EQ(origin->stats().bytes_sent, 6);
}

TEST_F(OriginTest, RangeForms) {
  auto origin = start();
  Client client(origin->port());
  const std::string total = "/" + std::to_string(kBlobSize);

  auto r = client.request(http::verb::get, "/blob.bin", {{"Range", "bytes=10-19"}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.header(http::field::content_range), "bytes 10-19" + total);
  EXPECT_EQ(r.body, blob_.substr(10, 10));

  r = client.request(http::verb::get, "/blob.bin", {{"Range", "bytes=1000000-"}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.header(http::field::content_range),
            "bytes 1000000-" + std::to_string(kBlobSize - 1) + total);
  EXPECT_TRUE(r.body == blob_.substr(1000000));

  r = client.request(http::verb::get, "/blob.bin", {{"Range", "bytes=-50"}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.header(http::field::content_range), "bytes " + std::to_string(kBlobSize - 50) + "-" +
                                                      std::to_string(kBlobSize - 1) + total);
  EXPECT_EQ(r.body, blob_.substr(kBlobSize - 50));

  // A last byte past the end is clamped.
  r = client.request(http::verb::get, "/sub/a.txt", {{"Range", "bytes=2-999"}});
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.header(http::field::content_range), "bytes 2-5/6");
  EXPECT_EQ(r.body, "llo\n");
}

TEST_F(OriginTest, UnsatisfiableRangeIs416) {
  auto origin = start();
  Client client(origin->port());
  auto r = client.request(http::verb::get, "/blob.bin",
                          {{"Range", "bytes=" + std::to_string(kBlobSize) + "-"}});
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.header(http::field::content_range), "bytes */" + std::to_string(kBlobSize));
  r = client.request(http::verb::get, "/blob.bin", {{"Range", "bytes=-0"}});
  EXPECT_EQ(r.status, 416);
  // The connection survives a 416.
  r = client.request(http::verb::get, "/sub/a.txt");
  EXPECT_EQ(r.status, 200);
}

TEST_F(OriginTest, RangeIgnoredWhenDisabled) {
  auto origin = start(/*range_support=*/false);
  auto r = http_get(origin->port(), "/blob.bin", {{"Range", "bytes=10-19"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header(http::field::content_range), "");
  EXPECT_TRUE(r.body == blob_);
}

TEST_F(OriginTest, MissingIs404) {
  auto origin = start();
  Client client(origin->port());
  EXPECT_EQ(client.request(http::verb::get, "/nope").status, 404);
  EXPECT_EQ(client.request(http::verb::head, "/nope").status, 404);
  EXPECT_EQ(client.request(http::verb::get, "/sub").status, 404);  // a directory
  EXPECT_EQ(client.request(http::verb::get, "/").status, 404);
}

TEST_F(OriginTest, TraversalIsRejected) {
  auto origin = start();
  for (const std::string target :
       {"/../secret", "/sub/../../secret", "/%2e%2e/secret", "/%2E%2E%2Fsecret", "/..%2fsecret",
        "//etc/passwd", "/%2fetc/passwd", "/sub/..", "/./blob.bin", "/blob.bin%00.txt", "/escape",
        "/%zz", "/%2", "etc/passwd", "http://127.0.0.1/../secret", "*"}) {
    Client client(origin->port());
    auto r = client.request(http::verb::get, target);
    EXPECT_TRUE(r.status == 404 || r.status == 400) << target << " -> " << r.status;
    EXPECT_EQ(r.body.find("TOP-SECRET"), std::string::npos) << target;
  }
}

TEST_F(OriginTest, MalformedRequestGets400) {
  auto origin = start();
  Client client(origin->port());
  std::string junk = "GARBAGE\x01 / HTTP/9\r\n\r\n";
  testing::asio::write(client.socket(), testing::asio::buffer(junk));
  std::string got;
  boost::system::error_code ec;
  char buf[256];
  for (;;) {
    size_t n = client.socket().read_some(testing::asio::buffer(buf), ec);
    got.append(buf, n);
    if (ec) break;
  }
  EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0u) << got;
}

TEST_F(OriginTest, StatsCountRequestsAndBytes) {
  auto origin = start();
  {
    Client client(origin->port());
    client.request(http::verb::get, "/blob.bin");
    client.request(http::verb::get, "/blob.bin", {{"Range", "bytes=0-9"}});
    client.request(http::verb::head, "/blob.bin");
    client.request(http::verb::get, "/nope");
  }
  auto s = origin->stats();
  EXPECT_EQ(s.requests, 4);
  EXPECT_EQ(s.bytes_sent, static_cast<int64_t>(kBlobSize + 10));
  auto r = http_get(origin->port(), "/_stats");
  ASSERT_EQ(r.status, 200);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["requests"].get<int64_t>(), 4);
  EXPECT_EQ(j["bytes_sent"].get<int64_t>(), static_cast<int64_t>(kBlobSize + 10));
  // /_stats itself is not counted.
  EXPECT_EQ(origin->stats().requests, 4);
  EXPECT_EQ(origin->stats().bytes_sent, static_cast<int64_t>(kBlobSize + 10));
}

TEST_F(OriginTest, EightConcurrentClients) {
  auto origin = start();
  constexpr int kClients = 8;
  std::vector<std::thread> threads;
  std::vector<int> ok(kClients, 0);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      try {
        auto r = http_get(origin->port(), "/blob.bin");
        ok[static_cast<size_t>(i)] = r.status == 200 && r.body == blob_ ? 1 : 0;
      } catch (...) {
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(ok[static_cast<size_t>(i)], 1) << i;
  EXPECT_EQ(origin->stats().requests, kClients);
  EXPECT_EQ(origin->stats().bytes_sent, static_cast<int64_t>(kClients * kBlobSize));
}

TEST_F(OriginTest, StopsWithIdleAndStalledClientsConnected) {
  auto origin = start();
  Client idle(origin->port());
  idle.request(http::verb::get, "/sub/a.txt");
  // A client that asks for the big file and never reads: the server blocks in write.
  Client stalled(origin->port());
  http::request<http::empty_body> req{http::verb::get, "/blob.bin", 11};
  http::write(stalled.socket(), req);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  origin.reset();  // must return: the destructor shuts the sockets down and joins
  SUCCEED();
}

TEST_F(OriginTest, BadRootFails) {
  OriginConfig config;
  config.root_dir = dir_ / "does-not-exist";
  auto origin = HttpOrigin::start(config);
  ASSERT_FALSE(origin.ok());
  EXPECT_NE(origin.error().message.find("does-not-exist"), std::string::npos);
}

TEST(ParseByteRange, Table) {
  using K = ByteRange::Kind;
  struct Case {
    const char* value;
    uint64_t size;
    K kind;
    uint64_t first, last;
  };
  const Case cases[] = {
      {"bytes=0-0", 10, K::kPartial, 0, 0},
      {"bytes=2-5", 10, K::kPartial, 2, 5},
      {"bytes=2-100", 10, K::kPartial, 2, 9},
      {"bytes=7-", 10, K::kPartial, 7, 9},
      {"bytes=-3", 10, K::kPartial, 7, 9},
      {"bytes=-30", 10, K::kPartial, 0, 9},
      {"Bytes= 2-5 ", 10, K::kPartial, 2, 5},
      {"bytes=10-", 10, K::kUnsatisfiable, 0, 0},
      {"bytes=10-20", 10, K::kUnsatisfiable, 0, 0},
      {"bytes=-0", 10, K::kUnsatisfiable, 0, 0},
      {"bytes=0-", 0, K::kUnsatisfiable, 0, 0},
      {"bytes=-5", 0, K::kUnsatisfiable, 0, 0},
      {"bytes=5-2", 10, K::kWhole, 0, 0},
      {"bytes=0-1,3-4", 10, K::kWhole, 0, 0},
      {"bytes=", 10, K::kWhole, 0, 0},
      {"bytes=-", 10, K::kWhole, 0, 0},
      {"bytes=a-b", 10, K::kWhole, 0, 0},
      {"bytes=+1-2", 10, K::kWhole, 0, 0},
      {"bytes=99999999999999999999-", 10, K::kWhole, 0, 0},
      {"items=0-1", 10, K::kWhole, 0, 0},
      {"", 10, K::kWhole, 0, 0},
      {"bytes=18446744073709551615-", 10, K::kUnsatisfiable, 0, 0},
  };
  for (const auto& c : cases) {
    auto r = parse_byte_range(c.value, c.size);
    EXPECT_EQ(r.kind, c.kind) << c.value;
    if (c.kind == K::kPartial) {
      EXPECT_EQ(r.first, c.first) << c.value;
      EXPECT_EQ(r.last, c.last) << c.value;
    }
  }
}

}  // namespace
}  // namespace starling::origin

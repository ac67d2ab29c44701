// The supernode service end to end: a real Supernode (SQLite, libtorrent engine, mesh
// listener) on 127.0.0.1, a real HTTP origin, and real RpcClients holding the network PSK and
// (except for enrolment) a certificate from the network CA as their handshake payload.
#include <gtest/gtest.h>
#include <sodium.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <thread>

#include "common/hex.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "mesh/rpc.h"
#include "origin/http_origin.h"
#include "peer/engine/torrent_engine.h"
#include "supernode/supernode.h"
#include "tests/http/http_test_util.h"

namespace starling::supernode {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

// The supernode's segment size in these tests: the 3 MiB blob is 4 segments.
constexpr int64_t kSegment = 1024 * 1024;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string base64_decode(const std::string& b64) {
  std::string out(b64.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), b64.data(),
                        b64.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    return "";
  }
  out.resize(len);
  return out;
}

class SupernodeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    crypto::init();
    std::string tmpl = (fs::temp_directory_path() / "supernode_test.XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
    net_dir_ = root_ + "/net";
    data_dir_ = root_ + "/data";
    www_ = root_ + "/www";
    fs::create_directories(www_);
    auto files = crypto::init_network(net_dir_, "test", unix_now() - 60);
    ASSERT_TRUE(files.ok()) << files.error().message;
    auto ca = crypto::read_file(files->ca_cert_path, false);
    ASSERT_TRUE(ca.ok());
    ca_pem_ = *ca;
    auto secret = crypto::load_network_secret(files->secret_path);
    ASSERT_TRUE(secret.ok());
    psk_ = crypto::noise_psk(*secret);
    auto ca_key_pem = crypto::read_file(files->ca_key_path, true);
    ASSERT_TRUE(ca_key_pem.ok());
    auto ca_key = crypto::ed25519_from_private_key_pem(*ca_key_pem);
    ASSERT_TRUE(ca_key.ok());
    ca_key_ = *ca_key;

    // 3 MiB + a bit of random bytes: several pieces.
    std::mt19937 rng(42);
    blob_.resize(3 * 1024 * 1024 + 123);
    for (auto& c : blob_) c = static_cast<char>(rng() & 0xff);
    write_www("blob.bin", blob_);
    auto sha = crypto::sha256_file(www_ + "/blob.bin");
    ASSERT_TRUE(sha.ok());
    blob_sha_ = *sha;

    auto origin = origin::HttpOrigin::start({www_, "127.0.0.1", 0, true});
    ASSERT_TRUE(origin.ok()) << origin.error().message;
    origin_ = std::move(origin).value();
    start_supernode();
  }

  void TearDown() override {
    node_.reset();
    origin_.reset();
    fs::remove_all(root_);
  }

  void write_www(const std::string& name, const std::string& bytes) {
    std::ofstream(www_ + "/" + name, std::ios::binary) << bytes;
  }

  void start_supernode(std::chrono::milliseconds seed_lease = std::chrono::milliseconds(6000)) {
    SupernodeConfig config;
    config.seed_lease_timeout = seed_lease;
    config.network_dir = net_dir_;
    config.data_dir = data_dir_;
    config.mesh_port = 0;
    config.segment_size = kSegment;
    auto node = Supernode::start(config);
    ASSERT_TRUE(node.ok()) << node.error().code << ": " << node.error().message;
    node_ = std::move(node).value();
  }

  std::string url(const std::string& name) const {
    return "http://127.0.0.1:" + std::to_string(origin_->port()) + "/" + name;
  }

  struct Client {
    crypto::Ed25519KeyPair key;
    std::unique_ptr<mesh::RpcClient> rpc;
  };
  // A session for `key` presenting `payload` (a certificate PEM, or empty) in the handshake.
  Client connect_with(const crypto::Ed25519KeyPair& key, const std::string& payload) {
    Client c;
    c.key = key;
    mesh::MeshConfig config;
    config.psk = psk_;
    config.static_secret = crypto::x25519_secret_from_ed25519(c.key);
    config.static_public = crypto::x25519_public_from_ed25519(c.key.public_key);
    config.payload = payload;
    auto rpc = mesh::RpcClient::connect("127.0.0.1", node_->mesh_port(), config, 5s);
    EXPECT_TRUE(rpc.ok()) << rpc.error().message;
    if (rpc.ok()) c.rpc = std::move(rpc).value();
    return c;
  }
  // A leaf for `subject` from the network CA (or from `ca_key`/`ca_pem` when given).
  std::string leaf(const crypto::PublicKey& subject, crypto::Role role,
                   const crypto::Ed25519KeyPair* ca_key = nullptr,
                   const std::string* ca_pem = nullptr, int64_t not_before = 0,
                   int64_t validity = 3600) {
    auto pem = crypto::issue_leaf(ca_key ? *ca_key : ca_key_, ca_pem ? *ca_pem : ca_pem_, subject,
                                  role, not_before ? not_before : unix_now() - 60, validity);
    EXPECT_TRUE(pem.ok()) << pem.error().message;
    return pem.ok() ? *pem : "";
  }
  // A fresh identity holding a certificate of `role` for its own key.
  Client connect(crypto::Role role = crypto::Role::kPeer) {
    auto key = crypto::generate_ed25519();
    return connect_with(key, leaf(key.public_key, role));
  }
  // A fresh identity with no certificate (only the network PSK).
  Client connect_bare() { return connect_with(crypto::generate_ed25519(), ""); }

  Result<json> call(Client& c, const std::string& method, const json& params) {
    return c.rpc->call(method, params, 10s);
  }

  // Starts an origin that sends blob_ at about 2 MiB/s (the 3 MiB blob takes over a second),
  // from the offset of a "Range: bytes=N-" it is asked, counting the body bytes it sent
  // (slow_sent_) and the Range requests (slow_ranges_); returns the blob's URL there.
  std::string start_slow_origin() {
    slow_ = std::make_unique<testing::ScriptedServer>(slow_origin(slow_sent_, slow_ranges_));
    return "http://127.0.0.1:" + std::to_string(slow_->port()) + "/blob.bin";
  }
  // Registers `url`; the task id, or "" after a failure (reported).
  std::string register_task(Client& c, const std::string& url) {
    auto r = call(c, "RegisterTask", {{"url", url}});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? (*r)["task_id"].get<std::string>() : "";
  }
  testing::ScriptedServer::Handler slow_origin(std::atomic<int64_t>& sent,
                                               std::atomic<int>& range_requests) {
    return [&sent, &range_requests, body = blob_](
               testing::tcp::socket& sock,
               const testing::http::request<testing::http::string_body>& req,
               testing::ScriptedServer& self) {
      size_t from = 0;
      std::string range(req[testing::http::field::range]);
      if (range.rfind("bytes=", 0) == 0) {
        from = std::stoul(range.substr(6));
        ++range_requests;
      }
      std::string head = from == 0 ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 206 Partial Content\r\n";
      if (from > 0) {
        head += "Content-Range: bytes " + std::to_string(from) + "-" +
                std::to_string(body.size() - 1) + "/" + std::to_string(body.size()) + "\r\n";
      }
      head +=
          "Content-Length: " + std::to_string(body.size() - from) + "\r\nConnection: close\r\n\r\n";
      boost::system::error_code ec;
      testing::asio::write(sock, testing::asio::buffer(head), ec);
      // About 2 MiB/s: the 3 MiB blob takes over a second.
      for (size_t off = from; off < body.size() && !ec && !self.stopping(); off += 64 * 1024) {
        size_t n = std::min<size_t>(64 * 1024, body.size() - off);
        testing::asio::write(sock, testing::asio::buffer(body.data() + off, n), ec);
        if (!ec) sent += static_cast<int64_t>(n);
        std::this_thread::sleep_for(30ms);
      }
    };
  }

  // Polls GetTask until the task leaves "fetching".
  json wait_settled(Client& c, const std::string& task_id) {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    json last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = call(c, "GetTask", {{"task_id", task_id}});
      EXPECT_TRUE(r.ok()) << r.error().message;
      if (!r.ok()) return {};
      last = *r;
      if (last["state"] != "fetching") return last;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "task " << task_id << " still fetching: " << last.dump();
    return last;
  }

  std::string root_, net_dir_, data_dir_, www_, ca_pem_, blob_, blob_sha_;
  std::array<uint8_t, 32> psk_{};
  crypto::Ed25519KeyPair ca_key_;
  std::unique_ptr<origin::HttpOrigin> origin_;
  std::unique_ptr<Supernode> node_;
  std::atomic<int64_t> slow_sent_{0};
  std::atomic<int> slow_ranges_{0};
  std::unique_ptr<testing::ScriptedServer> slow_;  // start_slow_origin()
};

TEST_F(SupernodeServiceTest, EnrollIssuesALeafTheCaVerifies) {
  Client c = connect_bare();  // enrolment needs no certificate
  ASSERT_TRUE(c.rpc);
  auto r =
      call(c, "Enroll", {{"public_key", to_hex(c.key.public_key.data(), 32)}, {"role", "peer"}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["ca_pem"], ca_pem_);
  auto info = crypto::verify_leaf(ca_pem_, (*r)["cert_pem"].get<std::string>(), unix_now());
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->node, crypto::node_id_of(c.key.public_key));
  EXPECT_EQ(info->role, crypto::Role::kPeer);
  EXPECT_GE(info->not_after - unix_now(), 11 * 3600);

  // Someone else's key: refused.
  auto other = crypto::generate_ed25519();
  auto bad =
      call(c, "Enroll", {{"public_key", to_hex(other.public_key.data(), 32)}, {"role", "peer"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, "enroll.key_mismatch");
  // Not a point on the curve, wrong length, wrong type: refused, no crash.
  for (const json& params :
       {json{{"public_key", std::string(64, 'f')}, {"role", "peer"}},
        json{{"public_key", "abcd"}, {"role", "peer"}}, json{{"public_key", 7}, {"role", "peer"}},
        json{{"role", "peer"}},
        json{{"public_key", to_hex(c.key.public_key.data(), 32)}, {"role", "supernode"}}}) {
    auto e = call(c, "Enroll", params);
    EXPECT_FALSE(e.ok()) << params.dump();
  }
}

TEST_F(SupernodeServiceTest, ConcurrentRegistrationsShareOneOriginFetch) {
  Client a = connect();
  Client b = connect();
  ASSERT_TRUE(a.rpc && b.rpc);
  Result<json> ra = make_error("x", "x"), rb = make_error("x", "x");
  std::thread ta([&] { ra = call(a, "RegisterTask", {{"url", url("blob.bin")}}); });
  std::thread tb([&] { rb = call(b, "RegisterTask", {{"url", url("blob.bin")}}); });
  ta.join();
  tb.join();
  ASSERT_TRUE(ra.ok()) << ra.error().message;
  ASSERT_TRUE(rb.ok()) << rb.error().message;
  std::string id = (*ra)["task_id"];
  EXPECT_EQ((*rb)["task_id"], id);
  EXPECT_EQ(id.size(), 64u);

  json t = wait_settled(a, id);
  ASSERT_EQ(t["state"], "ready") << t.dump();
  EXPECT_EQ(t["size"], blob_.size());
  EXPECT_EQ(t["sha256"], blob_sha_);
  EXPECT_EQ(t["url"], url("blob.bin"));
  EXPECT_EQ(t["origin_bytes"], blob_.size());
  // Segments of kSegment bytes, each a torrent of its own, contiguous; the last one shorter.
  EXPECT_FALSE(t.contains("metainfo"));
  EXPECT_EQ(t["segment_size"], kSegment);
  EXPECT_EQ(t["seeder"], node_->node_id().get());
  const json segments = t["segments"];
  ASSERT_EQ(segments.size(), 4u) << t.dump();
  int64_t offset = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    EXPECT_EQ(segments[i]["index"], i);
    EXPECT_EQ(segments[i]["offset"], offset);
    auto size = peer::check_metainfo(base64_decode(segments[i]["metainfo"]));
    ASSERT_TRUE(size.ok()) << size.error().message;
    EXPECT_EQ(*size, segments[i]["size"].get<int64_t>());
    offset += *size;
  }
  EXPECT_EQ(offset, static_cast<int64_t>(blob_.size()));
  EXPECT_EQ(segments[3]["size"], blob_.size() - 3 * kSegment);
  EXPECT_EQ(origin_->stats().requests, 1);

  // A later registration of a ready task fetches nothing.
  ASSERT_TRUE(call(b, "RegisterTask", {{"url", url("blob.bin")}}).ok());
  EXPECT_EQ(origin_->stats().requests, 1);

  // Announce: the supernode's own seed first, then other announcers, never the caller.
  std::string na = crypto::node_id_of(a.key.public_key).get();
  std::string nb = crypto::node_id_of(b.key.public_key).get();
  json ann = {{"task_id", id},      {"node_id", na},   {"ip", "127.0.0.1"},
              {"port", 40001},      {"done_bytes", 0}, {"total_bytes", blob_.size()},
              {"uploaded_bytes", 0}};
  auto pa = call(a, "Announce", ann);
  ASSERT_TRUE(pa.ok()) << pa.error().message;
  ASSERT_EQ((*pa)["peers"].size(), 1u) << pa->dump();
  EXPECT_EQ((*pa)["peers"][0]["node_id"], node_->node_id().get());
  EXPECT_EQ((*pa)["peers"][0]["port"], node_->data_port());
  EXPECT_EQ((*pa)["peers"][0]["ip"], "127.0.0.1");
  EXPECT_EQ((*pa)["peers"][0]["seed"], true);
  ann["node_id"] = nb;
  ann["port"] = 40002;
  auto pb = call(b, "Announce", ann);
  ASSERT_TRUE(pb.ok());
  ASSERT_EQ((*pb)["peers"].size(), 2u) << pb->dump();
  EXPECT_EQ((*pb)["peers"][0]["seed"], true);
  EXPECT_EQ((*pb)["peers"][1]["node_id"], na);
  EXPECT_EQ((*pb)["peers"][1]["port"], 40001);
  EXPECT_EQ((*pb)["peers"][1]["seed"], false);

  Client admin = connect(crypto::Role::kAdmin);
  ASSERT_TRUE(admin.rpc);
  auto st = call(admin, "Status", json::object());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ((*st)["role"], "supernode");
  EXPECT_EQ((*st)["node_id"], node_->node_id().get());
  EXPECT_EQ((*st)["peers"], 2);
  ASSERT_EQ((*st)["tasks"].size(), 1u);
  EXPECT_EQ((*st)["tasks"][0]["state"], "ready");

  // The task survives a restart on the same data dir, and is seeded again.
  a.rpc.reset();
  b.rpc.reset();
  admin.rpc.reset();
  node_.reset();
  start_supernode();
  Client c = connect();
  ASSERT_TRUE(c.rpc);
  auto again = call(c, "GetTask", {{"task_id", id}});
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ((*again)["state"], "ready");
  EXPECT_EQ((*again)["sha256"], blob_sha_);
  EXPECT_EQ((*again)["segments"], segments);
  ann["node_id"] = crypto::node_id_of(c.key.public_key).get();
  auto pc = call(c, "Announce", ann);
  ASSERT_TRUE(pc.ok());
  EXPECT_EQ((*pc)["peers"][0]["seed"], true);
  EXPECT_EQ(origin_->stats().requests, 1);
}

// Issue 4 item 5 on one member: the seeder stops mid-fetch; after a restart its lease
// expires, the leader (itself) takes the fetch over with a new epoch and resumes it with a Range
// request after the published segments, which it keeps seeding. The origin serves each byte
// about once.
TEST_F(SupernodeServiceTest, AnInterruptedFetchIsTakenOverAndResumedWithRange) {
  const std::string slow_url = start_slow_origin();
  Client c = connect();
  ASSERT_TRUE(c.rpc);
  const std::string id = register_task(c, slow_url);
  ASSERT_FALSE(id.empty());
  // Wait for the first published segment, then stop the seeder mid-fetch.
  json t;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto g = call(c, "GetTask", {{"task_id", id}});
    ASSERT_TRUE(g.ok()) << g.error().message;
    t = *g;
    if (!t["segments"].empty()) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(t["state"], "fetching") << t.dump();
  ASSERT_GE(t["segments"].size(), 1u) << t.dump();
  ASSERT_LT(t["segments"].size(), 4u) << "the fetch ended before the stop: " << t.dump();
  c.rpc.reset();
  node_.reset();
  start_supernode(1000ms);
  Client d = connect();
  ASSERT_TRUE(d.rpc);
  t = wait_settled(d, id);
  ASSERT_EQ(t["state"], "ready") << t.dump();
  EXPECT_EQ(t["sha256"], blob_sha_);
  EXPECT_EQ(t["size"], blob_.size());
  EXPECT_EQ(t["segments"].size(), 4u);
  EXPECT_EQ(slow_ranges_.load(), 1);
  // Each byte about once: only what was in flight when it stopped is fetched twice.
  EXPECT_LE(slow_sent_.load(), static_cast<int64_t>(blob_.size()) + 2 * kSegment)
      << slow_sent_.load();
}

// A polling peer asks only for what was published since its last answer ("from_segment"):
// while fetching, the answer leaves out the segments before it; once ready it lists every
// segment (the peer checks that they cover the content). A bad "from_segment" is refused.
// From the first segment on, every answer names the seed's data endpoint ("seed"), which the
// peer dials when it adds a segment.
TEST_F(SupernodeServiceTest, GetTaskFromSegmentLeavesOutWhatThePeerHasWhileFetching) {
  const std::string slow_url = start_slow_origin();
  Client c = connect();
  ASSERT_TRUE(c.rpc);
  const std::string id = register_task(c, slow_url);
  ASSERT_FALSE(id.empty());
  for (const json& bad : {json(-1), json("1"), json(1.5), json::array(), json(int64_t{1} << 40)}) {
    auto refused = call(c, "GetTask", {{"task_id", id}, {"from_segment", bad}});
    ASSERT_FALSE(refused.ok()) << bad.dump();
    EXPECT_EQ(refused.error().code, "rpc.bad_message") << bad.dump();
  }
  std::vector<int64_t> seen;  // indices from the fetching answers, in the order given
  int asked_past_zero = 0;    // fetching answers asked from a segment > 0
  json t;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto from = static_cast<int64_t>(seen.size());
    auto g = call(c, "GetTask", {{"task_id", id}, {"from_segment", from}});
    ASSERT_TRUE(g.ok()) << g.error().message;
    t = *g;
    if (t["state"] != "fetching") break;
    if (from == 0 && t["segments"].empty()) {
      EXPECT_FALSE(t.contains("seed")) << t.dump();
    }
    if (!t["segments"].empty() || from > 0) {
      EXPECT_EQ(t["seed"], json({{"ip", "127.0.0.1"}, {"port", node_->data_port()}})) << t.dump();
    }
    if (from > 0) ++asked_past_zero;
    for (const auto& seg : t["segments"]) seen.push_back(seg["index"].get<int64_t>());
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(t["state"], "ready") << t.dump();
  // Each segment once, in order: no answer repeated one the previous answers gave.
  std::vector<int64_t> expected(seen.size());
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(seen, expected);
  EXPECT_GE(seen.size(), 2u) << "the fetch was over before two segments were seen";
  EXPECT_GT(asked_past_zero, 0);
  ASSERT_EQ(t["segments"].size(), 4u) << "a ready answer lists every segment";
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(t["segments"][i]["index"], i);
  EXPECT_EQ(t["seed"], json({{"ip", "127.0.0.1"}, {"port", node_->data_port()}})) << t.dump();
  auto plain = call(c, "GetTask", {{"task_id", id}});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)["segments"], t["segments"]);
}

TEST_F(SupernodeServiceTest, OriginErrorsAreShownAndARetryRestartsTheFetch) {
  Client c = connect();
  ASSERT_TRUE(c.rpc);
  const std::string id = register_task(c, url("late.bin"));
  ASSERT_FALSE(id.empty());
  json t = wait_settled(c, id);
  ASSERT_EQ(t["state"], "failed") << t.dump();
  EXPECT_EQ(t["error"]["code"], "origin.http_status");
  EXPECT_NE(t["error"]["message"].get<std::string>().find("404"), std::string::npos);

  // The file appears; registering again restarts the fetch.
  write_www("late.bin", "hello, swarm\n");
  auto r = call(c, "RegisterTask", {{"url", url("late.bin")}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["task_id"], id);
  t = wait_settled(c, id);
  ASSERT_EQ(t["state"], "ready") << t.dump();
  EXPECT_EQ(t["size"], 13);
  EXPECT_FALSE(t.contains("error"));
}

TEST_F(SupernodeServiceTest, DigestMismatchFailsTheTask) {
  Client c = connect();
  ASSERT_TRUE(c.rpc);
  std::string wrong = "sha256:" + std::string(64, '0');
  auto r = call(c, "RegisterTask", {{"url", url("blob.bin")}, {"digest", wrong}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  json t = wait_settled(c, (*r)["task_id"]);
  ASSERT_EQ(t["state"], "failed") << t.dump();
  EXPECT_EQ(t["error"]["code"], "origin.digest_mismatch");

  // The right digest: ready, checked end to end.
  auto ok = call(c, "RegisterTask", {{"url", url("blob.bin")}, {"digest", "sha256:" + blob_sha_}});
  ASSERT_TRUE(ok.ok());
  t = wait_settled(c, (*ok)["task_id"]);
  EXPECT_EQ(t["state"], "ready") << t.dump();
  EXPECT_EQ(t["sha256"], blob_sha_);
}

TEST_F(SupernodeServiceTest, BadRequestsGetErrorsNotCrashes) {
  Client c = connect();
  ASSERT_TRUE(c.rpc);
  struct Case {
    std::string method;
    json params;
    std::string code;
  };
  const std::string id(64, 'a');
  const std::string me = crypto::node_id_of(c.key.public_key).get();
  const Case cases[] = {
      {"Frobnicate", json::object(), "rpc.unknown_method"},
      {"RegisterTask", json::object(), "rpc.bad_message"},
      {"RegisterTask", {{"url", 5}}, "rpc.bad_message"},
      {"RegisterTask", {{"url", "ftp://h/f"}}, "task.bad_url"},
      {"RegisterTask", {{"url", url("blob.bin")}, {"digest", "md5:abc"}}, "task.bad_digest"},
      {"RegisterTask",
       {{"url", url("blob.bin")}, {"headers", {"X: a\r\nHost: evil"}}},
       "rpc.bad_message"},
      {"RegisterTask", {{"url", url("blob.bin")}, {"headers", "X: a"}}, "rpc.bad_message"},
      {"GetTask", {{"task_id", id}}, "task.unknown"},
      {"GetTask", {{"task_id", "../etc"}}, "rpc.bad_message"},
      {"Announce",
       {{"task_id", id},
        {"node_id", me},
        {"ip", "127.0.0.1"},
        {"port", 1},
        {"done_bytes", 0},
        {"total_bytes", 0},
        {"uploaded_bytes", 0}},
       "task.unknown"},
      {"Announce",
       {{"task_id", id},
        {"node_id", me},
        {"ip", "not an ip"},
        {"port", 1},
        {"done_bytes", 0},
        {"total_bytes", 0},
        {"uploaded_bytes", 0}},
       "rpc.bad_message"},
      {"Announce",
       {{"task_id", id},
        {"node_id", me},
        {"ip", "127.0.0.1"},
        {"port", 70000},
        {"done_bytes", 0},
        {"total_bytes", 0},
        {"uploaded_bytes", 0}},
       "rpc.bad_message"},
      {"Announce",
       {{"task_id", id},
        {"node_id", me},
        {"ip", "127.0.0.1"},
        {"port", 1},
        {"done_bytes", -1},
        {"total_bytes", 0},
        {"uploaded_bytes", 0}},
       "rpc.bad_message"},
  };
  for (const Case& k : cases) {
    auto r = call(c, k.method, k.params);
    ASSERT_FALSE(r.ok()) << k.method << " " << k.params.dump();
    EXPECT_EQ(r.error().code, k.code)
        << k.method << " " << k.params.dump() << ": " << r.error().message;
  }
  EXPECT_EQ(origin_->stats().requests, 0);
}

// Issue 5 item 2: only Enroll is open to every PSK holder; every other method needs a
// certificate from the network CA for the session's own key, with a role that permits it.
TEST_F(SupernodeServiceTest, MethodsOtherThanEnrollNeedAValidCertificateForTheSessionKey) {
  const json reg = {{"url", url("blob.bin")}};
  auto expect_unauthenticated = [&](Client& c, const std::string& what) {
    ASSERT_TRUE(c.rpc) << what;
    for (const char* method : {"RegisterTask", "GetTask", "Announce", "Status"}) {
      json params = std::string(method) == "RegisterTask" ? reg : json::object();
      auto r = call(c, method, params);
      ASSERT_FALSE(r.ok()) << what << " " << method;
      EXPECT_EQ(r.error().code, "rpc.unauthenticated") << what << " " << method;
      EXPECT_NE(r.error().message.find("this method needs a certificate issued by the network "
                                       "CA; enrol first"),
                std::string::npos)
          << what << " " << method << ": " << r.error().message;
    }
  };

  // No certificate at all.
  Client bare = connect_bare();
  expect_unauthenticated(bare, "no certificate");
  auto r = call(bare, "RegisterTask", reg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "this method needs a certificate issued by the network CA; enrol first");

  // A well-formed peer certificate from another network's CA.
  auto other_ca_key = crypto::generate_ed25519();
  auto other_ca = crypto::make_network_ca(other_ca_key, "other", unix_now() - 60, 86400);
  ASSERT_TRUE(other_ca.ok()) << other_ca.error().message;
  auto k1 = crypto::generate_ed25519();
  Client foreign =
      connect_with(k1, leaf(k1.public_key, crypto::Role::kPeer, &other_ca_key, &*other_ca));
  expect_unauthenticated(foreign, "foreign CA");

  // A genuine peer certificate, but for another key than the one the session was made with
  // (a stolen certificate without its key).
  auto k2 = crypto::generate_ed25519();
  Client stolen = connect_with(k1, leaf(k2.public_key, crypto::Role::kPeer));
  expect_unauthenticated(stolen, "someone else's certificate");

  // An expired certificate.
  Client expired = connect_with(
      k1, leaf(k1.public_key, crypto::Role::kPeer, nullptr, nullptr, unix_now() - 7200, 3600));
  expect_unauthenticated(expired, "expired certificate");

  // Garbage where the certificate should be.
  Client garbage = connect_with(k1, "-----BEGIN CERTIFICATE-----\nnope\n");
  expect_unauthenticated(garbage, "garbage payload");

  // None of these reached the origin.
  EXPECT_EQ(origin_->stats().requests, 0);
}

TEST_F(SupernodeServiceTest, EnrolledNodeReconnectsWithItsCertificate) {
  // The peer daemon's flow: enrol on a bare session, then call on a session carrying the leaf.
  auto key = crypto::generate_ed25519();
  Client bare = connect_with(key, "");
  ASSERT_TRUE(bare.rpc);
  auto enrolled =
      call(bare, "Enroll", {{"public_key", to_hex(key.public_key.data(), 32)}, {"role", "peer"}});
  ASSERT_TRUE(enrolled.ok()) << enrolled.error().message;
  Client c = connect_with(key, (*enrolled)["cert_pem"].get<std::string>());
  ASSERT_TRUE(c.rpc);
  json t = wait_settled(c, register_task(c, url("blob.bin")));
  EXPECT_EQ(t["state"], "ready") << t.dump();
  // A renewal on the certified session works too (Enroll ignores the payload).
  auto again =
      call(c, "Enroll", {{"public_key", to_hex(key.public_key.data(), 32)}, {"role", "peer"}});
  EXPECT_TRUE(again.ok()) << again.error().message;
}

TEST_F(SupernodeServiceTest, RolesLimitMethods) {
  Client peer = connect(crypto::Role::kPeer);
  ASSERT_TRUE(peer.rpc);
  auto st = call(peer, "Status", json::object());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, "rpc.forbidden") << st.error().message;
  EXPECT_NE(st.error().message.find("peer"), std::string::npos) << st.error().message;

  Client admin = connect(crypto::Role::kAdmin);
  ASSERT_TRUE(admin.rpc);
  st = call(admin, "Status", json::object());
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ((*st)["role"], "supernode");
  EXPECT_EQ((*st)["node_id"], node_->node_id().get());
  // An admin may also do what a peer does.
  auto reg = call(admin, "RegisterTask", {{"url", url("blob.bin")}});
  ASSERT_TRUE(reg.ok()) << reg.error().message;

  Client super = connect(crypto::Role::kSupernode);
  ASSERT_TRUE(super.rpc);
  EXPECT_TRUE(call(super, "Status", json::object()).ok());
  EXPECT_TRUE(call(super, "GetTask", {{"task_id", (*reg)["task_id"]}}).ok());
}

TEST_F(SupernodeServiceTest, AnnounceUsesTheCertificatesNodeId) {
  Client a = connect();
  Client b = connect();
  ASSERT_TRUE(a.rpc && b.rpc);
  auto r = call(a, "RegisterTask", {{"url", url("blob.bin")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  const std::string id = (*r)["task_id"];
  json t = wait_settled(a, id);
  ASSERT_EQ(t["state"], "ready") << t.dump();
  const std::string na = crypto::node_id_of(a.key.public_key).get();
  const std::string nb = crypto::node_id_of(b.key.public_key).get();
  json ann = {{"task_id", id},      {"node_id", na},   {"ip", "127.0.0.1"},
              {"port", 40001},      {"done_bytes", 0}, {"total_bytes", blob_.size()},
              {"uploaded_bytes", 0}};
  // b claims to be a: refused, and nothing is recorded for either.
  auto forged = call(b, "Announce", ann);
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(forged.error().code, "rpc.forbidden");
  EXPECT_NE(forged.error().message.find(nb), std::string::npos) << forged.error().message;
  // An invented node id: refused too.
  ann["node_id"] = std::string(64, 'b');
  auto invented = call(b, "Announce", ann);
  ASSERT_FALSE(invented.ok());
  EXPECT_EQ(invented.error().code, "rpc.forbidden");

  // a announces as itself: only the supernode's seed comes back (b never got in).
  ann["node_id"] = na;
  auto pa = call(a, "Announce", ann);
  ASSERT_TRUE(pa.ok()) << pa.error().message;
  ASSERT_EQ((*pa)["peers"].size(), 1u) << pa->dump();
  EXPECT_EQ((*pa)["peers"][0]["node_id"], node_->node_id().get());
}

// Issue 5 item 1: each issuance is a replicated entry; a revocation takes effect for every
// new RPC at once, open sessions included, and the node can never enrol again.
TEST_F(SupernodeServiceTest, ARevokedPeerIsRefusedAtOnceAndCannotEnrolAgain) {
  auto key = crypto::generate_ed25519();
  const std::string node = crypto::node_id_of(key.public_key).get();
  const json enroll = {{"public_key", to_hex(key.public_key.data(), 32)}, {"role", "peer"}};
  Client bare = connect_with(key, "");
  ASSERT_TRUE(bare.rpc);
  auto enrolled = call(bare, "Enroll", enroll);
  ASSERT_TRUE(enrolled.ok()) << enrolled.error().message;
  const std::string cert = (*enrolled)["cert_pem"];
  Client peer = connect_with(key, cert);
  ASSERT_TRUE(peer.rpc);
  const json get = {{"task_id", std::string(64, 'a')}};
  auto before = call(peer, "GetTask", get);
  ASSERT_FALSE(before.ok());
  EXPECT_EQ(before.error().code, "task.unknown");  // authenticated; the task does not exist

  // The issuance is on record, with the leaf's role and validity.
  Client admin = connect(crypto::Role::kAdmin);
  ASSERT_TRUE(admin.rpc);
  auto list = call(admin, "Certificates", json::object());
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ((*list)["certificates"].size(), 1u) << list->dump();
  json rec = (*list)["certificates"][0];
  EXPECT_EQ(rec["node_id"], node);
  EXPECT_EQ(rec["role"], "peer");
  EXPECT_EQ(rec["revoked"], false);
  auto info = crypto::verify_leaf(ca_pem_, cert, unix_now());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(rec["not_before"], info->not_before);
  EXPECT_EQ(rec["not_after"], info->not_after);

  // A peer may neither revoke nor list.
  Client other = connect(crypto::Role::kPeer);
  ASSERT_TRUE(other.rpc);
  for (const auto& [method, params] :
       {std::pair<std::string, json>{"Revoke", {{"node_id", node}, {"reason", "spite"}}},
        std::pair<std::string, json>{"Revoke",
                                     {{"node_id", node_->node_id().get()}, {"reason", "coup"}}},
        std::pair<std::string, json>{"Certificates", json::object()}}) {
    auto r = call(other, method, params);
    ASSERT_FALSE(r.ok()) << method;
    EXPECT_EQ(r.error().code, "rpc.forbidden") << r.error().message;
  }
  ASSERT_EQ(call(peer, "GetTask", get).error().code, "task.unknown");  // still in

  const int64_t t0 = unix_now();
  auto revoked = call(admin, "Revoke", {{"node_id", node}, {"reason", "lost laptop"}});
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;
  const int64_t revoked_at = (*revoked)["revoked_at"];
  EXPECT_GE(revoked_at, t0);
  EXPECT_LE(revoked_at, unix_now());
  EXPECT_FALSE(revoked->contains("already_revoked"));

  // The open session: its next call is refused, saying why.
  auto after = call(peer, "GetTask", get);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, "rpc.unauthenticated");
  EXPECT_NE(after.error().message.find("node revoked: lost laptop"), std::string::npos)
      << after.error().message;
  EXPECT_NE(after.error().message.find(node), std::string::npos) << after.error().message;
  for (const char* method : {"RegisterTask", "Announce"}) {
    auto r = call(peer, method, json::object());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, "rpc.unauthenticated") << method;
  }
  // A new session with the still unexpired certificate: refused too.
  Client fresh = connect_with(key, cert);
  ASSERT_TRUE(fresh.rpc);
  auto again = call(fresh, "RegisterTask", {{"url", url("blob.bin")}});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, "rpc.unauthenticated");
  EXPECT_EQ(origin_->stats().requests, 0);
  // No new certificate, on the old bare session or a new one.
  for (Client* c : {&bare, &fresh}) {
    auto re = call(*c, "Enroll", enroll);
    ASSERT_FALSE(re.ok());
    EXPECT_EQ(re.error().code, "enroll.revoked");
    EXPECT_EQ(re.error().message, "node " + node + " was revoked: lost laptop");
  }

  // The record says so; a second revocation keeps the first.
  list = call(admin, "Certificates", {{"stale", true}});
  ASSERT_TRUE(list.ok());
  rec = (*list)["certificates"][0];
  EXPECT_EQ(rec["revoked"], true);
  EXPECT_EQ(rec["reason"], "lost laptop");
  EXPECT_EQ(rec["revoked_at"], revoked_at);
  EXPECT_EQ(rec["role"], "peer");
  auto twice = call(admin, "Revoke", {{"node_id", node}, {"reason", "again"}});
  ASSERT_TRUE(twice.ok()) << twice.error().message;
  EXPECT_EQ((*twice)["revoked_at"], revoked_at);
  EXPECT_EQ((*twice)["already_revoked"], true);

  // Still refused after a restart (the revocation is replicated state on disk).
  bare.rpc.reset();
  peer.rpc.reset();
  fresh.rpc.reset();
  other.rpc.reset();
  admin.rpc.reset();
  node_.reset();
  start_supernode();
  Client restarted = connect_with(key, cert);
  ASSERT_TRUE(restarted.rpc);
  auto later = call(restarted, "GetTask", get);
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().code, "rpc.unauthenticated");
  EXPECT_NE(later.error().message.find("revoked"), std::string::npos) << later.error().message;
}

TEST_F(SupernodeServiceTest, RevokeChecksItsParametersAndAdminsMayRevokeSupernodes) {
  Client admin = connect(crypto::Role::kAdmin);
  ASSERT_TRUE(admin.rpc);
  const std::string someone(64, 'b');
  for (const json& params :
       {json::object(), json{{"node_id", std::string(64, 'B')}}, json{{"node_id", "abc"}},
        json{{"node_id", 5}}, json{{"node_id", someone}, {"reason", 7}},
        json{{"node_id", someone}, {"reason", std::string(257, 'r')}},
        json{{"node_id", someone}, {"reason", "two\nlines"}}}) {
    auto r = call(admin, "Revoke", params);
    ASSERT_FALSE(r.ok()) << params.dump();
    EXPECT_EQ(r.error().code, "rpc.bad_message") << params.dump();
  }
  auto list = call(admin, "Certificates", json::object());
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE((*list)["certificates"].empty()) << list->dump();

  // Another supernode's certificate (signed with ca.key outside the cluster, so never
  // recorded) can be revoked by an admin; a supernode may revoke too. No reason is fine.
  Client super = connect(crypto::Role::kSupernode);
  ASSERT_TRUE(super.rpc);
  ASSERT_TRUE(call(super, "Status", json::object()).ok());
  const std::string super_node = crypto::node_id_of(super.key.public_key).get();
  auto r = call(admin, "Revoke", {{"node_id", super_node}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto refused = call(super, "Status", json::object());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, "rpc.unauthenticated");
  EXPECT_NE(refused.error().message.find("(node revoked)"), std::string::npos)
      << refused.error().message;
  Client super2 = connect(crypto::Role::kSupernode);
  ASSERT_TRUE(super2.rpc);
  ASSERT_TRUE(call(super2, "Revoke", {{"node_id", someone}, {"reason", "by a member"}}).ok());
  list = call(admin, "Certificates", json::object());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ((*list)["certificates"].size(), 2u) << list->dump();
  for (const json& c : (*list)["certificates"]) {
    EXPECT_EQ(c["revoked"], true);
    EXPECT_FALSE(c.contains("role")) << c.dump();  // no issuance on record
  }
}

TEST_F(SupernodeServiceTest, RevokedNodesLeavePeerLists) {
  Client a = connect();
  Client b = connect();
  Client admin = connect(crypto::Role::kAdmin);
  ASSERT_TRUE(a.rpc && b.rpc && admin.rpc);
  auto r = call(a, "RegisterTask", {{"url", url("blob.bin")}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  const std::string id = (*r)["task_id"];
  ASSERT_EQ(wait_settled(a, id)["state"], "ready");
  const std::string na = crypto::node_id_of(a.key.public_key).get();
  const std::string nb = crypto::node_id_of(b.key.public_key).get();
  json ann = {{"task_id", id},      {"node_id", na},   {"ip", "127.0.0.1"},
              {"port", 40001},      {"done_bytes", 0}, {"total_bytes", blob_.size()},
              {"uploaded_bytes", 0}};
  ASSERT_TRUE(call(a, "Announce", ann).ok());
  ann["node_id"] = nb;
  ann["port"] = 40002;
  auto seen = call(b, "Announce", ann);
  ASSERT_TRUE(seen.ok());
  ASSERT_EQ((*seen)["peers"].size(), 2u) << seen->dump();
  EXPECT_EQ((*seen)["peers"][1]["node_id"], na);

  ASSERT_TRUE(call(admin, "Revoke", {{"node_id", na}, {"reason", "r"}}).ok());
  auto unseen = call(b, "Announce", ann);
  ASSERT_TRUE(unseen.ok());
  ASSERT_EQ((*unseen)["peers"].size(), 1u) << unseen->dump();
  EXPECT_EQ((*unseen)["peers"][0]["seed"], true);
}

// MemberAdd / MemberRemove (issue 4 item 1) on a cluster of one: admin only, parameters
// checked, the added member (a learner here: nobody runs it) shown by Status with its
// address, and the refusals worded for the operator.
TEST_F(SupernodeServiceTest, MembersAreAddedAndRemovedByAnAdmin) {
  Client peer = connect();
  Client admin = connect(crypto::Role::kAdmin);
  ASSERT_TRUE(peer.rpc && admin.rpc);
  auto forbidden = call(peer, "MemberAdd", {{"id", 2}, {"address", "127.0.0.9:9"}});
  ASSERT_FALSE(forbidden.ok());
  EXPECT_EQ(forbidden.error().code, "rpc.forbidden");
  for (const json& params :
       {json::object(), json{{"id", 0}, {"address", "a:1"}}, json{{"id", -2}, {"address", "a:1"}},
        json{{"id", 2}}, json{{"id", 2}, {"address", "a"}}, json{{"id", 2}, {"address", 5}}}) {
    auto r = call(admin, "MemberAdd", params);
    ASSERT_FALSE(r.ok()) << params.dump();
    EXPECT_EQ(r.error().code, "rpc.bad_message") << params.dump();
  }
  auto in_use = call(admin, "MemberAdd", {{"id", 1}, {"address", "127.0.0.9:9"}});
  ASSERT_FALSE(in_use.ok());
  EXPECT_EQ(in_use.error().code, "cluster.bad_member_change");
  EXPECT_EQ(in_use.error().message, "cannot add member 1: id 1 is already in use");
  auto last = call(admin, "MemberRemove", {{"id", 1}});
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.error().message, "cannot remove member 1: it is the last voter");

  auto added = call(admin, "MemberAdd", {{"id", 2}, {"address", "127.0.0.9:9"}});
  ASSERT_TRUE(added.ok()) << added.error().message;
  auto status = call(admin, "Status", json::object());
  ASSERT_TRUE(status.ok());
  const json members = (*status)["raft"]["members"];
  ASSERT_EQ(members.size(), 2u) << status->dump();
  EXPECT_EQ(members[1], (json{{"id", 2}, {"address", "127.0.0.9:9"}, {"voter", false}}));

  auto removed = call(admin, "MemberRemove", {{"id", 2}});
  ASSERT_TRUE(removed.ok()) << removed.error().message;
  auto reuse = call(admin, "MemberAdd", {{"id", 2}, {"address", "127.0.0.9:9"}});
  ASSERT_FALSE(reuse.ok());
  EXPECT_EQ(reuse.error().message,
            "cannot add member 2: id 2 belonged to a removed member (ids are never reused)");
  auto gone = call(admin, "MemberRemove", {{"id", 2}});
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().message, "cannot remove member 2: it is not a member");
  status = call(admin, "Status", json::object());
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["raft"]["members"].size(), 1u) << status->dump();
}

}  // namespace
}  // namespace starling::supernode

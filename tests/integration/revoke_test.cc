// Revocation across a real cluster (issue 5 item 1): three `starling supernode` members and one
// `starling peer` daemon, each its own process. `starling mesh revoke`, sent to a follower,
// must take effect on every member: the peer's calls are refused, it cannot enrol again, and
// every member's own copy of the record says it is revoked.
#include <gtest/gtest.h>

#include <fstream>

#include "common/hex.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "mesh/rpc.h"
#include "tests/integration/cluster.h"

namespace starling::testing {
namespace {

using nlohmann::json;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class RevokeTest : public ::testing::Test {
 protected:
  // Waits until some member is leader; returns its index.
  static int wait_leader(Cluster& c) {
    int leader = -1;
    EXPECT_TRUE(eventually(
        [&] {
          leader = c.leader();
          return leader >= 0;
        },
        30s))
        << c.cluster_status().dump(2);
    return leader;
  }

  // `starling mesh certificates --json` against `supernodes`; null when it failed.
  static json certificates(Cluster& c, const std::string& supernodes, bool stale) {
    std::vector<std::string> args = {"mesh",        "certificates", "--network", c.dir() / "net",
                                     "--supernode", supernodes,     "--json"};
    if (stale) args.push_back("--stale");
    auto r = run_starling(args, c.dir() / "certificates.log", 30s);
    if (r.code != 0) return json();
    auto j = json::parse(r.output, nullptr, false);
    return j.is_discarded() ? json() : j.value("certificates", json());
  }

  static json find(const json& list, const std::string& node) {
    if (!list.is_array()) return json();
    for (const auto& c : list) {
      if (c.value("node_id", "") == node) return c;
    }
    return json();
  }

  // An RPC session to supernode `i` with the peer's own key and `payload` as its handshake
  // payload, believing only supernode certificates.
  static Result<std::unique_ptr<mesh::RpcClient>> connect_as(Cluster& c, int i,
                                                             const crypto::Ed25519KeyPair& key,
                                                             const std::string& payload) {
    auto secret = crypto::load_network_secret(c.dir() / "net/network.secret");
    if (!secret) return secret.error();
    mesh::MeshConfig config;
    config.psk = crypto::noise_psk(*secret);
    config.static_secret = crypto::x25519_secret_from_ed25519(key);
    config.static_public = crypto::x25519_public_from_ed25519(key.public_key);
    config.payload = payload;
    const std::string address = c.supernode_address(i);
    const auto port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    return mesh::RpcClient::connect(Cluster::supernode_ip(i), port, config, 5s);
  }
};

TEST_F(RevokeTest, ARevokedPeerIsRefusedByEveryMember) {
  crypto::init();
  Cluster c(0, 3);
  const int leader = wait_leader(c);
  ASSERT_GE(leader, 0);
  const int follower = (leader + 1) % 3;
  c.start_peers(1, follower);
  auto key = crypto::load_or_create_node_key(c.dir() / "peer0/node.key");
  ASSERT_TRUE(key.ok()) << key.error().message;
  const std::string node = crypto::node_id_of(key->public_key).get();

  // The enrolment is on record, on the leader's authority (a consistent read).
  json record = find(certificates(c, c.supernode_addresses(), /*stale=*/false), node);
  ASSERT_TRUE(record.is_object()) << "peer " << node << " not listed";
  EXPECT_EQ(record.value("role", ""), "peer");
  EXPECT_EQ(record.value("revoked", true), false);
  auto table = run_starling({"mesh", "certificates", "--network", c.dir() / "net", "--supernode",
                             c.supernode_addresses()},
                            c.dir() / "certificates.log", 30s);
  EXPECT_EQ(table.code, 0) << table.output;
  EXPECT_NE(table.output.find(node + "  peer"), std::string::npos) << table.output;

  // The peer works.
  std::ofstream(c.www("before.txt")) << "before the revocation\n";
  auto before = c.get(0, {c.url("before.txt"), "-o", c.out("before.txt")});
  ASSERT_EQ(before.code, 0) << before.output;

  // Revoke it through a follower, by the 16-character prefix the peer's log shows.
  auto revoke =
      run_starling({"mesh", "revoke", node.substr(0, 16), "--reason", "stolen laptop", "--network",
                    c.dir() / "net", "--supernode", c.supernode_address(follower)},
                   c.dir() / "revoke.log", 60s);
  ASSERT_EQ(revoke.code, 0) << revoke.output;
  EXPECT_NE(revoke.output.find("revoked node " + node + " at "), std::string::npos)
      << revoke.output;
  EXPECT_NE(revoke.output.find(": stolen laptop"), std::string::npos) << revoke.output;

  // `starling get` through the revoked peer fails with one line that says why, writing nothing.
  std::ofstream(c.www("after.txt")) << "after the revocation\n";
  auto after = c.get(0, {c.url("after.txt"), "-o", c.out("after.txt")});
  EXPECT_EQ(after.code, 1) << after.output;
  EXPECT_EQ(std::count(after.output.begin(), after.output.end(), '\n'), 1) << after.output;
  EXPECT_EQ(after.output.rfind("starling get: ", 0), 0u) << after.output;
  EXPECT_NE(after.output.find("node revoked: stolen laptop"), std::string::npos) << after.output;
  EXPECT_FALSE(std::filesystem::exists(c.out("after.txt")));

  // Every member refuses the node on its own replica: any certificate for its key (here a
  // fresh one from the CA, valid for an hour), and a new enrolment.
  auto ca_key_pem = crypto::read_file(c.dir() / "net/ca.key", /*secret=*/true);
  auto ca_pem = crypto::read_file(c.dir() / "net/ca.pem", /*secret=*/false);
  ASSERT_TRUE(ca_key_pem.ok() && ca_pem.ok());
  auto ca_key = crypto::ed25519_from_private_key_pem(*ca_key_pem);
  ASSERT_TRUE(ca_key.ok());
  auto leaf = crypto::issue_leaf(*ca_key, *ca_pem, key->public_key, crypto::Role::kPeer,
                                 unix_now() - 60, 3600);
  ASSERT_TRUE(leaf.ok()) << leaf.error().message;
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("supernode " + std::to_string(i));
    std::string last;
    EXPECT_TRUE(eventually(
        [&] {
          auto client = connect_as(c, i, *key, *leaf);
          if (!client) return last = client.error().message, false;
          auto r = (*client)->call("GetTask", {{"task_id", std::string(64, 'a')}}, 10s);
          last = r.ok() ? r->dump() : r.error().code + ": " + r.error().message;
          return !r.ok() && r.error().code == "rpc.unauthenticated" &&
                 r.error().message.find("node revoked: stolen laptop") != std::string::npos;
        },
        20s))
        << last;
    auto bare = connect_as(c, i, *key, "");
    ASSERT_TRUE(bare.ok()) << bare.error().message;
    auto enrol = (*bare)->call(
        "Enroll", {{"public_key", to_hex(key->public_key.data(), 32)}, {"role", "peer"}}, 20s);
    ASSERT_FALSE(enrol.ok());
    EXPECT_EQ(enrol.error().code, "enroll.revoked");
    EXPECT_EQ(enrol.error().message, "node " + node + " was revoked: stolen laptop");

    // Each member's own copy of the record (a stale read, not the leader's) says so.
    json mine;
    EXPECT_TRUE(eventually(
        [&] {
          mine = find(certificates(c, c.supernode_address(i), /*stale=*/true), node);
          return mine.is_object() && mine.value("revoked", false);
        },
        20s))
        << mine.dump();
    EXPECT_EQ(mine.value("reason", ""), "stolen laptop");
    EXPECT_EQ(mine.value("role", ""), "peer");
  }
}

TEST(RevokeCliTest, HelpUsageAndTheCaKey) {
  TempDir d;
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"mesh", "revoke", "--help"},
        std::vector<std::string>{"mesh", "certificates", "--help"}}) {
    auto r = run_starling(cmd, d / "log", 10s);
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("Usage: starling " + cmd[0] + " " + cmd[1]), std::string::npos)
        << r.output;
  }
  // Usage errors: exit 2, one line.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"mesh", "revoke", "--network", d / "net"},
        std::vector<std::string>{"mesh", "revoke", "abc", "--network", d / "net"},
        std::vector<std::string>{"mesh", "revoke", std::string(64, 'z'), "--network", d / "net"},
        std::vector<std::string>{"mesh", "revoke", std::string(65, 'a'), "--network", d / "net"},
        std::vector<std::string>{"mesh", "certificates"}}) {
    auto r = run_starling(args, d / "log", 10s);
    EXPECT_EQ(r.code, 2) << args[2] << ": " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  // An admin command: without ca.key it says so and does nothing.
  ASSERT_EQ(run_starling({"mesh", "init", d / "net"}, d / "log", 10s).code, 0);
  std::filesystem::remove(d / "net/ca.key");
  for (const std::string cmd : {"revoke", "certificates"}) {
    std::vector<std::string> args = {"mesh",    cmd,           "--network",
                                     d / "net", "--supernode", "127.0.0.1:1"};
    if (cmd == "revoke") args.insert(args.begin() + 2, std::string(64, 'a'));
    auto r = run_starling(args, d / "log", 10s);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_EQ(r.output,
              "starling mesh " + cmd + " needs " + d / "net/ca.key" + " to act as an admin\n");
  }
}

}  // namespace
}  // namespace starling::testing

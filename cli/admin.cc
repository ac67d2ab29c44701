#include "cli/admin.h"

#include <filesystem>

#include "crypto/keys.h"
#include "crypto/mesh_auth.h"
#include "crypto/x509.h"

namespace starling::cli {

namespace {

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<mesh::MeshConfig> admin_mesh_config(const std::string& network_dir) {
  constexpr int64_t kAdminLeafSeconds = 60 * 60;
  constexpr int64_t kClockSkewSeconds = 60;  // a supernode whose clock is a little behind
  crypto::init();
  const auto files = crypto::network_files(network_dir);
  auto secret = crypto::load_network_secret(files.secret_path);
  if (!secret) return secret.error();
  std::error_code ec;
  if (!std::filesystem::exists(files.ca_key_path, ec)) {
    return make_error(kErrAdmin, "needs " + files.ca_key_path + " to act as an admin");
  }
  auto ca_key_pem = crypto::read_file(files.ca_key_path, /*secret=*/true);
  if (!ca_key_pem) return ca_key_pem.error();
  auto ca_key = crypto::ed25519_from_private_key_pem(*ca_key_pem);
  if (!ca_key) return ca_key.error();
  auto ca_pem = crypto::read_file(files.ca_cert_path, /*secret=*/false);
  if (!ca_pem) return ca_pem.error();
  const auto key = crypto::generate_ed25519();
  auto leaf =
      crypto::issue_leaf(*ca_key, *ca_pem, key.public_key, crypto::Role::kAdmin,
                         unix_now() - kClockSkewSeconds, kAdminLeafSeconds + kClockSkewSeconds);
  if (!leaf) return leaf.error();
  mesh::MeshConfig mesh;
  mesh.psk = crypto::noise_psk(*secret);
  mesh.static_secret = crypto::x25519_secret_from_ed25519(key);
  mesh.static_public = crypto::x25519_public_from_ed25519(key.public_key);
  mesh.payload = *leaf;
  // Like a peer, believe only a supernode certificate from this CA for the key it used.
  mesh.verify_remote = crypto::require_role(*ca_pem, crypto::Role::kSupernode);
  return mesh;
}

Result<std::unique_ptr<mesh::RpcClient>> admin_connect(const mesh::MeshConfig& config,
                                                       const std::string& host, uint16_t port,
                                                       std::chrono::milliseconds timeout) {
  return mesh::RpcClient::connect(host, port, config, timeout);
}

}  // namespace starling::cli

// Admin credentials for the tools that talk to supernodes as an operator (`starling status`,
// `starling kv`, the cluster benchmark): a throwaway Ed25519 key with a short-lived admin
// certificate signed by the network CA key, so they work only where ca.key is (a supernode
// host or the operator's machine).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "mesh/rpc.h"
#include "mesh/session.h"

namespace starling::cli {

inline constexpr char kErrAdmin[] = "admin.credentials";

// A MeshConfig carrying a fresh admin identity for the network in `network_dir`, which
// believes only supernode certificates from that network's CA. Errors name the missing or
// unreadable file ("status needs /x/ca.key to act as an admin").
Result<mesh::MeshConfig> admin_mesh_config(const std::string& network_dir);

// Connects to one supernode with `config` (from admin_mesh_config).
Result<std::unique_ptr<mesh::RpcClient>> admin_connect(const mesh::MeshConfig& config,
                                                       const std::string& host, uint16_t port,
                                                       std::chrono::milliseconds timeout);

}  // namespace starling::cli

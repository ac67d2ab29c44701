// Checks of a mesh session's remote, shared by everyone who dials a supernode (peer daemons,
// admin tools, other supernodes): the remote must present a certificate from the network CA,
// valid now, for the very key its Noise session was made with, with the expected role.
#pragma once

#include <functional>
#include <string>

#include "common/result.h"
#include "crypto/x509.h"
#include "mesh/session.h"

namespace starling::crypto {

// A MeshConfig::verify_remote callback: mesh::kErrPeerRejected ("supernode at IP:PORT: ...")
// unless the remote's certificate passes verify_session_certificate against `ca_pem` at the
// time of the handshake and has `role`.
std::function<Status(const mesh::RemotePeer&)> require_role(std::string ca_pem, Role role);

}  // namespace starling::crypto

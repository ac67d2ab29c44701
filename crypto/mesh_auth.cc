#include "crypto/mesh_auth.h"

#include <chrono>

namespace starling::crypto {

std::function<Status(const mesh::RemotePeer&)> require_role(std::string ca_pem, Role role) {
  return [ca_pem = std::move(ca_pem), role](const mesh::RemotePeer& remote) -> Status {
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    auto info = verify_session_certificate(ca_pem, remote.payload, remote.static_key, now);
    if (info && info->role != role) {
      info = make_error(kErrCertificate,
                        std::string("its certificate is not a ") + role_name(role) + "'s");
    }
    if (!info) {
      return make_error(mesh::kErrPeerRejected, std::string(role_name(role)) + " at " +
                                                    remote.address + ": " + info.error().message);
    }
    return {};
  };
}

}  // namespace starling::crypto

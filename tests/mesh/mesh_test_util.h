// Shared helpers for the mesh tests: node configs with fresh keys.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "mesh/noise.h"
#include "mesh/session.h"

namespace starling::mesh::testing {

inline MeshConfig node_config(const std::string& payload, uint8_t psk_byte = 0x42) {
  MeshConfig c;
  c.psk.fill(psk_byte);
  auto kp = noise::generate_key_pair();
  c.static_secret = kp.secret;
  c.static_public = kp.public_key;
  c.payload = payload;
  return c;
}

// A certificate-sized payload (~700 bytes), as the handshake carries in production.
inline std::string fake_certificate(const std::string& who) {
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (int i = 0; i < 10; ++i) pem += std::string(64, static_cast<char>('A' + i)) + "\n";
  pem += who + "\n-----END CERTIFICATE-----\n";
  return pem;
}

// A plain TCP connection to 127.0.0.1:port (no handshake), or -1.
inline int raw_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace starling::mesh::testing

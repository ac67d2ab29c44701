// A small command-line mesh endpoint for the system tests in network namespaces
// (tests/mesh/netns_test.py). Not part of the product.
//
//   mesh_tool listen --bind IP --port N --psk HEX [--sessions N]
//       prints "static <hex public key>", "listening <port>", then per session
//       "session <addr>", "message <len> <text>" per message, and "closed" or
//       "error <code>: <message>" when it ends. Exits after --sessions sessions (default 1).
//   mesh_tool dial --to IP:PORT --psk HEX [--remote-static HEX] [--send TEXT]...
//       prints "connected <remote static hex>" or "error <code>: <message>" (exit 1), sends
//       each TEXT as one message, then closes the session and prints "sent <n>".
// Handshake failures at the listener go to stderr as the library logs them.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mesh/noise.h"
#include "mesh/session.h"

namespace {

using namespace starling;
using namespace starling::mesh;
using std::chrono::milliseconds;

int usage() {
  std::fprintf(stderr,
               "usage: mesh_tool listen --bind IP --port N --psk HEX [--sessions N]\n"
               "       mesh_tool dial --to IP:PORT --psk HEX [--remote-static HEX] "
               "[--send TEXT]...\n");
  return 2;
}

bool parse_key(const std::string& hex, std::array<uint8_t, 32>& out) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    unsigned v = 0;
    if (std::sscanf(hex.c_str() + 2 * i, "%2x", &v) != 1) return false;
    out[i] = static_cast<uint8_t>(v);
  }
  return true;
}

std::string to_hex(const std::array<uint8_t, 32>& k) {
  std::string s;
  char b[3];
  for (uint8_t x : k) {
    std::snprintf(b, sizeof b, "%02x", x);
    s += b;
  }
  return s;
}

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int listen_main(const std::string& bind, int port, MeshConfig config, int sessions) {
  auto lis = listen(bind, static_cast<uint16_t>(port), config);
  if (!lis) {
    say("error " + lis.error().code + ": " + lis.error().message);
    return 1;
  }
  say("static " + to_hex(config.static_public));
  say("listening " + std::to_string((*lis)->port()));
  for (int i = 0; i < sessions; ++i) {
    auto s = (*lis)->accept();
    if (!s) {
      say("error " + s.error().code + ": " + s.error().message);
      return 1;
    }
    say("session " + (*s)->remote().address);
    for (;;) {
      auto m = (*s)->recv(milliseconds(30000));
      if (!m) {
        if (m.error().code == kErrClosed) {
          say("closed");
        } else {
          say("error " + m.error().code + ": " + m.error().message);
        }
        break;
      }
      say("message " + std::to_string(m->size()) + " " + *m);
    }
  }
  (*lis)->close();
  return 0;
}

int dial_main(const std::string& to, MeshConfig config, const std::vector<std::string>& sends) {
  const auto colon = to.rfind(':');
  if (colon == std::string::npos) return usage();
  const std::string host = to.substr(0, colon);
  const int port = std::atoi(to.c_str() + colon + 1);
  auto s = dial(host, static_cast<uint16_t>(port), config, milliseconds(5000));
  if (!s) {
    say("error " + s.error().code + ": " + s.error().message);
    return 1;
  }
  say("connected " + to_hex((*s)->remote().static_key));
  int sent = 0;
  for (const auto& text : sends) {
    auto st = (*s)->send(text);
    if (!st) {
      say("error " + st.error().code + ": " + st.error().message);
      return 1;
    }
    ++sent;
  }
  (*s)->close();
  say("sent " + std::to_string(sent));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string cmd = argv[1];
  std::string bind = "0.0.0.0", to, psk_hex, remote_hex;
  int port = 0, sessions = 1;
  std::vector<std::string> sends;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string v = argv[++i];
    if (a == "--bind") {
      bind = v;
    } else if (a == "--port") {
      port = std::atoi(v.c_str());
    } else if (a == "--to") {
      to = v;
    } else if (a == "--psk") {
      psk_hex = v;
    } else if (a == "--remote-static") {
      remote_hex = v;
    } else if (a == "--send") {
      sends.push_back(v);
    } else if (a == "--sessions") {
      sessions = std::atoi(v.c_str());
    } else {
      return usage();
    }
  }
  MeshConfig config;
  if (!parse_key(psk_hex, config.psk)) return usage();
  auto kp = noise::generate_key_pair();
  config.static_secret = kp.secret;
  config.static_public = kp.public_key;
  config.payload = cmd + " node";
  if (!remote_hex.empty()) {
    std::array<uint8_t, 32> rs{};
    if (!parse_key(remote_hex, rs)) return usage();
    config.remote_static = rs;
  }
  if (cmd == "listen") return listen_main(bind, port, config, sessions);
  if (cmd == "dial" && !to.empty()) return dial_main(to, config, sends);
  return usage();
}

// The libtorrent session settings of TorrentEngine, for code that must build a session exactly
// like the product's: the engine itself and bench/tls_bench.cc, whose plain-libtorrent
// baseline uses the same settings with a plain listener. Includes libtorrent: keep it out of
// headers other components include (torrent_engine.h stays libtorrent-free).
#pragma once

#include <libtorrent/settings_pack.hpp>

#include "peer/engine/torrent_engine.h"

namespace starling::peer {

// Every setting of the engine's session (peer/engine/README.md "Session settings and why"):
// the SSL listener on config.listen_ip:config.ssl_port, no discovery, TCP only, LAN tuning.
libtorrent::settings_pack engine_session_settings(const EngineConfig& config);

}  // namespace starling::peer

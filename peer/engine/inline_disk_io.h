// The engine's disk I/O: libtorrent's disk_interface done inline on libtorrent's network thread
// with pread/pwrite, instead of handing every 16 KiB block to a pool of disk threads (the
// default mmap_disk_io). Why, measured: peer/engine/README.md "Disk I/O on the network thread".
// Includes libtorrent: only torrent_engine.cc and its tests include this header.
#pragma once

#include <libtorrent/disk_interface.hpp>
#include <libtorrent/io_context.hpp>
#include <memory>

namespace starling::peer {

// For lt::session_params::disk_io_constructor. Every job runs to completion inside the call
// that submits it and posts its handler to `ioc` (libtorrent requires handlers to run later,
// never inside the call). Files are opened on first use and kept open until the torrent is
// stopped or removed.
std::unique_ptr<libtorrent::disk_interface> make_inline_disk_io(
    libtorrent::io_context& ioc, const libtorrent::settings_interface& settings,
    libtorrent::counters& counters);

}  // namespace starling::peer

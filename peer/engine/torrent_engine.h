// The one class through which Starling reaches libtorrent (ARCHITECTURE §6). No libtorrent
// type appears in this header.
//
// Threading: libtorrent runs its own network thread; the engine runs one alert thread that
// drains alerts (answers torrent_need_cert_alert with this node's certificate, records errors
// and progress). Public methods are thread-safe.
//
// Every torrent is a private v1 SSL torrent rooted at the network CA: every data connection
// is TLS with mutual authentication against that CA; a peer whose certificate the CA did not
// issue cannot connect or be connected to. Session: TCP only, no DHT/LSD/PEX/UPnP/NAT-PMP,
// no uTP, no MSE, no trackers; peers come only from connect_peer().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"

namespace starling::peer {

inline constexpr char kErrEngine[] = "engine.error";
inline constexpr char kErrMetainfo[] = "engine.bad_metainfo";

struct EngineConfig {
  std::string listen_ip = "127.0.0.1";
  uint16_t ssl_port = 0;  // 0 = pick a free port; see TorrentEngine::ssl_port()
  std::string cert_pem;   // this node's leaf, issued by the network CA
  std::string key_pem;    // its private key (PKCS#8 PEM, Ed25519)
  // The seed's half of seed sharing on add_seed torrents (README "Seed sharing"). Off only in
  // bench/tls_bench, to measure TLS apart from it.
  bool seed_share = true;
};

struct Endpoint {
  std::string ip;
  uint16_t port = 0;  // the SSL listen port
};

enum class TorrentState { kChecking, kDownloading, kSeeding, kError };

struct TorrentProgress {
  TorrentState state = TorrentState::kChecking;
  int64_t total_bytes = 0;
  int64_t done_bytes = 0;        // verified bytes on disk
  int64_t downloaded_bytes = 0;  // payload received from peers since the torrent was added
  int64_t uploaded_bytes = 0;    // payload sent to peers since the torrent was added
  int num_peers = 0;
  int64_t connections = 0;      // peer connections made or accepted since the torrent was added
  std::string error;            // set when state == kError
  std::string last_peer_error;  // the last peer/TLS failure of this torrent, for diagnostics
};

struct MissingPieces {
  int64_t piece_size = 0;   // every piece's size but perhaps the last one's
  int64_t total_bytes = 0;  // the torrent's size
  std::vector<int> pieces;  // the indexes of those not yet verified on disk, ascending
  // Of `pieces`, those no connected peer has (its bitfield and HAVEs say), ascending.
  std::vector<int> nowhere;
};

// Builds the metainfo (bencoded .torrent) of a private, single-file v1 SSL torrent over the
// file at `content_path`: fixed name "content", creation date 0, no trackers, the CA
// certificate embedded as ssl-cert, pieces of `piece_size` bytes (power of two, 16 KiB..16 MiB;
// 0 = choose 1..4 MiB from the size). Deterministic: the same bytes give the same info-hash.
// `content_path` may have any file name. A 0-byte file cannot be a torrent (it has no pieces):
// that returns kErrMetainfo "empty content cannot be shared as a torrent"; callers special-case
// empty content.
Result<std::string> build_metainfo(const std::string& content_path, const std::string& ca_cert_pem,
                                   int piece_size);

// Parses untrusted metainfo and checks it is a private single-file SSL torrent; returns its
// total size. Never crashes on any bytes.
Result<int64_t> check_metainfo(const std::string& metainfo);

class TorrentEngine {
 public:
  static Result<std::unique_ptr<TorrentEngine>> start(const EngineConfig& config);
  virtual ~TorrentEngine() = default;  // stops the session and the alert thread

  // The SSL listen port actually bound (the configured one, or the one the OS chose for 0).
  virtual uint16_t ssl_port() const = 0;

  // Content paths: the torrent's single file is named "content" inside the metainfo; the
  // engine maps it onto `content_path` (save path = its directory, file renamed to its file
  // name), so any path works. Two tasks must not share a content path.

  // Seeds a file this node has just fetched and hashed: seed mode, every piece marked
  // verified (no re-hash). `content_path` is the file the metainfo was built from.
  virtual Status add_seed(const TaskId& task, const std::string& metainfo,
                          const std::string& content_path) = 0;
  // Starts downloading into `content_path` (the file is created; parent dir must exist).
  // `peers` are dialed at once; a peer given to connect_peer() later waits for libtorrent's
  // once-a-second tick (README "Peers known at add time").
  virtual Status add_download(const TaskId& task, const std::string& metainfo,
                              const std::string& content_path,
                              const std::vector<Endpoint>& peers) = 0;
  virtual Status connect_peer(const TaskId& task, const Endpoint& peer) = 0;
  virtual Result<TorrentProgress> progress(const TaskId& task) const = 0;
  virtual Status remove(const TaskId& task) = 0;  // keeps the file on disk

  // The pieces a downloading torrent does not have yet (ascending) and its piece size (the
  // last piece may be shorter): what is left to obtain some other way, e.g. from the origin.
  virtual Result<MissingPieces> missing_pieces(const TaskId& task) const = 0;
  // Hands the torrent `data` as piece `piece`, as if a peer had sent it: it is checked against
  // the metainfo's piece hash (a wrong piece stays missing) and written; a piece the torrent
  // has already is left alone. Asynchronous: progress() shows the piece once written. Fails
  // for an unknown task, a piece out of range or data of the wrong size.
  virtual Status add_piece(const TaskId& task, int piece, const std::string& data) = 0;

  // Replaces this node's certificate and key (a renewed leaf): every torrent is given them at
  // once (new TLS connections present them; connections already up keep going) and torrents
  // added later get them too. Fails, changing nothing, when either is empty.
  virtual Status set_certificate(const std::string& cert_pem, const std::string& key_pem) = 0;

  // The last peer connection failure seen by the session, on any torrent or on none yet
  // (a TLS handshake refused before the torrent is known); empty if none. Diagnostics only.
  virtual std::string last_connection_error() const = 0;
};

}  // namespace starling::peer

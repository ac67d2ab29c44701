// TorrentEngine over one libtorrent session (ARCHITECTURE §6).
#include "peer/engine/torrent_engine.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <libtorrent/add_torrent_params.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/extensions.hpp>
#include <libtorrent/extensions/smart_ban.hpp>
#include <libtorrent/peer_connection_handle.hpp>
#include <libtorrent/peer_info.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/settings_pack.hpp>
#include <libtorrent/socket_type.hpp>
#include <libtorrent/torrent_flags.hpp>
#include <libtorrent/torrent_handle.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/torrent_status.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "peer/engine/inline_disk_io.h"
#include "peer/engine/reveal_plan.h"
#include "peer/engine/session_settings.h"

namespace starling::peer {
namespace {

namespace lt = libtorrent;

constexpr auto kListenTimeout = std::chrono::seconds(10);

// RFC 7919 ffdhe2048, the well-known group (`openssl genpkey -genparam -algorithm DH -pkeyopt
// group:ffdhe2048`). TLS 1.3 and ECDHE never use it, but libtorrent 2.0.8's
// set_ssl_certificate_buffer() posts a torrent_error_alert "[dh params]" for an empty or
// invalid buffer, so we hand it a valid public group instead of nothing.
constexpr char kDhParamsPem[] =
    "-----BEGIN DH PARAMETERS-----\n"
    "MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz\n"
    "+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a\n"
    "87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7\n"
    "YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi\n"
    "7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD\n"
    "ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==\n"
    "-----END DH PARAMETERS-----\n";

}  // namespace

// Declared in peer/engine/session_settings.h (bench/tls_bench.cc builds its plain-libtorrent
// baseline from the same settings).
lt::settings_pack engine_session_settings(const EngineConfig& config) {
  lt::settings_pack s;
  // The SSL listener only ("s" suffix); plain BitTorrent is never accepted.
  s.set_str(lt::settings_pack::listen_interfaces,
            config.listen_ip + ":" + std::to_string(config.ssl_port) + "s");
  // The configured port or an error: no silent move to port+1.. or to an OS-chosen port.
  s.set_bool(lt::settings_pack::listen_system_port_fallback, false);
  s.set_int(lt::settings_pack::max_retry_port_bind, 0);
  s.set_int(lt::settings_pack::alert_mask,
            static_cast<int>(static_cast<std::uint32_t>(
                lt::alert_category::status | lt::alert_category::error | lt::alert_category::peer |
                lt::alert_category::storage | lt::alert_category::connect)));
  s.set_int(lt::settings_pack::alert_queue_size, 10000);
  // Discovery and NAT traversal: peers come only from connect_peer().
  s.set_bool(lt::settings_pack::enable_dht, false);
  s.set_bool(lt::settings_pack::enable_lsd, false);
  s.set_bool(lt::settings_pack::enable_upnp, false);
  s.set_bool(lt::settings_pack::enable_natpmp, false);
  s.set_bool(lt::settings_pack::enable_ip_notifier, false);
  s.set_str(lt::settings_pack::dht_bootstrap_nodes, "");
  // TCP only: uTP is slower on a LAN and has no SSL listener of its own here.
  s.set_bool(lt::settings_pack::enable_incoming_utp, false);
  s.set_bool(lt::settings_pack::enable_outgoing_utp, false);
  s.set_bool(lt::settings_pack::enable_incoming_tcp, true);
  s.set_bool(lt::settings_pack::enable_outgoing_tcp, true);
  // MSE/RC4 is not security; TLS is.
  s.set_int(lt::settings_pack::in_enc_policy, lt::settings_pack::pe_disabled);
  s.set_int(lt::settings_pack::out_enc_policy, lt::settings_pack::pe_disabled);
  s.set_int(lt::settings_pack::allowed_enc_level, lt::settings_pack::pe_plaintext);
  // Several nodes share an address in tests and behind NAT.
  s.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
  // LAN swarm: reconnect quickly (connect_peer may race the remote adding the torrent), keep
  // deeper request queues and send buffers than the WAN-tuned defaults, unchoke more peers.
  s.set_int(lt::settings_pack::min_reconnect_time, 1);
  s.set_int(lt::settings_pack::peer_connect_timeout, 5);
  s.set_int(lt::settings_pack::connection_speed, 50);
  s.set_int(lt::settings_pack::max_out_request_queue, 1500);
  s.set_int(lt::settings_pack::max_allowed_in_request_queue, 2000);
  s.set_int(lt::settings_pack::send_buffer_watermark, 4 * 1024 * 1024);
  s.set_int(lt::settings_pack::send_buffer_low_watermark, 512 * 1024);
  s.set_int(lt::settings_pack::unchoke_slots_limit, 16);
  // Two seeds of a torrent close their connection themselves, once each knows the other is a
  // seed (close_between_seeds() below); libtorrent's own close came before that and they
  // dialed each other again every second (peer/engine/README.md "Seeds close, then stay apart").
  s.set_bool(lt::settings_pack::close_redundant_connections, false);
  // No aio_threads / hashing_threads: the engine's disk I/O (inline_disk_io.h) has no threads.
  return s;
}

namespace {

// Seed sharing (peer/engine/README.md). The seed's half: every connection of a seeded torrent
// is shown pieces by a RevealPlan, a few at a time, as BitTorrent HAVE messages written after
// libtorrent's own have-all, and its extension handshake says so; the downloaders' half
// (FromSeed) then ignores that have-all, so they ask the seed only for what it showed them.
// Plugins run on libtorrent's network thread only.
// In the seed's extension handshake, which BitTorrent sends before its have-all.
constexpr char kSeedShareKey[] = "starling_seed_share";

// Called once a second on every connection by the plugins below: a connection between two seeds
// has nothing to carry, so it is closed, but only once libtorrent has read the other end's
// have-all (or every HAVE) and so lists it as a seed, which a finished torrent never dials.
// `other_is_seed` may also come from elsewhere (the sharing seed's handshake), then libtorrent
// does not know yet and dials once more, and that connection sees the have-all.
void close_between_seeds(lt::peer_connection_handle& pc, bool we_are_finished, bool other_is_seed) {
  if (!we_are_finished || !other_is_seed || pc.in_handshake() || pc.is_disconnecting()) return;
  pc.disconnect(lt::errors::upload_upload_connection, lt::operation_t::bittorrent);
}

class SeedSharePeer final : public lt::peer_plugin {
 public:
  SeedSharePeer(std::shared_ptr<RevealPlan> plan, int64_t piece_size,
                const lt::peer_connection_handle& pc)
      : plan_(std::move(plan)), piece_size_(piece_size), pc_(pc), slot_(plan_->add_peer()) {}
  ~SeedSharePeer() override { release(); }

  void add_handshake(lt::entry& h) override { h[kSeedShareKey] = 1; }
  void on_disconnect(const lt::error_code&) override { release(); }
  bool on_have(lt::piece_index_t piece) override {
    if (slot_ >= 0) plan_->peer_has(slot_, static_cast<int>(piece));
    top_up();
    return false;  // libtorrent still handles every message
  }
  bool on_bitfield(const lt::bitfield& bits) override {
    for (int i = 0; slot_ >= 0 && i < bits.size(); ++i) {
      if (bits.get_bit(i)) plan_->peer_has(slot_, i);
    }
    top_up();
    return false;
  }
  bool on_have_all() override {
    for (int i = 0; slot_ >= 0 && i < plan_->pieces(); ++i) plan_->peer_has(slot_, i);
    return false;
  }
  bool on_have_none() override {
    top_up();
    return false;
  }
  // Once a second: the window follows the connection's rate; whatever the events missed.
  void tick() override {
    lt::peer_info info;
    pc_.get_peer_info(info);
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - last_tick_).count();
    if (seconds > 0.1) {  // the rate of the last tick: libtorrent's own average lags seconds
      const auto rate = static_cast<double>(info.total_upload - last_upload_) / seconds;
      window_ = reveal_window(static_cast<int64_t>(rate), piece_size_);
    }
    last_tick_ = now;
    last_upload_ = info.total_upload;
    top_up();
    close_between_seeds(pc_, /*we_are_finished=*/true, pc_.is_seed());
  }

 private:
  void release() {
    if (slot_ >= 0) plan_->remove_peer(slot_);
    slot_ = -1;
  }
  static int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void top_up() {
    if (slot_ < 0 || pc_.in_handshake() || pc_.is_disconnecting()) return;
    while (plan_->outstanding(slot_) < window_) {
      const int piece = plan_->next_for(slot_, now_ms());
      if (piece < 0) return;
      const auto p = static_cast<uint32_t>(piece);
      const char have[9] = {0,
                            0,
                            0,
                            5,
                            4,  // length 5, message 4: HAVE, piece (big endian)
                            static_cast<char>(p >> 24),
                            static_cast<char>((p >> 16) & 0xff),
                            static_cast<char>((p >> 8) & 0xff),
                            static_cast<char>(p & 0xff)};
      pc_.send_buffer(have, static_cast<int>(sizeof have));
    }
  }

  std::shared_ptr<RevealPlan> plan_;
  int64_t piece_size_;
  lt::peer_connection_handle pc_;
  int slot_;
  int window_ = kMinRevealWindow;  // pieces shown and not yet had, reveal_window()
  std::chrono::steady_clock::time_point last_tick_ = std::chrono::steady_clock::now();
  int64_t last_upload_ = 0;  // payload bytes sent on this connection at the last tick
};

class SeedShare final : public lt::torrent_plugin {
 public:
  SeedShare(int pieces, int64_t piece_size)
      : plan_(std::make_shared<RevealPlan>(pieces, kSecondCopyDelayMs)), piece_size_(piece_size) {}
  std::shared_ptr<lt::peer_plugin> new_connection(const lt::peer_connection_handle& pc) override {
    return std::make_shared<SeedSharePeer>(plan_, piece_size_, pc);
  }

 private:
  std::shared_ptr<RevealPlan> plan_;
  int64_t piece_size_;
};

// The downloaders' half: a connection whose extension handshake says the other end is a
// sharing seed drops its have-all (or bitfield) and so sees only the pieces it is shown.
class FromSeed final : public lt::peer_plugin {
 public:
  FromSeed(std::shared_ptr<const bool> finished, const lt::peer_connection_handle& pc)
      : finished_(std::move(finished)), pc_(pc) {}
  bool on_extension_handshake(const lt::bdecode_node& h) override {
    sharing_ = h.dict_find_int_value(kSeedShareKey, 0) == 1;
    return true;
  }
  // true: handled, libtorrent never sees it. Once this torrent is finished nothing is hidden:
  // libtorrent then learns that the other end is a seed and never dials it again.
  bool on_have_all() override { return hiding(); }
  bool on_bitfield(const lt::bitfield&) override { return hiding(); }
  // The seed is upload-only, and between the pieces it shows this node may have nothing to
  // ask it for: libtorrent would close the connection as an "uninteresting upload-only peer"
  // (and does so even on the HAVE that shows the last piece, before it updates its interest).
  bool can_disconnect(const lt::error_code& ec) override {
    return !(sharing_ && ec == lt::errors::uninteresting_upload_peer);
  }
  void tick() override { close_between_seeds(pc_, *finished_, sharing_ || pc_.is_seed()); }

 private:
  bool hiding() const { return sharing_ && !*finished_; }

  std::shared_ptr<const bool> finished_;
  lt::peer_connection_handle pc_;
  bool sharing_ = false;
};

class SeedSharing final : public lt::torrent_plugin {
 public:
  std::shared_ptr<lt::peer_plugin> new_connection(const lt::peer_connection_handle& pc) override {
    return std::make_shared<FromSeed>(finished_, pc);
  }
  void on_state(lt::torrent_status::state_t state) override {
    *finished_ = state == lt::torrent_status::finished || state == lt::torrent_status::seeding;
  }

 private:
  std::shared_ptr<bool> finished_ = std::make_shared<bool>(false);
};

TorrentState map_state(const lt::torrent_status& st) {
  if (st.errc) return TorrentState::kError;
  switch (st.state) {
    case lt::torrent_status::checking_files:
    case lt::torrent_status::checking_resume_data:
      return TorrentState::kChecking;
    case lt::torrent_status::finished:
    case lt::torrent_status::seeding:
      return TorrentState::kSeeding;
    default:
      return TorrentState::kDownloading;
  }
}

std::string describe(const lt::error_code& ec) {
  return ec.category().name() + std::string(": ") + ec.message();
}

class LibtorrentEngine final : public TorrentEngine {
 public:
  explicit LibtorrentEngine(EngineConfig config)
      : config_(std::move(config)), cert_pem_(config_.cert_pem), key_pem_(config_.key_pem) {}

  ~LibtorrentEngine() override {
    stop_.store(true);
    if (alert_thread_.joinable()) alert_thread_.join();
    session_.reset();  // blocks until libtorrent's threads are done
  }

  Status init() {
    try {
      lt::session_params params(engine_session_settings(config_), {});  // no ut_pex, no ut_metadata
      params.disk_io_constructor = make_inline_disk_io;  // no disk threads: see the header
      session_ = std::make_unique<lt::session>(std::move(params));
      session_->add_extension(&lt::create_smart_ban_plugin);
    } catch (const std::exception& e) {
      return make_error(kErrEngine, std::string("libtorrent session: ") + e.what());
    }
    alert_thread_ = std::thread([this] { drain_alerts(); });
    std::unique_lock lock(mutex_);
    if (!listen_cv_.wait_for(lock, kListenTimeout,
                             [this] { return ssl_port_ != 0 || !listen_error_.empty(); })) {
      return make_error(kErrEngine, "no SSL listener on " + config_.listen_ip + " after 10 s");
    }
    if (ssl_port_ == 0) return make_error(kErrEngine, listen_error_);
    return {};
  }

  uint16_t ssl_port() const override {
    std::lock_guard lock(mutex_);
    return ssl_port_;
  }

  Status add_seed(const TaskId& task, const std::string& metainfo,
                  const std::string& content_path) override {
    return add(task, metainfo, content_path, /*seed=*/true, {});
  }

  Status add_download(const TaskId& task, const std::string& metainfo,
                      const std::string& content_path,
                      const std::vector<Endpoint>& peers) override {
    std::vector<lt::tcp::endpoint> endpoints;
    for (const Endpoint& p : peers) {
      auto ep = tcp_endpoint("add_download", p);
      if (!ep) return ep.error();
      endpoints.push_back(*ep);
    }
    return add(task, metainfo, content_path, /*seed=*/false, endpoints);
  }

  Status connect_peer(const TaskId& task, const Endpoint& peer) override {
    auto ep = tcp_endpoint("connect_peer", peer);
    if (!ep) return ep.error();
    auto h = handle_of(task);
    if (!h) return h.error();
    try {
      // As from a tracker (the supernode is ours): libtorrent forgives one failed attempt per
      // tracker-sourced add, and gives up on a peer after max_failcount failures otherwise. A
      // seeder that took a task over, or a peer that restarted, must be tried again.
      h->connect_peer(*ep, lt::peer_info::tracker);
    } catch (const std::exception& e) {
      return make_error(kErrEngine, std::string("connect_peer: ") + e.what());
    }
    return {};
  }

  Result<TorrentProgress> progress(const TaskId& task) const override {
    auto h = handle_of(task);
    if (!h) return h.error();
    lt::torrent_status st;
    try {
      st = h->status();
    } catch (const std::exception& e) {
      return make_error(kErrEngine, std::string("progress: ") + e.what());
    }
    TorrentProgress p;
    p.state = map_state(st);
    p.total_bytes = st.total_wanted;
    p.done_bytes = st.total_wanted_done;
    // Since the torrent was added (no resume data: its whole life). Not all_time_*: those
    // are brought up to date once a second, so a transfer shorter than that read as 0.
    p.downloaded_bytes = st.total_payload_download;
    p.uploaded_bytes = st.total_payload_upload;
    p.num_peers = st.num_peers;
    std::lock_guard lock(mutex_);
    auto it = tasks_.find(task);
    if (it != tasks_.end()) {
      p.error = it->second.error;
      p.last_peer_error = it->second.last_peer_error;
      p.connections = it->second.connections;
      if (!p.error.empty()) p.state = TorrentState::kError;
    }
    if (p.state == TorrentState::kError && p.error.empty()) p.error = describe(st.errc);
    return p;
  }

  Status remove(const TaskId& task) override {
    lt::torrent_handle h;
    {
      std::lock_guard lock(mutex_);
      auto it = tasks_.find(task);
      if (it == tasks_.end()) return make_error(kErrEngine, "remove: unknown task " + task.get());
      h = it->second.handle;
      tasks_.erase(it);
    }
    try {
      session_->remove_torrent(h);  // without delete_files: the content stays on disk
    } catch (const std::exception& e) {
      return make_error(kErrEngine, std::string("remove: ") + e.what());
    }
    return {};
  }

  Result<MissingPieces> missing_pieces(const TaskId& task) const override {
    auto h = handle_of(task);
    if (!h) return h.error();
    try {
      auto info = h->torrent_file();
      if (!info) return make_error(kErrEngine, "missing_pieces: no metadata");
      const lt::torrent_status st = h->status(lt::torrent_handle::query_pieces);
      MissingPieces m;
      m.piece_size = info->piece_length();
      m.total_bytes = info->total_size();
      std::vector<int> availability;
      h->piece_availability(availability);  // empty for a seed
      for (int i = 0; i < info->num_pieces(); ++i) {
        const lt::piece_index_t piece(i);
        if (!st.pieces.empty() && st.pieces.get_bit(piece)) continue;
        m.pieces.push_back(i);
        const auto at = static_cast<size_t>(i);
        if (at >= availability.size() || availability[at] == 0) m.nowhere.push_back(i);
      }
      return m;
    } catch (const std::exception& e) {
      return make_error(kErrEngine, std::string("missing_pieces: ") + e.what());
    }
  }

  Status add_piece(const TaskId& task, int piece, const std::string& data) override {
    auto h = handle_of(task);
    if (!h) return h.error();
    try {
      auto info = h->torrent_file();
      if (!info) return make_error(kErrEngine, "add_piece: no metadata");
      if (piece < 0 || piece >= info->num_pieces()) {
        return make_error(kErrEngine, "add_piece: no piece " + std::to_string(piece));
      }
      const lt::piece_index_t index(piece);
      if (static_cast<int64_t>(data.size()) != info->piece_size(index)) {
        return make_error(kErrEngine, "add_piece: piece " + std::to_string(piece) + " is " +
                                          std::to_string(info->piece_size(index)) + " bytes, not " +
                                          std::to_string(data.size()));
      }
      h->add_piece(index, std::vector<char>(data.begin(), data.end()));
    } catch (const std::exception& e) {
      return make_error(kErrEngine, std::string("add_piece: ") + e.what());
    }
    return {};
  }

  Status set_certificate(const std::string& cert_pem, const std::string& key_pem) override {
    if (cert_pem.empty() || key_pem.empty()) {
      return make_error(kErrEngine, "set_certificate needs a certificate and a key");
    }
    // Under the mutex (set_ssl_certificate_buffer only posts to libtorrent's thread), so an
    // alert answered concurrently with the old pair cannot land after the new one. Torrents
    // whose need_cert alert is still queued get the new pair from the alert thread.
    std::lock_guard lock(mutex_);
    cert_pem_ = cert_pem;
    key_pem_ = key_pem;
    for (auto& [id, t] : tasks_) {
      try {
        t.handle.set_ssl_certificate_buffer(cert_pem, key_pem, kDhParamsPem);
      } catch (const std::exception&) {
        // Removed inside libtorrent already (an error ends a torrent): nothing to update.
      }
    }
    return {};
  }

  std::string last_connection_error() const override {
    std::lock_guard lock(mutex_);
    return last_connection_error_;
  }

 private:
  struct Task {
    lt::torrent_handle handle;
    std::string error;
    std::string last_peer_error;
    int64_t connections = 0;  // peer_connect_alerts: connections made or accepted
    // add_download's peers, while the torrent waits paused for its file check (start_paused()).
    std::vector<lt::tcp::endpoint> dial;
  };

  Result<lt::torrent_handle> handle_of(const TaskId& task) const {
    std::lock_guard lock(mutex_);
    auto it = tasks_.find(task);
    if (it == tasks_.end()) return make_error(kErrEngine, "unknown task " + task.get());
    return it->second.handle;
  }

  static Result<lt::tcp::endpoint> tcp_endpoint(const char* what, const Endpoint& peer) {
    lt::error_code ec;
    lt::address addr = lt::make_address(peer.ip, ec);
    if (ec || peer.port == 0) {
      return make_error(kErrEngine, std::string(what) + ": bad endpoint " + peer.ip + ":" +
                                        std::to_string(peer.port));
    }
    return lt::tcp::endpoint(addr, peer.port);
  }

  Status add(const TaskId& task, const std::string& metainfo, const std::string& content_path,
             bool seed, const std::vector<lt::tcp::endpoint>& peers) {
    if (auto checked = check_metainfo(metainfo); !checked) return checked.error();
    std::filesystem::path path(content_path);
    if (!path.has_filename()) {
      return make_error(kErrEngine, "content path " + content_path + " names no file");
    }
    lt::add_torrent_params atp;
    try {
      lt::error_code ec;
      atp.ti = std::make_shared<lt::torrent_info>(
          lt::span<const char>(metainfo.data(), static_cast<std::ptrdiff_t>(metainfo.size())), ec,
          lt::from_span);
      if (ec) return make_error(kErrMetainfo, "metainfo does not parse: " + ec.message());
    } catch (const std::exception& e) {
      return make_error(kErrMetainfo, std::string("metainfo does not parse: ") + e.what());
    }
    std::filesystem::path parent = path.parent_path();
    atp.save_path = parent.empty() ? std::string(".") : parent.string();
    // The torrent's single file is named "content"; renaming it maps it onto any file name.
    atp.renamed_files[lt::file_index_t{0}] = path.filename().string();
    atp.flags &= ~(lt::torrent_flags::auto_managed | lt::torrent_flags::paused);
    if (seed) {
      atp.flags |= lt::torrent_flags::seed_mode;
      atp.verified_pieces.resize(atp.ti->num_pieces(), true);
      if (config_.seed_share) {
        atp.extensions.push_back(
            [pieces = atp.ti->num_pieces(), piece_size = int64_t{atp.ti->piece_length()}](
                const lt::torrent_handle&,
                lt::client_data_t) -> std::shared_ptr<lt::torrent_plugin> {
              return std::make_shared<SeedShare>(pieces, piece_size);
            });
      }
    } else {
      atp.extensions.push_back(
          [](const lt::torrent_handle&, lt::client_data_t) -> std::shared_ptr<lt::torrent_plugin> {
            return std::make_shared<SeedSharing>();
          });
      // Added paused, resumed by start_paused() with the peers on its list (README "Peers known
      // at add time").
      if (!peers.empty()) atp.flags |= lt::torrent_flags::paused;
    }

    std::lock_guard lock(mutex_);  // libtorrent never waits on this mutex: no deadlock
    if (tasks_.count(task) != 0) {
      return make_error(kErrEngine, "task " + task.get() + " is already in the engine");
    }
    lt::error_code ec;
    lt::torrent_handle h = session_->add_torrent(std::move(atp), ec);
    if (ec) {
      return make_error(kErrEngine, "add torrent for task " + task.get() + ": " + ec.message());
    }
    tasks_[task] = Task{h, {}, {}, 0, peers};
    try {
      // This node's leaf at once, not only when the need_cert alert is answered: a connection
      // made before that (start_paused()'s dials, a peer dialing a new seed) fails its TLS
      // handshake with "certificate required".
      h.set_ssl_certificate_buffer(cert_pem_, key_pem_, kDhParamsPem);
    } catch (const std::exception& e) {
      return make_error(kErrEngine,
                        std::string("add torrent for task ") + task.get() + ": " + e.what());
    }
    return {};
  }

  // A download added with peers waits paused until its file check is over (torrent_checked,
  // or checking_files when bytes from an earlier run must be hashed), then gets them and is
  // resumed: a torrent that resumes gets libtorrent's "connect boost" and dials the peers on
  // its list at once, where peers given to a running torrent wait for the session's
  // once-a-second tick. Resumed before the check is over, it only ticks: the check answer is
  // queued on the network thread behind the caller's calls as often as not (README "Peers known
  // at add time"). A torrent that failed (file error) stays as libtorrent left it.
  // REQUIRES: mutex_ held; called from the alert thread.
  void start_paused(Task& t) {
    if (t.dial.empty() || !t.error.empty()) return;
    try {
      for (const auto& ep : t.dial) t.handle.connect_peer(ep, lt::peer_info::tracker);
      t.handle.resume();
    } catch (const std::exception&) {
      // Removed meanwhile: nothing to start.
    }
    t.dial.clear();
  }

  // Finds the task of a torrent alert. REQUIRES: mutex_ held.
  Task* task_of(const lt::torrent_handle& h) {
    for (auto& [id, t] : tasks_) {
      if (t.handle == h) return &t;
    }
    return nullptr;
  }

  void record_peer_error(const lt::torrent_handle& h, const std::string& what) {
    std::lock_guard lock(mutex_);
    last_connection_error_ = what;
    if (Task* t = task_of(h)) t->last_peer_error = what;
  }

  void handle_alert(lt::alert* a) {
    if (auto* need = lt::alert_cast<lt::torrent_need_cert_alert>(a)) {
      // A bad certificate or key comes back as a torrent_error_alert ("[certificate]",
      // "[private key]"), which marks the task kError below.
      std::lock_guard lock(mutex_);  // see set_certificate()
      try {
        need->handle.set_ssl_certificate_buffer(cert_pem_, key_pem_, kDhParamsPem);
      } catch (const std::exception&) {
        // The torrent was removed after asking (remove() right after add): nothing to answer.
      }
    } else if (auto* ok = lt::alert_cast<lt::listen_succeeded_alert>(a)) {
      if (ok->socket_type == lt::socket_type_t::tcp_ssl) {
        std::lock_guard lock(mutex_);
        ssl_port_ = static_cast<uint16_t>(ok->port);
        listen_cv_.notify_all();
      }
    } else if (auto* failed = lt::alert_cast<lt::listen_failed_alert>(a)) {
      std::lock_guard lock(mutex_);
      listen_error_ = "listen on " + config_.listen_ip + ":" + std::to_string(config_.ssl_port) +
                      " failed: " + failed->message();
      listen_cv_.notify_all();
    } else if (auto* te = lt::alert_cast<lt::torrent_error_alert>(a)) {
      std::lock_guard lock(mutex_);
      if (Task* t = task_of(te->handle)) t->error = te->message();
    } else if (auto* checked = lt::alert_cast<lt::torrent_checked_alert>(a)) {
      std::lock_guard lock(mutex_);
      if (Task* t = task_of(checked->handle)) start_paused(*t);
    } else if (auto* sc = lt::alert_cast<lt::state_changed_alert>(a)) {
      std::lock_guard lock(mutex_);
      Task* t = task_of(sc->handle);
      if (t && sc->state == lt::torrent_status::checking_files) start_paused(*t);
    } else if (auto* pc = lt::alert_cast<lt::peer_connect_alert>(a)) {
      std::lock_guard lock(mutex_);
      if (Task* t = task_of(pc->handle)) ++t->connections;
    } else if (auto* pe = lt::alert_cast<lt::peer_error_alert>(a)) {
      record_peer_error(pe->handle, pe->message());
    } else if (auto* pd = lt::alert_cast<lt::peer_disconnected_alert>(a)) {
      // A clean close carries no error; everything else (TLS alerts included) is kept.
      if (pd->error && pd->error != lt::errors::self_connection) {
        record_peer_error(pd->handle, pd->message());
      }
    } else if (auto* fe = lt::alert_cast<lt::file_error_alert>(a)) {
      std::lock_guard lock(mutex_);
      if (Task* t = task_of(fe->handle)) t->error = fe->message();
    }
  }

  void drain_alerts() {
    std::vector<lt::alert*> alerts;
    while (!stop_.load()) {
      if (session_->wait_for_alert(std::chrono::milliseconds(100)) == nullptr) continue;
      session_->pop_alerts(&alerts);
      for (lt::alert* a : alerts) handle_alert(a);
    }
  }

  const EngineConfig config_;
  std::unique_ptr<lt::session> session_;
  std::thread alert_thread_;
  std::atomic<bool> stop_{false};

  mutable std::mutex mutex_;
  std::condition_variable listen_cv_;
  uint16_t ssl_port_ = 0;                   // guarded by mutex_
  std::string listen_error_;                // guarded by mutex_
  std::string last_connection_error_;       // guarded by mutex_
  std::string cert_pem_, key_pem_;          // guarded by mutex_: the current leaf (renewals)
  std::unordered_map<TaskId, Task> tasks_;  // guarded by mutex_
};

}  // namespace

Result<std::unique_ptr<TorrentEngine>> TorrentEngine::start(const EngineConfig& config) {
  if (config.cert_pem.empty() || config.key_pem.empty()) {
    return make_error(kErrEngine, "engine needs this node's certificate and key");
  }
  lt::error_code ec;
  lt::make_address(config.listen_ip, ec);
  if (ec) return make_error(kErrEngine, "bad listen ip " + config.listen_ip);
  auto engine = std::make_unique<LibtorrentEngine>(config);
  if (auto st = engine->init(); !st) return st.error();
  return std::unique_ptr<TorrentEngine>(std::move(engine));
}

}  // namespace starling::peer

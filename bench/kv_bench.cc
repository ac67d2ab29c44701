// kv_bench: the replicated-write load generator of bench/raft_bench.sh (issue 3 item 5). One
// tool, two backends, the same loop for both, so the comparison measures the clusters and not
// two different clients:
//   - starling: KvPut over a mesh RPC session (JSON over one persistent Noise connection),
//     authenticated with a throwaway admin certificate from --network's CA key;
//   - etcd: POST /v3/kv/put to etcd's HTTP/JSON gateway (base64 key and value), one libcurl
//     keep-alive handle per client thread.
//
//   kv_bench --backend starling|etcd --endpoints H:P[,H:P...] [--network DIR]
//            [--clients C] [--seconds S] [--warmup S] [--value-size B] [--timeout-ms T]
//       C client threads; client i uses endpoint i % n and loops put(key_i_j, B random
//       bytes) for --warmup + --seconds; prints one JSON object: ops, writes_per_s, p50_ms,
//       p99_ms, max_ms, mean_ms, errors (over the --seconds after the warm-up).
//   kv_bench ... --failover [--seconds S (default 0 = until killed)]
//       One client, 16-byte values. On any error it moves to the next endpoint at once (1 ms
//       pause once every endpoint failed in a row). Prints "ack START_NS END_NS ENDPOINT" per
//       acknowledged write (CLOCK_MONOTONIC nanoseconds, the clock of Python's
//       time.monotonic()) on stdout, and "err NS ENDPOINT CODE: MESSAGE" on stderr.
//   kv_bench ... --probe
//       Asks every endpoint for its Raft status once; prints a JSON array of
//       {"endpoint", "ok", "id", "state", "lead", "term", "commit", "applied"} or
//       {"endpoint", "ok": false, "error"}.
//
// Threading: each client thread owns its KvClient (RpcClient::call is serialised per client,
// a CURL easy handle is single-threaded); the threads share only atomics and the start time.
#include <curl/curl.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cli/admin.h"
#include "common/result.h"
#include "mesh/rpc.h"

namespace {

using starling::Error;
using starling::make_error;
using starling::Result;
using starling::Status;
using Json = nlohmann::json;
using std::chrono::milliseconds;

constexpr char kErrUsage[] = "bench.usage";
constexpr char kErrHttp[] = "etcd.http";
constexpr char kErrTransport[] = "etcd.transport";
constexpr char kErrReply[] = "bench.bad_reply";

enum class Backend { kStarling, kEtcd };
enum class Mode { kLoad, kFailover, kProbe };

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  std::string text() const { return host + ":" + std::to_string(port); }
};

struct Options {
  Backend backend = Backend::kStarling;
  Mode mode = Mode::kLoad;
  std::vector<Endpoint> endpoints;
  std::string network_dir;
  int clients = 1;
  std::optional<double> seconds;  // default: 10 s of load; the failover writer runs until killed
  double warmup = 1;
  size_t value_size = 256;
  milliseconds timeout{5000};
};

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// --- arguments (the CLI boundary: exceptions are caught once in main) -------------------------

Endpoint parse_endpoint(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw std::invalid_argument("endpoint '" + s + "' is not HOST:PORT");
  }
  const unsigned long port = std::stoul(s.substr(colon + 1));
  if (port == 0 || port > 65535) throw std::invalid_argument("bad port in '" + s + "'");
  return Endpoint{s.substr(0, colon), static_cast<uint16_t>(port)};
}

Options parse_args(int argc, char** argv) {
  Options o;
  const auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--backend") {
      const auto b = value(i);
      if (b == "starling") {
        o.backend = Backend::kStarling;
      } else if (b == "etcd") {
        o.backend = Backend::kEtcd;
      } else {
        throw std::invalid_argument("--backend is starling or etcd, not '" + b + "'");
      }
    } else if (a == "--endpoints") {
      std::string list = value(i);
      size_t start = 0;
      while (start <= list.size()) {
        const auto comma = list.find(',', start);
        const auto item = list.substr(start, comma == std::string::npos ? comma : comma - start);
        if (!item.empty()) o.endpoints.push_back(parse_endpoint(item));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--network") {
      o.network_dir = value(i);
    } else if (a == "--clients") {
      o.clients = std::stoi(value(i));
    } else if (a == "--seconds") {
      o.seconds = std::stod(value(i));
    } else if (a == "--warmup") {
      o.warmup = std::stod(value(i));
    } else if (a == "--value-size") {
      o.value_size = std::stoul(value(i));
    } else if (a == "--timeout-ms") {
      o.timeout = milliseconds(std::stol(value(i)));
    } else if (a == "--failover") {
      o.mode = Mode::kFailover;
    } else if (a == "--probe") {
      o.mode = Mode::kProbe;
    } else {
      throw std::invalid_argument("unknown argument '" + a + "'");
    }
  }
  if (o.endpoints.empty()) throw std::invalid_argument("--endpoints is required");
  if (o.backend == Backend::kStarling && o.network_dir.empty()) {
    throw std::invalid_argument("--backend starling needs --network DIR (with ca.key)");
  }
  if (!o.seconds) o.seconds = o.mode == Mode::kFailover ? 0.0 : 10.0;
  if (o.clients < 1 || *o.seconds < 0 || o.warmup < 0 || o.timeout.count() <= 0) {
    throw std::invalid_argument("--clients >= 1, --seconds/--warmup >= 0, --timeout-ms > 0");
  }
  return o;
}

// --- values ------------------------------------------------------------------------------------

// splitmix64: fast, seeded, good enough to make values incompressible.
class ValueSource {
 public:
  explicit ValueSource(uint64_t seed) : state_(seed) {}
  // B bytes drawn from a 64-character alphabet, so they are a valid JSON string as they are.
  void fill(std::string& out, size_t size) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    out.resize(size);
    uint64_t bits = 0;
    int left = 0;
    for (auto& c : out) {
      if (left == 0) {
        bits = next();
        left = 10;
      }
      c = kAlphabet[bits & 63];
      bits >>= 6;
      --left;
    }
  }

 private:
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

std::string base64(std::string_view in) {
  static constexpr char kTable[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  const auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(in[k])); };
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kTable[(n >> 18) & 63];
    out += kTable[(n >> 12) & 63];
    out += kTable[(n >> 6) & 63];
    out += kTable[n & 63];
  }
  if (const size_t rest = in.size() - i; rest > 0) {
    const uint32_t n = (byte(i) << 16) | (rest == 2 ? byte(i + 1) << 8 : 0);
    out += kTable[(n >> 18) & 63];
    out += kTable[(n >> 12) & 63];
    out += rest == 2 ? kTable[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// --- backends ----------------------------------------------------------------------------------

// Raft status of one member, the same shape for both backends.
struct MemberStatus {
  uint64_t id = 0;
  std::string state;  // "leader", "follower", ...
  uint64_t lead = 0;
  uint64_t term = 0;
  uint64_t commit = 0;
  uint64_t applied = 0;
};

// One client's connection to one member. Not thread-safe: one per client thread.
class KvClient {
 public:
  virtual ~KvClient() = default;
  // (Re)connects to `endpoint`, dropping any previous connection.
  virtual Status connect(const Endpoint& endpoint) = 0;
  // REQUIRES: connect() succeeded. On a transport error the caller reconnects.
  virtual Status put(const std::string& key, const std::string& value) = 0;
  virtual Result<MemberStatus> status() = 0;
  // Whether the error means the connection is unusable (reconnect before the next call).
  virtual bool is_transport_error(const Error& e) const = 0;
};

class StarlingClient final : public KvClient {
 public:
  StarlingClient(const starling::mesh::MeshConfig& config, milliseconds timeout)
      : config_(config), timeout_(timeout) {}

  Status connect(const Endpoint& endpoint) override {
    rpc_.reset();
    auto client = starling::cli::admin_connect(config_, endpoint.host, endpoint.port, timeout_);
    if (!client) return client.error();
    rpc_ = std::move(*client);
    return {};
  }

  Status put(const std::string& key, const std::string& value) override {
    auto r = rpc_->call("KvPut", Json{{"key", key}, {"value", value}}, timeout_);
    if (!r) return r.error();
    if (!r->is_object() || !r->contains("index")) {
      return make_error(kErrReply, "KvPut answered without an index: " + r->dump());
    }
    return {};
  }

  Result<MemberStatus> status() override {
    auto r = rpc_->call("Status", Json::object(), timeout_);
    if (!r) return r.error();
    try {
      const auto& raft = r->at("raft");
      MemberStatus s;
      s.id = raft.at("id").get<uint64_t>();
      s.state = raft.at("state").get<std::string>();
      s.lead = raft.value("lead", uint64_t{0});
      s.term = raft.value("term", uint64_t{0});
      s.commit = raft.value("commit", uint64_t{0});
      s.applied = raft.value("applied", uint64_t{0});
      return s;
    } catch (const Json::exception& e) {
      return make_error(kErrReply, std::string("Status without a usable raft object: ") + e.what() +
                                       ": " + r->dump());
    }
  }

  bool is_transport_error(const Error& e) const override {
    return e.code.rfind("mesh.", 0) == 0 || e.code.rfind("rpc.bad", 0) == 0;
  }

 private:
  const starling::mesh::MeshConfig& config_;
  milliseconds timeout_;
  std::unique_ptr<starling::mesh::RpcClient> rpc_;
};

class EtcdClient final : public KvClient {
 public:
  explicit EtcdClient(milliseconds timeout) : timeout_(timeout) {
    curl_ = curl_easy_init();
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Expect:");
  }
  ~EtcdClient() override {
    curl_easy_cleanup(curl_);
    curl_slist_free_all(headers_);
  }
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  Status connect(const Endpoint& endpoint) override {
    // libcurl connects on the first request and keeps the connection alive afterwards; a new
    // endpoint gets a fresh handle so nothing of the old connection survives.
    curl_easy_reset(curl_);
    base_ = "http://" + endpoint.text();
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_.count()));
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &EtcdClient::on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &body_);
    curl_easy_setopt(curl_, CURLOPT_FORBID_REUSE, 0L);
    return {};
  }

  Status put(const std::string& key, const std::string& value) override {
    request_ = R"({"key":")" + base64(key) + R"(","value":")" + base64(value) + R"("})";
    auto r = post("/v3/kv/put");
    if (!r) return r.error();
    // A successful put answers {"header": {...}}; anything else is an error object.
    if (r->find("\"header\"") == std::string::npos) {
      return make_error(kErrReply, "put answered " + *r);
    }
    return {};
  }

  Result<MemberStatus> status() override {
    request_ = "{}";
    auto r = post("/v3/maintenance/status");
    if (!r) return r.error();
    // The gateway writes uint64 fields as strings and omits zero values.
    const auto u64 = [](const Json& j, const char* name) -> uint64_t {
      if (!j.contains(name)) return 0;
      const auto& v = j.at(name);
      return v.is_string() ? std::stoull(v.get<std::string>()) : v.get<uint64_t>();
    };
    try {
      const auto j = Json::parse(*r);
      MemberStatus s;
      s.id = u64(j.at("header"), "member_id");
      s.lead = u64(j, "leader");
      s.state = s.id == s.lead ? "leader" : "follower";
      s.term = u64(j, "raftTerm");
      s.commit = u64(j, "raftIndex");
      s.applied = j.contains("raftAppliedIndex") ? u64(j, "raftAppliedIndex") : s.commit;
      return s;
    } catch (const std::exception& e) {
      return make_error(kErrReply, std::string("maintenance/status: ") + e.what() + ": " + *r);
    }
  }

  bool is_transport_error(const Error& e) const override { return e.code == kErrTransport; }

 private:
  static size_t on_body(char* data, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
  }

  Result<std::string> post(const char* path) {
    const std::string url = base_ + path;
    body_.clear();
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, request_.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(request_.size()));
    const CURLcode rc = curl_easy_perform(curl_);
    if (rc != CURLE_OK) {
      return make_error(kErrTransport, base_ + path + ": " + curl_easy_strerror(rc));
    }
    long code = 0;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
      return make_error(kErrHttp, base_ + path + ": HTTP " + std::to_string(code) + " " + body_);
    }
    return body_;
  }

  milliseconds timeout_;
  CURL* curl_ = nullptr;
  curl_slist* headers_ = nullptr;
  std::string base_;
  std::string request_;
  std::string body_;
};

// Builds clients for one run. The Starling admin identity is made once and shared (read-only).
class ClientFactory {
 public:
  static Result<ClientFactory> make(const Options& o) {
    ClientFactory f;
    f.backend_ = o.backend;
    f.timeout_ = o.timeout;
    if (o.backend == Backend::kStarling) {
      auto cfg = starling::cli::admin_mesh_config(o.network_dir);
      if (!cfg) return cfg.error();
      f.mesh_ = std::make_unique<starling::mesh::MeshConfig>(std::move(*cfg));
    }
    return f;
  }
  std::unique_ptr<KvClient> make_client() const {
    if (backend_ == Backend::kStarling) return std::make_unique<StarlingClient>(*mesh_, timeout_);
    return std::make_unique<EtcdClient>(timeout_);
  }

 private:
  Backend backend_ = Backend::kStarling;
  milliseconds timeout_{5000};
  std::unique_ptr<starling::mesh::MeshConfig> mesh_;
};

std::string describe(const Error& e) { return e.code + ": " + e.message; }

// --- load mode ---------------------------------------------------------------------------------

struct ClientResult {
  std::vector<int64_t> latencies_ns;  // of the puts started inside the measured window
  uint64_t errors = 0;
  int64_t last_end_ns = 0;
  std::optional<std::string> first_error;
};

void run_client(int index, const Options& o, const ClientFactory& factory, std::atomic<int>& ready,
                const std::atomic<int64_t>& start_ns, ClientResult& out) {
  const Endpoint& endpoint = o.endpoints[static_cast<size_t>(index) % o.endpoints.size()];
  auto client = factory.make_client();
  auto connected = client->connect(endpoint);
  ready.fetch_add(1);
  while (start_ns.load() == 0) std::this_thread::sleep_for(milliseconds(1));
  const int64_t measure_from = start_ns.load() + static_cast<int64_t>(o.warmup * 1e9);
  const int64_t measure_to = measure_from + static_cast<int64_t>(*o.seconds * 1e9);
  const uint64_t seed = 0x5eed0000U + static_cast<unsigned>(index);
  ValueSource values(seed);
  std::string value;
  const std::string prefix = "key_" + std::to_string(index) + "_";
  out.latencies_ns.reserve(1 << 16);
  const auto record_error = [&](int64_t t0, const Error& e) {
    if (t0 >= measure_from) ++out.errors;
    if (!out.first_error) out.first_error = endpoint.text() + " " + describe(e);
  };
  for (uint64_t j = 0;; ++j) {
    const int64_t t0 = monotonic_ns();
    if (t0 >= measure_to) break;
    if (!connected) {
      connected = client->connect(endpoint);
      if (!connected) {
        record_error(t0, connected.error());
        std::this_thread::sleep_for(milliseconds(10));
        continue;
      }
    }
    values.fill(value, o.value_size);
    const auto st = client->put(prefix + std::to_string(j), value);
    const int64_t t1 = monotonic_ns();
    if (!st) {
      record_error(t0, st.error());
      if (client->is_transport_error(st.error())) connected = st;
      continue;
    }
    if (t0 >= measure_from) {
      out.latencies_ns.push_back(t1 - t0);
      out.last_end_ns = t1;
    }
  }
}

double percentile_ms(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank.
  auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1e6;
}

int run_load(const Options& o, const ClientFactory& factory) {
  std::vector<ClientResult> results(static_cast<size_t>(o.clients));
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  std::atomic<int64_t> start_ns{0};
  for (int i = 0; i < o.clients; ++i) {
    threads.emplace_back(run_client, i, std::cref(o), std::cref(factory), std::ref(ready),
                         std::cref(start_ns), std::ref(results[static_cast<size_t>(i)]));
  }
  // Every client connects before the clock starts, so handshakes are not measured.
  while (ready.load() < o.clients) std::this_thread::sleep_for(milliseconds(1));
  const int64_t start = monotonic_ns();
  start_ns.store(start);
  for (auto& t : threads) t.join();

  std::vector<int64_t> all;
  uint64_t errors = 0;
  int64_t last_end = 0;
  Json first_errors = Json::array();
  for (auto& r : results) {
    all.insert(all.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    errors += r.errors;
    last_end = std::max(last_end, r.last_end_ns);
    if (r.first_error && first_errors.size() < 3) first_errors.push_back(*r.first_error);
  }
  std::sort(all.begin(), all.end());
  const int64_t measure_from = start + static_cast<int64_t>(o.warmup * 1e9);
  // The window closes when the last put started inside it has been answered.
  const double elapsed = std::max(*o.seconds, static_cast<double>(last_end - measure_from) / 1e9);
  double sum = 0;
  for (const auto v : all) sum += static_cast<double>(v);
  Json out{
      {"backend", o.backend == Backend::kStarling ? "starling" : "etcd"},
      {"clients", o.clients},
      {"endpoints", o.endpoints.size()},
      {"value_size", o.value_size},
      {"seconds", elapsed},
      {"ops", all.size()},
      {"writes_per_s", elapsed > 0 ? static_cast<double>(all.size()) / elapsed : 0.0},
      {"p50_ms", percentile_ms(all, 0.50)},
      {"p99_ms", percentile_ms(all, 0.99)},
      {"max_ms", all.empty() ? 0.0 : static_cast<double>(all.back()) / 1e6},
      {"mean_ms", all.empty() ? 0.0 : sum / static_cast<double>(all.size()) / 1e6},
      {"errors", errors},
      {"first_errors", first_errors},
  };
  std::printf("%s\n", out.dump().c_str());
  return all.empty() ? 1 : 0;
}

// --- failover mode -----------------------------------------------------------------------------

int run_failover(const Options& o, const ClientFactory& factory) {
  constexpr size_t kValueSize = 16;
  auto client = factory.make_client();
  ValueSource values(0xfa110e7ULL);
  std::string value;
  const size_t n = o.endpoints.size();
  size_t current = 0;
  size_t failures_in_a_row = 0;
  bool connected = false;
  const int64_t stop_at =
      *o.seconds > 0 ? monotonic_ns() + static_cast<int64_t>(*o.seconds * 1e9) : INT64_MAX;
  const auto fail = [&](const Error& e) {
    std::fprintf(stderr, "err %lld %zu %s\n", static_cast<long long>(monotonic_ns()), current,
                 describe(e).c_str());
    connected = false;
    current = (current + 1) % n;
    // Every member refused in a row: nobody can take the write yet, pause a little.
    if (++failures_in_a_row % n == 0) std::this_thread::sleep_for(milliseconds(1));
  };
  for (uint64_t j = 0; monotonic_ns() < stop_at;) {
    if (!connected) {
      const auto st = client->connect(o.endpoints[current]);
      if (!st) {
        fail(st.error());
        continue;
      }
      connected = true;
    }
    values.fill(value, kValueSize);
    const int64_t t0 = monotonic_ns();
    const auto st = client->put("failover_" + std::to_string(j), value);
    const int64_t t1 = monotonic_ns();
    if (!st) {
      fail(st.error());
      continue;
    }
    failures_in_a_row = 0;
    ++j;
    std::printf("ack %lld %lld %zu\n", static_cast<long long>(t0), static_cast<long long>(t1),
                current);
    std::fflush(stdout);
  }
  return 0;
}

// --- probe mode --------------------------------------------------------------------------------

int run_probe(const Options& o, const ClientFactory& factory) {
  Json out = Json::array();
  for (const auto& ep : o.endpoints) {
    auto client = factory.make_client();
    Result<MemberStatus> s = make_error(kErrUsage, "not asked");
    if (auto st = client->connect(ep); !st) {
      s = st.error();
    } else {
      s = client->status();
    }
    if (!s) {
      out.push_back({{"endpoint", ep.text()}, {"ok", false}, {"error", describe(s.error())}});
      continue;
    }
    out.push_back({{"endpoint", ep.text()},
                   {"ok", true},
                   {"id", s->id},
                   {"state", s->state},
                   {"lead", s->lead},
                   {"term", s->term},
                   {"commit", s->commit},
                   {"applied", s->applied}});
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kv_bench: %s\n", e.what());
    return 2;
  }
  // A member killed mid-write must come back as an error, never as a signal.
  std::signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  auto factory = ClientFactory::make(o);
  if (!factory) {
    std::fprintf(stderr, "kv_bench: %s\n", describe(factory.error()).c_str());
    return 2;
  }
  int rc = 0;
  switch (o.mode) {
    case Mode::kLoad:
      rc = run_load(o, *factory);
      break;
    case Mode::kFailover:
      rc = run_failover(o, *factory);
      break;
    case Mode::kProbe:
      rc = run_probe(o, *factory);
      break;
  }
  curl_global_cleanup();
  return rc;
}

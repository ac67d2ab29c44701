#include "mirror/mirror.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include <curl/curl.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>

#include "common/task_id.h"
#include "common/thread_per_connection.h"
#include "mirror/route.h"
#include "peer/api/local_api.h"

namespace starling::mirror {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using namespace std::chrono_literals;

// Upstream headers a client needs to see again (auth challenges, digests, media types, paging).
constexpr const char* kRelayed[] = {"content-type",
                                    "docker-content-digest",
                                    "docker-distribution-api-version",
                                    "www-authenticate",
                                    "link",
                                    "etag"};

struct Upstream {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // relayed ones, as received
  std::string content_length;                                // "" when absent
  std::string body;
};

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// A proxied answer is a manifest, a tag list or an error (blobs go through the swarm): more
// than this is refused rather than held in memory.
constexpr size_t kMaxProxied = 32 << 20;

size_t collect_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > kMaxProxied) return 0;  // curl fails with a write error
  body->append(data, size * n);
  return size * n;
}

size_t collect_header(char* data, size_t size, size_t n, void* user) {
  auto* up = static_cast<Upstream*>(user);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.starts_with("HTTP/")) {  // a new response (after a redirect): forget the last one
    up->headers.clear();
    up->content_length.clear();
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  std::string name = line.substr(0, colon);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  if (name == "content-length") up->content_length = value;
  for (const char* r : kRelayed) {
    if (name == r) up->headers.emplace_back(name, value);
  }
  return size * n;
}

// GET or HEAD of `url` with `headers`, redirects followed (a registry may send blobs to
// storage elsewhere). Transport failures are errors; HTTP statuses are answers.
Result<Upstream> fetch(const std::string& method, const std::string& url,
                       const std::vector<std::string>& headers) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return make_error("mirror.upstream", "curl_easy_init failed");
  CURL* c = curl.get();
  std::unique_ptr<curl_slist, SlistDeleter> list;
  for (const auto& h : headers) {
    curl_slist* next = curl_slist_append(list.get(), h.c_str());
    if (next == nullptr) return make_error("mirror.upstream", "out of memory");
    (void)list.release();
    list.reset(next);
  }
  Upstream up;
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);  // manifests and error bodies: small
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &up);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &up.body);
  if (method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (CURLcode rc = curl_easy_perform(c); rc != CURLE_OK) {
    if (rc == CURLE_WRITE_ERROR) {
      return make_error("mirror.upstream", "upstream " + url + ": answer over " +
                                               std::to_string(kMaxProxied >> 20) + " MiB");
    }
    return make_error("mirror.upstream", "upstream " + url + ": " +
                                             (errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &up.status);
  return up;
}

// A registry-style error body (distribution spec "errors" array).
std::string error_body(const std::string& code, const std::string& message) {
  return json{{"errors", json::array({{{"code", code}, {"message", message}}})}}.dump() + "\n";
}

class MirrorImpl final : public Mirror {
 public:
  explicit MirrorImpl(MirrorConfig config)
      : config_(std::move(config)),
        acceptor_(io_),
        connections_(acceptor_, [this](tcp::socket& s) { serve(s); }) {}

  ~MirrorImpl() override { connections_.stop(); }

  Status listen() {
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(config_.host, ec);
    if (ec) return make_error(kErrMirror, "bad listen address '" + config_.host + "'");
    const tcp::endpoint endpoint(address, config_.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return make_error(kErrMirror, "cannot listen on " + config_.host + ":" +
                                        std::to_string(config_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    connections_.start();
    return {};
  }

  uint16_t port() const override { return port_; }

 private:
  void serve(tcp::socket& socket) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(64 * 1024);
      boost::system::error_code ec;
      http::read(socket, buffer, parser, ec);
      if (ec) {
        if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
          write(socket, 400, {}, error_body("UNSUPPORTED", "bad request"), 11, false, false);
        }
        return;
      }
      const auto& req = parser.get();
      const bool keep = req.keep_alive();
      if (!handle(socket, req) || !keep) {
        boost::system::error_code ignored;
        socket.shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
    }
  }

  // Answers one request; false when the connection must close (a blob cut short).
  bool handle(tcp::socket& socket, const http::request<http::string_body>& req) {
    const bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
      return write(socket, 405, {}, error_body("UNSUPPORTED", "this mirror is read-only"),
                   req.version(), req.keep_alive(), false);
    }
    const std::string target(req.target());
    const RoutedRequest r = route(target);
    if (r.route == Route::kNotFound) {
      return write(socket, 404, {}, error_body("UNSUPPORTED", "not a registry API v2 read"),
                   req.version(), req.keep_alive(), head);
    }
    std::vector<std::string> forwarded;
    for (const auto& f : req) {
      if (f.name() == http::field::accept || f.name() == http::field::authorization) {
        forwarded.push_back(std::string(f.name_string()) + ": " + std::string(f.value()));
      }
    }
    const std::string url = config_.upstream + target;
    if (r.route == Route::kBlob && !head) return serve_blob(socket, req, r, url, forwarded);
    return proxy(socket, req, url, forwarded, head);
  }

  bool proxy(tcp::socket& socket, const http::request<http::string_body>& req,
             const std::string& url, const std::vector<std::string>& forwarded, bool head) {
    auto up = fetch(head ? "HEAD" : "GET", url, forwarded);
    if (!up) {
      return write(socket, 502, {}, error_body("UNAVAILABLE", up.error().message), req.version(),
                   req.keep_alive(), head);
    }
    return write(socket, static_cast<unsigned>(up->status), up->headers, up->body, req.version(),
                 req.keep_alive(), head, up->content_length);
  }

  bool serve_blob(tcp::socket& socket, const http::request<http::string_body>& req,
                  const RoutedRequest& r, const std::string& url,
                  const std::vector<std::string>& forwarded) {
    // The upstream decides whether this client may have the blob (auth, existence) and says
    // its size; only then does the swarm fetch it, once for every client.
    auto probe = fetch("HEAD", url, forwarded);
    if (!probe) {
      return write(socket, 502, {}, error_body("UNAVAILABLE", probe.error().message), req.version(),
                   req.keep_alive(), false);
    }
    int64_t length = -1;
    if (probe->status == 200 && !probe->content_length.empty()) {
      try {
        length = std::stoll(probe->content_length);
      } catch (const std::exception&) {
      }
    }
    if (probe->status != 200 || length < 0) return proxy(socket, req, url, forwarded, false);

    json task = {{"url", url}, {"digest", r.reference}, {"headers", json::array()}};
    for (const auto& h : forwarded) {
      if (beast::iequals(beast::string_view(h).substr(0, 14), "authorization:")) {
        task["headers"].push_back(h);
      }
    }
    auto created = peer::local_api_call(config_.socket, "POST", "/v1/tasks", task.dump(), 30s);
    json answer = created ? json::parse(created->body, nullptr, false) : json();
    if (!created || created->status != 200 || !answer.is_object()) {
      const std::string why = !created ? created.error().message
                                       : "peer daemon answered HTTP " +
                                             std::to_string(created->status) + ": " + created->body;
      return write(socket, 502, {}, error_body("UNAVAILABLE", why), req.version(), req.keep_alive(),
                   false);
    }
    const std::string task_id = answer.value("task_id", "");
    std::cerr << "mirror: " << r.name << " " << r.reference << " (" << length << " bytes): task "
              << task_id << std::endl;

    http::response<http::empty_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "application/octet-stream");
    res.set("Docker-Content-Digest", r.reference);
    res.set("Docker-Distribution-Api-Version", "registry/2.0");
    res.content_length(static_cast<uint64_t>(length));
    res.keep_alive(req.keep_alive());
    http::response_serializer<http::empty_body> sr{res};
    boost::system::error_code ec;
    http::write_header(socket, sr, ec);
    if (ec) return false;

    // Each segment goes out as soon as it and every one before it are complete.
    size_t sent_parts = 0;
    int64_t sent = 0;
    for (;;) {
      auto got = peer::local_api_call(config_.socket, "GET", "/v1/tasks/" + task_id, "", 30s);
      const json status =
          got && got->status == 200 ? json::parse(got->body, nullptr, false) : json();
      if (!status.is_object()) return cut_short(r, "the peer daemon did not answer");
      const std::string state = status.value("state", "");
      if (state == "failed") {
        return cut_short(r, status.value("error", json::object()).value("message", "failed"));
      }
      std::vector<std::string> ready;  // complete files in order, from the first one
      if (state == "done" && status.contains("parts") && status["parts"].is_array()) {
        for (const auto& p : status["parts"])
          ready.push_back(p.is_string() ? p.get<std::string>() : "");
      } else if (status.contains("segments") && status["segments"].is_array()) {
        for (const auto& s : status["segments"]) {
          if (!s.is_object() || !s.value("complete", false)) break;
          ready.push_back(s.value("path", ""));
        }
      }
      for (; sent_parts < ready.size(); ++sent_parts) {
        auto n = send_file(socket.native_handle(), ready[sent_parts]);
        if (!n) return cut_short(r, n.error().message);
        sent += *n;
      }
      if (state == "done") break;
      // Waits 100 ms for the next poll, or less when the client hangs up (a task that never
      // completes must not hold this thread after its client left).
      pollfd hup{socket.native_handle(), POLLRDHUP, 0};
      if (::poll(&hup, 1, 100) > 0 && (hup.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
        return cut_short(r, "the client went away");
      }
    }
    if (sent != length) {
      return cut_short(r, "the content has " + std::to_string(sent) + " bytes, the registry said " +
                              std::to_string(length));
    }
    return true;
  }

  static bool cut_short(const RoutedRequest& r, const std::string& why) {
    std::cerr << "mirror: " << r.name << " " << r.reference << " cut short: " << why << std::endl;
    return false;  // closing the connection mid-body is how HTTP/1.1 says "incomplete"
  }

  static Result<int64_t> send_file(int out, const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return make_error("mirror.blob", "cannot read " + path + ": " + std::strerror(errno));
    struct stat st {};
    ::fstat(fd, &st);
    off_t offset = 0;
    while (offset < st.st_size) {
      ssize_t n = ::sendfile(out, fd, &offset, static_cast<size_t>(st.st_size - offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EPIPE;
        ::close(fd);
        return make_error("mirror.blob", std::string("client connection: ") + std::strerror(err));
      }
    }
    ::close(fd);
    return static_cast<int64_t>(offset);
  }

  // `length`, when given, is the Content-Length a HEAD answer carries without a body.
  static bool write(tcp::socket& socket, unsigned status,
                    const std::vector<std::pair<std::string, std::string>>& headers,
                    const std::string& body, unsigned version, bool keep, bool head,
                    const std::string& length = "") {
    http::response<http::string_body> res;
    res.version(version);
    res.result(status >= 100 && status <= 999 ? status : 502u);
    bool typed = false;
    for (const auto& [name, value] : headers) {
      res.insert(name, value);
      typed = typed || name == "content-type";
    }
    if (!typed) res.set(http::field::content_type, "application/json");
    res.keep_alive(keep);
    if (head) {
      res.set(http::field::content_length, length.empty() ? std::to_string(body.size()) : length);
    } else {
      res.body() = body;
      res.prepare_payload();
    }
    boost::system::error_code ec;
    if (head) {
      http::response_serializer<http::string_body> sr{res};
      http::write_header(socket, sr, ec);
    } else {
      http::write(socket, res, ec);
    }
    return !ec;
  }

  MirrorConfig config_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  ThreadPerConnection<tcp::acceptor> connections_;
};

}  // namespace

Result<std::unique_ptr<Mirror>> Mirror::start(const MirrorConfig& config) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::string upstream = config.upstream;
  while (upstream.ends_with("/")) upstream.pop_back();
  if (auto ok = validate_url(upstream); !ok) {
    return make_error(kErrMirror, "--upstream: " + ok.error().message);
  }
  if (upstream.find('/', upstream.find("://") + 3) != std::string::npos ||
      upstream.find_first_of("?#") != std::string::npos) {
    return make_error(kErrMirror,
                      "--upstream must be a registry's root URL (no path): " + config.upstream);
  }
  if (config.socket.empty()) return make_error(kErrMirror, "no peer daemon socket given");
  MirrorConfig c = config;
  c.upstream = upstream;
  auto mirror = std::make_unique<MirrorImpl>(std::move(c));
  if (auto st = mirror->listen(); !st) return st.error();
  return std::unique_ptr<Mirror>(std::move(mirror));
}

}  // namespace starling::mirror

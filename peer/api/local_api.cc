#include "peer/api/local_api.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include <curl/curl.h>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "common/thread_per_connection.h"

namespace starling::peer {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using local = asio::local::stream_protocol;

namespace {

constexpr uint64_t kBodyLimit = 1024 * 1024;

std::string no_daemon(const std::string& path) {
  return "no peer daemon at " + path + " (start one with `starling peer`)";
}

// Connects to `path` to learn whether someone serves it. Returns 0 when a listener answered,
// otherwise the connect errno (ECONNREFUSED for a stale socket file, ENOENT when absent).
int probe_socket(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return ENAMETOOLONG;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

class LocalApiServerImpl final : public LocalApiServer {
 public:
  LocalApiServerImpl(std::string path, LocalApiHandler handler)
      : path_(std::move(path)),
        handler_(std::move(handler)),
        acceptor_(io_),
        connections_(acceptor_, [this](local::socket& s) { serve(s); }) {}

  ~LocalApiServerImpl() override {
    connections_.stop();
    boost::system::error_code ec;
    acceptor_.close(ec);
    if (bound_) ::unlink(path_.c_str());
  }

  Status listen() {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return make_error(kErrLocalApi, path_ + " exists and is not a socket");
      }
      int err = probe_socket(path_);
      if (err == 0) return make_error(kErrLocalApi, "another daemon is listening on " + path_);
      if (err != ECONNREFUSED && err != ENOENT) {
        return make_error(kErrLocalApi, "cannot probe " + path_ + ": " + std::strerror(err));
      }
      if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
        return make_error(kErrLocalApi,
                          "cannot remove stale socket " + path_ + ": " + std::strerror(errno));
      }
    }
    boost::system::error_code ec;
    local::endpoint endpoint(path_);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (ec) return make_error(kErrLocalApi, "cannot bind " + path_ + ": " + ec.message());
    bound_ = true;
    // Before listen(): nobody can connect yet, so there is no window with a wider mode.
    if (::chmod(path_.c_str(), 0600) != 0) {
      return make_error(kErrLocalApi, "cannot chmod " + path_ + ": " + std::strerror(errno));
    }
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return make_error(kErrLocalApi, "cannot listen on " + path_ + ": " + ec.message());
    connections_.start();
    return {};
  }

 private:
  void serve(local::socket& socket) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(kBodyLimit);
      boost::system::error_code ec;
      http::read(socket, buffer, parser, ec);
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset) {
        return;
      }
      if (ec) {
        if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
          const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit;
          HttpReply reply{too_big ? 413 : 400, "text/plain",
                          too_big ? "request too large\n" : "bad request\n"};
          write_reply(socket, reply, 11, false);
          boost::system::error_code ignored;
          socket.shutdown(local::socket::shutdown_send, ignored);
        }
        return;
      }
      const auto& req = parser.get();
      HttpReply reply;
      try {
        reply = handler_(std::string(req.method_string()), std::string(req.target()), req.body());
      } catch (const std::exception& e) {
        reply = HttpReply{500, "text/plain", std::string("internal error: ") + e.what() + "\n"};
      } catch (...) {
        reply = HttpReply{500, "text/plain", "internal error\n"};
      }
      const bool keep = req.keep_alive();
      if (!write_reply(socket, reply, req.version(), keep)) return;
      if (!keep) {
        boost::system::error_code ignored;
        socket.shutdown(local::socket::shutdown_send, ignored);
        return;
      }
    }
  }

  static bool write_reply(local::socket& socket, const HttpReply& reply, unsigned version,
                          bool keep) {
    http::response<http::string_body> res;
    res.version(version);
    // Out-of-range status codes from a handler are a bug there; answer 500 rather than garbage.
    res.result(reply.status >= 100 && reply.status <= 999 ? static_cast<unsigned>(reply.status)
                                                          : 500u);
    if (!reply.content_type.empty()) res.set(http::field::content_type, reply.content_type);
    res.keep_alive(keep);
    res.body() = reply.body;
    res.prepare_payload();
    boost::system::error_code ec;
    http::write(socket, res, ec);
    return !ec;
  }

  std::string path_;
  LocalApiHandler handler_;
  asio::io_context io_;
  local::acceptor acceptor_;
  bool bound_ = false;
  ThreadPerConnection<local::acceptor> connections_;
};

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t append_body(char* data, size_t size, size_t nmemb, void* user) {
  static_cast<std::string*>(user)->append(data, size * nmemb);
  return size * nmemb;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

Result<std::unique_ptr<LocalApiServer>> LocalApiServer::start(const std::string& socket_path,
                                                              LocalApiHandler handler) {
  if (!handler) return make_error(kErrLocalApi, "local API server needs a handler");
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return make_error(kErrLocalApi, "bad socket path '" + socket_path + "' (empty or too long)");
  }
  auto server = std::make_unique<LocalApiServerImpl>(socket_path, std::move(handler));
  if (auto st = server->listen(); !st) return st.error();
  return std::unique_ptr<LocalApiServer>(std::move(server));
}

Result<HttpReply> local_api_call(const std::string& socket_path, const std::string& method,
                                 const std::string& target, const std::string& body,
                                 std::chrono::milliseconds timeout) {
  curl_init_once();
  if (target.empty() || target.front() != '/') {
    return make_error(kErrLocalApi, "bad local API target '" + target + "'");
  }
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return make_error(kErrLocalApi, "curl_easy_init failed");
  CURL* c = curl.get();
  std::string url = "http://localhost" + target;
  std::string response;
  char errbuf[CURL_ERROR_SIZE] = {};
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  auto add_header = [&](const char* h) {
    curl_slist* next = curl_slist_append(headers.get(), h);
    if (next) {
      (void)headers.release();
      headers.reset(next);
    }
  };
  add_header("Expect:");  // no 100-continue round trip for bodies
  if (!body.empty()) add_header("Content-Type: application/json");

  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  }
  if (method != "GET" && method != "HEAD" && method != "POST") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  } else if (method == "GET" && !body.empty()) {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "GET");
  }

  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    long os_errno = 0;
    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
    if (rc == CURLE_COULDNT_CONNECT &&
        (os_errno == ENOENT || os_errno == ECONNREFUSED || os_errno == 0)) {
      return make_error(kErrNoDaemon, no_daemon(socket_path));
    }
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    return make_error(kErrLocalApi,
                      "local API " + method + " " + target + " via " + socket_path + ": " + detail);
  }
  HttpReply reply;
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  reply.status = static_cast<int>(status);
  char* content_type = nullptr;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &content_type);
  reply.content_type = content_type ? content_type : "";
  reply.body = std::move(response);
  return reply;
}

}  // namespace starling::peer

#include "origin/http_origin.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "common/thread_per_connection.h"

namespace starling::origin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kChunkSize = 256 * 1024;
constexpr uint64_t kRequestBodyLimit = 64 * 1024;  // GET/HEAD carry no body worth reading

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Maps a request target to a path relative to the root, or nullopt when it is not a plain
// relative path below the root (traversal, absolute, NUL, bad escapes).
std::optional<std::string> relative_path_of(std::string_view target) {
  if (target.empty() || target.front() != '/') return std::nullopt;
  if (auto q = target.find_first_of("?#"); q != std::string_view::npos)
    target = target.substr(0, q);
  std::string decoded;
  decoded.reserve(target.size());
  for (size_t i = 0; i < target.size(); ++i) {
    char c = target[i];
    if (c == '%') {
      if (i + 2 >= target.size()) return std::nullopt;
      int hi = hex_value(target[i + 1]);
      int lo = hex_value(target[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0' || c == '\\') return std::nullopt;
    decoded.push_back(c);
  }
  std::string_view rest(decoded);
  rest.remove_prefix(1);  // the leading '/'
  if (rest.empty()) return std::nullopt;
  std::string out;
  size_t start = 0;
  while (start <= rest.size()) {
    size_t end = rest.find('/', start);
    if (end == std::string_view::npos) end = rest.size();
    std::string_view seg = rest.substr(start, end - start);
    // An empty segment is "//" (would make the rest absolute) or a trailing '/'.
    if (seg.empty() || seg == "." || seg == "..") return std::nullopt;
    if (!out.empty()) out.push_back('/');
    out.append(seg);
    start = end + 1;
  }
  return out;
}

// One accepted connection: its socket's descriptor is published so that stop() can shut it
// down and unblock the thread's read or write.
class HttpOriginImpl final : public HttpOrigin {
 public:
  HttpOriginImpl(const OriginConfig& config, std::filesystem::path root)
      : config_(config),
        root_(std::move(root)),
        acceptor_(io_),
        connections_(acceptor_, [this](tcp::socket& s) { serve(s); }) {}

  ~HttpOriginImpl() override { stop(); }

  Status listen() {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(config_.host, ec);
    if (ec) return make_error("origin.config", "bad origin host '" + config_.host + "'");
    tcp::endpoint endpoint(address, config_.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return make_error("origin.listen", "cannot listen on " + config_.host + ":" +
                                             std::to_string(config_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    connections_.start();
    return {};
  }

  uint16_t port() const override { return port_; }

  OriginStats stats() const override { return OriginStats{requests_.load(), bytes_sent_.load()}; }

 private:
  void stop() {
    connections_.stop();
    boost::system::error_code ec;
    acceptor_.close(ec);
  }

  void serve(tcp::socket& socket) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(kRequestBodyLimit);
      boost::system::error_code ec;
      http::read(socket, buffer, parser, ec);
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
        return;
      }
      if (ec) {
        if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
          send_simple(socket, http::status::bad_request, "bad request\n", false, 11);
        }
        return;
      }
      const auto& req = parser.get();
      if (!handle(socket, req)) return;
      if (!req.keep_alive()) {
        boost::system::error_code ignored;
        socket.shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
    }
  }

  // Writes a small complete response. Returns false when the connection is gone.
  // For HEAD (`head`), only the header goes out, with the Content-Length GET would have had.
  bool send_simple(tcp::socket& socket, http::status status, std::string body, bool keep_alive,
                   unsigned version, bool head = false,
                   const std::string& content_type = "text/plain") {
    http::response<http::string_body> res{status, version};
    res.set(http::field::server, "starling-origin");
    res.set(http::field::content_type, content_type);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    boost::system::error_code ec;
    if (head) {
      http::response_serializer<http::string_body> sr{res};
      http::write_header(socket, sr, ec);
    } else {
      http::write(socket, res, ec);
    }
    return !ec;
  }

  // Answers one request. Returns false when the connection must close.
  bool handle(tcp::socket& socket, const http::request<http::string_body>& req) {
    const bool keep = req.keep_alive();
    const unsigned version = req.version();
    const bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head) {
      http::response<http::string_body> res{http::status::method_not_allowed, version};
      res.set(http::field::allow, "GET, HEAD");
      res.keep_alive(keep);
      res.body() = "method not allowed\n";
      res.prepare_payload();
      boost::system::error_code ec;
      http::write(socket, res, ec);
      return !ec;
    }
    std::string_view target(req.target().data(), req.target().size());
    if (target == "/_stats") {
      nlohmann::json j{{"requests", requests_.load()}, {"bytes_sent", bytes_sent_.load()}};
      return send_simple(socket, http::status::ok, j.dump() + "\n", keep, version, head,
                         "application/json");
    }
    requests_.fetch_add(1);
    if (target.empty() || target.front() != '/') {
      return send_simple(socket, http::status::bad_request, "bad request target\n", keep, version,
                         head);
    }
    auto rel = relative_path_of(target);
    if (!rel)
      return send_simple(socket, http::status::not_found, "not found\n", keep, version, head);

    // Resolve symlinks too: the file must really live below the root.
    std::error_code fec;
    auto path = std::filesystem::weakly_canonical(root_ / *rel, fec);
    auto root_str = root_.native() == "/" ? root_.native() : root_.native() + "/";
    if (fec || path.native().compare(0, root_str.size(), root_str) != 0) {
      return send_simple(socket, http::status::not_found, "not found\n", keep, version, head);
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (fd >= 0) ::close(fd);
      return send_simple(socket, http::status::not_found, "not found\n", keep, version, head);
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    bool ok = send_file(socket, req, fd, size, head, keep, version);
    ::close(fd);
    return ok;
  }

  bool send_file(tcp::socket& socket, const http::request<http::string_body>& req, int fd,
                 uint64_t size, bool head, bool keep, unsigned version) {
    ByteRange range;
    if (config_.range_support) {
      auto it = req.find(http::field::range);
      if (it != req.end()) {
        range = parse_byte_range(std::string_view(it->value().data(), it->value().size()), size);
      }
    }
    if (range.kind == ByteRange::Kind::kUnsatisfiable) {
      http::response<http::string_body> res{http::status::range_not_satisfiable, version};
      res.set(http::field::content_range, "bytes */" + std::to_string(size));
      res.keep_alive(keep);
      res.prepare_payload();
      boost::system::error_code ec;
      http::write(socket, res, ec);
      return !ec;
    }
    uint64_t first = 0;
    uint64_t length = size;
    http::response<http::empty_body> res{http::status::ok, version};
    if (range.kind == ByteRange::Kind::kPartial) {
      first = range.first;
      length = range.last - range.first + 1;
      res.result(http::status::partial_content);
      res.set(http::field::content_range, "bytes " + std::to_string(range.first) + "-" +
                                              std::to_string(range.last) + "/" +
                                              std::to_string(size));
    }
    res.set(http::field::server, "starling-origin");
    res.set(http::field::content_type, "application/octet-stream");
    if (config_.range_support) res.set(http::field::accept_ranges, "bytes");
    res.content_length(length);
    res.keep_alive(keep);
    http::response_serializer<http::empty_body> sr{res};
    boost::system::error_code ec;
    http::write_header(socket, sr, ec);
    if (ec) return false;
    if (head) return true;

    std::vector<char> chunk(kChunkSize);
    uint64_t offset = first;
    uint64_t remaining = length;
    while (remaining > 0) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(remaining, chunk.size()));
      ssize_t n = ::pread(fd, chunk.data(), want, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      // A short file (truncated under us) cannot honour Content-Length: close the connection.
      if (n <= 0) return false;
      size_t written = asio::write(socket, asio::buffer(chunk.data(), static_cast<size_t>(n)), ec);
      bytes_sent_.fetch_add(static_cast<int64_t>(written));
      if (ec) return false;
      offset += static_cast<uint64_t>(n);
      remaining -= static_cast<uint64_t>(n);
    }
    return true;
  }

  OriginConfig config_;
  std::filesystem::path root_;  // canonical
  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> bytes_sent_{0};
  ThreadPerConnection<tcp::acceptor> connections_;  // last: stopped before the rest goes
};

}  // namespace

ByteRange parse_byte_range(std::string_view value, uint64_t size) {
  ByteRange whole;
  value = trim(value);
  constexpr std::string_view kPrefix = "bytes=";
  if (value.size() < kPrefix.size()) return whole;
  for (size_t i = 0; i < kPrefix.size(); ++i) {
    char c = value[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kPrefix[i]) return whole;
  }
  std::string_view spec = trim(value.substr(kPrefix.size()));
  if (spec.find(',') != std::string_view::npos) return whole;  // several ranges: ignore
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return whole;
  std::string_view a = trim(spec.substr(0, dash));
  std::string_view b = trim(spec.substr(dash + 1));
  ByteRange out;
  if (a.empty()) {  // suffix: the last n bytes
    uint64_t n = 0;
    if (!parse_u64(b, &n)) return whole;
    if (n == 0 || size == 0) return ByteRange{ByteRange::Kind::kUnsatisfiable, 0, 0};
    out.kind = ByteRange::Kind::kPartial;
    out.first = n >= size ? 0 : size - n;
    out.last = size - 1;
    return out;
  }
  uint64_t first = 0;
  if (!parse_u64(a, &first)) return whole;
  uint64_t last = 0;
  if (b.empty()) {
    last = UINT64_MAX;
  } else if (!parse_u64(b, &last) || last < first) {
    return whole;  // invalid range-spec: the header is ignored
  }
  if (first >= size) return ByteRange{ByteRange::Kind::kUnsatisfiable, 0, 0};
  out.kind = ByteRange::Kind::kPartial;
  out.first = first;
  out.last = std::min(last, size - 1);
  return out;
}

Result<std::unique_ptr<HttpOrigin>> HttpOrigin::start(const OriginConfig& config) {
  std::error_code ec;
  auto root = std::filesystem::canonical(config.root_dir, ec);
  if (ec || !std::filesystem::is_directory(root, ec)) {
    return make_error("origin.config", "origin root '" + config.root_dir + "' is not a directory" +
                                           (ec ? ": " + ec.message() : std::string()));
  }
  auto origin = std::make_unique<HttpOriginImpl>(config, root);
  if (auto st = origin->listen(); !st) return st.error();
  return std::unique_ptr<HttpOrigin>(std::move(origin));
}

}  // namespace starling::origin

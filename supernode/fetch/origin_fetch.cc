#include "supernode/fetch/origin_fetch.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include <curl/curl.h>

#include "crypto/hash.h"

namespace starling::supernode {

namespace {

// A stalled origin (connected, sending nothing) is given up after this long below this speed.
constexpr long kLowSpeedBytesPerSecond = 1024;
constexpr long kLowSpeedSeconds = 30;
constexpr long kMaxRedirects = 5;

void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// State shared with libcurl's callbacks, all on the fetching thread.
struct Transfer {
  const FetchRequest* request = nullptr;
  CURL* curl = nullptr;
  int fd = -1;
  crypto::Sha256 hash;
  int64_t written = 0;
  int write_errno = 0;  // set when the local write failed
  bool aborted = false;

  bool abort_requested() const {
    return request->abort != nullptr && request->abort->load(std::memory_order_relaxed);
  }
};

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * nmemb;
  if (t->abort_requested()) {
    t->aborted = true;
    return 0;  // any count != n makes curl stop with CURLE_WRITE_ERROR
  }
  size_t off = 0;
  while (off < n) {
    ssize_t w = ::write(t->fd, data + off, n - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      t->write_errno = errno;
      return 0;
    }
    off += static_cast<size_t>(w);
  }
  t->hash.update(data, n);
  t->written += static_cast<int64_t>(n);
  if (t->request->on_progress) {
    curl_off_t total = -1;
    if (curl_easy_getinfo(t->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &total) != CURLE_OK) {
      total = -1;
    }
    t->request->on_progress(t->written, total < 0 ? -1 : static_cast<int64_t>(total));
  }
  return n;
}

// Called by curl about once a second even when no data flows, so an abort is seen while the
// origin stalls.
int on_xferinfo(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->abort_requested()) {
    t->aborted = true;
    return 1;
  }
  return 0;
}

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// Removes the partial file unless release() was called.
class PartFile {
 public:
  explicit PartFile(std::string path) : path_(std::move(path)) {}
  ~PartFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!released_) ::unlink(path_.c_str());
  }
  PartFile(const PartFile&) = delete;
  PartFile& operator=(const PartFile&) = delete;
  int open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return fd_;
  }
  int fd() const { return fd_; }
  // Closes the descriptor; returns 0 or an errno.
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }
  void release() { released_ = true; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  bool released_ = false;
};

}  // namespace

Result<FetchResult> fetch_to_file(const FetchRequest& request) {
  curl_init_once();
  const std::string& url = request.url;
  for (const auto& h : request.headers) {
    if (h.find_first_of("\r\n") != std::string::npos || h.find('\0') != std::string::npos) {
      return make_error(kErrOriginRequest, "bad header for " + url + ": contains CR, LF or NUL");
    }
  }
  if (request.output_path.empty()) {
    return make_error(kErrOriginIo, "no output path for " + url);
  }
  if (request.abort != nullptr && request.abort->load()) {
    return make_error(kErrOriginAborted, "fetch of " + url + " aborted");
  }

  PartFile part(request.output_path + ".part");
  if (part.open() < 0) {
    return make_error(kErrOriginIo, "cannot create " + part.path() + ": " + std::strerror(errno));
  }

  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return make_error(kErrOriginIo, "curl_easy_init failed for " + url);
  CURL* c = curl.get();

  std::unique_ptr<curl_slist, SlistDeleter> headers;
  for (const auto& h : request.headers) {
    curl_slist* next = curl_slist_append(headers.get(), h.c_str());
    if (next == nullptr) return make_error(kErrOriginIo, "out of memory building headers");
    (void)headers.release();
    headers.reset(next);
  }

  Transfer t;
  t.request = &request;
  t.curl = c;
  t.fd = part.fd();
  char errbuf[CURL_ERROR_SIZE] = {};

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::chrono::milliseconds(request.connect_timeout).count()));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerSecond);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, kLowSpeedSeconds);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "starling-fetch/1");

  const CURLcode rc = curl_easy_perform(c);
  if (t.aborted) return make_error(kErrOriginAborted, "fetch of " + url + " aborted");
  if (t.write_errno != 0) {
    return make_error(kErrOriginIo,
                      "cannot write " + part.path() + ": " + std::strerror(t.write_errno));
  }
  if (rc == CURLE_HTTP_RETURNED_ERROR) {
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return make_error(kErrOriginStatus,
                      "origin returned HTTP " + std::to_string(status) + " for " + url);
  }
  if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
    return make_error(kErrOriginRequest,
                      "bad origin URL " + url + ": " + std::string(curl_easy_strerror(rc)));
  }
  if (rc != CURLE_OK) {
    std::string detail = curl_easy_strerror(rc);
    if (errbuf[0] != '\0' && detail != errbuf) detail += std::string(" (") + errbuf + ")";
    return make_error(kErrOriginUnreachable, "origin unreachable: " + url + ": " + detail);
  }

  if (::fsync(part.fd()) != 0) {
    return make_error(kErrOriginIo, "cannot fsync " + part.path() + ": " + std::strerror(errno));
  }
  if (int err = part.close(); err != 0) {
    return make_error(kErrOriginIo, "cannot close " + part.path() + ": " + std::strerror(err));
  }
  FetchResult result;
  result.size = t.written;
  result.sha256 = t.hash.finish_hex();
  if (request.sha256 && lower(*request.sha256) != result.sha256) {
    return make_error(kErrDigestMismatch, "digest mismatch for " + url + ": expected sha256:" +
                                              *request.sha256 + ", got sha256:" + result.sha256);
  }
  if (::rename(part.path().c_str(), request.output_path.c_str()) != 0) {
    return make_error(kErrOriginIo, "cannot rename " + part.path() + " to " + request.output_path +
                                        ": " + std::strerror(errno));
  }
  part.release();
  return result;
}

}  // namespace starling::supernode

#include "supernode/fetch/origin_fetch.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

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
// origin stalls. For Transfer and SegmentTransfer (both have abort_requested() and aborted).
template <typename T>
int on_xferinfo(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<T*>(user);
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

// The request headers as a curl list; null with `*oom` set when curl ran out of memory.
std::unique_ptr<curl_slist, SlistDeleter> header_list(const std::vector<std::string>& lines,
                                                      bool* oom) {
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  *oom = false;
  for (const auto& h : lines) {
    curl_slist* next = curl_slist_append(headers.get(), h.c_str());
    if (next == nullptr) {
      *oom = true;
      return nullptr;
    }
    (void)headers.release();
    headers.reset(next);
  }
  return headers;
}

// The options every origin request shares: protocols, redirects, errors, timeouts, headers.
void set_common_options(CURL* c, const std::string& url, curl_slist* headers, char* errbuf,
                        std::chrono::seconds connect_timeout) {
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::chrono::milliseconds(connect_timeout).count()));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, kLowSpeedBytesPerSecond);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, kLowSpeedSeconds);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
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

  bool oom = false;
  auto headers = header_list(request.headers, &oom);
  if (oom) return make_error(kErrOriginIo, "out of memory building headers");

  Transfer t;
  t.request = &request;
  t.curl = c;
  t.fd = part.fd();
  char errbuf[CURL_ERROR_SIZE] = {};

  set_common_options(c, url, headers.get(), errbuf, request.connect_timeout);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo<Transfer>);
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

namespace starling::supernode {
namespace {

// State shared with libcurl's callbacks of a segmented fetch, all on the fetching thread.
struct SegmentTransfer {
  const SegmentFetchRequest* request = nullptr;
  int64_t status = 0;                  // status of the last response seen (redirects reset it)
  std::optional<int64_t> range_start;  // first byte of the last 206's Content-Range
  bool started = false;                // body bytes of the final response began
  int64_t skip = 0;                    // bytes still to discard (200 answer to a Range request)
  int64_t offset = 0;                  // content offset of the next byte to write
  int64_t origin_bytes = 0;
  int64_t segments = 0;
  bool range_honoured = true;
  bool reached_end = false;  // end_offset reached: stopped on purpose
  bool aborted = false;
  std::optional<Error> error;       // local failure (disk, on_segment, bad Content-Range)
  std::unique_ptr<PartFile> part;   // the segment being written
  std::optional<std::string> held;  // the segment being received (on_segment_bytes)
  int64_t part_index = -1;
  int64_t part_size = 0;

  bool abort_requested() const {
    return request->abort != nullptr && request->abort->load(std::memory_order_relaxed);
  }
  int64_t index_of(int64_t off) const { return off / request->segment_size; }

  // Completes the segment being written (fsync, close, rename, on_segment) or held.
  bool finish_part() {
    if (held) {
      FetchedSegment seg{part_index, part_index * request->segment_size, part_size, ""};
      std::string bytes = std::move(*held);
      held.reset();
      ++segments;
      if (Status st = request->on_segment_bytes(seg, std::move(bytes)); !st.ok()) {
        error = st.error();
        return false;
      }
      return true;
    }
    if (!part) return true;
    const std::string final_path = request->segment_path(part_index);
    if (::fsync(part->fd()) != 0) {
      error =
          make_error(kErrOriginIo, "cannot fsync " + part->path() + ": " + std::strerror(errno));
      return false;
    }
    if (int err = part->close(); err != 0) {
      error = make_error(kErrOriginIo, "cannot close " + part->path() + ": " + std::strerror(err));
      return false;
    }
    if (::rename(part->path().c_str(), final_path.c_str()) != 0) {
      error = make_error(kErrOriginIo, "cannot rename " + part->path() + " to " + final_path +
                                           ": " + std::strerror(errno));
      return false;
    }
    part->release();
    FetchedSegment seg{part_index, part_index * request->segment_size, part_size, final_path};
    part.reset();
    ++segments;
    if (request->on_segment) {
      if (Status st = request->on_segment(seg); !st.ok()) {
        error = st.error();
        return false;
      }
    }
    return true;
  }

  // Starts the segment at `offset`: a part file, or memory with on_segment_bytes.
  bool open_part() {
    part_index = index_of(offset);
    part_size = 0;
    if (request->on_segment_bytes) {
      held.emplace();
      return true;
    }
    part = std::make_unique<PartFile>(request->segment_path(part_index) + ".part");
    if (part->open() < 0) {
      error =
          make_error(kErrOriginIo, "cannot create " + part->path() + ": " + std::strerror(errno));
      part.reset();
      return false;
    }
    return true;
  }

  bool append_to_part(const char* data, size_t n) {
    if (held) {
      held->append(data, n);
      return true;
    }
    for (size_t off = 0; off < n;) {
      ssize_t w = ::write(part->fd(), data + off, n - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        error =
            make_error(kErrOriginIo, "cannot write " + part->path() + ": " + std::strerror(errno));
        return false;
      }
      off += static_cast<size_t>(w);
    }
    return true;
  }

  bool write(const char* data, size_t n) {
    while (n > 0) {
      if (!part && !held && !open_part()) return false;
      const int64_t room = request->segment_size - part_size;
      const size_t take = static_cast<size_t>(std::min<int64_t>(room, static_cast<int64_t>(n)));
      if (!append_to_part(data, take)) return false;
      part_size += static_cast<int64_t>(take);
      offset += static_cast<int64_t>(take);
      data += take;
      n -= take;
      if (part_size == request->segment_size && !finish_part()) return false;
    }
    return true;
  }
};

size_t on_segment_header(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<SegmentTransfer*>(user);
  const size_t n = size * nmemb;
  std::string_view line(data, n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect or a 100)
    t->range_start.reset();
    auto sp = line.find(' ');
    if (sp != std::string_view::npos) {
      int64_t code = 0;
      for (size_t i = sp + 1; i < line.size() && line[i] >= '0' && line[i] <= '9'; ++i) {
        code = code * 10 + (line[i] - '0');
      }
      t->status = code;
    }
    return n;
  }
  constexpr std::string_view kName = "content-range:";
  if (line.size() > kName.size()) {
    std::string head(line.substr(0, kName.size()));
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (head == kName) {
      // "Content-Range: bytes <first>-<last>/<size>"
      auto pos = line.find("bytes ");
      if (pos != std::string_view::npos) {
        int64_t first = 0;
        size_t i = pos + 6;
        bool digits = false;
        while (i < line.size() && line[i] >= '0' && line[i] <= '9' &&
               first < (std::numeric_limits<int64_t>::max() - 9) / 10) {
          first = first * 10 + (line[i++] - '0');
          digits = true;
        }
        if (digits) t->range_start = first;
      }
    }
  }
  return n;
}

size_t on_segment_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<SegmentTransfer*>(user);
  const size_t n = size * nmemb;
  if (t->abort_requested()) {
    t->aborted = true;
    return 0;
  }
  const SegmentFetchRequest& r = *t->request;
  if (!t->started) {
    t->started = true;
    if (r.start_offset > 0 && t->status == 206) {
      if (t->range_start != r.start_offset) {
        t->error = make_error(kErrOriginStatus, "origin answered a Range request for " + r.url +
                                                    " from byte " + std::to_string(r.start_offset) +
                                                    " with another range");
        return 0;
      }
    } else if (r.start_offset > 0) {
      t->range_honoured = false;
      t->skip = r.start_offset;
    }
  }
  t->origin_bytes += static_cast<int64_t>(n);
  const char* p = data;
  size_t left = n;
  if (t->skip > 0) {
    const size_t drop = static_cast<size_t>(std::min<int64_t>(t->skip, static_cast<int64_t>(left)));
    t->skip -= static_cast<int64_t>(drop);
    p += drop;
    left -= drop;
  }
  if (r.end_offset >= 0 && left > 0) {
    const int64_t room = r.end_offset - t->offset;
    if (static_cast<int64_t>(left) >= room) {
      left = static_cast<size_t>(room);
      t->reached_end = true;
    }
  }
  if (left > 0 && !t->write(p, left)) return 0;
  if (r.on_progress) r.on_progress(t->origin_bytes);
  if (t->reached_end) return 0;  // stop the transfer; not an error
  return n;
}

}  // namespace

Result<SegmentFetchResult> fetch_segments(const SegmentFetchRequest& request) {
  curl_init_once();
  const std::string& url = request.url;
  for (const auto& h : request.headers) {
    if (h.find_first_of("\r\n") != std::string::npos || h.find('\0') != std::string::npos) {
      return make_error(kErrOriginRequest, "bad header for " + url + ": contains CR, LF or NUL");
    }
  }
  if (request.segment_size <= 0 || !request.segment_path == !request.on_segment_bytes ||
      request.start_offset < 0 || request.start_offset % request.segment_size != 0 ||
      (request.end_offset >= 0 && request.end_offset <= request.start_offset)) {
    return make_error(kErrOriginRequest, "bad segmented fetch of " + url);
  }
  if (request.abort != nullptr && request.abort->load()) {
    return make_error(kErrOriginAborted, "fetch of " + url + " aborted");
  }
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return make_error(kErrOriginIo, "curl_easy_init failed for " + url);
  CURL* c = curl.get();
  bool oom = false;
  auto headers = header_list(request.headers, &oom);
  if (oom) return make_error(kErrOriginIo, "out of memory building headers");
  SegmentTransfer t;
  t.request = &request;
  t.offset = request.start_offset;
  char errbuf[CURL_ERROR_SIZE] = {};
  std::string range;
  if (request.start_offset > 0 || request.end_offset >= 0) {
    range = std::to_string(request.start_offset) + "-";
    if (request.end_offset >= 0) range += std::to_string(request.end_offset - 1);
  }

  set_common_options(c, url, headers.get(), errbuf, request.connect_timeout);
  if (!range.empty()) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_segment_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_segment_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo<SegmentTransfer>);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "starling-fetch/1");

  const CURLcode rc = curl_easy_perform(c);
  if (t.aborted) return make_error(kErrOriginAborted, "fetch of " + url + " aborted");
  if (t.error) return *t.error;
  SegmentFetchResult result;
  if (rc == CURLE_HTTP_RETURNED_ERROR) {
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status == 416 && request.start_offset > 0) {
      // Nothing at or after start_offset: the content ends exactly there.
      result.end = request.start_offset;
      return result;
    }
    return make_error(kErrOriginStatus,
                      "origin returned HTTP " + std::to_string(status) + " for " + url);
  }
  if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
    return make_error(kErrOriginRequest,
                      "bad origin URL " + url + ": " + std::string(curl_easy_strerror(rc)));
  }
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && t.reached_end)) {
    std::string detail = curl_easy_strerror(rc);
    if (errbuf[0] != '\0' && detail != errbuf) detail += std::string(" (") + errbuf + ")";
    return make_error(kErrOriginUnreachable, "origin unreachable: " + url + ": " + detail);
  }
  if (t.skip > 0) {
    // A 200 answer shorter than the offset we resume from: the content changed under us.
    return make_error(kErrOriginStatus, "origin sent " + std::to_string(t.origin_bytes) +
                                            " bytes of " + url + ", fewer than the " +
                                            std::to_string(request.start_offset) +
                                            " already published");
  }
  if (!t.finish_part()) return *t.error;
  result.end = t.offset;
  result.origin_bytes = t.origin_bytes;
  result.range_honoured = t.range_honoured;
  result.segments = t.segments;
  return result;
}

}  // namespace starling::supernode

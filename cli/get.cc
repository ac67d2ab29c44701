// `starling get URL -o FILE` (and `dfget`, cli/dfget.h): registers the task with the local
// peer daemon, shows progress, and writes FILE atomically (temp file in the same directory,
// fsync, rename) after checking the bytes once more against the origin's SHA-256 (and an MD5
// the user gave). With no daemon running it starts a one-shot peer of its own when told how
// (cli/embedded_peer.h). Each segment is copied into the temp file
// as soon as it and every one before it are complete, while later ones still download, so
// little copying is left once the last one arrives.
#include "cli/get.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/dfget.h"
#include "cli/embedded_peer.h"
#include "cli/leftovers.h"
#include "cli/progress.h"
#include "cli/report.h"
#include "cli/stop_signals.h"
#include "common/task_id.h"
#include "crypto/hash.h"
#include "peer/api/local_api.h"

namespace starling::cli {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A temp file next to the output; removed unless committed.
class PendingOutput {
 public:
  ~PendingOutput() {
    if (fd_ >= 0) ::close(fd_);
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }

  Status open(const std::string& output, bool md5) {
    output_ = output;
    if (md5) md5_.emplace();
    fs::path p = fs::absolute(output);
    if (fs::is_directory(p))
      return make_error("get.output", "cannot write " + output + ": is a directory");
    std::string pattern =
        (p.parent_path() / ("." + p.filename().string() + ".starling-XXXXXX")).string();
    fd_ = ::mkostemp(pattern.data(), O_CLOEXEC);
    if (fd_ < 0) {
      return make_error("get.output", "cannot write " + output + ": " + std::strerror(errno));
    }
    temp_ = pattern;
    if (auto lock = OwnerLock::take(temp_)) lock_ = std::move(*lock);  // cli/leftovers.h
    ::fchmod(fd_, 0644);
    return {};
  }

  // Appends `source` to the temp file and to the running SHA-256 of what was written.
  Status append(const std::string& source) {
    int in = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0)
      return make_error("get.output", "cannot read " + source + ": " + std::strerror(errno));
    while (true) {
      ssize_t n = ::read(in, buf_.data(), buf_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ::close(in);
        return make_error("get.output", "cannot read " + source + ": " + std::strerror(errno));
      }
      if (n == 0) break;
      hash_.update(buf_.data(), static_cast<size_t>(n));
      if (md5_) md5_->update(buf_.data(), static_cast<size_t>(n));
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(fd_, buf_.data() + off, static_cast<size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          ::close(in);
          return make_error("get.output", "cannot write " + output_ + ": " + std::strerror(errno));
        }
        off += w;
      }
    }
    ::close(in);
    // Start writing what is not yet on its way to disk (0, 0: the whole file; pages already
    // under writeback are skipped), so that commit()'s fsync waits for the last part only
    // (bench/README.md, "writeback during get's copy").
    ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
    appended_.push_back(source);
    return {};
  }
  // The files appended so far, in order.
  const std::vector<std::string>& appended() const { return appended_; }

  // The SHA-256 hex of everything appended; once, before commit().
  std::string finish_hex() { return hash_.finish_hex(); }
  // The MD5 hex of everything appended, when open() asked for it; once, before commit().
  std::string finish_md5_hex() { return md5_ ? md5_->finish_hex() : ""; }
  Status commit() {
    if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
      fd_ = -1;
      return make_error("get.output", "cannot write " + output_ + ": " + std::strerror(errno));
    }
    fd_ = -1;
    if (::rename(temp_.c_str(), output_.c_str()) != 0) {
      return make_error("get.output", "cannot write " + output_ + ": " + std::strerror(errno));
    }
    temp_.clear();
    return {};
  }

 private:
  std::string output_;
  std::string temp_;
  OwnerLock lock_;
  int fd_ = -1;
  crypto::Sha256 hash_;
  std::optional<crypto::Md5> md5_;
  std::vector<char> buf_ = std::vector<char>(1 << 20);
  std::vector<std::string> appended_;
};

// Appends to `pending` every segment of the daemon's task `status` that is complete and
// follows the ones already appended without a gap, so that most of the copy is done while
// later segments are still downloading.
Status append_complete_segments(const json& status, PendingOutput& pending) {
  auto segments = status.find("segments");
  if (segments == status.end() || !segments->is_array()) return {};
  for (const auto& seg : *segments) {  // in index order; anything unexpected: wait for "parts"
    if (!seg.is_object()) break;
    const auto index = seg.find("index");
    const auto complete = seg.find("complete");
    const auto path = seg.find("path");
    if (index == seg.end() || !index->is_number_integer() || index->get<int64_t>() < 0) break;
    const auto i = static_cast<size_t>(index->get<int64_t>());
    if (i < pending.appended().size()) continue;  // appended at an earlier poll
    if (i > pending.appended().size() || complete == seg.end() || !complete->is_boolean() ||
        !complete->get<bool>() || path == seg.end() || !path->is_string() ||
        path->get_ref<const std::string&>().empty()) {
      break;
    }
    if (Status st = pending.append(path->get<std::string>()); !st) return st;
  }
  return {};
}

Result<json> api(const std::string& socket, const std::string& method, const std::string& target,
                 const std::string& body) {
  auto r = peer::local_api_call(socket, method, target, body, 30s);
  if (!r) return r.error();
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error("get.daemon", "peer daemon sent an unreadable answer");
  }
  if (r->status != 200) {
    const json e = j.value("error", json::object());
    return make_error(e.value("code", "get.daemon"),
                      e.value("message", "peer daemon answered HTTP " + std::to_string(r->status)));
  }
  return j;
}

// Seconds with millisecond precision, for the dfget line ("cost:12.345s").
std::string seconds_text(std::chrono::steady_clock::duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3fs", std::chrono::duration<double>(d).count());
  return text;
}

// "90 s", or "1.5 s" below whole seconds.
std::string timeout_text(std::chrono::milliseconds timeout) {
  if (timeout.count() % 1000 == 0) return std::to_string(timeout.count() / 1000) + " s";
  std::string text = seconds_text(timeout);
  text.insert(text.size() - 1, " ");
  return text;
}

}  // namespace

int download(const GetRequest& request) {
  const auto fail = [&](const std::string& message) {
    std::cerr << request.program << ": " << message << "\n";
    return 1;
  };
  // Ctrl-C and SIGTERM are taken between polls, so that the temp file and a one-shot peer's
  // directories are removed on the way out (the exit status is still 128 + the signal).
  const sigset_t stop = block_stop_signals();
  const auto stopped = [&](int sig) {
    std::cerr << request.program << ": stopped by " << ::strsignal(sig) << ", nothing written\n";
    return 128 + sig;
  };
  const auto started = std::chrono::steady_clock::now();
  if (auto ok = validate_url(request.url); !ok) return fail(ok.error().message);
  json body = {{"url", request.url}, {"headers", request.headers}};
  if (!request.digest.empty()) {
    auto d = parse_digest(request.digest);
    if (!d) return fail(d.error().message);
    body["digest"] = d->str();
  }
  if (!request.tag.empty()) body["tag"] = request.tag;
  if (!request.filter.empty()) body["filter"] = request.filter;

  // What a killed get of this output left (cli/leftovers.h) goes first.
  const auto swept = sweep_leftovers(request.output, temp_root());
  if (!swept.empty() && request.progress) {
    std::cerr << request.program << ": removed what an earlier get that did not finish left:";
    for (const auto& path : swept) std::cerr << " " << path;
    std::cerr << "\n";
  }

  // Fail on an unwritable output before anything is downloaded.
  PendingOutput pending;
  if (auto ok = pending.open(request.output, !request.md5.empty()); !ok) {
    return fail(ok.error().message);
  }

  std::string socket = request.socket;
  std::unique_ptr<EmbeddedPeer> embedded;  // before `pending` goes: stopped, directories removed
  auto created = api(socket, "POST", "/v1/tasks", body.dump());
  if (!created && created.error().code == peer::kErrNoDaemon) {
    if (request.supernodes.empty()) {
      return fail("no peer daemon at " + socket + " (start one with `starling peer`, or give " +
                  "--network and " + request.supernode_flag + " to download with a one-shot peer)");
    }
    auto supernodes = parse_host_ports(request.supernodes);
    if (!supernodes) return fail(request.supernode_flag + ": " + supernodes.error().message);
    if (request.progress) {
      std::cerr << request.program << ": no peer daemon at " << socket
                << ", starting a one-shot peer\n";
    }
    int stopped_by = 0;
    auto one_shot = EmbeddedPeer::start(
        {request.network_dir, *supernodes, request.listen_ip, request.output}, stop,
        [&](const std::string& why) {
          if (request.progress) {
            std::cerr << request.program << ": waiting for the supernodes: " << why << "\n";
          }
        },
        stopped_by);
    if (stopped_by != 0) return stopped(stopped_by);
    if (!one_shot) return fail(one_shot.error().message);
    embedded = std::move(one_shot).value();
    socket = embedded->socket();
    created = api(socket, "POST", "/v1/tasks", body.dump());
  }
  if (!created) return fail(created.error().message);
  const std::string task_id = created->value("task_id", "");

  const bool tty = ::isatty(STDERR_FILENO) == 1;
  auto last_line = std::chrono::steady_clock::now();
  json status;
  while (true) {
    auto got = api(socket, "GET", "/v1/tasks/" + task_id, "");
    if (!got) return fail(got.error().message);
    status = *got;
    const std::string state = status.value("state", "");
    if (state == "failed") {
      const json e = status.value("error", json::object());
      return fail(e.value("message", "download failed"));
    }
    if (state == "done") break;
    if (auto ok = append_complete_segments(status, pending); !ok) return fail(ok.error().message);
    const auto now = std::chrono::steady_clock::now();
    if (request.timeout.count() > 0 && now - started >= request.timeout) {
      if (request.progress && tty) std::cerr << "\r\033[K";
      return fail("timed out after " + timeout_text(request.timeout) + " (" +
                  std::to_string(status.value("done_bytes", int64_t{0})) + " bytes done" +
                  (embedded ? ")" : "; the task goes on in the peer daemon)"));
    }
    if (request.progress) {
      const std::string line = progress_line(
          state, status.value("done_bytes", int64_t{0}), status.value("total_bytes", int64_t{0}),
          status.value("peers", int64_t{0}), status.value("source_state", "") == "ready");
      if (tty) {
        std::cerr << "\r\033[K" << line << std::flush;
      } else if (now - last_line >= 5s) {
        std::cerr << line << "\n";
        last_line = now;
      }
    }
    if (const int sig = stop_signal_within(stop, 200); sig != 0) {
      if (request.progress && tty) std::cerr << "\r\033[K";
      return stopped(sig);
    }
  }
  if (request.progress && tty) std::cerr << "\r\033[K";

  // A done task lists the files whose concatenation is the content (its segments, in order).
  std::vector<std::string> parts;
  auto listed = status.find("parts");
  if (listed == status.end() || !listed->is_array()) {
    return fail("peer daemon sent no content files for a done task");
  }
  for (const auto& part : *listed) {
    if (!part.is_string()) return fail("peer daemon sent a bad content file list");
    parts.push_back(part.get<std::string>());
  }
  // Most segments were appended while downloading (the daemon names the same files in
  // "segments" and "parts"); the rest now.
  const auto& appended = pending.appended();
  if (appended.size() > parts.size() ||
      !std::equal(appended.begin(), appended.end(), parts.begin())) {
    return fail("peer daemon listed other content files than the segments it reported complete");
  }
  for (size_t i = appended.size(); i < parts.size(); ++i) {
    if (auto ok = pending.append(parts[i]); !ok) return fail(ok.error().message);
  }
  const std::string sum = pending.finish_hex();
  const std::string expected = status.value("sha256", "");
  if (sum != expected) {
    return fail("content hash sha256:" + sum + " differs from the origin's sha256:" + expected);
  }
  if (!request.md5.empty()) {
    const std::string md5 = pending.finish_md5_hex();
    if (md5 != request.md5) {
      return fail("content md5 " + md5 + " differs from the expected md5 " + request.md5 +
                  " (nothing written)");
    }
  }
  if (auto ok = pending.commit(); !ok) return fail(ok.error().message);
  const int64_t total = status.value("total_bytes", int64_t{0});
  if (request.dfget_success_line) {  // what scripts written for Dragonfly's dfget look for
    std::cout << "download SUCCESS cost:"
              << seconds_text(std::chrono::steady_clock::now() - started) << " length:" << total
              << std::endl;
  } else if (request.progress) {
    std::cerr << "saved " << request.output << " (" << total << " bytes, sha256:" << sum << ")\n";
  }
  return 0;
}

int run_get(const ParsedArgs& args) {
  GetRequest request;
  request.url = args.positionals.at(0);
  request.output = args.get("output");
  request.socket = args.get("socket", kDefaultSocket);
  request.progress = !args.has("quiet");
  request.digest = args.get("digest");
  request.headers = args.all("header");
  request.tag = args.get("tag");
  request.filter = split_names(args.get("filter"), ',');
  request.supernodes = args.get("supernode");
  request.network_dir = args.get("network");
  request.listen_ip = args.get("listen");
  if (args.has("supernode") != args.has("network")) {
    return usage("get: --network and --supernode go together (a one-shot peer needs both)");
  }
  if (args.has("listen") && !args.has("supernode")) {
    return usage("get: --listen is the one-shot peer's: give --network and --supernode too");
  }
  if (auto ok = parse_host_ports(request.supernodes); args.has("supernode") && !ok) {
    return usage("get: --supernode: " + ok.error().message);
  }
  return download(request);
}

int run_dfget(const ParsedArgs& args) {
  auto invocation = dfget_invocation(args);
  if (!invocation) {
    std::cerr << "dfget: " << invocation.error().message << " (see 'dfget --help')\n";
    return 2;
  }
  for (const auto& notice : invocation->notices) std::cerr << "dfget: " << notice << "\n";
  return download(invocation->request);
}

}  // namespace starling::cli

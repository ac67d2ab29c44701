#include "cli/leftovers.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <system_error>

namespace starling::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTempInfix = ".starling-";
constexpr std::string_view kPeerInfix = ".starling-peer-";
constexpr std::string_view kSocketPrefix = "starling-get-";
constexpr size_t kRandomChars = 6;

bool is_random_part(std::string_view s) {
  return s.size() == kRandomChars && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
         });
}

// Locked by a running get, or too young to tell: true. Otherwise `lock` holds it now.
bool in_use(const fs::path& path, std::chrono::seconds min_age, OwnerLock& lock) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || S_ISLNK(st.st_mode)) return true;  // not ours to judge
  if (std::time(nullptr) - st.st_mtime < min_age.count()) return true;
  auto taken = OwnerLock::take(path.string());
  if (!taken) return true;
  lock = std::move(*taken);
  return false;
}

}  // namespace

bool is_output_leftover_name(std::string_view name, std::string_view output_name) {
  if (output_name.empty() || name.size() < 1 + output_name.size() || name[0] != '.' ||
      name.substr(1, output_name.size()) != output_name) {
    return false;
  }
  const std::string_view rest = name.substr(1 + output_name.size());
  for (std::string_view infix : {kPeerInfix, kTempInfix}) {
    if (rest.starts_with(infix) && is_random_part(rest.substr(infix.size()))) return true;
  }
  return false;
}

std::string temp_root() {
  const char* tmp = ::getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
}

bool is_socket_dir_leftover_name(std::string_view name) {
  return name.starts_with(kSocketPrefix) && is_random_part(name.substr(kSocketPrefix.size()));
}

Result<OwnerLock> OwnerLock::take(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return make_error("get.lock", "cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    return make_error("get.lock", "cannot lock " + path + ": " + std::strerror(err));
  }
  OwnerLock lock;
  lock.fd_ = fd;
  return lock;
}

OwnerLock::OwnerLock(OwnerLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

OwnerLock& OwnerLock::operator=(OwnerLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

OwnerLock::~OwnerLock() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<std::string> sweep_leftovers(const std::string& output, const std::string& tmp_dir,
                                         std::chrono::seconds min_age) {
  std::vector<std::string> removed;
  const auto sweep = [&](const fs::path& dir, auto&& matches) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path path = it->path();
      if (!matches(path.filename().string())) continue;
      OwnerLock lock;
      if (in_use(path, min_age, lock)) continue;
      std::error_code rm;
      fs::remove_all(path, rm);  // while locked: a get that opens it now finds it gone
      if (!rm) removed.push_back(path.string());
    }
  };
  const fs::path out = fs::absolute(output);
  const std::string name = out.filename().string();
  sweep(out.parent_path(),
        [&](const std::string& entry) { return is_output_leftover_name(entry, name); });
  if (!tmp_dir.empty()) sweep(tmp_dir, is_socket_dir_leftover_name);
  std::sort(removed.begin(), removed.end());
  return removed;
}

}  // namespace starling::cli

// `starling mirror` in front of a real registry (Debian's docker-registry), pulled through by a
// real client (skopeo): the bytes a runtime gets are the registry's, and each blob leaves the
// registry once for the whole swarm.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>

#include <gtest/gtest.h>

#include "tests/integration/cluster.h"
#include "tests/integration/process.h"
#include "tests/integration/slow_origin.h"

namespace starling::testing {
namespace {

namespace fs = std::filesystem;

struct Reply {
  long status = 0;
  std::string headers;
  std::string body;
};

size_t append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

Reply http(const std::string& method, const std::string& url, const std::string& body = "",
           const std::vector<std::string>& headers = {}) {
  Reply r;
  CURL* c = curl_easy_init();
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  if (method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (method == "PUT" || method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, append);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

std::string random_bytes(size_t size, uint64_t seed) {
  std::string out(size, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& ch : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ch = static_cast<char>(x >> 32);
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string sha256_hex(const std::string& bytes) {
  const std::string path =
      fs::temp_directory_path() / ("mirror_test_" + std::to_string(::getpid()));
  std::ofstream(path, std::ios::binary) << bytes;
  std::string hex = sha256_of(path);
  fs::remove(path);
  return hex;
}

// A registry on 127.0.0.2 with its access log in `log`.
class Registry {
 public:
  explicit Registry(const TempDir& temp) : port_(free_port("127.0.0.2")) {
    const fs::path dir = temp.path();
    fs::create_directories(dir / "registry");
    std::ofstream(dir / "registry.yml")
        << "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\n"
        << "storage:\n  filesystem:\n    rootdirectory: " << (dir / "registry").string() << "\n"
        << "http:\n  addr: 127.0.0.2:" << port_ << "\n";
    process_ = std::make_unique<Process>("/usr/bin/docker-registry",
                                         std::vector<std::string>{"serve", dir / "registry.yml"},
                                         dir / "registry.log");
    EXPECT_TRUE(eventually([&] { return tcp_ready("127.0.0.2", port_); }, 20s))
        << process_->output();
  }
  std::string url() const { return "http://127.0.0.2:" + std::to_string(port_); }
  // Pushes a blob (monolithic upload); returns its digest.
  std::string push_blob(const std::string& name, const std::string& bytes) {
    const std::string digest = "sha256:" + sha256_hex(bytes);
    Reply start = http("POST", url() + "/v2/" + name + "/blobs/uploads/");
    EXPECT_EQ(start.status, 202) << start.body;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(start.headers, m, std::regex("[Ll]ocation: ([^\r\n]+)")));
    std::string location = m[1];
    location += (location.find('?') == std::string::npos ? "?" : "&") + ("digest=" + digest);
    Reply put = http("PUT", location, bytes, {"Content-Type: application/octet-stream"});
    EXPECT_EQ(put.status, 201) << put.body;
    return digest;
  }
  // How many GETs of `path` the registry answered with 200.
  int gets(const std::string& path) const {
    const std::string log = process_->output();
    const std::string needle = "\"GET " + path + " HTTP/1.1\" 200 ";
    int n = 0;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  }

 private:
  uint16_t port_;
  std::unique_ptr<Process> process_;
};

constexpr char kManifestType[] = "application/vnd.docker.distribution.manifest.v2+json";

TEST(MirrorTest, TwoPeersPullAnImageThroughTheSwarm) {
  Cluster c(2);
  Registry registry(c.dir());
  const std::string layer1 = random_bytes(6 * 1024 * 1024 + 11, 1);
  const std::string layer2 = random_bytes(3 * 1024 * 1024, 2);
  const std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers",)"
                             R"("diff_ids":[]},"config":{}})";
  const std::string d1 = registry.push_blob("lib/app", layer1);
  const std::string d2 = registry.push_blob("lib/app", layer2);
  const std::string dc = registry.push_blob("lib/app", config);
  const auto descriptor = [](const char* type, const std::string& digest, size_t size) {
    return nlohmann::json{{"mediaType", type}, {"digest", digest}, {"size", size}};
  };
  const std::string manifest = nlohmann::json{
      {"schemaVersion", 2},
      {"mediaType", kManifestType},
      {"config", descriptor("application/vnd.docker.container.image.v1+json", dc, config.size())},
      {"layers",
       {descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", d1, layer1.size()),
        descriptor(
            "application/vnd.docker.image.rootfs.diff.tar.gzip", d2,
            layer2.size())}}}.dump();
  Reply put = http("PUT", registry.url() + "/v2/lib/app/manifests/v1", manifest,
                   {std::string("Content-Type: ") + kManifestType});
  ASSERT_EQ(put.status, 201) << put.body;

  std::vector<std::unique_ptr<Process>> mirrors;
  std::vector<uint16_t> ports;
  for (int i = 0; i < 2; ++i) {
    ports.push_back(free_port("127.0.0.1"));
    mirrors.push_back(std::make_unique<Process>(
        std::vector<std::string>{"mirror", "--upstream", registry.url(), "--listen",
                                 "127.0.0.1:" + std::to_string(ports.back()), "--socket",
                                 c.socket(i)},
        c.dir() / ("mirror" + std::to_string(i) + ".log")));
  }
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(
        eventually([&] { return tcp_ready("127.0.0.1", ports[static_cast<size_t>(i)]); }, 20s))
        << mirrors[static_cast<size_t>(i)]->output();
  }

  // Both pull at once, as two machines starting the same container would.
  std::vector<std::unique_ptr<Process>> pulls;
  for (int i = 0; i < 2; ++i) {
    pulls.push_back(std::make_unique<Process>(
        "/usr/bin/skopeo",
        std::vector<std::string>{
            "--insecure-policy", "copy", "--src-tls-verify=false",
            "docker://127.0.0.1:" + std::to_string(ports[static_cast<size_t>(i)]) + "/lib/app:v1",
            "dir:" + (c.dir() / ("pulled" + std::to_string(i)))},
        c.dir() / ("skopeo" + std::to_string(i) + ".log")));
  }
  for (int i = 0; i < 2; ++i) {
    auto& p = *pulls[static_cast<size_t>(i)];
    ASSERT_EQ(p.wait(120s), 0) << p.output() << mirrors[static_cast<size_t>(i)]->output();
    const fs::path dir = c.dir() / ("pulled" + std::to_string(i));  // skopeo's dir: layout
    EXPECT_EQ(read_file(dir / "manifest.json"), manifest) << i;
    EXPECT_TRUE(read_file(dir / d1.substr(7)) == layer1) << i;
    EXPECT_TRUE(read_file(dir / d2.substr(7)) == layer2) << i;
    EXPECT_EQ(read_file(dir / dc.substr(7)), config) << i;
  }
  // Every blob left the registry once (the supernode's fetch); the peers had it from the swarm.
  for (const auto& d : {d1, d2, dc}) {
    EXPECT_EQ(registry.gets("/v2/lib/app/blobs/" + d), 1) << d;
  }
  EXPECT_NE(mirrors[0]->output().find("mirror: lib/app " + d1), std::string::npos)
      << mirrors[0]->output();

  // What a runtime sees for what the registry does not have, and for writes.
  const std::string base = "http://127.0.0.1:" + std::to_string(ports[0]);
  Reply missing = http("GET", base + "/v2/lib/app/blobs/sha256:" + std::string(64, '0'));
  EXPECT_EQ(missing.status, 404);
  Reply no_tag =
      http("GET", base + "/v2/lib/app/manifests/v2", "", {std::string("Accept: ") + kManifestType});
  EXPECT_EQ(no_tag.status, 404);
  EXPECT_NE(no_tag.body.find("MANIFEST_UNKNOWN"), std::string::npos) << no_tag.body;
  Reply upload = http("POST", base + "/v2/lib/app/blobs/uploads/");
  EXPECT_EQ(upload.status, 405);
  EXPECT_EQ(upload.body,
            R"({"errors":[{"code":"UNSUPPORTED","message":"this mirror is read-only"}]})"
            "\n");
  Reply escape = http("GET", base + "/v2/../../etc/passwd");
  EXPECT_EQ(escape.status, 404);
}

// A runtime that gives up while the swarm still fetches the blob does not leave the mirror
// waiting for it (the task goes on in the daemon).
TEST(MirrorTest, AClientThatLeavesIsNoticedWhileTheBlobIsFetched) {
  Cluster c(1);
  const std::string blob = random_bytes(4 << 20, 3);
  SlowOrigin upstream(Cluster::kOriginIp, blob, 256 << 10);  // 16 s
  const uint16_t port = free_port("127.0.0.1");
  Process mirror(
      {"mirror", "--upstream",
       "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(upstream.port()),
       "--listen", "127.0.0.1:" + std::to_string(port), "--socket", c.socket(0)},
      c.dir() / "mirror.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready("127.0.0.1", port); }, 20s)) << mirror.output();

  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string digest = "sha256:" + sha256_hex(blob);
  const std::string request = "GET /v2/app/blobs/" + digest + " HTTP/1.1\r\nHost: m\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0) << mirror.output();
    head.append(buf, static_cast<size_t>(n));
  }
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: " + std::to_string(blob.size()) + "\r\n"), std::string::npos)
      << head;
  ::close(fd);
  EXPECT_TRUE(eventually(
      [&] {
        return mirror.output().find("app " + digest + " cut short: the client went away") !=
               std::string::npos;
      },
      5s))
      << mirror.output();
}

// A proxied answer (a manifest, a tag list, an error) is held in memory, so a huge one is refused.
TEST(MirrorTest, AnOversizedProxiedAnswerIsRefused) {
  Cluster c(1);
  SlowOrigin upstream(Cluster::kOriginIp, std::string((32 << 20) + 1, 'm'), 1 << 30);
  const uint16_t port = free_port("127.0.0.1");
  const std::string up =
      "http://" + std::string(Cluster::kOriginIp) + ":" + std::to_string(upstream.port());
  Process mirror({"mirror", "--upstream", up, "--listen", "127.0.0.1:" + std::to_string(port),
                  "--socket", c.socket(0)},
                 c.dir() / "mirror.log");
  ASSERT_TRUE(eventually([&] { return tcp_ready("127.0.0.1", port); }, 20s)) << mirror.output();
  Reply r = http("GET", "http://127.0.0.1:" + std::to_string(port) + "/v2/app/manifests/v1");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.body, R"({"errors":[{"code":"UNAVAILABLE","message":"upstream )" + up +
                        R"(/v2/app/manifests/v1: answer over 32 MiB"}]})" + "\n");
}

TEST(MirrorTest, BadUpstreamIsAUsageError) {
  TempDir d;
  auto r =
      run_starling({"mirror", "--upstream", "ftp://registry", "--socket", d / "s"}, d / "log", 10s);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.output,
            "starling mirror: --upstream: URL must start with http:// or https://: "
            "ftp://registry\n");
  r = run_starling({"mirror", "--upstream", "http://registry:5000/v2/", "--socket", d / "s"},
                   d / "log", 10s);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.output,
            "starling mirror: --upstream must be a registry's root URL (no path): "
            "http://registry:5000/v2/\n");
}

}  // namespace
}  // namespace starling::testing

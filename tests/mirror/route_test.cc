#include "mirror/route.h"

#include <gtest/gtest.h>

#include <string>

namespace starling::mirror {
namespace {

const std::string kHex(64, 'a');

TEST(MirrorRoute, RegistryReadsAreRouted) {
  struct Case {
    std::string target;
    Route route;
    std::string name;
    std::string reference;
  };
  const Case cases[] = {
      {"/v2/", Route::kBase, "", ""},
      {"/v2", Route::kBase, "", ""},
      {"/v2/library/debian/blobs/sha256:" + kHex, Route::kBlob, "library/debian", "sha256:" + kHex},
      {"/v2/app/blobs/sha256:" + std::string(64, 'F'), Route::kBlob, "app",
       "sha256:" + std::string(64, 'f')},  // normalised: the task is keyed by the digest
      {"/v2/a/b/c/manifests/v1.2-rc_3", Route::kManifest, "a/b/c", "v1.2-rc_3"},
      {"/v2/app/manifests/sha256:" + kHex, Route::kManifest, "app", "sha256:" + kHex},
      {"/v2/app/manifests/latest", Route::kManifest, "app", "latest"},
      {"/v2/my-org/my__app.x/tags/list", Route::kTags, "my-org/my__app.x", ""},
      {"/v2/app/tags/list?n=10&last=v1", Route::kTags, "app", ""},
      {"/v2/app/tags/list?last=v1", Route::kTags, "app", ""},
      // A repository may itself be called "blobs" or "manifests".
      {"/v2/blobs/blobs/sha256:" + kHex, Route::kBlob, "blobs", "sha256:" + kHex},
      {"/v2/manifests/manifests/x", Route::kManifest, "manifests", "x"},
  };
  for (const auto& k : cases) {
    const RoutedRequest r = route(k.target);
    EXPECT_EQ(r.route, k.route) << k.target;
    EXPECT_EQ(r.name, k.name) << k.target;
    EXPECT_EQ(r.reference, k.reference) << k.target;
  }
}

TEST(MirrorRoute, EverythingElseIsNotFound) {
  const std::string not_found[] = {
      "",
      "/",
      "/v1/search",
      "/v2/?x=1",
      "/v2/_catalog",  // the catalog is the registry's, not a mirror's
      "/v2/app/blobs/uploads/",
      "/v2/app/blobs/sha256:" + std::string(63, 'a'),
      "/v2/app/blobs/sha256:" + std::string(63, 'a') + "g",
      "/v2/app/blobs/sha512:" + std::string(128, 'a'),
      "/v2/app/blobs/sha256:" + kHex + "?x=1",
      "/v2/App/blobs/sha256:" + kHex,  // names are lowercase
      "/v2/../etc/blobs/sha256:" + kHex,
      "/v2/a/./b/manifests/v1",
      "/v2/a//b/manifests/v1",
      "/v2/a%2fb/manifests/v1",
      "/v2/-a/manifests/v1",
      "/v2/a-/manifests/v1",
      "/v2/a___b/manifests/v1",
      "/v2/a..b/manifests/v1",
      "/v2/app/manifests/",
      "/v2/app/manifests/.v1",
      "/v2/app/manifests/" + std::string(129, 'a'),
      "/v2/app/manifests/v1?x",
      "/v2/app/manifests/sha256:abc",
      "/v2/tags/list",
      "/v2/app/tags/list?n=x",
      "/v2/app/tags/list?n=1&n=2",
      "/v2/app/tags/list?evil=1",
      "/v2/app/tags/list?last=.x",
      "/v2/" + std::string(256, 'a') + "/manifests/v1",
  };
  for (const auto& t : not_found) EXPECT_EQ(route(t).route, Route::kNotFound) << t;
  EXPECT_TRUE(valid_repository_name(std::string(255, 'a')));
  EXPECT_TRUE(valid_repository_name("a-----b/c.d/e__f/g_h"));
  EXPECT_FALSE(valid_repository_name("a/"));
  EXPECT_FALSE(valid_repository_name("/a"));
}

}  // namespace
}  // namespace starling::mirror

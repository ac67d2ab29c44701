#include "crypto/hash.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <fstream>
#include <string>
#include <utility>

#include "common/hex.h"
#include "tests/crypto/temp_dir.h"

namespace starling::crypto {
namespace {

constexpr char kAbc[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kEmpty[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(Sha256Test, KnownVectors) {
  Sha256 empty;
  EXPECT_EQ(empty.finish_hex(), kEmpty);
  Sha256 abc;
  abc.update("abc", 3);
  EXPECT_EQ(abc.finish_hex(), kAbc);
  // FIPS 180-2 two-block vector, fed a byte at a time.
  const std::string msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  Sha256 split;
  for (char c : msg) split.update(&c, 1);
  EXPECT_EQ(split.finish_hex(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, FinishReturnsRawDigest) {
  Sha256 h;
  h.update("abc", 3);
  std::array<uint8_t, 32> d = h.finish();
  EXPECT_EQ(to_hex(d.data(), d.size()), kAbc);
}

// RFC 1321's test suite, appendix A.5; the last one fed a byte at a time.
TEST(Md5Test, Rfc1321Vectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", "d41d8cd98f00b204e9800998ecf8427e"},
      {"a", "0cc175b9c0f1b6a831c399e269772661"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72"},
      {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
      {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
      {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
       "d174ab98d277d9f5a5611c2c9f419d9f"},
  };
  for (const auto& [message, hex] : vectors) {
    Md5 h;
    h.update(message.data(), message.size());
    EXPECT_EQ(h.finish_hex(), hex) << "'" << message << "'";
  }
  const std::string digits =
      "12345678901234567890123456789012345678901234567890123456789012345678901234567890";
  Md5 split;
  for (char c : digits) split.update(&c, 1);
  EXPECT_EQ(split.finish_hex(), "57edf4a22be3c955ac49da2e2107b67a");
}

TEST(Sha256Test, FileMatchesOneShotHash) {
  testing::TempDir dir;
  std::string path = dir.file("blob");
  std::string data(3 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  std::ofstream(path, std::ios::binary)
      .write(data.data(), static_cast<std::streamsize>(data.size()));
  std::array<uint8_t, 32> want{};
  crypto_hash_sha256(want.data(), reinterpret_cast<const uint8_t*>(data.data()), data.size());
  Result<std::string> got = sha256_file(path);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(*got, to_hex(want.data(), want.size()));

  std::ofstream(dir.file("empty"), std::ios::binary);
  Result<std::string> empty = sha256_file(dir.file("empty"));
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, kEmpty);
}

TEST(Sha256Test, MissingFileIsAnError) {
  testing::TempDir dir;
  Result<std::string> r = sha256_file(dir.file("missing"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, kErrHashFile);
  EXPECT_NE(r.error().message.find(dir.file("missing")), std::string::npos);
}

}  // namespace
}  // namespace starling::crypto

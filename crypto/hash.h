#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace starling::crypto {

inline constexpr char kErrHashFile[] = "crypto.hash_file";

// Streaming SHA-256 (libsodium). Not thread-safe; one owner.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  std::array<uint8_t, 32> finish();  // REQUIRES: called once
  std::string finish_hex();          // lowercase hex

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Streaming MD5 (OpenSSL), only to check a digest a user gave (`dfget --md5`, Dragonfly's
// flag); never used to identify or trust content. Not thread-safe; one owner.
class Md5 {
 public:
  Md5();
  ~Md5();
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void update(const void* data, size_t size);
  std::string finish_hex();  // lowercase hex; REQUIRES: called once

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// SHA-256 of a whole file, lowercase hex.
Result<std::string> sha256_file(const std::string& path);

}  // namespace starling::crypto

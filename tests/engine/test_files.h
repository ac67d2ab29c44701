// Temp directories and random files for engine tests.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tests/temp_dir.h"

namespace starling::peer::testing {

using starling::testing::TempDir;

// Writes `size` pseudo-random bytes from `seed` to `path`.
inline void write_random_file(const std::string& path, int64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::vector<uint64_t> block(8192);
  int64_t left = size;
  while (left > 0) {
    for (auto& w : block) w = rng();
    const int64_t n = std::min<int64_t>(left, static_cast<int64_t>(block.size() * 8));
    out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
    left -= n;
  }
}

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace starling::peer::testing

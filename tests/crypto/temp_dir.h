// TempDir (tests/temp_dir.h) and a file-mode helper for the crypto and cli tests.
#pragma once

#include <sys/stat.h>

#include <string>

#include "tests/temp_dir.h"

namespace starling::crypto::testing {

using starling::testing::TempDir;

inline unsigned file_mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0xffffffffu;
  return static_cast<unsigned>(st.st_mode & 07777);
}

}  // namespace starling::crypto::testing

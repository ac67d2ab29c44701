#!/usr/bin/env bash
# The whole test suite in one command (CI runs exactly this through .ci/run):
#   1. formatting check       2. release build + every CTest test (unit and integration)
#   3. address/undefined sanitizer build + unit tests      4. libFuzzer targets, bounded time
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

echo "== format"
files=$(git ls-files '*.cc' '*.h')
if [[ -n "$files" ]]; then clang-format --dry-run -Werror $files; fi

echo "== release build and all tests"
scripts/build.sh release
(cd build/release && ctest --output-on-failure --timeout 900 -j 2)

echo "== sanitizer build (address, undefined) and unit tests"
scripts/build.sh asan
# Full malloc stacks so that the suppressions (third-party leaks only) can match.
(cd build/asan && ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
  LSAN_OPTIONS="suppressions=$PWD/../../tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure --timeout 900 -j 2 -L unit)

echo "== fuzz targets"
scripts/build.sh fuzz
scripts/fuzz.sh "${STARLING_FUZZ_SECONDS:-20}"

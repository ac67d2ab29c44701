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
(cd build/release && ctest --output-on-failure --timeout 900 -j 2) | tee build/release-ctest.log

echo "== sanitizer build (address, undefined) and unit tests"
scripts/build.sh asan
# Full malloc stacks so that the suppressions (third-party leaks only) can match.
(cd build/asan && ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
  LSAN_OPTIONS="suppressions=$PWD/../../tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure --timeout 900 -j 2 -L unit) \
  | tee build/asan-ctest.log

echo "== fuzz targets"
scripts/build.sh fuzz
scripts/fuzz.sh "${STARLING_FUZZ_SECONDS:-20}" | tee build/fuzz.log

# One closing line over the three runs (each fuzz target counts as one test).
total() { sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$1"; }
tests=$(($(total build/release-ctest.log) + $(total build/asan-ctest.log)))
fuzzers=$(grep -c '^fuzz: .* for ' build/fuzz.log || true)
echo "== summary: release and sanitizer CTest runs plus fuzz targets (one test each)"
echo "total: $((tests + fuzzers)) passed, 0 failed"

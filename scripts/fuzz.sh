#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time over its kept corpus (tests/fuzz/corpus/NAME).
# New inputs go to a scratch directory, so the kept corpus changes only when someone commits.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
status=0
for bin in build/fuzz/tests/fuzz/*_fuzz; do
  [[ -x "$bin" ]] || continue
  name=$(basename "$bin")
  kept=tests/fuzz/corpus/$name
  scratch=$(mktemp -d)
  mkdir -p "$kept"
  echo "fuzz: $name for ${seconds}s (corpus $kept)"
  if ! "$bin" -max_total_time="$seconds" -print_final_stats=0 "$scratch" "$kept" \
       >"$scratch.log" 2>&1; then
    tail -n 40 "$scratch.log"
    echo "fuzz: $name FAILED"
    status=1
  fi
  rm -rf "$scratch" "$scratch.log"
done
exit $status

#!/usr/bin/env bash
# The main job in one command: install what is missing, build, run `starling demo`.
# Extra arguments go to `starling demo` (see `starling demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release
exec build/release/cli/starling demo "$@"

#!/usr/bin/env bash
# The headline benchmark, one command (root; Debian 12):
#   bench/headline.sh [--peers 8,16] [--size-mib 256] [--name headline] [--keep]
#                     [--host-qdisc fifo|sparse-first]
# Installs missing packages (scripts/deps.sh), builds the release binary if it is missing
# (STARLING=path uses another binary; STARLING_JOBS=1 by default for that build), then runs
# bench/headline.py, which writes docs/bench/NAME.{md,json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/headline.sh: needs root (network namespaces, tc, iptables)" >&2
  exit 2
fi
scripts/deps.sh
starling=${STARLING:-build/release/cli/starling}
if [[ ! -x $starling ]]; then
  echo "bench/headline.sh: building $starling"
  STARLING_JOBS=${STARLING_JOBS:-1} scripts/build.sh release
fi
exec /usr/bin/python3 bench/headline.py --starling "$starling" "$@"

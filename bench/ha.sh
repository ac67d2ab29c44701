#!/usr/bin/env bash
# The HA benchmark (issue 6 item 4), one command (root; Debian 12):
#   bench/ha.sh [--peers 8] [--size-mib 256] [--kill-at 0.5] [--name ha] [--keep]
# A 3-member supernode cluster, N peers on 100 Mbit/s links; a baseline run, then the same run
# with the Raft leader killed (kill -9) at 50 % mean progress. Installs missing packages
# (scripts/deps.sh), builds the release binary if it is missing (STARLING=path uses another
# binary; STARLING_JOBS=1 by default for that build), then runs lab/ha.py, which writes
# docs/bench/NAME.md and prints it. The lab always tears itself down (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  echo "bench/ha.sh: needs root (network namespaces, tc, iptables)" >&2
  exit 2
fi
scripts/deps.sh
starling=${STARLING:-build/release/cli/starling}
if [[ ! -x $starling ]]; then
  echo "bench/ha.sh: building $starling"
  STARLING_JOBS=${STARLING_JOBS:-1} scripts/build.sh release
fi
exec /usr/bin/python3 lab/ha.py --starling "$starling" "$@"

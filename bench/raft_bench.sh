#!/usr/bin/env bash
# The Raft benchmark (issue 3 item 5), one command (root for apt-get; Debian 12):
#   bench/raft_bench.sh [--clients 1,64] [--seconds 10] [--rounds 3] [--value-size 256] [--trials 20]
#                       [--no-etcd-failover] [--only etcd|starling] [--out docs/bench/raft]
#   STARLING_BUILD=dir bench/raft_bench.sh     # use dir/cli/starling and dir/bench/kv_bench
# Installs etcd-server if it is missing, builds starling and kv_bench into build/release
# (STARLING_JOBS jobs, default 1) unless STARLING_BUILD is given, then runs bench/raft_bench.py:
# a 3-member etcd and a 3-member Starling cluster on loopback, writes/s and latency at each
# client count (3 rounds, the two systems alternating; the median round counts), 20 leader
# kill -9 failover trials; writes docs/bench/raft.{md,json}.
# Every process and the temp dir are removed on exit, Ctrl-C included (RAFT_BENCH_KEEP=1
# keeps the dir with every process's log). About 6 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench/raft_bench.sh: etcd is missing; run as root to apt-get install etcd-server" >&2
    exit 2
  fi
  echo "bench/raft_bench.sh: installing etcd-server"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server >/dev/null
fi

build=${STARLING_BUILD:-build/release}
if [[ -z ${STARLING_BUILD:-} ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "${STARLING_JOBS:-1}" --target starling kv_bench
fi
for bin in "$build/cli/starling" "$build/bench/kv_bench"; do
  [[ -x $bin ]] || { echo "bench/raft_bench.sh: $bin is missing" >&2; exit 2; }
done

workdir=$(mktemp -d /tmp/raft-bench.XXXXXX)
py_pid=
# raft_bench.py stops what it started itself (also on SIGINT/SIGTERM); this catches what a
# crash of it leaves behind: every pid it listed that still runs in this run's temp dir.
cleanup() {
  local pid
  if [[ -n $py_pid ]] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true
    wait "$py_pid" 2>/dev/null || true
  fi
  if [[ -f $workdir/pids ]]; then
    while read -r pid; do
      if [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$workdir"* ]]; then
        kill -9 "$pid" 2>/dev/null || true
      fi
    done <"$workdir/pids"
  fi
  if [[ -n ${RAFT_BENCH_KEEP:-} ]]; then
    echo "bench/raft_bench.sh: kept $workdir"
  else
    rm -rf "$workdir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p docs/bench
# In the background so that a signal to this script is handled at once (see cleanup).
python3 bench/raft_bench.py --kv-bench "$build/bench/kv_bench" --starling "$build/cli/starling" \
  --workdir "$workdir" --command "bench/raft_bench.sh${*:+ $*}" "$@" &
py_pid=$!
wait "$py_pid"

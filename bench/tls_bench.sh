#!/usr/bin/env bash
# Data-plane TLS throughput against plain libtorrent (issue 5 item 8), one command:
#   bench/tls_bench.sh [--size-mib 1024] [--reps 3] [--dir /dev/shm] [--piece-kib 0]
#                      [--perf-dir DIR] [--keep]
#   STARLING_BUILD=dir bench/tls_bench.sh      # use dir/bench/tls_bench
# Builds tls_bench into build/release (STARLING_JOBS jobs, default 1) unless STARLING_BUILD is
# given, prints the machine (CPU, cores, kernel, libtorrent, OpenSSL, load average), then runs
# it: per repetition one plain-libtorrent and one TorrentEngine (TLS) transfer of the same
# random file between two processes on 127.0.0.1. Needs --size-mib x 2 free bytes in --dir.
# What it measures and how to read it: docs/bench/tls.md.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${STARLING_BUILD:-build/release}
if [[ -z ${STARLING_BUILD:-} ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "${STARLING_JOBS:-1}" --target tls_bench
fi
bin="$build/bench/tls_bench"
[[ -x $bin ]] || { echo "bench/tls_bench.sh: $bin is missing" >&2; exit 2; }

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs," \
  "$(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)"
echo "# libtorrent-rasterbar $(dpkg-query -W -f='${Version}' libtorrent-rasterbar2.0 2>/dev/null || echo '?')," \
  "$(openssl version)"
echo "# AES-NI: $(grep -q -w aes /proc/cpuinfo && echo yes || echo no)," \
  "VAES: $(grep -q -w vaes /proc/cpuinfo && echo yes || echo no)"
echo "# uptime: $(uptime)"
exec "$bin" "$@"

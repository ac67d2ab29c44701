#!/usr/bin/env bash
# Installs the Debian 12 packages Starling needs to build, test and run its demo.
# Runs apt-get only when something is missing. Must run as root (or via sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorrent-rasterbar-dev libboost-dev libboost-system-dev libsodium-dev libssl-dev
  libsqlite3-dev libcurl4-openssl-dev nlohmann-json3-dev libgtest-dev libgmock-dev
  clang clang-format libclang-rt-14-dev
  iproute2 iptables procps curl openssl python3 tcpdump
  nginx aria2 opentracker mktorrent gnuplot-nox docker-registry skopeo
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

#!/usr/bin/env bash
# The multi-node docker demo in one command (see docker/README.md):
#   scripts/docker-demo.sh [--size-mib N] [--keep-dockerd]
# Installs docker.io, docker-compose and debootstrap if missing, starts dockerd if it is not
# running (and stops it again at the end), makes the base image with debootstrap if absent,
# builds starling if build/release/cli/starling is missing, builds the image, runs an origin,
# a supernode and four peers as containers, runs `starling get` on the four peers at once,
# verifies every output against the origin's file and tears everything down (also on Ctrl-C
# and on failure). Exit 0 only if all four outputs are identical and the origin served one
# request.
#
# Environment: STARLING_BIN (binary to ship, default build/release/cli/starling),
# STARLING_NET (first three octets of the bridge subnet, default 198.18.77),
# STARLING_MIRROR (Debian mirror for debootstrap, default: the one apt is configured with),
# STARLING_BASE_INCLUDE=1 (put the runtime libraries into the base image with debootstrap,
# for hosts whose containers cannot reach the mirror), STARLING_JOBS (for scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

size_mib=256
keep_dockerd=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --size-mib) size_mib=${2:?--size-mib needs a number}; shift 2 ;;
    --keep-dockerd) keep_dockerd=1; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "docker-demo: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ $size_mib =~ ^[0-9]+$ ]] || (( size_mib < 1 || size_mib > 65536 )); then
  echo "docker-demo: --size-mib must be 1..65536" >&2; exit 2
fi
[[ $(id -u) -eq 0 ]] || { echo "docker-demo: run as root (apt-get, dockerd, debootstrap)" >&2; exit 2; }

base_image=starling-base:bookworm
image=starling:demo
project=starling-demo
net=${STARLING_NET:-198.18.77}
bin=${STARLING_BIN:-$root/build/release/cli/starling}
peers=(peer1 peer2 peer3 peer4)
compose=(docker-compose -p "$project" -f "$root/docker/docker-compose.yml")
export STARLING_IMAGE=$image STARLING_NET=$net STARLING_SIZE_MIB=$size_mib

t0=$SECONDS
work=$(mktemp -d /tmp/starling-docker-demo.XXXXXX)
dockerd_pid=""
stack_up=0
get_pids=()

say() { printf '[%3ds] %s\n' $((SECONDS - t0)) "$*"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for p in "${get_pids[@]}"; do kill "$p" 2>/dev/null; done
  if (( stack_up )); then
    if (( rc != 0 && rc != 130 )); then
      echo "--- last container logs ---"
      "${compose[@]}" logs --no-color --tail 15 2>/dev/null | grep -v '^Attaching'
    fi
    say "tearing down (docker-compose down -v)"
    "${compose[@]}" down -v --remove-orphans >"$work/down.log" 2>&1 ||
      { echo "docker-demo: docker-compose down failed:"; tail -5 "$work/down.log"; }
  fi
  if [[ -n $dockerd_pid ]]; then
    say "stopping the dockerd this script started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 130' INT TERM

fail() { echo "docker-demo: $*" >&2; exit 1; }

# --- 1. tools -------------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if (( ${#missing[@]} )); then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
    >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; fail "apt-get install failed"; }
fi

# --- 2. dockerd ----------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: /var/log/starling-docker-demo-dockerd.log)"
  dockerd >/var/log/starling-docker-demo-dockerd.log 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/starling-docker-demo-dockerd.log; fail "dockerd did not come up"; }
  if (( keep_dockerd )); then say "dockerd (pid $dockerd_pid) will stay running"; dockerd_pid=""; fi
fi

# --- 3. base image -------------------------------------------------------------------------
debian_mirror() {
  if [[ -n ${STARLING_MIRROR:-} ]]; then echo "$STARLING_MIRROR"; return; fi
  local m=""
  if [[ -f /etc/apt/sources.list ]]; then
    m=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
  fi
  if [[ -z $m ]]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f $f ]] || continue
      m=$(awk '/^URIs:/ {u=$2} /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == "bookworm") {print u; exit}}' "$f")
      [[ -n $m ]] && break
    done
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
runtime_pkgs=libtorrent-rasterbar2.0,libsodium23,libssl3,libcurl4,libsqlite3-0,curl
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  mirror=$(debian_mirror)
  include=()
  [[ ${STARLING_BASE_INCLUDE:-0} == 1 ]] && include=(--include="$runtime_pkgs")
  say "making $base_image: debootstrap --variant=minbase bookworm from $mirror (takes a few minutes)"
  debootstrap --variant=minbase "${include[@]}" bookworm "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; fail "debootstrap failed"; }
  tar -C "$work/rootfs" -c . | docker import - "$base_image" >/dev/null
  rm -rf "$work/rootfs"
fi

# --- 4. the binary and the image ------------------------------------------------------------
if [[ ! -x $bin ]]; then
  say "building starling (scripts/build.sh release)"
  scripts/build.sh release
fi
[[ -x $bin ]] || fail "no starling binary at $bin"
mkdir -p "$work/context"
# The debug info is most of the binary's size and the image does not need it.
strip --strip-debug -o "$work/context/starling" "$bin" 2>/dev/null || cp "$bin" "$work/context/starling"
say "building image $image from $bin"
docker build -t "$image" -f docker/Dockerfile "$work/context" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log"; fail "docker build failed"; }

# --- 5. the stack ---------------------------------------------------------------------------
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true   # leftovers of a killed run
say "starting init, origin, supernode and ${#peers[@]} peers on $net.0/24 (file: $size_mib MiB)"
stack_up=1
"${compose[@]}" up -d origin supernode "${peers[@]}" >"$work/up.log" 2>&1 ||
  { tail -20 "$work/up.log"; fail "docker-compose up failed"; }
declare -A cid
for s in origin supernode "${peers[@]}"; do cid[$s]=$("${compose[@]}" ps -q "$s"); done
for _ in $(seq 1 120); do
  healthy=0
  for p in "${peers[@]}"; do
    [[ $(docker inspect -f '{{.State.Health.Status}}' "${cid[$p]}" 2>/dev/null) == healthy ]] && healthy=$((healthy + 1))
  done
  (( healthy == ${#peers[@]} )) && break
  sleep 1
done
(( healthy == ${#peers[@]} )) || fail "only $healthy of ${#peers[@]} peers became healthy"
for s in origin supernode "${peers[@]}"; do
  printf '  %-9s %s\n' "$s" "$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${cid[$s]}")"
done

# --- 6. four gets at once ------------------------------------------------------------------
url=http://origin:8080/blob
say "starling get $url -o /out/blob on ${peers[*]} at once"
t_get=$SECONDS
declare -A get_pid
for p in "${peers[@]}"; do
  "${compose[@]}" exec -T "$p" starling get "$url" -o /out/blob --quiet >"$work/get-$p.log" 2>&1 &
  get_pid[$p]=$!
  get_pids+=($!)
done

task_json() { docker exec "${cid[$1]}" curl -fsS --unix-socket /run/starling/peer.sock http://localhost/v1/tasks 2>/dev/null || echo '{}'; }
# One line of progress: the four local APIs are asked in parallel, one python parses them all.
progress() {
  local asks=()
  for p in "${peers[@]}"; do task_json "$p" >"$work/tasks-$p.json" & asks+=($!); done
  wait "${asks[@]}" || true
  python3 - "$((SECONDS - t_get))" "$work" "${peers[@]}" <<'PY'
import json, sys
line = "  t=%ss" % sys.argv[1]
for p in sys.argv[3:]:
    try:
        t = json.load(open("%s/tasks-%s.json" % (sys.argv[2], p)))["tasks"][0]
        tot = t.get("total_bytes") or 0
        line += "  %s %3d%% %-11s" % (p, 100 * t.get("done_bytes", 0) // tot if tot else 0, t.get("state", "?"))
    except Exception:
        line += "  %s starting         " % p
print(line.rstrip())
PY
}
while :; do
  running=0
  for p in "${peers[@]}"; do kill -0 "${get_pid[$p]}" 2>/dev/null && running=1; done
  (( running )) || break
  progress
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    running=0
    for p in "${peers[@]}"; do kill -0 "${get_pid[$p]}" 2>/dev/null && running=1; done
    (( running )) || break
    sleep 0.5
  done
done
get_secs=$((SECONDS - t_get))
progress
declare -A get_rc
for p in "${peers[@]}"; do
  set +e; wait "${get_pid[$p]}"; get_rc[$p]=$?; set -e
done
get_pids=()

# --- 7. verify and summarize ---------------------------------------------------------------
say "all gets exited; comparing the outputs with the origin's file (verify service, cmp)"
"${compose[@]}" run -T --rm verify >"$work/verify.log" 2>&1 || true
docker exec "${cid[origin]}" curl -fsS "http://$net.2:8080/_stats" >"$work/stats.json" 2>/dev/null ||
  echo '{}' >"$work/stats.json"
for p in "${peers[@]}"; do echo "${get_rc[$p]}" >"$work/rc-$p"; done

# The summary: verify's lines, the origin's counters and each peer's last task record.
set +e
python3 - "$work" "$size_mib" "$get_secs" "${peers[@]}" <<'PY'
import json, os, sys
work, size_mib, secs, peers = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def load(name):
    try:
        return json.load(open(os.path.join(work, name)))
    except Exception:
        return {}
def mib(n):
    return "%.1f MiB" % (n / 1048576)
verify = [l.strip() for l in open(os.path.join(work, "verify.log"))]
ok = True
received = uploaded = 0
print("\nresults after %s s of downloading:" % secs)
for p in peers:
    rc = int(open(os.path.join(work, "rc-" + p)).read())
    same = ("verify: %s identical" % p) in verify
    ok = ok and rc == 0 and same
    tasks = load("tasks-%s.json" % p).get("tasks") or [{}]
    down, up = tasks[0].get("downloaded_bytes", 0), tasks[0].get("uploaded_bytes", 0)
    received += down
    uploaded += up
    print("  %s: get exit %d, output %s (received %s, sent to peers %s)" % (
        p, rc, "identical to the origin's file" if same else "DIFFERS or missing", mib(down), mib(up)))
    if rc != 0:
        for line in open(os.path.join(work, "get-%s.log" % p)):
            print("    " + line.rstrip())
stats = load("stats.json")
requests, sent = stats.get("requests", -1), stats.get("bytes_sent", 0)
print("  origin:    %d request(s), %s sent (%.2f x the file size)" % (
    requests, mib(sent), sent / (size_mib * 1048576)))
print("  peers received %s in all: %s from the supernode's seed, %s from each other" % (
    mib(received), mib(max(0, received - uploaded)), mib(uploaded)))
ok = ok and requests == 1
sys.exit(0 if ok else 1)
PY
ok=$?
set -e
echo "  total time $((SECONDS - t0)) s (including setup)"
if (( ok == 0 )); then
  echo "docker demo OK: every output is byte-identical and the origin served the file once"
  exit 0
fi
echo "docker demo FAILED"
exit 1

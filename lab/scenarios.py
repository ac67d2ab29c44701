"""The lab's world (an nginx origin, a tracker host, a supernode host, N peer hosts) and the three
ways of getting one file to every peer: (a) curl from the origin, (b) a BitTorrent swarm with
aria2c + opentracker, (c) Starling. Each phase returns a dict of per-peer results."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time

from lab import Host, Lab, Proc, log, percentile, proc_cpu, sh, sha256_file, unix_http_get

ORIGIN_IP = "198.18.0.2"
TRACKER_IP = "198.18.0.3"
SUPER_IP = "198.18.0.4"  # the single supernode
ADMIN_IP = "198.18.0.5"  # where `starling status` runs in a cluster world
MESH_PORT = 8002
DATA_PORT = 65002
MIB = 1 << 20
GIB = 1 << 30


def peer_ip(i: int) -> str:
    return f"198.18.1.{i + 1}"


def supernode_ip(i: int) -> str:
    """Address of cluster member i + 1 (host sn{i + 1})."""
    return f"198.18.0.{11 + i}"


def make_file(path: str, size: int) -> str:
    """Writes `size` random bytes to path and returns their SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = os.urandom(min(left, 4 * MIB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


class Nginx:
    """nginx from Debian in the origin host, its own config, log and pid file in the lab dir."""

    LOG_FORMAT = "'$remote_addr $status $bytes_sent $body_bytes_sent $request_method $uri'"

    def __init__(self, lab: Lab, host: Host, root: str):
        self.host, self.dir = host, os.path.join(host.dir, "nginx")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.access_log = os.path.join(self.dir, "access.log")
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write(f"""user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format lab {self.LOG_FORMAT};
  access_log {self.access_log} lab;
  client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
  default_type application/octet-stream;
  sendfile on; tcp_nopush on; keepalive_timeout 30;
  server {{ listen {host.ip}:80; root {root}; location / {{ }} }}
}}
""")
        open(self.access_log, "a").close()
        self.proc = host.spawn("nginx", ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", conf,
                                         "-g", "daemon off;"])
        if not lab.wait_tcp(host, host.ip, 80, proc=self.proc):
            raise RuntimeError(f"nginx did not start (see {self.proc.log_path}, {d}/error.log)")

    def mark(self) -> int:
        return os.path.getsize(self.access_log)

    def entries_since(self, mark: int) -> list[dict]:
        with open(self.access_log) as f:
            f.seek(mark)
            out = []
            for line in f:
                p = line.split()
                if len(p) >= 6:
                    out.append({"client": p[0], "status": int(p[1]), "bytes": int(p[2]),
                                "body_bytes": int(p[3]), "method": p[4], "uri": p[5]})
            return out

    def cpu(self) -> float:
        """CPU seconds of the master and its workers so far."""
        total = proc_cpu(self.proc.pid)
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                            total += proc_cpu(int(pid))
                except (OSError, ValueError, IndexError):
                    pass
        return total


class World:
    """The hosts of one lab run: the origin (nginx), optionally a tracker, the supernode host(s)
    and N peers. With supernodes == 1 the supernode host is `super` (SUPER_IP); with more they
    are sn1..snN (supernode_ip(i)) plus an idle `admin` host from which `starling status` asks
    the cluster (so its answers never queue behind a busy link)."""

    def __init__(self, lab: Lab, npeers: int, size: int, rate_mbit: float = 100.0,
                 origin_rate_mbit: float = 100.0, tracker: bool = True, supernodes: int = 1,
                 supernode_rate_mbit: float | None = None):
        self.lab, self.size = lab, size
        sn_rate = supernode_rate_mbit or rate_mbit
        self.origin = lab.add_host("origin", ORIGIN_IP, origin_rate_mbit)
        self.tracker = lab.add_host("tracker", TRACKER_IP, rate_mbit) if tracker else None
        if supernodes == 1:
            self.supernodes = [lab.add_host("super", SUPER_IP, sn_rate)]
            self.admin = self.supernodes[0]
        else:
            self.supernodes = [lab.add_host(f"sn{i + 1}", supernode_ip(i), sn_rate)
                               for i in range(supernodes)]
            self.admin = lab.add_host("admin", ADMIN_IP, rate_mbit)
        self.supernode = self.supernodes[0]  # the single supernode; sn1 of a cluster
        self.peers = [lab.add_host(f"peer{i + 1}", peer_ip(i), rate_mbit) for i in range(npeers)]
        self.www = os.path.join(self.origin.dir, "www")
        os.makedirs(self.www)
        log(f"generating a {size / MIB:.0f} MiB file")
        self.sha256 = make_file(os.path.join(self.www, "blob"), size)
        self.url = f"http://{ORIGIN_IP}/blob"
        self.nginx = Nginx(lab, self.origin, self.www)
        log(f"{npeers} peers at {rate_mbit} Mbit/s, origin egress {origin_rate_mbit} Mbit/s, "
            f"{supernodes} supernode(s)")

    def single_client_seconds(self) -> float:
        """Time one client needs at link speed (payload only, no header overhead)."""
        return self.size * 8 / (min(self.origin.rate_mbit, self.peers[0].rate_mbit) * 1e6)


def _summary(system: str, world: World, times: list[float | None], ok: list[bool],
             cpu: float, origin_http: int | None, origin_wire: int, extra: dict) -> dict:
    done = [t for t in times if t is not None]
    n = len(world.peers)
    return {
        "system": system, "peers": n, "size_bytes": world.size,
        "times": times, "identical": ok, "all_ok": all(ok) and len(done) == n,
        "p50": percentile(done, 50), "p95": percentile(done, 95),
        "max": max(done) if len(done) == n else float("nan"),
        "origin_http_bytes": origin_http, "origin_wire_bytes": origin_wire,
        "cpu_seconds": cpu, "cpu_per_gib": cpu / (n * world.size / GIB), **extra,
    }


def _verify(path: str, sha: str) -> bool:
    try:
        return sha256_file(path) == sha
    except OSError:
        return False


def _wait_all(procs: list[Proc], t0: float, timeout: float, done_fn=None) -> list[float | None]:
    """Waits for every process to exit (or done_fn(i) to give a completion time)."""
    times: list[float | None] = [None] * len(procs)
    deadline = time.time() + timeout
    while time.time() < deadline and any(t is None for t in times):
        for i, p in enumerate(procs):
            if times[i] is not None:
                continue
            if done_fn is not None:
                t = done_fn(i)
                if t is not None:
                    times[i] = t - t0
                    continue
                if p.poll():  # exited before completing
                    times[i] = float("nan")
            elif p.poll():
                times[i] = p.ended - t0 if p.exit_code == 0 else float("nan")
        time.sleep(0.1)
    return [None if t is None or t != t else t for t in times]


# ------------------------------------------------------------------------------------------
# (a) every peer downloads from the origin with curl


def run_curl(world: World, timeout: float) -> dict:
    log("phase curl: every peer downloads from the origin")
    mark, tx0, ncpu0 = world.nginx.mark(), world.origin.counters()["tx_bytes"], world.nginx.cpu()
    outs = [os.path.join(p.dir, "curl.out") for p in world.peers]
    t0 = time.time()
    procs = [p.spawn(f"curl-{p.name}", ["curl", "-sS", "-f", "-o", out, world.url])
             for p, out in zip(world.peers, outs)]
    times = _wait_all(procs, t0, timeout)
    for p in procs:
        p.stop()
    ok = [_verify(o, world.sha256) for o in outs]
    for o in outs:
        _rm(o)
    entries = world.nginx.entries_since(mark)
    cpu = sum(p.cpu_seconds or 0 for p in procs) + world.nginx.cpu() - ncpu0
    return _summary("curl from origin", world, times, ok, cpu,
                    sum(e["bytes"] for e in entries),
                    world.origin.counters()["tx_bytes"] - tx0, {})


# ------------------------------------------------------------------------------------------
# (b) BitTorrent: mktorrent, opentracker, aria2c seeding at the origin host and on every peer


def _bdecode_info_span(data: bytes) -> tuple[int, int]:
    """Start and end offsets of the bencoded value of the top-level 'info' key."""

    def skip(i: int) -> int:
        c = data[i:i + 1]
        if c == b"i":
            return data.index(b"e", i) + 1
        if c in (b"l", b"d"):
            i += 1
            while data[i:i + 1] != b"e":
                i = skip(i)
            return i + 1
        colon = data.index(b":", i)
        return colon + 1 + int(data[i:colon])

    i = 1
    while data[i:i + 1] != b"e":
        key_end = skip(i)
        key = data[data.index(b":", i) + 1:key_end]
        val_end = skip(key_end)
        if key == b"info":
            return key_end, val_end
        i = val_end
    raise ValueError("no info dictionary")


ARIA_COMMON = ["aria2c", "--enable-dht=false", "--enable-dht6=false",
               "--enable-peer-exchange=false", "--bt-enable-lpd=false", "--disable-ipv6=true",
               "--seed-ratio=0.0", "--file-allocation=none", "--listen-port=6881",
               "--summary-interval=0", "--console-log-level=warn", "--auto-save-interval=0",
               "--bt-save-metadata=false", "--rpc-save-upload-metadata=false"]


def run_bittorrent(world: World, timeout: float) -> dict:
    log("phase bittorrent: aria2c swarm, opentracker, the origin host seeds")
    lab, tr = world.lab, world.tracker
    tdir = os.path.join(world.origin.dir, "bt")
    os.makedirs(tdir, exist_ok=True)
    torrent = os.path.join(tdir, "blob.torrent")
    sh("mktorrent", "-a", f"http://{TRACKER_IP}:6969/announce", "-l", "20", "-o", torrent,
       os.path.join(world.www, "blob"))
    with open(torrent, "rb") as f:
        data = f.read()
    a, b = _bdecode_info_span(data)
    info_hash = hashlib.sha1(data[a:b]).hexdigest()
    # Debian's opentracker is built with a whitelist: allow exactly this torrent.
    with open(os.path.join(tr.dir, "whitelist.txt"), "w") as f:
        f.write(info_hash + "\n")
    with open(os.path.join(tr.dir, "opentracker.conf"), "w") as f:
        # It chroots to rootdir and then runs as nobody: the whitelist path is inside the chroot.
        f.write(f"access.whitelist /whitelist.txt\ntracker.rootdir {tr.dir}\n"
                "tracker.user nobody\n")
    os.chmod(tr.dir, 0o755)
    tracker = tr.spawn("opentracker", ["opentracker", "-i", TRACKER_IP, "-p", "6969", "-P", "6969",
                                       "-f", os.path.join(tr.dir, "opentracker.conf")])
    if not lab.wait_tcp(tr, TRACKER_IP, 6969, proc=tracker):
        raise RuntimeError(f"opentracker did not start (see {tracker.log_path})")
    tx0 = world.origin.counters()["tx_bytes"]
    seeder = world.origin.spawn("aria2c-seed", ARIA_COMMON + [
        "--bt-seed-unverified=true", "--check-integrity=false", f"--dir={world.www}", torrent])
    if not lab.wait_tcp(world.origin, ORIGIN_IP, 6881, proc=seeder):
        raise RuntimeError(f"the aria2c seeder did not start (see {seeder.log_path})")
    hook = os.path.join(tdir, "done-hook.sh")
    with open(hook, "w") as f:
        f.write('#!/bin/sh\ndate +%s.%N > "$(dirname "$3")/done"\n')
    os.chmod(hook, 0o755)
    dirs = [os.path.join(p.dir, "bt") for p in world.peers]
    for d in dirs:
        os.makedirs(d, exist_ok=True)

    def done(i: int) -> float | None:
        try:
            with open(os.path.join(dirs[i], "done")) as f:
                return float(f.read().strip())
        except (OSError, ValueError):
            return None

    t0 = time.time()
    procs = [p.spawn(f"aria2c-{p.name}", ARIA_COMMON + [
        f"--dir={d}", f"--on-bt-download-complete={hook}", torrent])
             for p, d in zip(world.peers, dirs)]
    times = _wait_all(procs, t0, timeout, done_fn=done)
    wire = world.origin.counters()["tx_bytes"] - tx0
    for p in procs + [seeder, tracker]:
        p.stop(timeout=10)
    ok = [_verify(os.path.join(d, "blob"), world.sha256) for d in dirs]
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    cpu = sum(p.cpu_seconds or 0 for p in procs + [seeder, tracker])
    return _summary("BitTorrent (aria2c)", world, times, ok, cpu, None, wire,
                    {"seeder_cpu": seeder.cpu_seconds})


# ------------------------------------------------------------------------------------------
# (c) Starling: supernode next to the origin, a peer daemon on every peer host


SAMPLE_PERIOD = 0.15  # s between progress samples (a peer daemon refreshes its own every 0.2 s)
# A peer's link "delivered data" in a sample interval: >= 64 KiB (a quarter piece; more than
# any control message, e.g. the ~30 KiB metainfo of a 256 MiB task in GetTask).
WIRE_STEP = 64 * 1024


def _peer_task(sock: str, timeout: float = 0.5) -> dict | None:
    """The peer daemon's (only) task from its local API; {} when it has none yet, None when
    the daemon did not answer (stopped, busy, restarting)."""
    try:
        status, body = unix_http_get(sock, "/v1/tasks", timeout=timeout)
        if status == 200:
            tasks = json.loads(body).get("tasks", [])
            return tasks[0] if tasks else {}
    except (OSError, ValueError, IndexError):
        pass
    return None


def _veth_rx(host: Host, counter: str = "tx_bytes") -> int:
    """Bytes delivered to `host` so far: the tx counter of its bridge-side veth (a file in the
    root namespace, cheap enough to read every sample); with counter="rx_bytes", the bytes
    `host` sent."""
    try:
        with open(f"/sys/class/net/{host.veth}/statistics/{counter}") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def longest_stall(samples: list[tuple[float, list[int]]], step: int = 1,
                  at: float | None = None,
                  window: tuple[float, float] | None = None) -> dict:
    """The longest interval with no progress on any peer. samples: (t, [value per peer]) in
    time order; a peer progresses at a sample when its value exceeds its maximum so far by at
    least `step` within that sample interval (a restarted daemon's smaller value is no
    progress; the caller carries a missed sample over). The window runs from the first
    progress to the last one (the last peer completing), so the wait for the supernode's
    origin fetch, before any peer has a byte, is not a stall. The first sample is the
    reference (taken as the gets start). With `window` (from, to) only progress inside it
    counts and its ends count as progress. With `at` (e.g. the moment of a fault) also the gap
    that spans `at`."""
    events: list[float] = []
    best: list[int] | None = None
    for t, values in samples:
        if best is None:
            best = list(values)
            continue
        grew = False
        for i, v in enumerate(values):
            grew = grew or v - best[i] >= step
            best[i] = max(best[i], v)
        if grew:
            events.append(t)
    if window is not None:
        events = [window[0]] + [t for t in events if window[0] < t < window[1]] + [window[1]]
    out = {"stall_s": float("nan"), "from_s": None, "to_s": None, "window_s": None,
           "first_s": None,
           "events": len(events), "at_gap_s": None}
    if len(events) < 2:
        return out
    gaps = [(events[k + 1] - events[k], events[k], events[k + 1]) for k in range(len(events) - 1)]
    g = max(gaps)
    out.update(stall_s=g[0], from_s=g[1], to_s=g[2], window_s=events[-1] - events[0],
               first_s=events[0])
    if at is not None:
        for gap, a, b in gaps:
            if a <= at < b:
                out.update(at_gap_s=gap, at_from_s=a, at_to_s=b)
    return out


class StarlingPhase:
    """One Starling download of world.url to every peer, driven by the caller:
    start_supernodes() → [wait_leader()] → start_peers(order) → download(timeout, on_tick) →
    finish(). A fresh supernode (or a cluster of len(world.supernodes) members, started with
    --id/--members) with fresh state, a peer daemon per peer host whose --supernode list is
    the members in `order` (order[0] is asked first, so it registers the task and becomes its
    seeder), `starling get` on every peer at the same moment, and per-peer progress (the
    local API's done_bytes, and the bytes each host's link delivered) sampled every
    SAMPLE_PERIOD s. Several phases may run one after another in one World; the network
    directory is made once. Not thread-safe: one driver thread."""

    def __init__(self, world: World, starling: str, tag: str = ""):
        self.world, self.lab, self.starling, self.tag = world, world.lab, starling, tag
        self.net = os.path.join(self.lab.dir, "net")
        if not os.path.exists(self.net):
            sh(starling, "mesh", "init", self.net)
        self.n = len(world.supernodes)
        self.addrs = [f"{h.ip}:{MESH_PORT}" for h in world.supernodes]
        self.socks = [os.path.join(p.dir, "peer.sock") for p in world.peers]
        self.outs = [os.path.join(p.dir, "starling.out") for p in world.peers]
        self.supers: list[Proc] = []
        self.daemons: list[Proc] = []
        self.gets: list[Proc] = []
        self.retired: list[Proc] = []  # processes replaced after a fault, for CPU accounting
        self.order = list(range(self.n))
        self.leader: int | None = None  # member index, once wait_leader() saw one
        self.times: list[float | None] = [None] * len(world.peers)
        self.samples: list[tuple[float, list[int], list[int]]] = []  # (t, done_bytes, link rx)
        self.faults: list[str] = []
        self.hold = False  # set by an on_tick while a fault awaits its repair: keep going
        self.t0 = 0.0
        self.mark = world.nginx.mark()
        self.tx0 = world.origin.counters()["tx_bytes"]
        self.ncpu0 = world.nginx.cpu()

    # -- supernodes ----------------------------------------------------------------------
    def start_supernodes(self) -> None:
        members = ",".join(f"{i + 1}={a}" for i, a in enumerate(self.addrs))
        for i, h in enumerate(self.world.supernodes):
            data = os.path.join(h.dir, "data")
            shutil.rmtree(data, ignore_errors=True)
            argv = [self.starling, "supernode", "--network", self.net, "--data", data,
                    "--listen", h.ip, "--port", str(MESH_PORT), "--data-port", str(DATA_PORT)]
            if self.n > 1:
                argv += ["--id", str(i + 1), "--members", members]
            name = "supernode" if self.n == 1 else f"supernode{i + 1}"
            self.supers.append(h.spawn(self.tag + name, argv))
        for h, p in zip(self.world.supernodes, self.supers):
            if not self.lab.wait_tcp(h, h.ip, MESH_PORT, proc=p):
                raise RuntimeError(f"supernode {h.name} did not start (see {p.log_path})")

    def cluster_status(self, members: list[int] | None = None, timeout: float = 10.0) -> list[dict]:
        """`starling status --json` asked from the admin host, of the members with these
        indexes (all by default; it also asks every member they know of). [] on failure."""
        idx = range(self.n) if members is None else members
        argv = ["ip", "netns", "exec", self.world.admin.ns, self.starling, "status",
                "--network", self.net, "--supernode", ",".join(self.addrs[i] for i in idx),
                "--json"]
        try:
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=timeout)
            return json.loads(r.stdout).get("members", [])
        except (subprocess.TimeoutExpired, ValueError, AttributeError):
            return []

    @staticmethod
    def leader_of(members: list[dict]) -> tuple[int, int] | None:
        """(raft id, term) of the member that says it leads, if one answered so."""
        for m in members:
            r = m.get("raft", {})
            if m.get("health") == "ok" and r.get("state") == "leader":
                return int(r.get("id", 0)), int(r.get("term", 0))
        return None

    def wait_leader(self, timeout: float = 60.0) -> int:
        """Waits until every member answers and all follow one leader; its index (id - 1)."""
        deadline = time.time() + timeout
        last: list[dict] = []
        while time.time() < deadline:
            for p in self.supers:
                if p.poll():
                    raise RuntimeError(f"{p.name} exited (see {p.log_path})")
            last = self.cluster_status()
            lead = self.leader_of(last)
            if lead and len(last) == self.n and all(
                    m.get("health") == "ok" and m["raft"].get("lead") == lead[0] for m in last):
                self.leader = lead[0] - 1
                return self.leader
            time.sleep(0.3)
        raise RuntimeError(f"the supernode cluster elected no leader in {timeout:.0f} s: "
                           + json.dumps([m.get("raft", m.get("error")) for m in last]))

    # -- peers -----------------------------------------------------------------------------
    def start_daemon(self, i: int) -> Proc:
        p = self.world.peers[i]
        return p.spawn(f"{self.tag}starling-{p.name}", [
            self.starling, "peer", "--network", self.net, "--data", os.path.join(p.dir, "data"),
            "--supernode", ",".join(self.addrs[k] for k in self.order), "--listen", p.ip,
            "--data-port", str(DATA_PORT), "--socket", self.socks[i]])

    def wait_daemon(self, i: int, d: Proc) -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            if d.poll():
                break
            try:
                if unix_http_get(self.socks[i], "/v1/status", timeout=1.0)[0] == 200:
                    return
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"peer daemon {self.world.peers[i].name} did not start "
                           f"(see {d.log_path})")

    def start_peers(self, order: list[int] | None = None) -> None:
        """Starts every peer daemon with the members in `order` (indexes) as its --supernode
        list and waits until each serves its local API."""
        if order is not None:
            self.order = list(order)
        self.daemons = [self.start_daemon(i) for i in range(len(self.world.peers))]
        for i, d in enumerate(self.daemons):
            self.wait_daemon(i, d)

    def start_get(self, i: int) -> Proc:
        p = self.world.peers[i]
        return p.spawn(f"{self.tag}get-{p.name}-{int(time.time() * 1000) % 100000}", [
            self.starling, "get", self.world.url, "-o", self.outs[i], "--socket", self.socks[i],
            "--quiet"])

    def mean_progress(self) -> float:
        """Mean over peers of done / the file's size in the last sample. (A daemon's
        total_bytes grows as segments are published, so done/total_bytes read 50 % while the
        first of four segments was half done.)"""
        if not self.samples:
            return 0.0
        done = self.samples[-1][1]
        return sum(done) / (len(done) * self.world.size)

    def download(self, timeout: float, on_tick=None) -> None:
        """Starts `starling get` on every peer at once and samples progress until every get
        exited (and self.hold is off) or `timeout` s passed; on_tick(phase, tasks) runs after
        each sample (tasks: the local API's task per peer, None where the daemon did not
        answer)."""
        peers = self.world.peers
        last_done = [0] * len(peers)
        self.t0 = t0 = time.time()
        self.gets = [self.start_get(i) for i in range(len(peers))]
        deadline = t0 + timeout
        last_log = t0
        while time.time() < deadline and (self.hold or any(t is None for t in self.times)):
            tick = time.time()
            for i, g in enumerate(self.gets):
                if self.times[i] is None and g.poll():
                    self.times[i] = g.ended - t0 if g.exit_code == 0 else float("nan")
            tasks = [_peer_task(s) for s in self.socks]
            for i, t in enumerate(tasks):
                if t is not None:  # a daemon that did not answer keeps its last value
                    last_done[i] = int(t.get("done_bytes", 0))
            self.samples.append((time.time() - t0, list(last_done), [_veth_rx(p) for p in peers],
                                 sum(_veth_rx(h, "rx_bytes") for h in self.world.supernodes)))
            if on_tick is not None:
                on_tick(self, tasks)
            if time.time() - last_log > 10:
                last_log = time.time()
                done = sum(1 for t in self.times if t is not None)
                log(f"  t={time.time() - t0:.0f}s: {done}/{len(peers)} gets finished, mean "
                    f"progress {self.mean_progress():.0%}")
            time.sleep(max(0.0, SAMPLE_PERIOD - (time.time() - tick)))
        self.times = [None if t is None or t != t else t for t in self.times]

    def stalls(self, at: float | None = None) -> tuple[dict, dict]:
        """longest_stall() of the local API's done_bytes, and of the bytes each link delivered
        within the same window (first verified byte to the last peer complete: before it,
        links carry only control traffic, after it only verification may be left)."""
        api = longest_stall([(t, d) for t, d, _, _ in self.samples], 1, at)
        window = None if api["window_s"] is None else (api["first_s"],
                                                       api["first_s"] + api["window_s"])
        wire = longest_stall([(t, w) for t, _, w, _ in self.samples], WIRE_STEP, at, window)
        return api, wire

    def finish(self) -> dict:
        """Stops everything, checks the outputs, removes peer and supernode state; the
        phase's results (the run_starling() dict)."""
        world = self.world
        tasks = [_peer_task(s, timeout=2.0) or {} for s in self.socks]
        wire = world.origin.counters()["tx_bytes"] - self.tx0
        for p in self.gets + self.daemons + self.supers:
            p.stop(timeout=10)
        ok = [_verify(o, world.sha256) for o in self.outs]
        for o in self.outs:
            _rm(o)
        for h in world.peers + world.supernodes:
            shutil.rmtree(os.path.join(h.dir, "data"), ignore_errors=True)
        entries = world.nginx.entries_since(self.mark)
        super_ips = {h.ip for h in world.supernodes}
        back = [e for e in entries if e["client"] not in super_ips]
        cpu = (sum(p.cpu_seconds or 0 for p in self.gets + self.daemons + self.retired
                   + self.supers) + world.nginx.cpu() - self.ncpu0)
        received = sum(t.get("downloaded_bytes", 0) for t in tasks)
        peer_up = sum(t.get("uploaded_bytes", 0) for t in tasks)
        api, wire_stall = self.stalls()
        # Per peer: when its daemon first reported every byte, and how long its get took
        # after that (the daemon's check of the content, the copy into the output, fsync).
        last_byte = [next((t for t, d, _, _ in self.samples if d[i] >= world.size), None)
                     for i in range(len(world.peers))]
        after = [None if b is None or t is None else max(0.0, t - b)
                 for b, t in zip(last_byte, self.times)]
        return _summary("Starling", world, self.times, ok, cpu,
                        sum(e["bytes"] for e in entries), wire, {
            "origin_requests": [f"{e['client']} {e['method']} {e['uri']} {e['status']} "
                                f"{e['bytes']}" for e in entries],
            "origin_entries": entries,
            "back_to_source": len(back),
            "back_to_source_requests": [f"{e['client']} {e['method']} {e['uri']}" for e in back],
            "seeder_ip": world.supernodes[self.order[0]].ip,
            "supernode_order": [self.addrs[k] for k in self.order],
            "from_peers_bytes": peer_up, "from_seed_bytes": max(0, received - peer_up),
            "supernode_cpu": sum(p.cpu_seconds or 0 for p in self.supers),
            "daemon_cpu": sum(p.cpu_seconds or 0 for p in self.daemons),
            "get_cpu": sum(p.cpu_seconds or 0 for p in self.gets),
            "faults": self.faults,
            "get_exit_codes": [g.exit_code for g in self.gets],
            "last_byte_s": last_byte, "after_last_byte_s": after,
            "stall": api, "wire_stall": wire_stall, "samples": len(self.samples),
            "sample_period_s": (self.samples[-1][0] - self.samples[0][0]) / (len(self.samples) - 1)
            if len(self.samples) > 1 else None,
            # (t s, bytes the peers' daemons report done, bytes their links received, summed
            # over peers; bytes the supernodes' links sent), per sample: the swarm's delivery
            # and the seed's uplink over time.
            "timeline": [[round(t, 3), sum(d), sum(w), s] for t, d, w, s in self.samples]})


def run_starling(world: World, starling: str, timeout: float, fault: str = "none") -> dict:
    """Starling with the world's supernode(s), optionally with `fault` at peer1's 50 % (see
    _fault_hook). A cluster is started, its leader awaited, and every peer asks the followers
    first and the leader last, so a follower (the first in member order) seeds."""
    log(f"phase starling: {len(world.supernodes)} supernode(s) at "
        f"{', '.join(h.ip for h in world.supernodes)}, {len(world.peers)} peer daemons"
        + (f", fault {fault}" if fault != "none" else ""))
    ph = StarlingPhase(world, starling)
    ph.start_supernodes()
    if ph.n > 1:
        leader = ph.wait_leader()
        ph.order = [i for i in range(ph.n) if i != leader] + [leader]
        log(f"  leader: member {leader + 1}; peers ask {', '.join(ph.addrs[i] for i in ph.order)}"
            " in that order")
    elif fault in ("kill9-leader", "kill9-seeder"):
        raise RuntimeError(f"the {fault} fault needs a supernode cluster (--supernodes 3)")
    ph.start_peers()
    ph.download(timeout, on_tick=_fault_hook(fault) if fault != "none" else None)
    return ph.finish()


FAULT_HOLD = 8.0  # seconds a paused process / partition / downed link stays broken


def _fault_hook(fault: str):
    """An on_tick that injects `fault` once peer1 is half done and repairs it FAULT_HOLD s later.
    Peer faults hit peer1; stop-supernode and partition (peer1 <-> it) act on the seeder (the
    member peers ask first); kill9-leader kills the Raft leader (a follower seeds) for good;
    kill9-seeder kills the seeder for good once the task is ready (peer1's daemon says so) and
    peer1 is 90 % done, so the leader must re-seed it for the downloads to finish."""
    st = {"phase": "armed", "at": 0.0}

    def tick(ph: StarlingPhase, tasks: list) -> None:
        now = time.time()
        lab, world, p0 = ph.lab, ph.world, ph.world.peers[0]
        task = tasks[0] or {}
        frac = task.get("done_bytes", 0) / world.size  # of the file: total_bytes grows by segment
        # kill9-seeder: late enough that the seed has sent the last segment's pieces to
        # someone (before that, the re-seed needs the origin for what no peer has).
        due = (task.get("source_state") == "ready" and 0.9 <= frac < 1.0
               if fault == "kill9-seeder" else frac >= 0.5)
        if st["phase"] == "armed" and due:
            st["phase"], st["at"] = "broken", now
            if fault == "kill9-leader":  # for good: nothing to repair
                st["phase"] = "off"
                ph.faults.append(f"kill9-leader: member {ph.leader + 1} "
                                 f"({ph.addrs[ph.leader]}) at {p0.name}'s {frac:.0%}")
            elif fault == "kill9-seeder":  # for good: the leader re-seeds
                st["phase"] = "off"
                ph.faults.append(f"kill9-seeder: member {ph.order[0] + 1} "
                                 f"({ph.addrs[ph.order[0]]}) after the task was ready, at "
                                 f"{p0.name}'s {frac:.0%}")
            elif fault in ("stop-supernode", "partition"):
                ph.faults.append(f"{fault} on {p0.name} and the seeder "
                                 f"{ph.addrs[ph.order[0]]} at {frac:.0%}")
            else:
                ph.faults.append(f"{fault} on {p0.name} at {frac:.0%}")
            ph.hold = st["phase"] == "broken"  # its repair is still due
            log(f"  fault: {ph.faults[-1]}")
            if fault == "kill9-peer":
                lab.kill9(ph.daemons[0])
                lab.kill9(ph.gets[0])
            elif fault == "stop-peer":
                lab.pause(ph.daemons[0])
            elif fault == "stop-supernode":
                lab.pause(ph.supers[ph.order[0]])
            elif fault == "partition":
                p0.partition_from(world.supernodes[ph.order[0]])
            elif fault == "kill9-leader":
                lab.kill9(ph.supers[ph.leader])
            elif fault == "kill9-seeder":
                lab.kill9(ph.supers[ph.order[0]])
            elif fault == "linkdown":
                p0.link_down()
            else:
                raise ValueError(f"unknown fault {fault}")
        elif st["phase"] == "broken" and now - st["at"] >= FAULT_HOLD:
            st["phase"], ph.hold = "off", False
            ph.faults.append(f"repaired after {FAULT_HOLD:.0f}s")
            log(f"  fault: {ph.faults[-1]}")
            if fault == "kill9-peer":
                ph.daemons[0].poll()
                ph.gets[0].poll()
                ph.retired.extend([ph.daemons[0], ph.gets[0]])
                ph.daemons[0] = ph.start_daemon(0)
                ph.wait_daemon(0, ph.daemons[0])
                ph.times[0] = None
                ph.gets[0] = ph.start_get(0)
            elif fault == "stop-peer":
                lab.resume(ph.daemons[0])
            elif fault == "stop-supernode":
                lab.resume(ph.supers[ph.order[0]])
            elif fault == "partition":
                p0.heal_from(world.supernodes[ph.order[0]])
            elif fault == "linkdown":
                p0.link_up()

    return tick


def _rm(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# The supernode's default segment size (kDefaultSegmentSize in supernode/defaults.h).
SEGMENT_BYTES = 16 * MIB


def starling_correctness(r: dict) -> list[str]:
    """The CI checks: bytes identical, origin egress <= 1.05 x size, no back-to-source.
    With the kill9-seeder fault the pieces the dead seeder had sent to no peer can only come
    from the origin again: up to half a segment more is allowed (fetching a whole segment
    again, as the re-seed did before it fetched only missing pieces, still fails)."""
    problems = []
    for i, (t, same) in enumerate(zip(r["times"], r["identical"])):
        if t is None or not same:
            problems.append(f"peer{i + 1}: output missing or differs from the origin's file"
                            f" (get exit {r['get_exit_codes'][i]})")
    reseeded = any(f.startswith("kill9-seeder") for f in r.get("faults", []))
    bound = 1.05 * r["size_bytes"] + (min(r["size_bytes"], SEGMENT_BYTES) / 2 if reseeded else 0)
    if r["origin_http_bytes"] > bound:
        problems.append(f"origin egress {r['origin_http_bytes']} bytes > 1.05 x the file size "
                        f"{r['size_bytes']}" + (" + half a segment" if reseeded else ""))
    if r["back_to_source"]:
        problems.append(f"{r['back_to_source']} origin request(s) not from a supernode: "
                        + "; ".join(r["back_to_source_requests"]))
    return problems

"""The lab's world (an nginx origin, a tracker host, a supernode host, N peer hosts) and the three
ways of getting one file to every peer: (a) curl from the origin, (b) a BitTorrent swarm with
aria2c + opentracker, (c) Starling. Each phase returns a dict of per-peer results."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

from lab import Host, Lab, Proc, log, percentile, proc_cpu, sh, sha256_file, unix_http_get

ORIGIN_IP = "198.18.0.2"
TRACKER_IP = "198.18.0.3"
SUPER_IP = "198.18.0.4"
MIB = 1 << 20
GIB = 1 << 30


def peer_ip(i: int) -> str:
    return f"198.18.1.{i + 1}"


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
    def __init__(self, lab: Lab, npeers: int, size: int, rate_mbit: float = 100.0,
                 origin_rate_mbit: float = 100.0, tracker: bool = True):
        self.lab, self.size = lab, size
        self.origin = lab.add_host("origin", ORIGIN_IP, origin_rate_mbit)
        self.tracker = lab.add_host("tracker", TRACKER_IP, rate_mbit) if tracker else None
        self.supernode = lab.add_host("super", SUPER_IP, rate_mbit)
        self.peers = [lab.add_host(f"peer{i + 1}", peer_ip(i), rate_mbit) for i in range(npeers)]
        self.www = os.path.join(self.origin.dir, "www")
        os.makedirs(self.www)
        log(f"generating a {size / MIB:.0f} MiB file")
        self.sha256 = make_file(os.path.join(self.www, "blob"), size)
        self.url = f"http://{ORIGIN_IP}/blob"
        self.nginx = Nginx(lab, self.origin, self.www)
        log(f"{npeers} peers at {rate_mbit} Mbit/s, origin egress {origin_rate_mbit} Mbit/s")

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


def _peer_task(sock: str) -> dict:
    try:
        status, body = unix_http_get(sock, "/v1/tasks", timeout=1.0)
        if status == 200:
            tasks = json.loads(body).get("tasks", [])
            if tasks:
                return tasks[0]
    except (OSError, ValueError, IndexError):
        pass
    return {}


def run_starling(world: World, starling: str, timeout: float, fault: str = "none") -> dict:
    log(f"phase starling: supernode at {SUPER_IP}, {len(world.peers)} peer daemons"
        + (f", fault {fault}" if fault != "none" else ""))
    lab = world.lab
    net = os.path.join(lab.dir, "net")
    sh(starling, "mesh", "init", net)
    mark, tx0, ncpu0 = world.nginx.mark(), world.origin.counters()["tx_bytes"], world.nginx.cpu()
    sn = world.supernode
    superd = sn.spawn("supernode", [starling, "supernode", "--network", net, "--data",
                                    os.path.join(sn.dir, "data"), "--listen", SUPER_IP,
                                    "--port", "8002", "--data-port", "65002"])
    if not lab.wait_tcp(sn, SUPER_IP, 8002, proc=superd):
        raise RuntimeError(f"the supernode did not start (see {superd.log_path})")
    socks = [os.path.join(p.dir, "peer.sock") for p in world.peers]

    def start_daemon(i: int) -> Proc:
        p = world.peers[i]
        return p.spawn(f"starling-{p.name}", [
            starling, "peer", "--network", net, "--data", os.path.join(p.dir, "data"),
            "--supernode", f"{SUPER_IP}:8002", "--listen", p.ip, "--data-port", "65002",
            "--socket", socks[i]])

    def wait_daemon(i: int, d: Proc) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            if d.poll():
                break
            try:
                if unix_http_get(socks[i], "/v1/status", timeout=1.0)[0] == 200:
                    return
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"peer daemon {world.peers[i].name} did not start (see {d.log_path})")

    daemons = [start_daemon(i) for i in range(len(world.peers))]
    for i, d in enumerate(daemons):
        wait_daemon(i, d)
    outs = [os.path.join(p.dir, "starling.out") for p in world.peers]

    def start_get(i: int) -> Proc:
        p = world.peers[i]
        return p.spawn(f"get-{p.name}-{int(time.time() * 1000) % 100000}", [
            starling, "get", world.url, "-o", outs[i], "--socket", socks[i], "--quiet"])

    t0 = time.time()
    gets = [start_get(i) for i in range(len(world.peers))]
    retired: list[Proc] = []  # processes replaced after a fault, for CPU accounting
    fault_log: list[str] = []
    fault_state = {"phase": "armed" if fault != "none" else "off", "at": 0.0}
    times: list[float | None] = [None] * len(gets)
    deadline = time.time() + timeout
    last_progress = 0.0
    while time.time() < deadline and any(t is None for t in times):
        for i, g in enumerate(gets):
            if times[i] is None and g.poll():
                times[i] = g.ended - t0 if g.exit_code == 0 else float("nan")
        if fault_state["phase"] != "off":
            task = _peer_task(socks[0])
            frac = task.get("done_bytes", 0) / max(1, task.get("total_bytes", 0) or 1)
            _fault_step(fault, fault_state, frac, world, daemons, gets, times, retired,
                        start_daemon, wait_daemon, start_get, fault_log)
        if time.time() - last_progress > 10:
            last_progress = time.time()
            done = sum(1 for t in times if t is not None)
            log(f"  t={time.time() - t0:.0f}s: {done}/{len(gets)} gets finished")
        time.sleep(0.1)
    times = [None if t is None or t != t else t for t in times]
    tasks = [_peer_task(s) for s in socks]
    wire = world.origin.counters()["tx_bytes"] - tx0
    for p in gets + daemons + [superd]:
        p.stop(timeout=10)
    ok = [_verify(o, world.sha256) for o in outs]
    for o in outs:
        _rm(o)
    for p in world.peers:
        shutil.rmtree(os.path.join(p.dir, "data"), ignore_errors=True)
    shutil.rmtree(os.path.join(sn.dir, "data"), ignore_errors=True)
    entries = world.nginx.entries_since(mark)
    back = [e for e in entries if e["client"] != SUPER_IP]
    cpu = (sum(p.cpu_seconds or 0 for p in gets + daemons + retired + [superd])
           + world.nginx.cpu() - ncpu0)
    received = sum(t.get("downloaded_bytes", 0) for t in tasks)
    peer_up = sum(t.get("uploaded_bytes", 0) for t in tasks)
    return _summary("Starling", world, times, ok, cpu, sum(e["bytes"] for e in entries), wire, {
        "origin_requests": [f"{e['client']} {e['method']} {e['uri']} {e['status']} {e['bytes']}"
                            for e in entries],
        "back_to_source": len(back),
        "from_peers_bytes": peer_up, "from_seed_bytes": max(0, received - peer_up),
        "supernode_cpu": superd.cpu_seconds, "faults": fault_log,
        "get_exit_codes": [g.exit_code for g in gets]})


FAULT_HOLD = 8.0  # seconds a paused process / partition / downed link stays broken


def _fault_step(fault, st, frac, world, daemons, gets, times, retired, start_daemon,
                wait_daemon, start_get, fault_log) -> None:
    """Injects `fault` on peer1 once it is half done and repairs it FAULT_HOLD s later."""
    now = time.time()
    lab, p0 = world.lab, world.peers[0]
    if st["phase"] == "armed" and frac >= 0.5:
        st["phase"], st["at"] = "broken", now
        fault_log.append(f"{fault} on {p0.name} at {frac:.0%}")
        log(f"  fault: {fault_log[-1]}")
        if fault == "kill9-peer":
            lab.kill9(daemons[0])
            lab.kill9(gets[0])
        elif fault == "stop-peer":
            lab.pause(daemons[0])
        elif fault == "stop-supernode":
            lab.pause(world.lab.procs[[p.name for p in lab.procs].index("supernode")])
        elif fault == "partition":
            p0.partition_from(world.supernode)
        elif fault == "linkdown":
            p0.link_down()
        else:
            raise ValueError(f"unknown fault {fault}")
    elif st["phase"] == "broken" and now - st["at"] >= FAULT_HOLD:
        st["phase"] = "off"
        fault_log.append(f"repaired after {FAULT_HOLD:.0f}s")
        log(f"  fault: {fault_log[-1]}")
        if fault == "kill9-peer":
            daemons[0].poll()
            gets[0].poll()
            retired.extend([daemons[0], gets[0]])
            daemons[0] = start_daemon(0)
            wait_daemon(0, daemons[0])
            times[0] = None
            gets[0] = start_get(0)
        elif fault == "stop-peer":
            lab.resume(daemons[0])
        elif fault == "stop-supernode":
            lab.resume(world.lab.procs[[p.name for p in lab.procs].index("supernode")])
        elif fault == "partition":
            p0.heal_from(world.supernode)
        elif fault == "linkdown":
            p0.link_up()


def _rm(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def starling_correctness(r: dict) -> list[str]:
    """The CI checks: bytes identical, origin egress <= 1.05 x size, no back-to-source."""
    problems = []
    for i, (t, same) in enumerate(zip(r["times"], r["identical"])):
        if t is None or not same:
            problems.append(f"peer{i + 1}: output missing or differs from the origin's file"
                            f" (get exit {r['get_exit_codes'][i]})")
    if r["origin_http_bytes"] > 1.05 * r["size_bytes"]:
        problems.append(f"origin egress {r['origin_http_bytes']} bytes > 1.05 x the file size "
                        f"{r['size_bytes']}")
    if r["back_to_source"]:
        problems.append(f"{r['back_to_source']} origin request(s) not from the supernode: "
                        + "; ".join(x for x in r["origin_requests"]
                                    if not x.startswith(SUPER_IP + " ")))
    return problems

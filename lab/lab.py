#!/usr/bin/python3
"""Starling lab: many hosts on one machine, real (shaped) links, real failures.

Each host is a network namespace joined to one Linux bridge by a veth pair. Both directions of
every host link are shaped with tbf (the namespace side of the veth shapes the host's upload,
the bridge side shapes its download); with host_qdisc="sparse-first" the upload is htb with
small packets first instead. Processes run inside the hosts with `ip netns exec`.

Every object a run creates carries the run's name prefix `stlXXXX` (XXXX = 4 random hex digits):
namespaces `stlXXXX-HOST`, the bridge `stlXXXXbr`, bridge-side veths `stlXXXXvN`, the temp dir
`/tmp/stlXXXX-*`, and a state file /run/starling-lab/XXXX.json naming the owning pid. Teardown
runs from a `finally`, from atexit and on SIGINT/SIGTERM/SIGHUP; every new Lab first removes
what runs whose owner is dead left behind (`lab.py cleanup` does only that).

Python 3 standard library only (Debian's /usr/bin/python3). Needs root (netns, tc, iptables).
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PREFIX = "stl"
STATE_DIR = "/run/starling-lab"
# How a host's upload queues: "fifo" (tbf, one 50 ms FIFO) or "sparse-first" (htb; small
# packets such as ACKs before bulk data, a stand-in for a host's fq_codel).
HOST_QDISCS = ("fifo", "sparse-first")
SUBNET_BITS = 16  # every host lives in 198.18.0.0/16 (inside the benchmark range 198.18.0.0/15)

_NAME_RE = re.compile(r"^stl([0-9a-f]{4})(?:-|br$|v\d+$)")


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs a command (no shell), returns the CompletedProcess; raises on failure if check."""
    r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------
# Processes


class Proc:
    """A process started inside a host. CPU time comes from wait4's rusage once it is reaped
    (it includes the children it reaped), or from /proc while it still runs."""

    def __init__(self, name: str, host: "Host", argv: list[str], log_path: str, env=None):
        self.name, self.host, self.argv, self.log_path = name, host, argv, log_path
        full = ["ip", "netns", "exec", host.ns] + argv  # ip execs argv: the pid is the process
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.pid = self.popen.pid
        self.started = time.time()
        self.ended: float | None = None
        self.exit_code: int | None = None
        self.cpu_seconds: float | None = None

    def poll(self) -> bool:
        """True once the process has exited (reaps it)."""
        if self.exit_code is not None:
            return True
        try:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, ru = self.pid, 0, None
        if pid == 0:
            return False
        self.ended = time.time()
        if ru is not None:
            self.exit_code = os.waitstatus_to_exitcode(status)
            self.cpu_seconds = ru.ru_utime + ru.ru_stime
        else:
            self.exit_code = -1
            self.cpu_seconds = self.cpu_seconds or 0.0
        self.popen.returncode = self.exit_code
        self._log.close()
        return True

    def cpu_now(self) -> float:
        if self.cpu_seconds is not None:
            return self.cpu_seconds
        return proc_cpu(self.pid)

    def signal(self, sig: int) -> None:
        if self.exit_code is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 5.0) -> None:
        """SIGCONT + SIGTERM, SIGKILL after `timeout` s; always reaps."""
        if self.poll():
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.poll():
                return
            time.sleep(0.05)
        self.signal(signal.SIGKILL)
        while not self.poll():
            time.sleep(0.02)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.time() + timeout
        while not self.poll():
            if deadline is not None and time.time() > deadline:
                return False
            time.sleep(0.05)
        return True


def proc_cpu(pid: int) -> float:
    """utime+stime (+ reaped children) of a live process, in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


# ------------------------------------------------------------------------------------------
# Hosts


class Host:
    def __init__(self, lab: "Lab", name: str, ip: str, index: int, rate_mbit: float):
        self.lab, self.name, self.ip, self.index, self.rate_mbit = lab, name, ip, index, rate_mbit
        self.ns = f"{lab.prefix}-{name}"
        self.veth = f"{lab.prefix}v{index}"  # bridge side; the namespace side is eth0
        self.dir = os.path.join(lab.dir, name)
        os.makedirs(self.dir, exist_ok=True)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def spawn(self, name: str, argv: list[str], env=None) -> Proc:
        return self.lab.spawn(self, name, argv, env=env)

    def counters(self) -> dict:
        """Bytes and packets the host sent and received on its link (eth0)."""
        r = sh("ip", "-n", self.ns, "-s", "-j", "link", "show", "eth0")
        st = json.loads(r.stdout)[0]["stats64"]
        return {"tx_bytes": st["tx"]["bytes"], "rx_bytes": st["rx"]["bytes"]}

    def set_rate(self, rate_mbit: float) -> None:
        """(Re)shapes both directions of the host link to rate_mbit: tbf, or for the upload
        htb with small packets first (the lab's host_qdisc)."""
        self.rate_mbit = rate_mbit
        burst = max(128 * 1024, int(rate_mbit * 1e6 / 8 / 250))  # >= a 64 KiB GSO frame
        spec = ["tbf", "rate", f"{rate_mbit}mbit", "burst", str(burst), "latency", "50ms"]
        if self.lab.host_qdisc == "sparse-first":
            self._sparse_first(rate_mbit, burst)  # upload
        else:
            sh("tc", "-n", self.ns, "qdisc", "replace", "dev", "eth0", "root", *spec)  # upload
        sh("tc", "qdisc", "replace", "dev", self.veth, "root", *spec)  # download

    def _sparse_first(self, rate_mbit: float, burst: int) -> None:
        """The host's upload at rate_mbit with small packets (IP length < 128: pure ACKs,
        BitTorrent requests and HAVEs) sent before bulk data, as a host's fq_codel serves sparse
        flows first (this kernel has no fq_codel): htb, two classes, a u32 filter, a 50 ms FIFO
        each (like the tbf's)."""
        tc = ["tc", "-n", self.ns]
        rate = f"{rate_mbit}mbit"
        b = ["burst", str(burst), "cburst", str(burst), "quantum", "65536"]
        limit = str(int(rate_mbit * 1e6 / 8 * 0.05))
        sh(*tc, "qdisc", "del", "dev", "eth0", "root", check=False)
        sh(*tc, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "20")
        sh(*tc, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate",
           rate, "ceil", rate, *b)
        for cls, share, prio in (("1:10", 0.1, "0"), ("1:20", 0.9, "1")):
            sh(*tc, "class", "add", "dev", "eth0", "parent", "1:1", "classid", cls, "htb",
               "rate", f"{rate_mbit * share:g}mbit", "ceil", rate, "prio", prio, *b)
            sh(*tc, "qdisc", "add", "dev", "eth0", "parent", cls, "bfifo", "limit", limit)
        sh(*tc, "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1",
           "u32", "match", "u16", "0x0000", "0xff80", "at", "2", "flowid", "1:10")

    # -- faults --------------------------------------------------------------------------
    def link_down(self) -> None:
        sh("ip", "link", "set", self.veth, "down")

    def link_up(self) -> None:
        sh("ip", "link", "set", self.veth, "up")

    def partition_from(self, other: "Host") -> None:
        """Drops all traffic between this host and `other` (both directions, both hosts)."""
        for a, b in ((self, other), (other, self)):
            sh("ip", "netns", "exec", a.ns, "iptables", "-I", "INPUT", "-s", b.ip, "-j", "DROP")
            sh("ip", "netns", "exec", a.ns, "iptables", "-I", "OUTPUT", "-d", b.ip, "-j", "DROP")

    def heal_from(self, other: "Host") -> None:
        for a, b in ((self, other), (other, self)):
            sh("ip", "netns", "exec", a.ns, "iptables", "-D", "INPUT", "-s", b.ip, "-j", "DROP",
               check=False)
            sh("ip", "netns", "exec", a.ns, "iptables", "-D", "OUTPUT", "-d", b.ip, "-j", "DROP",
               check=False)


# ------------------------------------------------------------------------------------------
# The lab


class Lab:
    """Context manager: `with Lab() as lab: h = lab.add_host("origin", "198.18.0.2", 100)`."""

    def __init__(self, keep: bool = False, host_qdisc: str = "fifo"):
        if host_qdisc not in HOST_QDISCS:
            raise SystemExit(f"lab: unknown host qdisc {host_qdisc!r} (one of {HOST_QDISCS})")
        self.host_qdisc = host_qdisc
        if os.geteuid() != 0:
            raise SystemExit("lab: needs root (network namespaces, tc, iptables)")
        for tool in ("ip", "tc", "iptables"):
            if shutil.which(tool) is None:
                raise SystemExit(f"lab: {tool} not found (scripts/deps.sh installs it)")
        cleanup_stale()
        self.run_id = secrets.token_hex(2)
        self.prefix = f"{PREFIX}{self.run_id}"
        self.bridge = f"{self.prefix}br"
        self.keep = keep
        self.hosts: list[Host] = []
        self.procs: list[Proc] = []
        self._torn_down = False
        self._forward_rule = False
        self.dir = tempfile.mkdtemp(prefix=f"{self.prefix}-", dir="/tmp")
        os.makedirs(STATE_DIR, exist_ok=True)
        self.state_file = os.path.join(STATE_DIR, f"{self.run_id}.json")
        with open(self.state_file, "w") as f:
            json.dump({"pid": os.getpid(), "dir": self.dir, "bridge": self.bridge}, f)
        atexit.register(self.teardown)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
            signal.signal(sig, _raise_interrupt)
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "link", "set", self.bridge, "up")
        # With br_netfilter loaded (Docker does that) bridged frames traverse the host's
        # FORWARD chain, whose policy may be DROP: let frames between our hosts through.
        if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
            r = sh("iptables", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j",
                   "ACCEPT", "-m", "comment", "--comment", self.prefix, check=False)
            self._forward_rule = r.returncode == 0
        log(f"run {self.prefix}: bridge {self.bridge}, files in {self.dir}")

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def add_host(self, name: str, ip: str, rate_mbit: float) -> Host:
        h = Host(self, name, ip, len(self.hosts), rate_mbit)
        self.hosts.append(h)
        sh("ip", "netns", "add", h.ns)
        sh("ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
        sh("ip", "link", "set", h.veth, "master", self.bridge, "up")
        sh("ip", "-n", h.ns, "link", "set", "lo", "up")
        sh("ip", "-n", h.ns, "addr", "add", f"{ip}/{SUBNET_BITS}", "dev", "eth0")
        sh("ip", "-n", h.ns, "link", "set", "eth0", "up")
        h.set_rate(rate_mbit)
        return h

    def spawn(self, host: Host, name: str, argv: list[str], env=None) -> Proc:
        logs = os.path.join(self.dir, "logs")
        os.makedirs(logs, exist_ok=True)
        p = Proc(name, host, argv, os.path.join(logs, f"{name}.log"), env=env)
        self.procs.append(p)
        return p

    def wait_tcp(self, host: Host, ip: str, port: int, timeout: float = 20.0,
                 proc: Proc | None = None) -> bool:
        """Waits until a TCP connect from `host` to ip:port succeeds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc is not None and proc.poll():
                return False
            r = sh("ip", "netns", "exec", host.ns, "bash", "-c",
                   f"exec 3<>/dev/tcp/{ip}/{port}", check=False)
            if r.returncode == 0:
                return True
            time.sleep(0.2)
        return False

    # -- faults on processes -------------------------------------------------------------
    @staticmethod
    def kill9(p: Proc) -> None:
        p.signal(signal.SIGKILL)

    @staticmethod
    def pause(p: Proc) -> None:
        p.signal(signal.SIGSTOP)

    @staticmethod
    def resume(p: Proc) -> None:
        p.signal(signal.SIGCONT)

    def teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        # Ignore further signals while cleaning up: a second Ctrl-C must not leave debris.
        old = {s: signal.signal(s, signal.SIG_IGN)
               for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGALRM)}
        try:
            for p in reversed(self.procs):
                try:
                    p.stop(timeout=5.0)
                except Exception as e:  # keep tearing down
                    log(f"stopping {p.name}: {e}")
            destroy_run(self.run_id, self.dir if not self.keep else None)
            if self.keep:
                log(f"kept {self.dir}")
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def destroy_run(run_id: str, tmpdir: str | None) -> None:
    """Removes everything named after run `run_id`: processes in its namespaces, the
    namespaces (their veth pairs go with them), its links, its FORWARD rule, its files."""
    prefix = f"{PREFIX}{run_id}"
    r = sh("ip", "-j", "netns", "list", check=False)
    names = [n["name"] for n in json.loads(r.stdout or "[]")] if r.returncode == 0 else []
    for ns in names:
        if not ns.startswith(prefix + "-"):
            continue
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        for _ in range(50):
            if not sh("ip", "netns", "pids", ns, check=False).stdout.split():
                break
            time.sleep(0.1)
        sh("ip", "netns", "del", ns, check=False)
    r = sh("ip", "-j", "link", "show", check=False)
    for link in json.loads(r.stdout or "[]") if r.returncode == 0 else []:
        name = link.get("ifname", "")
        if name.startswith(prefix) and _NAME_RE.match(name):
            sh("ip", "link", "del", name, check=False)
    while sh("iptables", "-D", "FORWARD", "-i", f"{prefix}br", "-o", f"{prefix}br", "-j",
             "ACCEPT", "-m", "comment", "--comment", prefix, check=False).returncode == 0:
        pass
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    try:
        os.unlink(os.path.join(STATE_DIR, f"{run_id}.json"))
    except FileNotFoundError:
        pass


def cleanup_stale() -> list[str]:
    """Removes leftovers of runs whose owning process is gone (a crashed or killed run)."""
    live, dirs = set(), {}
    if os.path.isdir(STATE_DIR):
        for f in os.listdir(STATE_DIR):
            m = re.match(r"^([0-9a-f]{4})\.json$", f)
            if not m:
                continue
            try:
                with open(os.path.join(STATE_DIR, f)) as fh:
                    st = json.load(fh)
            except (OSError, ValueError):
                st = {}
            if st.get("pid") and pid_alive(int(st["pid"])) and st["pid"] != os.getpid():
                live.add(m.group(1))
            else:
                dirs[m.group(1)] = st.get("dir")
    found = set(dirs)
    r = sh("ip", "-j", "netns", "list", check=False)
    for n in json.loads(r.stdout or "[]") if r.returncode == 0 else []:
        m = _NAME_RE.match(n["name"])
        if m:
            found.add(m.group(1))
    r = sh("ip", "-j", "link", "show", check=False)
    for link in json.loads(r.stdout or "[]") if r.returncode == 0 else []:
        m = _NAME_RE.match(link.get("ifname", ""))
        if m:
            found.add(m.group(1))
    for d in os.listdir("/tmp"):
        m = re.match(r"^stl([0-9a-f]{4})-", d)
        if m and os.path.isdir(os.path.join("/tmp", d)):
            found.add(m.group(1))
            dirs.setdefault(m.group(1), os.path.join("/tmp", d))
    cleaned = []
    for run_id in sorted(found - live):
        log(f"removing leftovers of run {PREFIX}{run_id}")
        destroy_run(run_id, dirs.get(run_id))
        for d in os.listdir("/tmp"):
            if d.startswith(f"{PREFIX}{run_id}-"):
                shutil.rmtree(os.path.join("/tmp", d), ignore_errors=True)
        cleaned.append(run_id)
    return cleaned


# ------------------------------------------------------------------------------------------
# Small helpers shared by the scenarios


def unix_http_get(sock_path: str, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """HTTP/1.1 GET over a unix socket (the Starling peer's local API)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, body.decode(errors="replace")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-q * len(v) // 100)) - 1))
    return v[k]


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cli import main  # noqa: E402

    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""Negative system tests of the mesh between two hosts in network namespaces (label netns).

Two namespaces joined by a veth pair (198.18.201.1 and 198.18.201.2), with tests/mesh/mesh_tool
run inside them through `ip netns exec`. Asserts, each against a positive control:

  1. control: with the network key a handshake completes and messages arrive; a tcpdump capture
     of that exchange on the wire does not contain the message text (while a plain-TCP control
     message sent over the same link is found in the capture);
  2. without the key no handshake completes (XX and IK): the dialer reports
     mesh.handshake_refused, the listener logs "bad mac1" and never sees a session;
  3. a record tampered with in transit (a byte flipped by a man in the middle relay) closes
     the session with mesh.protocol at the receiver;
  4. a record replayed by the relay closes the session with mesh.protocol ("replayed").

Needs root and `ip`; a machine that cannot create the namespaces FAILS the test (exit 1), it
is never skipped. Everything created carries the prefix stmXXXX and is removed in a `finally`,
at exit and on SIGTERM/SIGINT/SIGHUP; leftovers of a killed run are removed by the next run.

  netns_test.py --tool build/tests/mesh/mesh_tool
  netns_test.py relay --listen IP:PORT --target IP:PORT --mode tamper|replay --frame N
"""
from __future__ import annotations

import argparse
import atexit
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PREFIX = "stm"
NET = "198.18.201"
PORT = 7400
RELAY_PORT = 7401
# Client-to-server frames of an XX session: 0 = first frame, 1 = message 3, 2... = records.
FIRST_RECORD = 2


def log(msg: str) -> None:
    print(f"[netns {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


# ------------------------------------------------------------------------------------------
# The man in the middle (runs as its own process inside a namespace).


def relay_main(listen: str, target: str, mode: str, frame: int) -> int:
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((lhost, int(lport)))
    srv.listen(1)
    print("ready", flush=True)
    client, _ = srv.accept()
    server = socket.create_connection((thost, int(tport)))

    def back() -> None:  # server to client, untouched
        try:
            while data := server.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=back, daemon=True)
    t.start()
    pending = b""
    index = 0
    try:
        while data := client.recv(65536):
            pending += data
            while len(pending) >= 2:
                n = int.from_bytes(pending[:2], "big")
                if len(pending) < 2 + n:
                    break
                f, pending = pending[: 2 + n], pending[2 + n :]
                out = [f]
                if index == frame and mode == "tamper":
                    b = bytearray(f)
                    b[len(b) // 2] ^= 0x04
                    out = [bytes(b)]
                    print(f"tampered frame {index}", flush=True)
                elif index == frame and mode == "replay":
                    out = [f, f]
                    print(f"replayed frame {index}", flush=True)
                for x in out:
                    server.sendall(x)
                index += 1
    except OSError:
        pass
    try:
        server.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    t.join(10)
    return 0


# ------------------------------------------------------------------------------------------
# The namespaces


class Net:
    def __init__(self) -> None:
        self.tag = PREFIX + secrets.token_hex(2)
        self.ns_a, self.ns_b = f"{self.tag}-a", f"{self.tag}-b"
        self.veth_a, self.veth_b = f"{self.tag}a", f"{self.tag}b"
        self.ip_a, self.ip_b = f"{NET}.1", f"{NET}.2"
        self.procs: list[subprocess.Popen] = []
        self.up = False

    def create(self) -> None:
        remove_leftovers()
        self.up = True  # from here on, teardown has something to remove
        sh("ip", "netns", "add", self.ns_a)
        sh("ip", "netns", "add", self.ns_b)
        sh("ip", "link", "add", self.veth_a, "type", "veth", "peer", "name", self.veth_b)
        for ns, veth, ip in ((self.ns_a, self.veth_a, self.ip_a), (self.ns_b, self.veth_b, self.ip_b)):
            sh("ip", "link", "set", veth, "netns", ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", veth)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", veth, "up")
        # (The control scenario proves the link carries traffic before any negative result.)

    def spawn(self, ns: str, argv: list[str], stderr_path: str | None = None) -> subprocess.Popen:
        err = open(stderr_path, "w") if stderr_path else subprocess.DEVNULL
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=subprocess.PIPE,
                             stderr=err, text=True)
        self.procs.append(p)
        return p

    def run(self, ns: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns] + argv, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)

    def teardown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        if self.up:
            for ns in (self.ns_a, self.ns_b):  # deleting a namespace removes its veth end
                sh("ip", "netns", "del", ns, check=False)
            self.up = False


def remove_leftovers() -> None:
    """Namespaces of earlier runs whose processes are gone (a killed run)."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if re.fullmatch(rf"{PREFIX}[0-9a-f]{{4}}-[ab]", name):
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            if not pids:
                sh("ip", "netns", "del", name, check=False)


# ------------------------------------------------------------------------------------------
# Scenarios


class Failure(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    what = what.replace("\n", "; ")
    if not cond:
        raise Failure(what)
    log(f"ok: {what}")


def read_line(p: subprocess.Popen, prefix: str, timeout: float = 10) -> str:
    """The next stdout line of p starting with prefix (other lines are skipped)."""
    deadline = time.time() + timeout
    result: list[str] = []

    def reader() -> None:
        for line in p.stdout:
            if line.startswith(prefix):
                result.append(line.rstrip("\n"))
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.time()))
    if not result:
        raise Failure(f"no '{prefix}' line within {timeout}s")
    return result[0]


def rest_of(p: subprocess.Popen, timeout: float = 30) -> str:
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise Failure(f"process did not finish: {out}")
    return out


class Scenarios:
    def __init__(self, net: Net, tool: str, work: str) -> None:
        self.net, self.tool, self.work = net, tool, work
        self.psk = secrets.token_hex(32)

    def listener(self, name: str, port: int = PORT) -> tuple[subprocess.Popen, str, str]:
        err = os.path.join(self.work, f"{name}.listener.log")
        p = self.net.spawn(self.net.ns_b, [self.tool, "listen", "--bind", self.net.ip_b, "--port",
                                           str(port), "--psk", self.psk], err)
        static = read_line(p, "static ").split()[1]
        read_line(p, "listening ")
        return p, static, err

    def dial(self, to: str, psk: str, sends: list[str], remote_static: str | None = None):
        argv = [self.tool, "dial", "--to", to, "--psk", psk]
        if remote_static:
            argv += ["--remote-static", remote_static]
        for s in sends:
            argv += ["--send", s]
        return self.net.run(self.net.ns_a, argv)

    def relay(self, mode: str, frame: int) -> subprocess.Popen:
        p = self.net.spawn(self.net.ns_b, [sys.executable, os.path.abspath(__file__), "relay",
                                           "--listen", f"{self.net.ip_b}:{RELAY_PORT}",
                                           "--target", f"{self.net.ip_b}:{PORT}",
                                           "--mode", mode, "--frame", str(frame)])
        read_line(p, "ready")
        return p

    def control_and_capture(self) -> None:
        log("scenario: with the key, messages arrive and the wire shows none of them")
        marker = "STARLING-PLAINTEXT-" + secrets.token_hex(8)
        control = "PLAIN-TCP-CONTROL-" + secrets.token_hex(8)
        pcap = os.path.join(self.work, "capture.pcap")
        dump_err = os.path.join(self.work, "tcpdump.log")
        dump = self.net.spawn(self.net.ns_a, ["tcpdump", "-i", self.net.veth_a, "-U", "--immediate-mode",
                                              "-n", "-s", "0", "-w", pcap, "tcp"], dump_err)
        deadline = time.time() + 10
        while "listening on" not in open(dump_err).read():
            if time.time() > deadline or dump.poll() is not None:
                raise Failure("tcpdump did not start: " + open(dump_err).read())
            time.sleep(0.05)
        lis, static, _ = self.listener("control")
        r = self.dial(f"{self.net.ip_b}:{PORT}", self.psk, [marker, marker * 50])
        expect(r.returncode == 0 and r.stdout.startswith("connected " + static),
               f"dial with the key connects and sees the listener's static key ({r.stdout.strip()})")
        out = rest_of(lis)
        expect(f"message {len(marker)} {marker}" in out and f"message {len(marker) * 50} " in out,
               "both messages arrive intact")
        expect("closed" in out, "the session ends with an orderly close")
        # IK to the same listener works too (dialer pins the listener's static key).
        lis, static, _ = self.listener("control-ik")
        r = self.dial(f"{self.net.ip_b}:{PORT}", self.psk, ["ik"], remote_static=static)
        expect(r.returncode == 0, f"IK dial with the listener's static key connects ({r.stdout.strip()})")
        expect("message 2 ik" in rest_of(lis), "IK message arrives")
        # Positive control for the capture: plain TCP bytes over the same link are visible.
        srv = self.net.spawn(self.net.ns_b, [sys.executable, "-c",
                             "import socket,sys;s=socket.socket();"
                             "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                             f"s.bind(('{self.net.ip_b}',{PORT + 10}));s.listen(1);print('ready',flush=True);"
                             "c,_=s.accept();c.recv(1000);c.close()"])
        read_line(srv, "ready")
        r = self.net.run(self.net.ns_a, [sys.executable, "-c",
                         f"import socket;s=socket.create_connection(('{self.net.ip_b}',{PORT + 10}));"
                         f"s.sendall(b'{control}');s.close()"])
        expect(r.returncode == 0, "plain TCP control message sent")
        rest_of(srv)
        # tcpdump may lag behind on a busy machine: wait until it has written the control
        # packet (everything of the mesh exchange went over the link before it).
        deadline = time.time() + 20
        while control.encode() not in open(pcap, "rb").read() and time.time() < deadline:
            time.sleep(0.1)
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
        data = open(pcap, "rb").read()
        expect(control.encode() in data, "the capture sees plaintext sent over plain TCP")
        expect(marker.encode() not in data, "the capture holds no plaintext of the mesh messages")

    def without_key(self) -> None:
        log("scenario: without the network key no handshake completes")
        wrong = secrets.token_hex(32)
        lis, static, err = self.listener("nokey", )
        r = self.dial(f"{self.net.ip_b}:{PORT}", wrong, ["should never arrive"])
        expect(r.returncode == 1 and "error mesh.handshake_refused" in r.stdout,
               f"XX dial without the key is refused ({r.stdout.strip()})")
        r = self.dial(f"{self.net.ip_b}:{PORT}", wrong, ["nor this"], remote_static=static)
        expect(r.returncode == 1 and "error mesh.handshake_refused" in r.stdout,
               f"IK dial without the key is refused ({r.stdout.strip()})")
        time.sleep(0.2)
        lis.kill()
        out = rest_of(lis)
        expect("session" not in out, "the listener never had a session")
        errors = open(err).read()
        expect(errors.count("bad mac1") == 2,
               "the listener dropped both at the mac1 check, before any DH")

    def tampered(self) -> None:
        log("scenario: a record tampered with in transit closes the session")
        lis, _, _ = self.listener("tamper")
        relay = self.relay("tamper", FIRST_RECORD + 1)
        r = self.dial(f"{self.net.ip_b}:{RELAY_PORT}", self.psk, ["one", "two", "three"])
        expect(r.returncode == 0, f"dial through the relay connects ({r.stdout.strip()})")
        out = rest_of(lis)
        expect("message 3 one" in out, "the record before the tampered one arrives")
        expect(re.search(r"^error mesh\.protocol: .*authentication failed", out, re.M) is not None,
               f"the tampered record closes the session with mesh.protocol ({out.strip()!r})")
        expect("message 3 two" not in out and "three" not in out, "nothing after it is delivered")
        relay.kill()

    def replayed(self) -> None:
        log("scenario: a replayed record closes the session")
        lis, _, _ = self.listener("replay")
        relay = self.relay("replay", FIRST_RECORD)
        r = self.dial(f"{self.net.ip_b}:{RELAY_PORT}", self.psk, ["one", "two"])
        expect(r.returncode == 0, f"dial through the relay connects ({r.stdout.strip()})")
        out = rest_of(lis)
        expect(out.count("message 3 one") == 1, "the original record is delivered once")
        expect(re.search(r"^error mesh\.protocol: .*replayed", out, re.M) is not None,
               f"the replay closes the session with mesh.protocol ({out.strip()!r})")
        relay.kill()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("--listen", required=True)
        ap.add_argument("--target", required=True)
        ap.add_argument("--mode", choices=["tamper", "replay"], required=True)
        ap.add_argument("--frame", type=int, required=True)
        a = ap.parse_args()
        return relay_main(a.listen, a.target, a.mode, a.frame)
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    a = ap.parse_args()
    tool = os.path.abspath(a.tool)
    if os.geteuid() != 0:
        log("FAIL: needs root to create network namespaces (this test is never skipped)")
        return 1
    net = Net()
    atexit.register(net.teardown)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))
    work = tempfile.mkdtemp(prefix=f"{net.tag}-")
    try:
        try:
            net.create()
        except Exception as e:  # noqa: BLE001 - any reason is a failure here
            log(f"FAIL: cannot create the network namespaces: {e}")
            return 1
        s = Scenarios(net, tool, work)
        s.control_and_capture()
        s.without_key()
        s.tampered()
        s.replayed()
        log("PASS")
        return 0
    except Failure as e:
        log(f"FAIL: {e} (logs in {work})")
        return 1
    finally:
        net.teardown()


if __name__ == "__main__":
    sys.exit(main())

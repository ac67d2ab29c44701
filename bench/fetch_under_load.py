#!/usr/bin/python3
"""One origin fetch through the lab's links, with 1, 2 or 4 ranged streams, alone and beside a
swarm-like load: does a single TCP flow fill a 100 Mbit/s link while the machine is busy?
(bench/README.md, "The origin fetch sets the swarm's pace".) As root:

    bench/fetch_under_load.py [--size-mib 256] [--rounds 2]

Hosts: an nginx origin and a fetching host at 100 Mbit/s, and 8 load hosts. Loads: none;
"swarm" (8 bulk TCP flows between the load hosts in a ring, and a busy loop); "swarm+upload"
(the same, and the fetching host uploading 2 bulk flows, as a seeding supernode does).
Prints the seconds of each fetch (curl to /dev/null)."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lab"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from lab import Lab  # noqa: E402
from scenarios import MIB, Nginx, make_file  # noqa: E402

# A bulk TCP flow: "srv IP" accepts and discards; "cli IP" sends zeros to IP until killed.
BULK = r'''
import socket, sys
role, ip = sys.argv[1], sys.argv[2]
if role == "srv":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, 9000)); s.listen(4)
    while True:
        c, _ = s.accept()
        while c.recv(1 << 20): pass
else:
    c = socket.create_connection((ip, 9000)); b = b"\0" * (1 << 20)
    while True: c.sendall(b)
'''


def fetch(host, url: str, size: int, streams: int) -> float:
    part = size // streams
    argv = [["ip", "netns", "exec", host.ns, "curl", "-sf", "-o", "/dev/null"]
            + (["-r", f"{i * part}-{size - 1 if i == streams - 1 else (i + 1) * part - 1}"]
               if streams > 1 else []) + [url] for i in range(streams)]
    t = time.monotonic()
    procs = [subprocess.Popen(a) for a in argv]
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("fetch_under_load: a curl failed")
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if a.size_mib < 1 or a.rounds < 1:
        ap.error("--size-mib and --rounds must be at least 1")
    size = a.size_mib * MIB
    with Lab() as lab:
        origin = lab.add_host("origin", "198.18.0.2", 100)
        fetcher = lab.add_host("fetch", "198.18.0.4", 100)
        load = [lab.add_host(f"l{i}", f"198.18.1.{i + 1}", 100) for i in range(8)]
        www = os.path.join(origin.dir, "www")
        os.makedirs(www)
        make_file(os.path.join(www, "blob"), size)
        Nginx(lab, origin, www)
        bulk = os.path.join(lab.dir, "bulk.py")
        with open(bulk, "w") as f:
            f.write(BULK)

        def run(host, *args):
            return subprocess.Popen(["ip", "netns", "exec", host.ns, sys.executable, bulk, *args])

        for name in ("none", "swarm", "swarm+upload"):
            procs = []
            try:
                if name != "none":
                    procs += [run(h, "srv", h.ip) for h in load]
                    time.sleep(1)
                    procs += [run(h, "cli", load[(i + 1) % 8].ip) for i, h in enumerate(load)]
                    procs.append(subprocess.Popen(["sh", "-c", "while :; do :; done"]))
                if name == "swarm+upload":
                    procs += [run(fetcher, "cli", load[0].ip), run(fetcher, "cli", load[4].ip)]
                time.sleep(2 if procs else 0)
                for r in range(a.rounds):
                    for streams in (1, 2, 4):
                        d = fetch(fetcher, "http://198.18.0.2/blob", size, streams)
                        print(f"load {name}: {streams} stream(s), round {r + 1}: {d:.1f} s",
                              flush=True)
            finally:
                for p in procs:
                    p.kill()
                for p in procs:
                    p.wait()


if __name__ == "__main__":
    main()

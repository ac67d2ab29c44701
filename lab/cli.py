"""lab.py commands:

  lab.py check --starling BIN [--peers 4] [--size-mib 64] [--rate-mbit 100] [--supernodes 1]
               [--fault none|kill9-peer|stop-peer|stop-supernode|partition|linkdown|
                        kill9-leader|kill9-seeder]
               [--timeout 480] [--budget 560] [--json FILE] [--keep]
      Starling only: one origin (nginx), one supernode (or a Raft cluster of --supernodes
      members, whose followers peers ask first, so a follower seeds), N peers; fails (exit 1)
      only on correctness: every output byte-identical, origin egress <= 1.05 x size, no peer
      asked the origin. Timing is printed, never judged. Used by tests/lab (CTest, LABELS
      integration). kill9-leader (with --supernodes 3) kills the Raft leader for good;
      kill9-seeder (with --supernodes 3) kills the seeder for good once the task is ready and
      peer1 is 90 % done; the pieces it sent to no peer come from the origin again, so the
      egress bound is then 1.05 x size + half a segment.

  lab/ha.py --starling BIN [--peers 8] [--size-mib 256] ...   (bench/ha.sh)
      The HA benchmark: baseline and leader-killed runs against a 3-member cluster.

  lab.py cleanup
      Removes what crashed runs left behind (namespaces, links, iptables rule, temp files).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys

from lab import HOST_QDISCS, Lab, cleanup_stale, percentile
from scenarios import MIB, World, run_starling, starling_correctness


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="lab.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="Starling correctness run")
    c.add_argument("--starling", required=True)
    c.add_argument("--peers", type=int, default=4)
    c.add_argument("--size-mib", type=int, default=64)
    c.add_argument("--rate-mbit", type=float, default=100.0)
    c.add_argument("--origin-mbit", type=float,
                   help="the origin's egress, Mbit/s [--rate-mbit]; e.g. a slow origin and "
                        "fast peers")
    c.add_argument("--supernode-mbit", type=float,
                   help="the supernode hosts' links, Mbit/s [--rate-mbit]; e.g. a supernode in "
                        "the data centre, peers on slower links")
    c.add_argument("--supernodes", type=int, default=1, help="cluster members [1]")
    c.add_argument("--fault", default="none",
                   choices=["none", "kill9-peer", "stop-peer", "stop-supernode", "partition",
                            "linkdown", "kill9-leader", "kill9-seeder"])
    c.add_argument("--timeout", type=float, default=480.0, help="download phase limit, s")
    c.add_argument("--budget", type=float, default=560.0,
                   help="hard limit for the whole run, s; then tear down and fail")
    c.add_argument("--host-qdisc", default="fifo", choices=HOST_QDISCS,
                   help="how a host's upload queues: one FIFO, or small packets first [fifo]")
    c.add_argument("--json")
    c.add_argument("--keep", action="store_true", help="keep the lab's files (logs)")
    sub.add_parser("cleanup", help="remove leftovers of crashed runs")
    a = ap.parse_args(argv)

    if a.cmd == "check":
        for flag, value in (("--peers", a.peers), ("--size-mib", a.size_mib),
                            ("--supernodes", a.supernodes), ("--rate-mbit", a.rate_mbit),
                            ("--origin-mbit", a.origin_mbit), ("--supernode-mbit", a.supernode_mbit),
                            ("--timeout", a.timeout), ("--budget", a.budget)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                c.error(f"{flag} must be a finite number greater than 0")
    if a.cmd == "cleanup":
        if os.geteuid() != 0:
            print("lab.py: needs root", file=sys.stderr)
            return 2
        n = cleanup_stale()
        print(f"removed leftovers of {len(n)} run(s)")
        return 0

    # Exit 77 (CTest SKIP_RETURN_CODE) when this machine cannot host a lab at all.
    if os.geteuid() != 0:
        print("lab.py check: SKIPPED: needs root (network namespaces, tc, iptables)")
        return 77
    for tool in ("ip", "tc", "iptables", "nginx", "unshare"):
        if shutil.which(tool) is None:
            print(f"lab.py check: SKIPPED: {tool} not found (scripts/deps.sh installs it)")
            return 77
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        print("lab.py check: SKIPPED: cannot create network namespaces here")
        return 77
    starling = os.path.abspath(a.starling)
    if not os.access(starling, os.X_OK):
        print(f"lab.py: {starling} is not an executable", file=sys.stderr)
        return 2
    try:
        with Lab(keep=a.keep, host_qdisc=a.host_qdisc) as lab:
            signal.alarm(int(a.budget))  # SIGALRM tears the lab down like Ctrl-C does
            try:
                world = World(lab, a.peers, a.size_mib * MIB, a.rate_mbit,
                              a.origin_mbit or a.rate_mbit,
                              tracker=False, supernodes=a.supernodes,
                              supernode_rate_mbit=a.supernode_mbit)
                r = run_starling(world, starling, a.timeout, fault=a.fault)
            except RuntimeError as e:
                lab.keep = True  # keep the logs of a failed run
                print(f"starling lab check: FAIL: {e}")
                return 1
            problems = starling_correctness(r)
            if problems:
                lab.keep = True
    except KeyboardInterrupt as e:
        print(f"starling lab check: FAIL: interrupted ({e}) - over the {a.budget:.0f} s budget "
              "or Ctrl-C; everything was removed")
        return 130
    finally:
        signal.alarm(0)
    times = ", ".join("-" if t is None else f"{t:.1f}" for t in r["times"])
    links = f"{a.rate_mbit:g} Mbit/s links"
    if a.origin_mbit:
        links += f", origin {a.origin_mbit:g}"
    if a.supernode_mbit:
        links += f", supernodes {a.supernode_mbit:g}"
    print(f"starling lab check: {a.peers} peers, {a.size_mib} MiB, {links}, "
          f"{a.supernodes} supernode(s)" + (f", fault {a.fault}" if a.fault != "none" else ""))
    print(f"  completion s: {times} (p50 {r['p50']:.1f}, p95 {r['p95']:.1f}; not judged)")
    print(f"  origin: {r['origin_http_bytes']} HTTP bytes = "
          f"{r['origin_http_bytes'] / r['size_bytes']:.3f} x file; requests: "
          + "; ".join(r["origin_requests"]))
    print(f"  from seed {r['from_seed_bytes'] / MIB:.1f} MiB (seeder {r['seeder_ip']}), from "
          f"peers {r['from_peers_bytes'] / MIB:.1f} MiB; CPU {r['cpu_per_gib']:.1f} s/GiB "
          f"(supernodes {r['supernode_cpu']:.1f} s, daemons {r['daemon_cpu']:.1f} s, gets "
          f"{r['get_cpu']:.1f} s); "
          f"longest stall {r['stall']['stall_s']:.2f} s")
    after = [t for t in r["after_last_byte_s"] if t is not None]
    if after:
        print(f"  after the last byte (the daemon's check, the copy into the output): "
              f"p50 {percentile(after, 50):.2f} s, max {max(after):.2f} s")
    for f in r["faults"]:
        print(f"  fault: {f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    if problems:
        for p in problems:
            print(f"  FAIL: {p}")
        return 1
    print("  OK: outputs identical, origin egress within 1.05 x"
          + (" + half a segment" if a.fault == "kill9-seeder" else "") + ", no back-to-source")
    return 0

#!/usr/bin/python3
"""The headline benchmark (issue 6): N peers on 100 Mbit/s links, origin egress 100 Mbit/s, one
file, all peers start together; in the same run (a) curl from the origin, (b) an aria2c +
opentracker BitTorrent swarm seeded from the origin host, (c) Starling. Writes a markdown table,
the raw JSON and a PNG plot to docs/bench/ and judges Starling against the issue's goals."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "lab"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from lab import HOST_QDISCS, Lab, log  # noqa: E402
from scenarios import (GIB, MIB, World, run_bittorrent, run_curl, run_starling,  # noqa: E402
                       starling_correctness)


def fmt(x, digits=1) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def judge(n: int, t1: float, res: dict) -> list[tuple[str, bool, str]]:
    s, a, b = res["starling"], res["curl"], res["bittorrent"]
    goals = []
    goals.append((f"Starling p95 <= 1.3 x one client at link speed ({1.3 * t1:.1f} s)",
                  s["p95"] <= 1.3 * t1, f"p95 {fmt(s['p95'])} s = {s['p95'] / t1:.2f} x {t1:.1f} s"))
    ratio = s["origin_http_bytes"] / s["size_bytes"]
    goals.append(("origin egress <= 1.05 x file size", ratio <= 1.05, f"{ratio:.3f} x"))
    speedup = a["p95"] / s["p95"] if s["p95"] == s["p95"] else float("nan")
    goals.append((f"faster than curl-from-origin by >= 0.8 x N = {0.8 * n:.1f} x (p95)",
                  speedup >= 0.8 * n, f"{speedup:.2f} x"))
    goals.append(("faster than BitTorrent (p95)", s["p95"] < b["p95"],
                  f"Starling {fmt(s['p95'])} s vs aria2c {fmt(b['p95'])} s"))
    return goals


def table(runs: list[dict]) -> str:
    out = ["| peers | system | p50 s | p95 s | max s | origin egress HTTP | origin egress wire "
           "| wire / file | CPU s per GiB delivered | all outputs identical |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for run in runs:
        for key in ("curl", "bittorrent", "starling"):
            r = run["results"][key]
            http = "n/a (BT seeder)" if r["origin_http_bytes"] is None else \
                f"{r['origin_http_bytes'] / MIB:.1f} MiB"
            out.append(f"| {r['peers']} | {r['system']} | {fmt(r['p50'])} | {fmt(r['p95'])} | "
                       f"{fmt(r['max'])} | {http} | {r['origin_wire_bytes'] / MIB:.1f} MiB | "
                       f"{r['origin_wire_bytes'] / r['size_bytes']:.2f} | "
                       f"{fmt(r['cpu_per_gib'])} | {'yes' if r['all_ok'] else 'NO'} |")
    return "\n".join(out)


def plot(runs: list[dict], png: str, workdir: str) -> bool:
    if shutil.which("gnuplot") is None:
        log("gnuplot not found: no plot (scripts/deps.sh installs gnuplot-nox)")
        return False
    dat = os.path.join(workdir, "headline.dat")
    with open(dat, "w") as f:
        for run in runs:
            for key, short in (("curl", "curl"), ("bittorrent", "aria2c"), ("starling", "Starling")):
                r = run["results"][key]
                vals = [0 if v != v else v for v in (r["p50"], r["p95"], r["max"])]
                f.write(f"\"{short} N={r['peers']}\" {vals[0]:.2f} {vals[1]:.2f} {vals[2]:.2f}\n")
    size = runs[0]["size_mib"]
    script = f"""set terminal png size 1000,520 font ",11"
set output "{png}"
set title "Per-peer completion time, {size} MiB, 100 Mbit/s links and origin egress (lower is better)"
set ylabel "seconds"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set grid ytics
set yrange [0:*]
set xtics rotate by -20
set xrange [-0.6:*]
plot "{dat}" using 2:xtic(1) title "p50", "" using 3 title "p95", "" using 4 title "max"
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr.strip()}")
        return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--peers", default="8,16", help="comma-separated peer counts [8,16]")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rate-mbit", type=float, default=100.0, help="host links [100]")
    ap.add_argument("--origin-mbit", type=float, default=100.0, help="origin egress [100]")
    ap.add_argument("--starling")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    ap.add_argument("--name", default="headline", help="output file stem [headline]")
    ap.add_argument("--host-qdisc", default="fifo", choices=HOST_QDISCS,
                    help="how a host's upload queues: one FIFO, or small packets first [fifo]")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--replot", metavar="JSON",
                    help="only rewrite NAME.md and NAME.png from a saved NAME.json")
    a = ap.parse_args()
    if a.replot:
        with open(a.replot) as f:
            runs = json.load(f)
        a.peers = ",".join(str(r["peers"]) for r in runs)
        a.size_mib = runs[0]["size_mib"]
        a.host_qdisc = runs[0].get("host_qdisc", "fifo")
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            write(a, runs, report(runs, a), plot(runs, os.path.join(a.out, f"{a.name}.png"), d))
        return 0
    if not a.starling:
        ap.error("--starling is required")
    counts = [int(x) for x in a.peers.split(",") if x]
    starling = os.path.abspath(a.starling)
    os.makedirs(a.out, exist_ok=True)
    runs = []
    failures = []
    try:
        for n in counts:
            with Lab(keep=a.keep, host_qdisc=a.host_qdisc) as lab:
                world = World(lab, n, a.size_mib * MIB, a.rate_mbit, a.origin_mbit)
                t1 = world.single_client_seconds()
                limit = 3 * n * t1 + 120
                res = {"curl": run_curl(world, limit),
                       "bittorrent": run_bittorrent(world, limit),
                       "starling": run_starling(world, starling, limit)}
                runs.append({"peers": n, "size_mib": a.size_mib, "t1": t1, "results": res,
                             "host_qdisc": a.host_qdisc})
                failures += [f"N={n}: {p}" for p in starling_correctness(res["starling"])]
                for k, r in res.items():
                    if not r["all_ok"]:
                        failures.append(f"N={n}: {r['system']}: not every peer got identical bytes")
                plot_dir = lab.dir
                text = report(runs, a)
                ok_plot = plot(runs, os.path.join(a.out, f"{a.name}.png"), plot_dir)
                write(a, runs, text, ok_plot)
    except KeyboardInterrupt:
        log("interrupted; the lab was torn down")
        return 130
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


def report(runs: list[dict], a) -> str:
    qdisc = a.host_qdisc
    qdisc_flag = "" if qdisc == "fifo" else f" --host-qdisc {qdisc}"
    links = ("tbf" if qdisc == "fifo" else
             "uploads: htb, small packets such as ACKs first; downloads: tbf")
    lines = [f"# Headline benchmark: {a.size_mib} MiB to N peers",
             "",
             f"Generated by `bench/headline.sh --peers {a.peers} --size-mib {a.size_mib}"
             f"{qdisc_flag}` on "
             f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} ({platform.node()}, "
             f"{os.cpu_count()} CPUs, kernel {platform.release()}). Host links "
             f"{a.rate_mbit:g} Mbit/s both ways ({links}), origin egress {a.origin_mbit:g} "
             "Mbit/s; "
             "every peer starts at the same moment; completion = start to the peer's file "
             "being complete. Origin egress HTTP = nginx `$bytes_sent`; wire = bytes the origin "
             "host's link sent during the phase (Ethernet/IP/TCP headers included, ~4.5% over "
             "payload). CPU = user+system seconds of every process of that system (clients, "
             "daemons, seeder/tracker or supernode, nginx) per GiB delivered to peers.",
             "", table(runs), ""]
    for run in runs:
        n, t1 = run["peers"], run["t1"]
        s = run["results"]["starling"]
        lines.append(f"## Goals (issue 6 item 3), N = {n}; one client at link speed: {t1:.1f} s")
        lines.append("")
        for goal, ok, val in judge(n, t1, run["results"]):
            lines.append(f"- {'MET' if ok else 'NOT MET'}: {goal}: {val}")
        lines.append(f"- Starling: origin requests: {'; '.join(s['origin_requests'])}; "
                     f"back-to-source requests from peers: {s['back_to_source']}; peers got "
                     f"{s['from_seed_bytes'] / MIB:.0f} MiB from the supernode's seed and "
                     f"{s['from_peers_bytes'] / MIB:.0f} MiB from each other")
        for key in ("curl", "bittorrent", "starling"):
            r = run["results"][key]
            ts = ", ".join(fmt(t) for t in r["times"])
            lines.append(f"- {r['system']} per-peer completion s: {ts}")
        lines.append("")
    return "\n".join(lines)


def write(a, runs, text, ok_plot) -> None:
    md = os.path.join(a.out, f"{a.name}.md")
    with open(md, "w") as f:
        f.write(text + (f"\n![completion times]({a.name}.png)\n" if ok_plot else ""))
    with open(os.path.join(a.out, f"{a.name}.json"), "w") as f:
        json.dump(runs, f, indent=1)
    print(text)
    print(f"\nwrote {md}" + (f", {a.name}.png" if ok_plot else "") + f", {a.name}.json")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""The HA benchmark (issue 6 item 4): the headline's Starling run (N peers on 100 Mbit/s links,
origin egress 100 Mbit/s, one file, every peer starting together) against a 3-member supernode
Raft cluster, twice in one lab: a baseline, then the same with the Raft leader killed (kill -9)
when the peers' mean progress crosses 50 %. Reports per-peer completion, the longest period
with no progress on any peer (both runs, so the kill's cost is a difference against a measured
baseline), the leader-change time (kill -> a new leader visible in `starling status`), and the
origin's requests and bytes (one fetch by the seeder, nothing from the peers).

Every peer's --supernode list starts with a follower, so a follower registers the task and
seeds it and the kill hits the control plane only (seeder failover is not implemented yet).

Writes docs/bench/NAME.md and prints it; exits 1 only on correctness (outputs differ, an
origin request beyond the seeder's one fetch, no new leader), never on time.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)

from lab import Lab, log  # noqa: E402
from scenarios import MIB, World, StarlingPhase, starling_correctness  # noqa: E402


class LeaderKill:
    """An on_tick for StarlingPhase.download(): kill -9 of member `leader`'s process once the
    mean progress reaches `at`; then POLLERS threads, started POLL_STAGGER s apart, ask the
    survivors for their status (`starling status --json`, one process per poll) until one of
    them says it leads. Every poll is kept as (asked at, answered at, saw a new leader), so the
    leader change is bracketed: after the last poll that started and saw none, by the first
    answer that named one. Times are time.time() seconds; the threads append under `mu`, the
    driver reads after join()."""

    POLLERS = 3
    POLL_STAGGER = 0.3

    def __init__(self, leader: int, at: float):
        self.leader, self.at = leader, at
        self.t_kill: float | None = None
        self.progress_at_kill = 0.0
        self.polls: list[tuple[float, float, tuple[int, int] | None]] = []
        self.mu = threading.Lock()
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []

    def __call__(self, ph: StarlingPhase, _tasks: list) -> None:
        if self.t_kill is not None or ph.mean_progress() < self.at:
            return
        self.progress_at_kill = ph.mean_progress()
        ph.lab.kill9(ph.supers[self.leader])
        self.t_kill = time.time()
        ph.faults.append(f"kill -9 of the leader, member {self.leader + 1} "
                         f"({ph.addrs[self.leader]}), at mean progress "
                         f"{self.progress_at_kill:.1%}")
        log(f"  fault: {ph.faults[-1]}")
        for k in range(self.POLLERS):
            t = threading.Thread(target=self._watch, args=(ph, k * self.POLL_STAGGER),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def _watch(self, ph: StarlingPhase, delay: float) -> None:
        survivors = [i for i in range(ph.n) if i != self.leader]
        if self.done.wait(delay):
            return
        while not self.done.is_set() and time.time() < self.t_kill + 60:
            t_ask = time.time()
            lead = ph.leader_of(ph.cluster_status(survivors, timeout=10))
            new = lead if lead and lead[0] != self.leader + 1 else None
            with self.mu:
                self.polls.append((t_ask, time.time(), new))
            if new:
                self.done.set()
                return
            time.sleep(0.05)

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=70)

    def result(self) -> dict:
        """new_leader/new_term, leader_change_s (kill -> the first answer naming the new
        leader), after_s (the latest start of a poll that saw no new leader), polls."""
        with self.mu:
            polls = sorted(self.polls, key=lambda p: p[1])
        seen = [p for p in polls if p[2]]
        out = {"new_leader": None, "new_term": None, "leader_change_s": None, "after_s": None,
               "polls": len(polls),
               "poll_mean_s": sum(p[1] - p[0] for p in polls) / len(polls) if polls else None}
        if seen and self.t_kill is not None:
            first = seen[0]
            before = [p[0] for p in polls if not p[2] and p[0] <= first[1]]
            out.update(new_leader=first[2][0], new_term=first[2][1],
                       leader_change_s=first[1] - self.t_kill,
                       after_s=max(before) - self.t_kill if before else 0.0)
        return out


def run_phase(world: World, starling: str, timeout: float, kill_at: float | None) -> dict:
    name = "leader killed" if kill_at is not None else "baseline"
    log(f"phase {name}: {len(world.supernodes)} supernodes, {len(world.peers)} peers")
    ph = StarlingPhase(world, starling, tag="kill-" if kill_at is not None else "base-")
    ph.start_supernodes()
    leader = ph.wait_leader()
    before = StarlingPhase.leader_of(ph.cluster_status()) or (leader + 1, 0)
    # Followers first (the first one registers the task and seeds it), the leader last.
    order = [i for i in range(ph.n) if i != leader] + [leader]
    log(f"  leader is member {leader + 1} (term {before[1]}); every peer asks "
        f"{', '.join(ph.addrs[i] for i in order)} in that order: member {order[0] + 1} seeds")
    ph.start_peers(order)
    killer = LeaderKill(leader, kill_at) if kill_at is not None else None
    ph.download(timeout, on_tick=killer)
    if killer is not None:
        killer.join()
    at = killer.t_kill - ph.t0 if killer is not None and killer.t_kill else None
    r = ph.finish()
    r["stall"], r["wire_stall"] = ph.stalls(at)
    r.update(name=name, leader=leader + 1, leader_term=before[1], seeder=order[0] + 1,
             seeder_address=ph.addrs[order[0]], members=ph.addrs)
    if killer is not None:
        r["kill"] = {"at_s": at, "progress": killer.progress_at_kill, **killer.result()}
        if r["kill"]["new_leader"] is not None:
            log(f"  new leader: member {r['kill']['new_leader']} (term {r['kill']['new_term']}),"
                f" visible {r['kill']['leader_change_s']:.2f} s after the kill")
    return r


def ha_problems(r: dict) -> list[str]:
    """starling_correctness() plus: exactly one origin request, by the seeder, for the whole
    file; a new leader after a kill."""
    problems = starling_correctness(r)
    entries = r["origin_entries"]
    if len(entries) != 1 or entries[0]["client"] != r["seeder_ip"] \
            or entries[0]["body_bytes"] != r["size_bytes"]:
        problems.append("expected one origin request, by the seeder "
                        f"{r['seeder_ip']}, for the whole file; got: "
                        + ("; ".join(r["origin_requests"]) or "none"))
    if "kill" in r and r["kill"]["at_s"] is None:
        problems.append("the leader was never killed (mean progress never reached the mark)")
    elif "kill" in r and r["kill"]["new_leader"] is None:
        problems.append("no new leader visible in status within 60 s of the kill")
    return problems


def fmt(x, digits=1) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def span(st: dict) -> str:
    return "–" if st["from_s"] is None else f"{st['from_s']:.1f}-{st['to_s']:.1f}"


def ratio(x, y) -> str:
    return "–" if not y or x != x or y != y else f"{x / y:.2f}"


def report(a, runs: list[dict], cmd: str) -> str:
    base, kill = runs[0], runs[-1]
    size = base["size_bytes"]
    lines = [f"# HA benchmark: the Raft leader killed at {a.kill_at:.0%}", "",
             f"Generated by `{cmd}` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} "
             f"({platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}).", "",
             f"The headline's Starling run — {base['peers']} peers, {a.rate_mbit:g} Mbit/s host "
             f"links both ways (tbf), origin egress {a.rate_mbit:g} Mbit/s, a "
             f"{size / MIB:.0f} MiB file, every peer starting together — against a cluster "
             f"of {len(base['members'])} supernodes (hosts sn1..sn{len(base['members'])}, "
             "`starling supernode --id N --members 1=...,2=...,3=...`), twice in one lab: a "
             "**baseline**, then the same with the Raft leader's process killed (`kill -9`) "
             f"when the peers' mean progress crosses {a.kill_at:.0%}. Each run starts a fresh "
             "cluster, waits until `starling status` shows a leader that every member "
             "follows, and gives every peer `--supernode FOLLOWER,OTHER-FOLLOWER,LEADER`: the "
             "member a peer asks first registers the task, fetches it from the origin and "
             "seeds it, so **the seeder is a follower and the kill measures control-plane "
             "failover** (the leader's death, a new election, forwarded writes and reads "
             "moving to the new leader; announces go to every member). The seeder's own death "
             "is not measured here: one killed while it fetches is taken over by another member "
             "(`SeederFailoverTest`); one that dies after the task is ready is replaced by the "
             "leader, which re-seeds the task from the swarm or the origin (`ReadySeederTest`).", "",
             "| run | p50 s | p95 s | max s | stall (API) s | stall (link) s | origin requests "
             "| origin bytes | back-to-source | outputs identical |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        lines.append(
            f"| {r['name']} | {fmt(r['p50'])} | {fmt(r['p95'])} | {fmt(r['max'])} | "
            f"{fmt(r['stall']['stall_s'], 2)} | {fmt(r['wire_stall']['stall_s'], 2)} | "
            f"{len(r['origin_entries'])} | {r['origin_http_bytes']:,} "
            f"({r['origin_http_bytes'] / size:.3f} x) | {r['back_to_source']} | "
            f"{'yes' if r['all_ok'] else 'NO'} |")
    k = kill.get("kill", {})
    ds = kill["stall"]["stall_s"] - base["stall"]["stall_s"]
    lines += ["", "## The kill", ""]
    if k.get("at_s") is not None:
        lines.append(f"- Leader: member {kill['leader']} ({kill['members'][kill['leader'] - 1]}, "
                     f"term {kill['leader_term']}); seeder: member {kill['seeder']} "
                     f"({kill['seeder_address']}, a follower). Killed at t = {k['at_s']:.1f} s "
                     f"after the gets started, mean progress {k['progress']:.1%}.")
    if k.get("leader_change_s") is not None:
        lines.append(f"- Leader change: member {k['new_leader']} leads (term {k['new_term']}) "
                     f"in `starling status` {k['leader_change_s']:.2f} s after the kill; a "
                     f"poll started {k['after_s']:.2f} s after the kill still saw no leader "
                     f"({k['polls']} status polls of the survivors by three staggered "
                     f"pollers; one poll took {k['poll_mean_s']:.2f} s on average).")
    else:
        lines.append("- Leader change: NO new leader visible in status within 60 s.")
    gap = kill["stall"].get("at_gap_s")
    lines.append(
        f"- Longest stall (no peer's `done_bytes` grew): {fmt(kill['stall']['stall_s'], 2)} s "
        f"with the kill vs {fmt(base['stall']['stall_s'], 2)} s in the baseline "
        f"({ds:+.2f} s, {ratio(kill['stall']['stall_s'], base['stall']['stall_s'])} x; "
        f"t = {span(kill['stall'])} s and {span(base['stall'])} s after the gets started)"
        + (f"; the no-progress gap spanning the kill: {gap:.2f} s" if gap is not None else "")
        + ".")
    lines.append(
        "- The same from the link counters (no peer's link delivered 64 KiB in a sample "
        "interval; same window): "
        f"{fmt(kill['wire_stall']['stall_s'], 2)} s vs {fmt(base['wire_stall']['stall_s'], 2)} s"
        + (f"; gap spanning the kill {kill['wire_stall']['at_gap_s']:.2f} s"
           if kill["wire_stall"].get("at_gap_s") is not None else "") + ".")
    lines.append(f"- Completion p95 {fmt(kill['p95'])} s vs {fmt(base['p95'])} s "
                 f"({kill['p95'] - base['p95']:+.1f} s).")
    for r in runs:
        lines.append(f"- {r['name']}: origin requests: {'; '.join(r['origin_requests'])}; "
                     f"back-to-source requests from peers: {r['back_to_source']}; peers got "
                     f"{r['from_seed_bytes'] / MIB:.0f} MiB from the seed and "
                     f"{r['from_peers_bytes'] / MIB:.0f} MiB from each other; per-peer "
                     f"completion s: {', '.join(fmt(t) for t in r['times'])}")
    lines += ["", "## How it is measured", "",
              "- Completion: from the moment every peer's `starling get` started to its exit "
              "(0, output verified against the origin file's SHA-256 afterwards).",
              f"- Progress: every ~{SAMPLE_MS} ms (measured mean period "
              f"{fmt(base['sample_period_s'] * 1000, 0)} ms / "
              f"{fmt(kill['sample_period_s'] * 1000, 0)} ms) the harness reads every peer's "
              "local API (`GET /v1/tasks` on its unix socket: `done_bytes`, verified bytes on "
              "disk, refreshed by the daemon every 200 ms) and the bytes its link delivered "
              "(the bridge-side veth's tx counter). **Stall** = the longest interval between "
              "two samples at which some peer's `done_bytes` grew, from the first byte any "
              "peer got to the last peer completing (the wait for the seeder's origin fetch, "
              "before any peer has a byte, is not a stall). The sampling and the daemon's "
              "200 ms refresh make ~0.3-0.5 s the floor of this figure even without faults: "
              "that is why the baseline is measured in the same run.",
              "- Leader change: after the kill three threads, started 0.3 s apart, each run "
              "`starling status --json` (from an idle admin host) against the survivors in a "
              "loop until one of them reports `\"state\": \"leader\"`; the figure is the "
              "first answer naming the new leader, bracketed below by the last poll that "
              "started and saw none. A `starling status` run (a new process, an admin "
              "certificate, a handshake per member) takes about a second on this loaded VM.",
              "- Origin: nginx's access log (`$remote_addr`, `$bytes_sent`); back-to-source = "
              "a request from any host that is not a supernode; the run is correct only with "
              "exactly one request, from the seeder, for the whole file.",
              f"- One {os.cpu_count()}-CPU VM hosts every process ({len(base['members'])} "
              f"supernodes, {base['peers']} peer daemons, nginx); "
              "other builds may run beside it, so times move between runs; the baseline and "
              "the kill run are back to back in the same lab.", ""]
    return "\n".join(lines)


SAMPLE_MS = 150


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ha.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starling", required=True)
    ap.add_argument("--peers", type=int, default=8)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rate-mbit", type=float, default=100.0, help="host links and origin [100]")
    ap.add_argument("--supernodes", type=int, default=3)
    ap.add_argument("--kill-at", type=float, default=0.5, help="mean progress of the kill [0.5]")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    ap.add_argument("--name", default="ha", help="output file stem [ha]")
    ap.add_argument("--budget", type=float, default=900.0,
                    help="hard limit for the whole run, s; then tear down and fail [900]")
    ap.add_argument("--keep", action="store_true", help="keep the lab's files (logs)")
    a = ap.parse_args(argv)
    if a.supernodes < 3:
        ap.error("--supernodes must be at least 3 (a majority must survive the kill)")
    starling = os.path.abspath(a.starling)
    cmd = "bench/ha.sh" + "".join(
        f" --{k} {v}" for k, v, d in (("peers", a.peers, 8), ("size-mib", a.size_mib, 256),
                                      ("supernodes", a.supernodes, 3)) if v != d)
    problems: list[str] = []
    try:
        with Lab(keep=a.keep) as lab:
            signal.alarm(int(a.budget))  # SIGALRM tears the lab down like Ctrl-C does
            world = World(lab, a.peers, a.size_mib * MIB, a.rate_mbit, a.rate_mbit,
                          tracker=False, supernodes=a.supernodes)
            t1 = world.single_client_seconds()
            limit = 8 * t1 + 90
            try:
                runs = [run_phase(world, starling, limit, None),
                        run_phase(world, starling, limit, a.kill_at)]
            except RuntimeError as e:
                lab.keep = True
                print(f"ha: FAIL: {e}")
                return 1
            for r in runs:
                problems += [f"{r['name']}: {p}" for p in ha_problems(r)]
            if problems:
                lab.keep = True
    except KeyboardInterrupt as e:
        print(f"ha: FAIL: interrupted ({e}) - over the {a.budget:.0f} s budget or Ctrl-C; "
              "everything was removed")
        return 130
    finally:
        signal.alarm(0)
    text = report(a, runs, cmd)
    if problems:
        text += "\n## Correctness FAILURES\n\n" + "\n".join(f"- {p}" for p in problems) + "\n"
    os.makedirs(a.out, exist_ok=True)
    md = os.path.join(a.out, f"{a.name}.md")
    with open(md, "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {md}")
    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

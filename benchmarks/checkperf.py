"""`etcdctl check perf` against a fresh 3-member raftkv cluster and a fresh 3-member etcd.

Usage: python -m benchmarks.checkperf [--load l] [--cluster raftkv,etcd]
                                      [--generator etcdctl|bench] [--seconds 60]

Each cluster starts with fresh data directories on the same disk (fsync on); etcdctl gets
all three endpoints, as an operator would give them. Prints etcdctl's verdict for each
cluster and the CPU used by etcdctl and by each member while it ran (about 60 s per
cluster: check perf's duration is fixed). `benchmarks.checkperf_ceiling` runs the same
check against endpoints that do nothing, for the ceiling of this machine.

``--generator bench`` offers the same load with `raftkv bench` instead of etcdctl: check
perf's rate cap and client count for the load, 256-byte keys under its prefix, 1 KiB
values, connections spread over all endpoints, and check perf's verdict rules (throughput
above 90% of the cap, slowest call at most 0.5 s, standard deviation at most 0.1 s, no
errors). It separates what the cluster can serve from what etcdctl's generator reaches
on the same cores (see the README's "etcdctl check perf" notes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.harness import Cluster

from benchmarks.cluster_bench import cpu_seconds
from raftkv._native import run_bench

# etcdctl's check perf loads: write rate cap and concurrent clients (60 s each)
LOADS = {"s": (150, 50), "m": (1000, 200), "l": (8000, 500), "xl": (15000, 1000)}
MAX_CONNS = 1024  # raftkv bench's limit; etcdctl's clients balance over every endpoint


@dataclass
class CheckPerf:
    """One `etcdctl check perf` run."""

    returncode: int
    verdict: list[str]  # etcdctl's PASS/FAIL lines
    output: str
    seconds: float
    etcdctl_cpu_s: float


def run_check_perf(endpoints: str, load: str) -> CheckPerf:
    """Run `etcdctl check perf` against ``endpoints`` (comma-separated) until it exits
    (blocking: about 60 s), sampling its CPU use while it runs."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["etcdctl", f"--endpoints={endpoints}", "check", "perf", f"--load={load}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, ETCDCTL_API="3"),
    )
    ctl_cpu = 0.0
    while proc.poll() is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            ctl_cpu = cpu_seconds(proc.pid)  # until it is reaped
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.5)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    verdict = [
        ln.strip()
        for ln in output.splitlines()
        if ln.startswith(("PASS", "FAIL", "Slowest", "Stddev"))
    ]
    return CheckPerf(proc.returncode, verdict, output, time.monotonic() - started, ctl_cpu)


def check(kind: str, load: str, base: Path) -> bool:
    cluster = Cluster(base / kind, kind, heartbeat_ms=100, election_ms=1000)
    cluster.start()
    try:
        pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
        before = [cpu_seconds(p) for p in pids]
        run = run_check_perf(cluster.endpoints, load)
        members = [(cpu_seconds(p) - b) / run.seconds for p, b in zip(pids, before, strict=True)]
    finally:
        cluster.stop()
    print(f"{kind}: etcdctl check perf --load={load}")
    print("  " + ("\n  ".join(run.verdict) if run.verdict else run.output[-2000:]))
    print(
        f"  cpu: etcdctl {run.etcdctl_cpu_s / run.seconds:.2f} cores, members "
        + " ".join(f"{c:.2f}" for c in members)
        + f" cores (sum {sum(members):.2f})",
        flush=True,
    )
    return run.returncode == 0


def verdict(
    ops_per_s: float, limit: int, slowest_s: float, stddev_s: float, errors: int
) -> list[str]:
    """check perf's pass rules applied to one run's figures."""
    lines = [f"FAIL: {errors} calls failed"] if errors else []
    lines.append(
        f"PASS: Throughput is {int(ops_per_s) + 1} writes/s"
        if ops_per_s / limit > 0.9
        else f"FAIL: Throughput too low: {int(ops_per_s) + 1} writes/s"
    )
    lines.append(
        f"PASS: Slowest request took {slowest_s:f}s"
        if slowest_s <= 0.5
        else f"FAIL: Slowest request took too long: {slowest_s:f}s"
    )
    lines.append(
        f"PASS: Stddev is {stddev_s:f}s"
        if stddev_s <= 0.1
        else f"FAIL: Stddev too high: {stddev_s:f}s"
    )
    lines.append("FAIL" if any(ln.startswith("FAIL") for ln in lines) else "PASS")
    return lines


def bench_check(kind: str, load: str, base: Path, seconds: float) -> bool:
    limit, clients = LOADS[load]
    cluster = Cluster(base / kind, kind, heartbeat_ms=100, election_ms=1000)
    cluster.start()
    try:
        pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
        endpoints = [n.endpoint for n in cluster.nodes]
        conns = min(MAX_CONNS, clients * len(endpoints))
        report = run_bench(
            endpoints,
            conns=conns,
            clients=clients,
            total=int(limit * seconds * 2),
            duration=seconds,
            key_size=256,
            value_size=1024,
            key_space=1 << 40,  # check perf's keys are random 63-bit numbers: all distinct
            key_prefix="/etcdctl-check-perf/",
            rate=limit,
            server_pids=pids,
        )
    finally:
        cluster.stop()
    lat = report["latency_ms"]
    lines = verdict(
        report["ops_per_s"], limit, lat["max"] / 1000, lat["stddev"] / 1000, report["errors"]
    )
    print(
        f"{kind}: raftkv bench with check perf's --load={load} ({clients} clients, "
        f"{limit:,}/s cap, {conns} connections, {seconds:.0f} s)"
    )
    print("  " + "\n  ".join(lines))
    servers = [s["cores"] or 0.0 for s in report["servers"]]
    print(
        f"  cpu: generator {report['cpu']['cores']:.2f} cores, members "
        + " ".join(f"{c:.2f}" for c in servers)
        + f" cores (sum {sum(servers):.2f}); latency ms p50 {lat['p50']:.2f} "
        f"p99 {lat['p99']:.2f} max {lat['max']:.2f}",
        flush=True,
    )
    return lines[-1] == "PASS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="l", choices=list(LOADS))
    parser.add_argument("--cluster", default="raftkv,etcd", help="raftkv, etcd or both")
    parser.add_argument(
        "--generator",
        default="etcdctl",
        choices=["etcdctl", "bench"],
        help="etcdctl check perf (default), or raftkv bench offering the same load",
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="with --generator bench (default: 60)"
    )
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.cluster.split(",") if k.strip()]
    if not kinds or set(kinds) - {"raftkv", "etcd"}:
        parser.error("--cluster takes raftkv, etcd or raftkv,etcd")
    if args.generator == "bench":
        with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="checkperf-") as tmp:
            ok = [bench_check(kind, args.load, Path(tmp), args.seconds) for kind in kinds]
        return 0 if all(ok) else 1
    if shutil.which("etcdctl") is None:
        print("etcdctl not found (apt-get install etcd-client)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="checkperf-") as tmp:
        results = {kind: check(kind, args.load, Path(tmp)) for kind in kinds}
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

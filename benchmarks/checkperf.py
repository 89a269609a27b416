"""`etcdctl check perf` against a fresh 3-member raftkv cluster and a fresh 3-member etcd.

Usage: python -m benchmarks.checkperf [--load l] [--cluster raftkv,etcd]

Each cluster starts with fresh data directories on the same disk (fsync on); etcdctl gets
all three endpoints, as an operator would give them. Prints etcdctl's verdict for each
cluster and the CPU used by etcdctl and by each member while it ran (about 60 s per
cluster: check perf's duration is fixed). `benchmarks.checkperf_ceiling` runs the same
check against endpoints that do nothing, for the ceiling of this machine.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="l", choices=["s", "m", "l", "xl"])
    parser.add_argument("--cluster", default="raftkv,etcd", help="raftkv, etcd or both")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.cluster.split(",") if k.strip()]
    if not kinds or set(kinds) - {"raftkv", "etcd"}:
        parser.error("--cluster takes raftkv, etcd or raftkv,etcd")
    if shutil.which("etcdctl") is None:
        print("etcdctl not found (apt-get install etcd-client)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="checkperf-") as tmp:
        results = {kind: check(kind, args.load, Path(tmp)) for kind in kinds}
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

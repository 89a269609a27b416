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
from pathlib import Path

from tests.cluster.harness import Cluster

from benchmarks.cluster_bench import cpu_seconds


def check(kind: str, load: str, base: Path) -> bool:
    cluster = Cluster(base / kind, kind, heartbeat_ms=100, election_ms=1000)
    cluster.start()
    try:
        pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
        before = [cpu_seconds(p) for p in pids]
        started = time.monotonic()
        proc = subprocess.Popen(
            ["etcdctl", f"--endpoints={cluster.endpoints}", "check", "perf", f"--load={load}"],
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
        elapsed = time.monotonic() - started
        members = [(cpu_seconds(p) - b) / elapsed for p, b in zip(pids, before, strict=True)]
    finally:
        cluster.stop()
    verdict = [
        ln.strip() for ln in output.splitlines() if ln.startswith(("PASS", "FAIL", "Slowest"))
    ]
    print(f"{kind}: etcdctl check perf --load={load}")
    print("  " + ("\n  ".join(verdict) if verdict else output[-2000:]))
    print(
        f"  cpu: etcdctl {ctl_cpu / elapsed:.2f} cores, members "
        + " ".join(f"{c:.2f}" for c in members)
        + f" cores (sum {sum(members):.2f})",
        flush=True,
    )
    return proc.returncode == 0


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

"""Side-by-side cluster benchmark: 3-member raftkv against 3-member etcd on this machine.

Both clusters run with fresh data directories on the same disk, fsync on; the native load
generator (``raftkv bench``) drives each with identical parameters, interleaved (raftkv,
etcd, raftkv, etcd, ...) for several rounds; the best round of each is reported with the
ratio raftkv/etcd. Prints one table, saves JSON and a PNG chart of throughput against
concurrency.

Usage:
    python -m benchmarks.cluster_bench [--rounds 3] [--seconds 10] [--out bench-results]
    python -m benchmarks.cluster_bench --smoke       # about 10 seconds of load in all
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.harness import Cluster

from raftkv._native import run_bench


@dataclass(frozen=True)
class Workload:
    name: str
    workload: str
    clients: int
    consistency: str = "l"

    @property
    def conns(self) -> int:
        return max(1, min(self.clients // 32, 16))


FULL = [
    Workload("put c=1", "put", 1),
    Workload("put c=64", "put", 64),
    Workload("put c=256", "put", 256),
    Workload("put c=1024", "put", 1024),
    Workload("range-l c=256", "range", 256, "l"),
    Workload("range-s c=256", "range", 256, "s"),
    Workload("mix 90r/10p c=256", "range:90,put:10", 256),
]
SMOKE = [Workload("put c=256", "put", 256), Workload("range-s c=256", "range", 256, "s")]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(cluster: Cluster, w: Workload, seconds: float) -> dict[str, Any]:
    pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
    before = [cpu_seconds(p) for p in pids]
    report = run_bench(
        endpoints=[n.endpoint for n in cluster.nodes],
        conns=w.conns,
        clients=w.clients,
        duration=seconds,
        total=10_000_000,
        key_size=8,
        value_size=256,
        key_space=100_000,
        workload=w.workload,
        consistency=w.consistency,
        warmup=min(1.0, seconds / 5),
    )
    after = [cpu_seconds(p) for p in pids]
    elapsed = float(report["elapsed_s"])
    ok = max(int(report["ok"]), 1)
    member_cpu = [(a - b) for a, b in zip(after, before, strict=True)]
    return {
        "ops_per_s": float(report["ops_per_s"]),
        "errors": int(report["errors"]),
        "p50_ms": float(report["latency_ms"]["p50"]),
        "p99_ms": float(report["latency_ms"]["p99"]),
        "member_cpu_cores": [c / elapsed for c in member_cpu],
        "server_us_per_op": sum(member_cpu) / ok * 1e6,
        "loadgen_us_per_op": float(report["cpu"]["us_per_op"]),
    }


def run(workloads: list[Workload], rounds: int, seconds: float, out: Path) -> dict[str, Any]:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        w.name: {"raftkv": [], "etcd": []} for w in workloads
    }
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix="cluster-bench-") as tmp:
        clusters = {
            "raftkv": Cluster(Path(tmp) / "raftkv", "raftkv", heartbeat_ms=100, election_ms=1000),
            "etcd": Cluster(Path(tmp) / "etcd", "etcd", heartbeat_ms=100, election_ms=1000),
        }
        try:
            for c in clusters.values():
                c.start()
            for r in range(rounds):
                for w in workloads:
                    for kind in ("raftkv", "etcd"):
                        res = drive(clusters[kind], w, seconds)
                        results[w.name][kind].append(res)
                        print(
                            f"round {r + 1}/{rounds} {w.name:<20} {kind:<7} "
                            f"{res['ops_per_s']:>10,.0f} ops/s  p50 {res['p50_ms']:.2f} ms",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for c in clusters.values():
                c.stop()
    summary = summarize(workloads, results)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"cluster-bench-{stamp}.json").write_text(
        json.dumps({"summary": summary, "rounds": results}, indent=2)
    )
    chart(summary, out / f"cluster-bench-{stamp}.png")
    return summary


def summarize(
    workloads: list[Workload], results: dict[str, dict[str, list[dict[str, Any]]]]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for w in workloads:
        best = {k: max(v, key=lambda r: r["ops_per_s"]) for k, v in results[w.name].items()}
        ratio = best["raftkv"]["ops_per_s"] / max(best["etcd"]["ops_per_s"], 1e-9)
        summary[w.name] = {"clients": w.clients, **best, "ratio": ratio}
    print_table(summary)
    return summary


def print_table(summary: dict[str, Any]) -> None:
    head = (
        f"{'workload':<20} {'system':<7} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'member CPU (cores)':>22} {'srv us/op':>9} {'gen us/op':>9} {'ratio':>7}"
    )
    print(head)
    print("-" * len(head))
    for name, row in summary.items():
        for kind in ("raftkv", "etcd"):
            r = row[kind]
            cpu = "/".join(f"{c:.2f}" for c in r["member_cpu_cores"])
            ratio = f"{row['ratio']:.2f}x" if kind == "raftkv" else ""
            print(
                f"{name:<20} {kind:<7} {r['ops_per_s']:>10,.0f} {r['p50_ms']:>8.2f} "
                f"{r['p99_ms']:>8.2f} {cpu:>22} {r['server_us_per_op']:>9.0f} "
                f"{r['loadgen_us_per_op']:>9.1f} {ratio:>7}"
            )


def chart(summary: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return
    puts = sorted((row["clients"], row) for name, row in summary.items() if name.startswith("put"))
    if not puts:
        return
    xs = [c for c, _ in puts]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind in ("raftkv", "etcd"):
        ax.plot(xs, [row[kind]["ops_per_s"] for _, row in puts], marker="o", label=kind)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("durable puts/s (3 members)")
    ax.set_title("Puts of 256-byte values: raftkv vs etcd 3.4, same machine")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"chart: {path}", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--out", default="bench-results")
    p.add_argument("--smoke", action="store_true", help="two workloads, one round, 2.5 s each")
    p.add_argument("--only", help="comma-separated workload names to run, e.g. 'put c=1,put c=256'")
    args = p.parse_args()
    if args.smoke:
        run(SMOKE, 1, 2.5, Path(args.out))
        return
    workloads = FULL
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        unknown = set(wanted) - {w.name for w in FULL}
        if unknown:
            p.error(f"unknown workloads {sorted(unknown)}; known: {[w.name for w in FULL]}")
        workloads = [w for w in FULL if w.name in wanted]
    run(workloads, args.rounds, args.seconds, Path(args.out))


if __name__ == "__main__":
    main()

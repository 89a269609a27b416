"""Resident memory of a 3-member raftkv cluster after a put load (issue 6: under 300 MiB per
member after 1,000,000 puts over 100,000 keys).

Starts a fresh 3-member cluster, drives it with the native load generator (8-byte keys
uniform over ``--key-space``, 256-byte values, ``--clients`` in flight), then reads each
member's VmRSS and VmHWM from /proc and prints them with the throughput seen. Each member
also writes its own breakdown (RocksDB memtables, key index size, WAL bounds, glibc heap)
next to its log, through ``RAFTKV_MEMORY_REPORT`` (see ``raftkv.server.memreport``).

Usage:
    python -m benchmarks.memory_bench                    # 1,000,000 puts, 256 clients
    python -m benchmarks.memory_bench --smoke            # 50,000 puts
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.cluster.harness import Cluster

from raftkv._native import run_bench
from raftkv.server.memreport import ENV_REPORT

LIMIT_MIB = 300


def status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[name] = int(rest.split()[0])
    return out


def wait_report(path: Path, pid: int) -> dict[str, Any] | None:
    """Ask a member for its memory report (SIGUSR1) and read it back (bounded wait)."""
    os.kill(pid, signal.SIGUSR1)
    for _ in range(100):  # the member renames the finished file into place: poll, 5 s at most
        if path.exists():
            doc: dict[str, Any] = json.loads(path.read_text())
            return doc
        time.sleep(0.05)
    return None


def run(
    total: int, clients: int, key_space: int, range_seconds: float, keep: Path | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=keep or Path.cwd(), prefix="memory-bench-") as tmp:
        base = Path(tmp)
        os.environ[ENV_REPORT] = str(base / "report-{pid}.json")
        cluster = Cluster(base / "raftkv", "raftkv", heartbeat_ms=100, election_ms=1000)
        try:
            cluster.start()
            pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
            start = {p: status_kib(p)["VmRSS"] for p in pids}
            load: dict[str, Any] = {
                "endpoints": [n.endpoint for n in cluster.nodes],
                "conns": max(1, min(clients // 32, 16)),
                "clients": clients,
                "key_size": 8,
                "value_size": 256,
                "key_space": key_space,
            }
            report = run_bench(**load, total=total, workload="put")
            ranges: dict[str, Any] | None = None
            if range_seconds > 0:
                # Reads fill RocksDB's block cache: RSS after puts and then reads.
                before = {p: status_kib(p)["VmRSS"] for p in pids}
                rr = run_bench(
                    **load,
                    duration=range_seconds,
                    workload="range",
                    consistency="s",
                    server_pids=pids,
                )
                ranges = {
                    "ops_per_s": float(rr["ops_per_s"]),
                    "rss_before_mib": [before[p] / 1024 for p in pids],
                    "errors": int(rr["errors"]),
                    "server_cpu_s": [float(x["cpu_s"] or 0.0) for x in rr["servers"]],
                    "ok": int(rr["ok"]),
                }
            members = []
            for p in pids:
                st = status_kib(p)
                rep = wait_report(base / f"report-{p}.json", p)
                members.append(
                    {
                        "pid": p,
                        "rss_start_mib": start[p] / 1024,
                        "rss_mib": st["VmRSS"] / 1024,
                        "hwm_mib": st["VmHWM"] / 1024,
                        "anon_mib": st["RssAnon"] / 1024,
                        "breakdown": rep,
                    }
                )
        finally:
            cluster.stop()
            os.environ.pop(ENV_REPORT, None)
    return {
        "puts": int(report["ok"]),
        "errors": int(report["errors"]),
        "ops_per_s": float(report["ops_per_s"]),
        "clients": clients,
        "key_space": key_space,
        "members": members,
        "ranges": ranges,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--total", type=int, default=1_000_000, help="puts to make")
    p.add_argument("--clients", type=int, default=256)
    p.add_argument("--key-space", type=int, default=100_000)
    p.add_argument(
        "--ranges", type=float, default=0.0, help="then this many seconds of serializable ranges"
    )
    p.add_argument("--smoke", action="store_true", help="50,000 puts")
    p.add_argument("--json", help="also write the results (with breakdowns) here")
    args = p.parse_args()
    total = 50_000 if args.smoke else args.total
    res = run(total, args.clients, args.key_space, args.ranges, None)
    print(
        f"{res['puts']:,} puts ({res['errors']} failed) over {res['key_space']:,} keys, "
        f"{res['clients']} clients: {res['ops_per_s']:,.0f} puts/s"
    )
    if res["ranges"]:
        r = res["ranges"]
        before = ", ".join(f"{x:.1f}" for x in r["rss_before_mib"])
        print(
            f"then {args.ranges:.0f} s of serializable ranges: {r['ops_per_s']:,.0f} ranges/s, "
            f"{sum(r['server_cpu_s']) / max(r['ok'], 1) * 1e6:.1f} us server CPU per range "
            f"(RSS before them: {before} MiB)"
        )
    print(f"{'member pid':>10} {'RSS start':>10} {'RSS':>9} {'peak':>9}  (MiB)")
    for m in res["members"]:
        print(
            f"{m['pid']:>10} {m['rss_start_mib']:>10.1f} {m['rss_mib']:>9.1f} {m['hwm_mib']:>9.1f}"
        )
        b = m["breakdown"]
        if b:
            store, log = b.get("store", {}), b.get("raft_log", {})
            heap = b.get("malloc", {})
            print(
                f"{'':>10} memtables {store.get('rocksdb.cur-size-all-mem-tables', 0) / 2**20:.1f}"
                f", index {store.get('index_keys', 0):,} keys / "
                f"{store.get('index_revisions', 0):,} revisions, log window "
                f"{log.get('window_bytes', 0) / 2**20:.1f}, WAL entries "
                f"{log.get('wal_last', 0) - log.get('wal_first', 1) + 1:,}, malloc in use "
                f"{heap.get('in_use_bytes', 0) / 2**20:.1f} + free held "
                f"{heap.get('free_held_bytes', 0) / 2**20:.1f}"
            )
    worst = max(m["rss_mib"] for m in res["members"])
    verdict = "under" if worst < LIMIT_MIB else "OVER"
    print(f"largest member RSS {worst:.1f} MiB: {verdict} the {LIMIT_MIB} MiB target")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    sys.exit(0 if res["errors"] == 0 else 1)


if __name__ == "__main__":
    main()

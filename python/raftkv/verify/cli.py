"""``raftkv verify``: record a client history under faults and check it.

Against any etcd-compatible endpoints (``--endpoints``: clients plus the nemeses that work over
the API: leadership transfer and compaction), or against a raftkv or etcd cluster it starts
itself in network namespaces (``--cluster``: every nemesis; needs root). Exits 1 when a run
finds an anomaly, 2 when a run cannot be carried out.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raftkv.verify.runner import RunResult


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="Jepsen-style robustness check: clients, faults, linearizability checker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoints", help="comma-separated host:port of a running cluster")
    where.add_argument(
        "--cluster", choices=["raftkv", "etcd"], help="start this cluster in network namespaces"
    )
    where.add_argument(
        "--list", action="store_true", help="list the scenarios and what they exercise"
    )
    where.add_argument(
        "--cleanup",
        action="store_true",
        help="delete network namespaces and bridges left by runs that died",
    )
    p.add_argument(
        "--scenario", default="mixed", help="scenario name or 'all' (with --cluster; see --list)"
    )
    p.add_argument("--seconds", type=float, default=20.0, help="load time per scenario")
    p.add_argument("--clients", type=int, default=6, help="recording worker processes")
    p.add_argument("--keys", type=int, default=8, help="size of the key set (small: conflicts)")
    p.add_argument("--seed", type=int, help="seed for faults and client choices (default: random)")
    p.add_argument("--call-timeout", type=float, default=1.5, help="per-call deadline (s)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        # imported here: grpcio is needed by this command only, not by the server
        from raftkv.verify.cluster import NetnsUnavailable, cleanup_stale_netns
        from raftkv.verify.runner import (
            SCENARIOS,
            RunConfig,
            run_endpoints,
            run_scenario,
        )
    except ImportError as e:
        print(f"raftkv verify needs grpcio (pip install grpcio): {e}", file=sys.stderr)
        return 2
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:26} {s.size} member(s), {', '.join(s.nemeses)}\n{'':26} {s.about}")
        return 0
    if args.cleanup:
        removed = cleanup_stale_netns()
        print("removed: " + (", ".join(removed) or "nothing"))
        return 0
    if args.seconds <= 0 or args.clients < 1 or args.keys < 1:
        print("--seconds, --clients and --keys must be positive", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    cfg = RunConfig(
        seconds=args.seconds,
        clients=args.clients,
        keys=args.keys,
        seed=seed,
        call_timeout=args.call_timeout,
    )
    results: list[RunResult] = []
    started = time.monotonic()
    try:
        if args.endpoints:
            endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
            results.append(run_endpoints(endpoints, cfg, _log))
            print(results[-1].render(), flush=True)
        else:
            if args.scenario == "all":
                names = list(SCENARIOS)
            elif args.scenario in SCENARIOS:
                names = [args.scenario]
            else:
                print(f"unknown scenario {args.scenario!r}; see --list", file=sys.stderr)
                return 2
            for i, name in enumerate(names, 1):
                _log(f"[{i}/{len(names)}] {name} on {args.cluster}, {args.seconds:g}s")
                results.append(run_scenario(args.cluster, SCENARIOS[name], cfg, _log))
                print(results[-1].render() + "\n", flush=True)
    except NetnsUnavailable as e:
        print(f"raftkv verify: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError) as e:
        print(f"raftkv verify: run failed: {e}", file=sys.stderr)
        return 2
    ops = sum(len(r.records) + len(r.final) for r in results)
    bad = [r for r in results if not r.ok]
    print(
        f"{len(results)} run(s), {time.monotonic() - started:.0f}s, {ops:,} operations checked, "
        f"{sum(len(r.anomalies) for r in results)} anomalies"
        + (f" in {', '.join(r.scenario for r in bad)}" if bad else "")
    )
    return 1 if bad else 0

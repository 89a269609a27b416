"""The ``raftkv`` command."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import uvloop

from raftkv import __version__, bench, walbench
from raftkv.progress import ProgressBar
from raftkv.server import cli as server_cli
from raftkv.verify import cli as verify_cli
from raftkv.wal import AsyncWal


async def _demo(args: argparse.Namespace) -> None:
    base = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="raftkv-demo-"))
    wal_dir = base / "wal"
    if wal_dir.exists():
        shutil.rmtree(wal_dir)
    print(f"raftkv {__version__}: durable write-ahead log demo in {wal_dir}")
    print("every entry is fdatasynced before it counts; syncs are shared (group commit)\n")
    wal = await AsyncWal.open(wal_dir)
    try:
        print(
            f"1) one producer, batches of {args.batch} x {args.value_size}-byte entries, "
            f"8 batches in flight"
        )
        bar = ProgressBar(args.batches, "batches")
        r = await walbench.pipelined(wal, args.batches, args.batch, 8, args.value_size, bar.update)
        print(
            f"   {r.entries:,} entries in {r.seconds:.2f}s: {r.entries_per_second:,.0f} "
            f"entries/s, {r.syncs_per_second:,.0f} fdatasyncs/s\n"
        )
        total = args.appenders * args.per_appender
        print(f"2) {args.appenders} concurrent clients, one entry each per append")
        bar = ProgressBar(total, "entries")
        r = await walbench.concurrent(
            wal, args.appenders, args.per_appender, args.value_size, bar.update
        )
        print(
            f"   {r.entries:,} entries in {r.seconds:.2f}s: {r.entries_per_second:,.0f} "
            f"entries/s, {r.syncs_per_second:,.0f} fdatasyncs/s\n"
        )
        stats = wal.wal.stats()
        print(
            f"log: {stats['entries']:,} entries, {stats['bytes'] / 2**20:,.1f} MiB, "
            f"{stats['syncs']:,} syncs ({stats['batches_per_sync']:.1f} appends per sync), "
            f"{stats['segments']} segment(s)"
        )
    finally:
        await wal.close()
        if not args.data_dir and not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raftkv", description=__doc__)
    parser.add_argument("--version", action="version", version=f"raftkv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="durable write-ahead log throughput demo")
    demo.add_argument("--data-dir", help="where to put the log (default: a temporary directory)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary directory")
    demo.add_argument("--batches", type=int, default=10_000)
    demo.add_argument("--batch", type=int, default=64, help="entries per batch")
    demo.add_argument("--appenders", type=int, default=256)
    demo.add_argument("--per-appender", type=int, default=500)
    demo.add_argument("--value-size", type=int, default=256)

    bench.add_parser(sub)
    server_cli.add_serve_parser(sub)
    server_cli.add_cluster_parser(sub)
    verify_cli.add_parser(sub)

    args = parser.parse_args(argv)
    if args.command == "bench":
        return bench.run(args)
    if args.command == "verify":
        return verify_cli.run(args)
    if args.command == "serve":
        return server_cli.run_serve(args)
    if args.command == "cluster":
        server_cli.block_stop_signals()
        return server_cli.run_cluster(args)
    if args.command == "demo":
        for name in ("batches", "batch", "appenders", "per_appender", "value_size"):
            if getattr(args, name) < 1:
                parser.error(f"--{name.replace('_', '-')} must be at least 1")
        uvloop.run(_demo(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``raftkv bench``: load an etcd v3 gRPC endpoint (raftkv or etcd) and report.

The load generator itself is native (``raftkv._native.run_bench``, Rust on its own tokio
runtime, no GIL held); this module is the command line around it: options, a progress bar
on stderr, a human summary on stdout and ``--json FILE``.

Exit status: 0 when every measured call succeeded, 1 when some failed or no connection
could be made (the summary and JSON are still written for a run that happened), 2 for bad
options, 130 when interrupted (Ctrl-C stops the run; calls in flight finish first).

JSON fields (see ``BenchReport`` in ``_native.pyi``): ``options`` (normalized), ``ops``,
``ok``, ``errors``, ``elapsed_s``, ``ops_per_s`` (successful calls per second),
``errors_by_code`` and ``error_messages`` (by gRPC code name), ``per_op`` (``ok``/``errors``
per operation), ``txn`` (``succeeded``/``failed``, txn workloads only), ``latency_ms``
(``count mean stddev min p50 p90 p99 p99_9 max``, successful calls), ``histogram`` (rows of
``le_ms`` and ``count``), ``cpu`` (``user_s sys_s total_s us_per_op cores``: the generating
process's CPU over the measured phase), ``servers`` (``pid cpu_s us_per_op cores`` for each
``--server-pids`` process), ``warmup_ops``, ``interrupted``; plus ``version``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from raftkv import __version__
from raftkv._native import run_bench

if TYPE_CHECKING:
    from raftkv._native import BenchReport  # a TypedDict that exists only in the stub

DEFAULT_TOTAL = 10_000


def _count(text: str) -> int:
    """argparse type: a whole number >= 0 (ranges are checked by the generator)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return v


def _pid_list(text: str) -> list[int]:
    """argparse type: comma-separated process ids."""
    try:
        pids = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated pid list") from None
    if any(p <= 0 for p in pids):
        raise argparse.ArgumentTypeError("pids are positive")
    return pids


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` command to ``raftkv``'s subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="etcd v3 gRPC load generator (native)",
        description=(
            "Drive an etcd v3 gRPC endpoint (raftkv or etcd) with puts, ranges or txns and\n"
            "report throughput, latency and the generator's own CPU use. The run ends after\n"
            "--total calls or --duration seconds, whichever comes first (default: --total\n"
            f"{DEFAULT_TOTAL:,}). Keys are --key-prefix plus a zero-padded decimal key number,\n"
            "--key-size bytes in all. A txn call compares mod_revision(key) < 2**62 (always\n"
            "true), then puts the key."
        ),
        epilog=(
            "examples:\n"
            "  raftkv bench put --endpoints 127.0.0.1:2379 --conns 4 --clients 256 --duration 10\n"
            "  raftkv bench range:90,put:10 --consistency s --clients 64 --total 100000 "
            "--json out.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "workload",
        nargs="?",
        default="put",
        help="put, range, txn, or a weighted mix like range:90,put:10 (default: put)",
    )
    p.add_argument(
        "--endpoints",
        default="127.0.0.1:2379",
        help="comma-separated host:port, http://host:port or https://host:port list "
        "(default: 127.0.0.1:2379)",
    )
    p.add_argument("--conns", type=_count, default=1, help="HTTP/2 connections (default: 1)")
    p.add_argument(
        "--clients", type=_count, default=1, help="concurrent in-flight calls (default: 1)"
    )
    p.add_argument("--total", type=_count, help="measured calls to make")
    p.add_argument("--duration", type=float, help="seconds to run the measured phase")
    p.add_argument("--key-size", type=_count, default=8, help="key bytes (default: 8)")
    p.add_argument("--val-size", type=_count, default=256, help="value bytes (default: 256)")
    p.add_argument(
        "--key-space", type=_count, default=100_000, help="distinct keys (default: 100,000)"
    )
    p.add_argument(
        "--key-prefix", default="", help="every key starts with this (counts in --key-size)"
    )
    p.add_argument(
        "--sequential-keys",
        action="store_true",
        help="keys 0, 1, 2, ... in order instead of uniform random",
    )
    p.add_argument("--seed", type=_count, default=1, help="random seed for keys and mixes")
    p.add_argument(
        "--consistency",
        choices=["l", "s"],
        default="l",
        help="ranges linearizable (l, default) or serializable (s)",
    )
    p.add_argument("--rate", type=float, help="cap on calls/s over all clients")
    p.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds of load before measuring (left out of every figure)",
    )
    p.add_argument(
        "--timeout", type=float, default=10.0, help="per-call deadline, seconds (default: 10)"
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=3.0,
        help="deadline to connect and probe each connection, seconds (default: 3)",
    )
    p.add_argument(
        "--threads", type=_count, default=1, help="generator runtime threads (default: 1)"
    )
    p.add_argument(
        "--transport",
        choices=["h2", "tonic"],
        default="h2",
        help="HTTP/2 client: h2 (hand-framed gRPC, cheapest; default) or tonic",
    )
    p.add_argument(
        "--server-pids",
        type=_pid_list,
        default=[],
        metavar="PID[,PID...]",
        help="local server processes whose CPU use over the measured phase is reported",
    )
    tls = p.add_argument_group("TLS (for https:// endpoints; h2 transport)")
    tls.add_argument("--cacert", metavar="FILE", help="CA certificates (PEM) to verify servers")
    tls.add_argument("--cert", metavar="FILE", help="client certificate (PEM), with --key")
    tls.add_argument("--key", metavar="FILE", help="client private key (PEM), with --cert")
    tls.add_argument(
        "--insecure-skip-tls-verify",
        action="store_true",
        help="accept any server certificate (tests only)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON ('-': stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--quiet", action="store_true", help="no human summary on stdout")
    return p


class Progress:
    """A one-line progress bar on a stream, redrawn at most ten times a second (on a
    terminal; elsewhere one line per 10%)."""

    def __init__(
        self, total: int | None, duration: float | None, stream: TextIO, width: int = 30
    ) -> None:
        self.total = total
        self.duration = duration
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.last_decile = -1
        self.last_draw = 0.0
        self.drawn = False

    def fraction(self, done: int, elapsed: float) -> float:
        fracs = []
        if self.total:
            fracs.append(done / self.total)
        if self.duration:
            fracs.append(elapsed / self.duration)
        return min(max(fracs, default=0.0), 1.0)

    def __call__(self, done: int, errors: int, elapsed: float, measuring: bool) -> None:
        now = time.monotonic()
        if now - self.last_draw < 0.095 and not (measuring and self.fraction(done, elapsed) >= 1):
            return
        self.last_draw = now
        if not measuring:
            line = "warming up / connecting ..."
            frac = 0.0
        else:
            frac = self.fraction(done, elapsed)
            filled = int(frac * self.width)
            rate = done / elapsed if elapsed > 0 else 0.0
            line = (
                f"[{'#' * filled}{'.' * (self.width - filled)}] {frac:4.0%}  {done:,} calls  "
                f"{rate:,.0f}/s  {errors:,} errors  {elapsed:.1f}s"
            )
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self.drawn = True
        elif measuring and int(frac * 10) > self.last_decile:
            self.last_decile = int(frac * 10)
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def format_summary(r: BenchReport) -> str:
    """The human summary of a report."""
    o = r["options"]
    lat = r["latency_ms"]
    cpu = r["cpu"]
    ranges = ""
    if "range" in r["per_op"]:
        ranges = " (serializable ranges)" if o["consistency"] == "s" else " (linearizable ranges)"
    lines = [
        f"raftkv bench: {o['workload']}{ranges} against {', '.join(o['endpoints'])}",
        f"  {o['conns']} conns, {o['clients']} clients, {o['key_size']}-byte keys over "
        f"{o['key_space']:,} ({'sequential' if o['sequential_keys'] else 'random'}), "
        f"{o['value_size']}-byte values, {o['transport']} transport, {o['threads']} thread(s)"
        + (f", rate cap {o['rate']:,.0f}/s" if o["rate"] else ""),
        "",
        f"  calls        {r['ops']:,} ({r['ok']:,} ok, {r['errors']:,} failed) in "
        f"{r['elapsed_s']:.2f} s" + (" [interrupted]" if r["interrupted"] else ""),
        f"  throughput   {r['ops_per_s']:,.0f} ok calls/s",
        f"  latency ms   mean {lat['mean']:.3f}  p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  "
        f"p99 {lat['p99']:.3f}  p99.9 {lat['p99_9']:.3f}  max {lat['max']:.3f}  "
        f"stddev {lat['stddev']:.3f}",
        f"  generator    {cpu['total_s']:.2f} s CPU (user {cpu['user_s']:.2f}, sys "
        f"{cpu['sys_s']:.2f}): {cpu['us_per_op']:.1f} us/call, {cpu['cores']:.2f} cores",
    ]
    for srv in r["servers"]:
        if srv["cpu_s"] is None:
            lines.append(f"  server {srv['pid']:<6} exited during the run (CPU unknown)")
        else:
            lines.append(
                f"  server {srv['pid']:<6} {srv['cpu_s']:.2f} s CPU: "
                f"{srv['us_per_op'] or 0:.1f} us/call, {srv['cores'] or 0:.2f} cores"
            )
    if r["servers"] and all(s["cpu_s"] is not None for s in r["servers"]):
        total = sum(s["us_per_op"] or 0 for s in r["servers"])
        lines.append(f"  servers      {total:.1f} us CPU per call in all")
    if len(r["per_op"]) > 1:
        parts = [f"{k} {v['ok']:,} ok/{v['errors']:,} failed" for k, v in r["per_op"].items()]
        lines.append("  per op       " + ", ".join(parts))
    if "txn" in r:
        t = r["txn"]
        lines.append(f"  txn          {t['succeeded']:,} succeeded, {t['failed']:,} failed compare")
    if r["warmup_ops"]:
        lines.append(f"  warm-up      {r['warmup_ops']:,} calls (not counted)")
    if r["errors_by_code"]:
        lines.append("  errors:")
        for code, n in r["errors_by_code"].items():
            msg = r["error_messages"].get(code, "")
            lines.append(f"    {code:<20} {n:>10,}  e.g. {msg!r}")
    rows = r["histogram"]
    if rows:
        top = max(row["count"] for row in rows) or 1
        lines.append("  latency histogram (ms):")
        for row in rows:
            bar = "#" * round(30 * row["count"] / top)
            lines.append(f"    <= {_num(row['le_ms']):>7}  {bar:<30}  {row['count']:,}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``raftkv bench`` with parsed arguments; returns the exit status."""
    endpoints = [e.strip() for e in args.endpoints.split(",")]
    total = args.total
    if total is None and args.duration is None:
        total = DEFAULT_TOTAL
    progress = None if args.no_progress else Progress(total, args.duration, sys.stderr)
    try:
        report = run_bench(
            endpoints,
            conns=args.conns,
            clients=args.clients,
            total=total,
            duration=args.duration,
            key_size=args.key_size,
            value_size=args.val_size,
            key_space=args.key_space,
            key_prefix=args.key_prefix,
            sequential=args.sequential_keys,
            seed=args.seed,
            workload=args.workload,
            consistency=args.consistency,
            rate=args.rate,
            warmup=args.warmup,
            timeout=args.timeout,
            connect_timeout=args.connect_timeout,
            threads=args.threads,
            transport=args.transport,
            server_pids=args.server_pids,
            cacert=args.cacert,
            cert=args.cert,
            key=args.key,
            insecure_skip_tls_verify=args.insecure_skip_tls_verify,
            progress=progress,
        )
    except (ValueError, OverflowError) as e:
        if progress:
            progress.finish()
        print(f"raftkv bench: error: {e}", file=sys.stderr)
        return 2
    except ConnectionError as e:
        if progress:
            progress.finish()
        print(f"raftkv bench: cannot run: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if progress:
            progress.finish()
        print("raftkv bench: interrupted", file=sys.stderr)
        return 130
    if progress:
        progress.finish()
    if not args.quiet:
        # With the JSON on stdout the summary goes to stderr, so stdout stays parseable.
        print(format_summary(report), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        doc = {"version": __version__, **report}
        text = json.dumps(doc, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    return 1 if report["errors"] else 0

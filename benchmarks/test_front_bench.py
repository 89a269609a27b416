"""The native client front against grpcio's asyncio server, same empty Put handler.

Both servers run in their own process; ``raftkv bench`` (the native load generator) drives
each with puts at concurrency 256. Targets: >= 40,000 calls/s behind the native front, >= 4x
grpcio's figure, and <= 25 us of load-generator CPU per call.
Run: ``pytest benchmarks/test_front_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raftkv._native import run_bench

ROOT = Path(__file__).resolve().parents[1]
CALLS = 200_000
CLIENTS = 256
CONNS = 8


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@contextmanager
def server(kind: str) -> Iterator[tuple[str, int]]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'python'}{os.pathsep}{ROOT}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.front_server", kind, "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "ready", line
    try:
        yield line[1], proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def drive(kind: str) -> dict[str, float]:
    with server(kind) as (address, pid):
        # warm the connections and the server up, outside the measurement
        run_bench(endpoints=[address], conns=CONNS, clients=CLIENTS, total=20_000)
        before = _cpu_seconds(pid)
        result = run_bench(
            endpoints=[address],
            conns=CONNS,
            clients=CLIENTS,
            total=CALLS,
            key_size=8,
            value_size=256,
            key_space=100_000,
            workload="put",
        )
        server_cpu = _cpu_seconds(pid) - before
    ops = float(result["ok"])
    assert result["errors"] == 0, result
    return {
        "calls/s": float(result["ops_per_s"]),
        "p50_ms": float(result["latency_ms"]["p50"]),
        "p99_ms": float(result["latency_ms"]["p99"]),
        "server_us/call": server_cpu / ops * 1e6,
        "loadgen_us/call": float(result["cpu"]["us_per_op"]),
    }


def test_native_front_vs_grpcio(benchmark: Any, figures: dict[str, dict[str, float]]) -> None:
    native: list[dict[str, float]] = []
    grpcio: list[dict[str, float]] = []

    def one_round() -> None:
        native.append(drive("native"))
        grpcio.append(drive("grpcio"))

    benchmark.pedantic(one_round, rounds=2, iterations=1)
    best_native = max(native, key=lambda r: r["calls/s"])
    best_grpcio = max(grpcio, key=lambda r: r["calls/s"])
    best_native["target"] = 40_000
    figures["front empty Put @256: native"] = best_native
    figures["front empty Put @256: grpcio aio"] = best_grpcio
    ratio = best_native["calls/s"] / best_grpcio["calls/s"]
    figures["front ratio native/grpcio (target 4x)"] = {"ratio": ratio}
    benchmark.extra_info.update(native=best_native, grpcio=best_grpcio, ratio=ratio)

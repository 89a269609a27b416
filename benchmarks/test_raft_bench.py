"""The Raft core alone: a 3-member in-memory cluster in lockstep (no disk, no sockets).

Run: ``pytest benchmarks/test_raft_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

from typing import Any

from raftkv.raft.bench import run

TARGET = 300_000  # committed entries/s, batches of 64 entries of 256 bytes


def test_raft_core_step_throughput(benchmark: Any, figures: dict[str, dict[str, float]]) -> None:
    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(run(batches=1000, batch=64, size=256)), rounds=3)
    best = max(rates)
    figures["raft core, 3 members lockstep, 64x256B"] = {
        "entries/s": best,
        "target": TARGET,
        "vs_target": best / TARGET,
    }


def test_raft_core_single_entry_round_trips(
    benchmark: Any, figures: dict[str, dict[str, float]]
) -> None:
    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(run(batches=3000, batch=1, size=256)), rounds=3)
    figures["raft core, 3 members lockstep, 1x256B"] = {"entries/s": max(rates)}

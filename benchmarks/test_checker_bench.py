"""History checker speed on synthetic robustness-test histories.

Histories come from a simulated store (verify.simulate): concurrent clients over a few keys,
random latencies, member crashes that leave every call in flight indeterminate (some took
effect, some not). One round each: the interesting figure is seconds per history, and the
heavy cases take a few seconds.

    PYTHONPATH=python:. pytest benchmarks/test_checker_bench.py -s
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from raftkv.verify.report import Report, check_history
from raftkv.verify.simulate import MUTATIONS, Workload, linearizable_history

CASES = {
    # a CI-length run: 20 s, 6 clients, 8 keys, ~1,000 ops/s, 3 crashes
    "ci 20s": Workload(clients=6, keys=8, seconds=20, ops_per_second=1000, crashes=3),
    # a soak-length run at the top rate: 120 s, 8 clients, 16 keys, ~2,000 ops/s
    "soak 120s": Workload(clients=8, keys=16, seconds=120, ops_per_second=2000, crashes=10),
    # few keys and many crashes: thousands of ops and ~50+ unknown outcomes per key
    "crashy 60s": Workload(
        clients=8, keys=4, seconds=60, ops_per_second=1500, crashes=30, timeout_rate=0.005
    ),
}


def _figures(h: list[Any], seconds: float) -> dict[str, float]:
    keys = len({o.key for o in h})
    unknown = sum(o.indeterminate for o in h)
    return {
        "ops": len(h),
        "keys": keys,
        "unknown": unknown,
        "unknown/key": unknown / keys,
        "seconds": seconds,
        "kops/s": len(h) / seconds / 1000,
    }


def _check_mutated(
    case: str, seed: int, mutation: str, mutation_seed: int, budget_s: float, benchmark: Any
) -> tuple[Report, dict[str, float]]:
    """Check a generated history broken by ``mutation``, once, under the benchmark; the
    report and the history's figures."""
    bad = MUTATIONS[mutation](
        linearizable_history(CASES[case], seed=seed), random.Random(mutation_seed)
    )
    assert bad is not None
    started = time.monotonic()
    report = benchmark.pedantic(check_history, args=(bad,), kwargs={"budget_s": budget_s}, rounds=1)
    return report, _figures(bad, time.monotonic() - started)


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_linearizable(
    name: str, benchmark: Any, figures: dict[str, dict[str, float]]
) -> None:
    h = linearizable_history(CASES[name], seed=1)
    started = time.monotonic()
    report = benchmark.pedantic(check_history, args=(h,), kwargs={"budget_s": 120}, rounds=1)
    seconds = time.monotonic() - started
    assert report.ok, report.render()
    figures[f"checker ok, {name}"] = _figures(h, seconds)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_check_and_shrink_violation(
    mutation: str, benchmark: Any, figures: dict[str, dict[str, float]]
) -> None:
    report, row = _check_mutated("ci 20s", 2, mutation, 2, 120, benchmark)
    assert report.verdict == "anomalies"
    row["shrunk to"] = len(report.failures[0].shrunk)
    figures[f"checker {mutation}"] = row


@pytest.mark.parametrize("mutation", ["stale read", "lost acknowledged write"])
def test_refute_crashy(mutation: str, benchmark: Any, figures: dict[str, dict[str, float]]) -> None:
    """Refuting is the costly direction: every alternative before the failure is tried.
    With many unknown outcomes the full search may run out of budget; the report then
    refutes the key with a small failing sub-history or the lost write itself."""
    report, row = _check_mutated("crashy 60s", 1, mutation, 0, 30, benchmark)
    assert report.verdict == "anomalies"
    assert [f.verdict for f in report.failures] == ["violation"]
    row["shrunk to"] = len(report.failures[0].shrunk)
    figures[f"checker crashy 60s, {mutation}"] = row

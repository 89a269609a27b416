"""Collects figures from the benchmarks and prints them with their ratios at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

FIGURES: dict[str, dict[str, float]] = {}


@pytest.fixture
def figures() -> Iterator[dict[str, dict[str, float]]]:
    yield FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("raftkv figures")
    for name, row in FIGURES.items():
        cells = "  ".join(f"{k}={v:,.1f}" for k, v in row.items())
        tr.write_line(f"{name:<44} {cells}")

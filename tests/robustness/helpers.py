"""Shared assertions for the robustness suite: a run must have done real work under real
faults before its 'no anomalies' means anything."""

from __future__ import annotations

from raftkv.verify.runner import RunResult


def assert_clean_run(r: RunResult, min_ops: int = 300) -> None:
    report = r.render()
    assert r.ok, report
    done = sum(1 for x in r.records if x.complete is not None)
    assert done >= min_ops, f"too little load to mean anything:\n{report}"
    injected = [e for e in r.events if e.action == "inject" and not e.detail.startswith("skip")]
    assert len(injected) >= 2, f"the nemesis hardly acted:\n{report}"
    assert len(r.final) > 0, report

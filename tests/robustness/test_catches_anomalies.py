"""The pipeline fails when it should: the same harness with a client that breaks the
contract must report anomalies, end to end.

The broken client sends serializable reads (served from the member's own state, no quorum)
but records them as linearizable. While a member is partitioned away from a majority that
keeps writing, its serializable reads are stale, honestly, and the checker must call them
what they would be if the client had asked for linearizable reads: not linearizable."""

from __future__ import annotations

import re

from raftkv.verify.client import Mix
from raftkv.verify.runner import RunConfig, Scenario, run_scenario

STALE_READS = Scenario(
    "stale-serializable-reads",
    ["partition-minority"],
    "serializable reads at an isolated member, mislabelled as linearizable",
    mix=Mix(put=4, get=0, sget=6, delete=0, cas=0),
    hold_s=(2.0, 3.0),
)


def test_mislabelled_serializable_reads_are_caught() -> None:
    r = run_scenario(
        "raftkv", STALE_READS, RunConfig(seconds=8, seed=31, mislabel_serializable=True)
    )
    report = r.render()
    assert not r.ok, f"stale reads went unnoticed:\n{report}"
    assert any("not linearizable" in a for a in r.anomalies), report
    # the report shows the smallest failing sub-history of a failing key
    assert re.search(r"key b'[^']*': .*, \d+ of \d+ ops \(", report), report


def test_same_run_with_honest_labels_is_clean() -> None:
    """Control: the same schedule with reads recorded as what they are passes."""
    r = run_scenario("raftkv", STALE_READS, RunConfig(seconds=8, seed=31))
    assert r.ok, r.render()
    assert sum(1 for x in r.records if x.kind == "sget" and x.complete is not None) > 100

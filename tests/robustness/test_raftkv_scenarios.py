"""Issue 7's CI suite: raftkv under five nemesis scenarios, 20 s of load each, zero
anomalies. Together they cover etcd's track record: a leader crash under write load
(revisions and HashKV consistent afterwards), a single member killed right after
acknowledged writes (none lost), a partitioned old leader (no stale reads through it),
compaction during load, and every nemesis mixed (pauses, bridge partitions, leadership
transfers, follower kills)."""

from __future__ import annotations

import pytest

from raftkv.verify.runner import SCENARIOS, RunConfig, RunResult, run_scenario
from tests.robustness.helpers import assert_clean_run

SECONDS = 20.0


def _run(name: str, seed: int) -> RunResult:
    return run_scenario("raftkv", SCENARIOS[name], RunConfig(seconds=SECONDS, seed=seed))


@pytest.mark.parametrize(
    ("name", "seed"),
    [("leader-crash-under-load", 11), ("single-member-crash", 12), ("compaction-during-load", 14)],
)
def test_scenario_has_no_anomalies(name: str, seed: int) -> None:
    r = _run(name, seed)
    assert_clean_run(r)
    # the members converged on one revision and one HashKV after the faults
    assert "HashKV" in r.convergence and "differ" not in r.convergence, r.render()


def test_partitioned_old_leader_serves_no_stale_reads() -> None:
    r = _run("partition-old-leader", 13)
    assert_clean_run(r)
    # the point of the scenario: linearizable reads really were sent to the isolated leader
    answered, failed = r.isolated_reads()
    assert answered + failed > 0, r.render()


def test_mixed_faults_have_no_anomalies() -> None:
    r = _run("mixed", 15)
    assert_clean_run(r)
    kinds = {e.nemesis for e in r.events if e.action == "inject"}
    assert len(kinds) >= 3, r.render()

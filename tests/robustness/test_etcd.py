"""The same harness, nemeses and checker against a 3-member etcd (Debian's etcd-server) in
network namespaces: zero anomalies there too, so the checker is not tuned to raftkv."""

from __future__ import annotations

import shutil

from raftkv.verify.runner import SCENARIOS, RunConfig, run_scenario
from tests.robustness.helpers import assert_clean_run


def test_etcd_leader_crash_and_partitions_have_no_anomalies() -> None:
    assert shutil.which("etcd"), "etcd not installed (apt-get install etcd-server)"
    for name, seed in [("leader-crash-under-load", 21), ("partition-old-leader", 22)]:
        r = run_scenario("etcd", SCENARIOS[name], RunConfig(seconds=10, seed=seed))
        assert_clean_run(r)
        assert "HashKV" in r.convergence and "differ" not in r.convergence, r.render()

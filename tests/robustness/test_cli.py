"""``raftkv verify`` end to end through its command line: against a cluster it starts, and
against endpoints of a running cluster (API nemeses only)."""

from __future__ import annotations

import pytest

from raftkv.cli import main
from raftkv.verify.cluster import NetnsCluster


def test_verify_cluster_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["verify", "--cluster", "raftkv", "--scenario", "move-leader", "--seconds", "5",
         "--clients", "4", "--seed", "41"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "anomalies: none" in out
    assert "faults: move-leader x" in out
    assert "replay: raftkv verify --cluster raftkv --scenario move-leader --seconds 5" in out


def test_verify_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    with NetnsCluster("raftkv") as cluster:
        code = main(
            ["verify", "--endpoints", ",".join(cluster.endpoints), "--seconds", "5",
             "--clients", "4", "--seed", "42"]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "anomalies: none" in out
    # only the nemeses that work over the API ran
    faults = out.split("faults: ")[1].splitlines()[0]
    assert faults != "none" and "kill" not in faults and "partition" not in faults, out


def test_verify_rejects_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--cluster", "raftkv", "--scenario", "nope"]) == 2
    assert "unknown scenario" in capsys.readouterr().err

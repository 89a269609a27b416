"""The PyPI client ``etcd3`` (python-etcd3 0.12) works against raftkv as against etcd.

The client runs in a subprocess (``etcd3_client.py``) with
``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python`` set for it alone (its old generated stubs
need the pure-Python protobuf; its modules clash with raftkv's in one process). The same
session runs against a 3-member etcd cluster and a 3-member raftkv cluster, each through a
follower; the reports must be equal, and the raftkv report is also checked on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, Node

CLIENT = Path(__file__).with_name("etcd3_client.py")


def _follower(c: Cluster) -> Node:
    lead = c.wait_leader()
    return next(n for n in c.nodes if n is not lead)


def run_client(endpoint: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    env.pop("PYTHONPATH", None)
    r = subprocess.run(
        [sys.executable, str(CLIENT), endpoint],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert r.returncode == 0, f"python-etcd3 client failed (pip install etcd3):\n{r.stderr}"
    report: dict[str, Any] = json.loads(r.stdout)
    return report


@pytest.fixture(scope="module")
def etcd_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    etcd = Cluster(tmp_path_factory.mktemp("etcd3-etcd"), kind="etcd")
    try:
        etcd.start()
        yield run_client(_follower(etcd).endpoint)
    finally:
        etcd.stop()


@pytest.fixture(scope="module")
def raftkv_report(cluster: Cluster) -> dict[str, Any]:
    return run_client(_follower(cluster).endpoint)


def test_same_report_as_etcd(raftkv_report: dict[str, Any], etcd_report: dict[str, Any]) -> None:
    differ = {
        step: {"etcd": etcd_report.get(step), "raftkv": raftkv_report.get(step)}
        for step in sorted({*etcd_report, *raftkv_report})
        if etcd_report.get(step) != raftkv_report.get(step) and step != "status"
    }
    assert not differ, json.dumps(differ, indent=1)
    # The version and which member leads legitimately differ.
    ignore = {"version", "leader"}
    got = {k: v for k, v in raftkv_report["status"].items() if k not in ignore}
    want = {k: v for k, v in etcd_report["status"].items() if k not in ignore}
    assert got == want


def test_kv_operations(raftkv_report: dict[str, Any]) -> None:
    r = raftkv_report
    assert isinstance(r["put"], int)
    assert r["put_prev_kv"]["version"] == 1 and r["put_prev_kv"]["key"] == "e3/a"
    assert r["get"][0] == "2" and r["get"][1]["version"] == 2
    assert r["get_serializable"] == r["get"]
    assert r["get_missing"] == [None, None]
    assert [kv[0] for kv in r["get_prefix"]] == ["2", "b1", "c1"]
    assert [kv[1]["key"] for kv in r["get_prefix_sorted"]] == ["e3/c", "e3/b", "e3/a"]
    assert r["get_prefix_keys_only"] == ["e3/a", "e3/b", "e3/c"]
    assert [kv[1]["key"] for kv in r["get_range"]] == ["e3/a", "e3/b"]
    assert r["get_range_backwards"] == []
    assert "e4" in r["get_all"] and "e3/a" in r["get_all"]
    assert r["delete"] is True and r["delete_missing"] is False
    assert [m["key"] for m in r["delete_prev_kv"]] == ["e3/nested"]
    assert r["delete_prefix"] > 0
    assert r["get_prefix_after_delete"] == []


def test_replace_and_transactions(raftkv_report: dict[str, Any]) -> None:
    r = raftkv_report
    assert r["replace_ok"] is True and r["replace_stale"] is False
    assert r["get_after_replace"][0] == "b2"
    assert r["put_if_not_exists_new"] is True and r["put_if_not_exists_old"] is False
    ok, responses = r["txn_value_version"]
    assert ok is True and responses[0] == "response_put" and responses[1][0][0] == "2"
    ok, responses = r["txn_create_mod"]
    assert ok is False and responses[0][0][0] == "then" and responses[1] == "response_delete_range"
    ok, _ = r["txn_not_equal"]
    assert ok is False
    assert r["txn_nested"] == [True, ["response_txn"]]
    assert r["txn_duplicate_key"]["code"] == "StatusCode.INVALID_ARGUMENT"
    assert r["txn_duplicate_key"]["details"] == "etcdserver: duplicate key given in txn request"
    assert r["put_empty_key"]["details"] == "etcdserver: key is not provided"


def test_compaction_and_status(raftkv_report: dict[str, Any]) -> None:
    r = raftkv_report
    assert r["compact"] is None and r["compact_physical"] is None
    assert r["compact_again"]["code"] == "StatusCode.OUT_OF_RANGE"
    assert r["compact_again"]["details"] == "etcdserver: mvcc: required revision has been compacted"
    assert r["compact_future"]["details"] == (
        "etcdserver: mvcc: required revision is a future revision"
    )
    assert r["get_after_compact"][0] == "other"
    st = r["status"]
    assert st["leader"] in {"m1", "m2", "m3"}
    assert st["db_size_positive"] and st["raft_index_positive"] and st["raft_term_positive"]
    assert r["members"] == ["m1", "m2", "m3"]
    assert r["hash_is_int"] is True

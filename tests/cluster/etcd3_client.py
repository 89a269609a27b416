"""A python-etcd3 (PyPI ``etcd3``) session against one endpoint; prints a JSON report.

Run as a script by tests/cluster/test_python_etcd3.py, in its own process: python-etcd3's
generated protobuf modules need ``PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python`` and clash
with raftkv's own in one process. Usage: ``python etcd3_client.py HOST:PORT``.

Each step records its result, or the exception it raised (class, gRPC code and details), so
the test can compare the whole report with what etcd gives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import etcd3  # type: ignore[import-untyped,import-not-found,unused-ignore]


def meta(m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "key": m.key.decode(),
        "create_revision": m.create_revision,
        "mod_revision": m.mod_revision,
        "version": m.version,
        "lease_id": m.lease_id,
    }


def pb_kv(kv: Any) -> dict[str, Any]:
    """A raw mvccpb.KeyValue (prev_kv), as python-etcd3 returns it."""
    return {
        "key": kv.key.decode(),
        "value": kv.value.decode(),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    }


def kvs(items: Any) -> list[list[Any]]:
    return [[v.decode(), meta(m)] for v, m in items]


def value(item: tuple[Any, Any]) -> list[Any]:
    v, m = item
    return [None if v is None else v.decode(), meta(m)]


def error(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"error": type(exc).__name__}
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        out["code"] = str(code())
        out["details"] = details()
    else:
        out["message"] = str(exc)
    return out


def run(endpoint: str) -> dict[str, Any]:
    host, port = endpoint.rsplit(":", 1)
    c = etcd3.client(host=host, port=int(port), timeout=10)
    tx = c.transactions
    report: dict[str, Any] = {}

    def step(name: str, fn: Callable[[], Any]) -> None:
        try:
            report[name] = fn()
        except Exception as exc:
            report[name] = error(exc)

    step("put", lambda: c.put("e3/a", "1").header.revision)
    step("put_prev_kv", lambda: pb_kv(c.put("e3/a", "2", prev_kv=True).prev_kv))
    step("put_b", lambda: c.put("e3/b", "b1").header.revision)
    step("put_c", lambda: c.put("e3/c", "c1").header.revision)
    step("put_other", lambda: c.put("e4", "other").header.revision)
    step("get", lambda: value(c.get("e3/a")))
    step("get_serializable", lambda: value(c.get("e3/a", serializable=True)))
    step("get_missing", lambda: value(c.get("e3/missing")))
    step("get_prefix", lambda: kvs(c.get_prefix("e3/")))
    step(
        "get_prefix_sorted",
        lambda: kvs(c.get_prefix("e3/", sort_order="descend", sort_target="mod")),
    )
    step(
        "get_prefix_keys_only",
        lambda: [m["key"] for _, m in kvs(c.get_prefix("e3/", keys_only=True))],
    )
    step("get_range", lambda: kvs(c.get_range("e3/a", "e3/c")))
    step("get_range_backwards", lambda: kvs(c.get_range("e3/c", "e3/a")))
    step("get_all", lambda: [m["key"] for _, m in kvs(c.get_all())])
    step("replace_ok", lambda: c.replace("e3/b", "b1", "b2"))
    step("replace_stale", lambda: c.replace("e3/b", "b1", "b3"))
    step("get_after_replace", lambda: value(c.get("e3/b")))
    step("put_if_not_exists_new", lambda: c.put_if_not_exists("e3/n", "n1"))
    step("put_if_not_exists_old", lambda: c.put_if_not_exists("e3/n", "n2"))

    def txn(compare: list[Any], success: list[Any], failure: list[Any]) -> list[Any]:
        ok, responses = c.transaction(compare=compare, success=success, failure=failure)
        shown: list[Any] = []
        for r in responses:
            shown.append(kvs(r) if isinstance(r, list) else r.WhichOneof("response"))
        return [ok, shown]

    step(
        "txn_value_version",
        lambda: txn(
            [tx.value("e3/a") == "2", tx.version("e3/a") > 1],
            [tx.put("e3/t", "then"), tx.get("e3/a")],
            [tx.put("e3/t", "else")],
        ),
    )
    step(
        "txn_create_mod",
        lambda: txn(
            [tx.create("e3/a") < 1, tx.mod("e3/a") > 0],
            [tx.put("e3/t", "then2")],
            [tx.get("e3/t"), tx.delete("e3/c")],
        ),
    )
    step(
        "txn_not_equal",
        lambda: txn(
            [tx.value("e3/t") != "then", tx.version("e3/missing") == 0],
            [tx.get("e3/", "e3/z")],
            [],
        ),
    )
    step(
        "txn_nested",
        lambda: txn(
            [tx.version("e3/a") > 0],
            [tx.txn([tx.value("e3/a") == "2"], [tx.put("e3/nested", "yes")], [])],
            [],
        ),
    )
    step("txn_duplicate_key", lambda: txn([], [tx.put("e3/d", "1"), tx.put("e3/d", "2")], []))
    step("put_empty_key", lambda: c.put("", "x").header.revision)
    step("get_after_txns", lambda: kvs(c.get_prefix("e3/")))
    step("delete", lambda: c.delete("e3/t"))
    step("delete_missing", lambda: c.delete("e3/t"))
    step(
        "delete_prev_kv",
        lambda: [
            pb_kv(kv) for kv in c.delete("e3/nested", prev_kv=True, return_response=True).prev_kvs
        ],
    )
    step("delete_prefix", lambda: c.delete_prefix("e3/").deleted)
    step("get_prefix_after_delete", lambda: kvs(c.get_prefix("e3/")))
    step("revision_now", lambda: c.get_response("e4").header.revision)
    rev = report["revision_now"]
    if isinstance(rev, int):
        step("compact", lambda: c.compact(rev - 2))
        step("compact_again", lambda: c.compact(rev - 2))
        step("compact_physical", lambda: c.compact(rev - 1, physical=True))
        step("compact_future", lambda: c.compact(rev + 100))
    step("get_after_compact", lambda: value(c.get("e4")))

    def status() -> dict[str, Any]:
        s = c.status()
        return {
            "version": s.version,
            "db_size_positive": s.db_size > 0,
            "leader": s.leader.name if s.leader is not None else None,
            "raft_index_positive": s.raft_index > 0,
            "raft_term_positive": s.raft_term > 0,
        }

    step("status", status)
    step("members", lambda: sorted(m.name for m in c.members))
    step("hash_is_int", lambda: isinstance(c.hash(), int))
    c.close()
    return report


if __name__ == "__main__":
    json.dump(run(sys.argv[1]), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")

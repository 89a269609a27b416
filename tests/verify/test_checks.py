"""The harness's own checks on hand-made records: serializable reads, lost acknowledged
writes, revision agreement; and which errors count as 'certainly did not happen'."""

from __future__ import annotations

from typing import Any

import grpc

from raftkv.verify.checks import (
    check_linearizable,
    check_serializable,
    lost_writes,
    revision_agreement,
    to_ops,
)
from raftkv.verify.client import CAS, DELETE, GET, PUT, SGET, Record, definite_failure

K = b"k"
A, B = "10.0.0.11:2379", "10.0.0.12:2379"


def put(c: int, t0: float, t1: float | None, v: bytes, rev: int = 0) -> Record:
    return Record(c, A, PUT, K, t0, t1, value=v, revision=rev)


def sget(c: int, t0: float, t1: float, seen: bytes | None, rev: int, ep: str = A) -> Record:
    return Record(c, ep, SGET, K, t0, t1, result=seen, revision=rev)


def final(seen: bytes | None) -> Record:
    return Record(0, A, GET, K, 100, 101, result=seen)


def test_serializable_reads_may_be_stale_but_not_invented_or_from_the_future() -> None:
    writes = [put(1, 0, 1, b"a", 2), put(1, 2, 3, b"b", 3)]
    stale = [*writes, sget(2, 4, 5, b"a", 2, ep=B)]
    assert check_serializable(stale) == []
    invented = [*writes, sget(2, 4, 5, b"zz", 3)]
    assert "never written" in check_serializable(invented)[0]
    future = [put(1, 10, 11, b"c", 4), sget(2, 4, 5, b"c", 4)]
    assert "written after" in check_serializable(future)[0]


def test_serializable_revision_going_back_is_caught_unless_the_member_restarted() -> None:
    h = [put(1, 0, 1, b"a", 5), sget(2, 2, 3, b"a", 5), sget(2, 4, 5, b"a", 4)]
    assert "went back" in check_serializable(h)[0]
    assert check_serializable(h, kills={A: [3.5]}) == []
    # reads of two different members are not compared (each may lag on its own)
    h = [put(1, 0, 1, b"a", 5), sget(2, 2, 3, b"a", 5), sget(2, 4, 5, b"a", 4, ep=B)]
    assert check_serializable(h) == []


def test_lost_acknowledged_write_is_reported() -> None:
    h = [put(1, 0, 1, b"a"), put(2, 2, 3, b"b")]
    assert "lost acknowledged write" in lost_writes(h, [final(b"a")])[0]
    assert lost_writes(h, [final(b"b")]) == []
    # overwritten by a later write that may have happened: not lost
    h2 = [put(1, 0, 1, b"a"), Record(2, A, DELETE, K, 2, None)]
    assert lost_writes(h2, [final(None)]) == []
    # a failed cas does not overwrite anything
    h3 = [put(1, 0, 1, b"a"), Record(2, A, CAS, K, 2, 3, value=b"x", expect=b"q", result=False)]
    assert lost_writes(h3, [final(None)]) != []


def test_revision_agreement() -> None:
    assert revision_agreement([put(1, 0, 1, b"a", 2), put(2, 0, 1, b"b", 3)]) == []
    assert (
        "two writes at revision 2"
        in revision_agreement([put(1, 0, 1, b"a", 2), put(2, 0, 1, b"b", 2)])[0]
    )
    read = Record(3, A, GET, K, 2, 3, result=b"a", revision=4, mod_revision=3)
    assert "mod revision 3" in revision_agreement([put(1, 0, 1, b"a", 2), read])[0]


def test_failed_and_serializable_reads_stay_out_of_the_linearizability_check() -> None:
    h = [
        put(1, 0, 1, b"a"),
        put(1, 2, 3, b"b"),
        sget(2, 4, 5, b"a", 2),  # stale, but allowed: serializable
        Record(2, A, GET, K, 4, None, error="DEADLINE_EXCEEDED: x"),
    ]
    ops = to_ops(h)
    assert len(ops) == 2
    assert check_linearizable(ops).ok
    # the same stale read claimed linearizable is an anomaly, with the failing ops shown
    bad = check_linearizable(to_ops([*h[:2], Record(2, A, GET, K, 4, 5, result=b"a")]))
    assert not bad.ok
    assert any("not linearizable" in a for a in bad.anomalies)
    assert "put b'b'" in bad.detail and "get" in bad.detail


class _Err(grpc.RpcError):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> Any:
        return self._code

    def details(self) -> str:
        return self._details


def test_definite_and_indeterminate_errors() -> None:
    u = grpc.StatusCode.UNAVAILABLE
    assert definite_failure(_Err(u, "etcdserver: no leader"))
    assert definite_failure(_Err(u, "failed to connect to all addresses; last error: x"))
    assert definite_failure(_Err(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: bad"))
    assert not definite_failure(_Err(u, "etcdserver: request timed out"))
    assert not definite_failure(_Err(u, "Socket closed"))
    assert not definite_failure(_Err(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert not definite_failure(_Err(grpc.StatusCode.UNKNOWN, "stream reset"))

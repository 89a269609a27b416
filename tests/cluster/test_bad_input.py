"""Bad input gets etcd's error, and the member keeps serving.

Each bad request goes over gRPC to a raftkv member and to a single etcd member (default
limits on both: ``--max-request-bytes`` 1.5 MiB, ``--max-txn-ops`` 128); the gRPC code and
message must be etcd's. After each, the raftkv cluster must still commit a put and answer a
linearizable read on every member. Garbage bytes go to the client port over raw sockets.

Not sent: a RangeRequest with an unknown sort target, which crashes an etcd 3.4 member (raftkv
answers etcd 3.5's "invalid sort option").
"""

from __future__ import annotations

import os
import re
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from tests.cluster.harness import Cluster, Node

MiB = 1024 * 1024
MAX_REQUEST_BYTES = 3 * MiB // 2  # etcd's default
GRPC_OVERHEAD = 512 * 1024  # etcd lets gRPC take this much more than --max-request-bytes


@dataclass(frozen=True)
class Answer:
    code: str
    details: str

    def __str__(self) -> str:
        shown = self.details if len(self.details) <= 300 else f"{self.details[:300]}..."
        return f"{self.code}: {shown}"


@dataclass
class Target:
    """One member to send bad input to, and its stubs."""

    node: Node

    @property
    def kv(self) -> Any:
        return self.node.kv()

    @property
    def maintenance(self) -> Any:
        return self.node.maintenance()

    def call(self, fn: Callable[[Any], Any]) -> Answer:
        try:
            resp = fn(self)
        except grpc.RpcError as exc:
            return Answer(str(exc.code()), str(exc.details()))
        return Answer("OK", summary(resp))

    def raw(self, method: str, payload: bytes) -> Answer:
        """A call with arbitrary request bytes (no client-side serialization)."""
        call = self.node.channel().unary_unary(method)
        try:
            resp = call(payload, timeout=10)
        except grpc.RpcError as exc:
            return Answer(str(exc.code()), str(exc.details()))
        return Answer("OK", repr(resp))


def summary(resp: Any) -> str:
    """A response without its header (ids and terms differ between clusters)."""
    copy = type(resp)()
    copy.CopyFrom(resp)
    copy.ClearField("header")
    text = re.sub(r"\s+", " ", str(copy))
    # Revisions differ between the two clusters (different histories).
    return re.sub(r"(\w*revision): \d+", r"\1: <n>", text)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    base: Path = tmp_path_factory.mktemp("bad-etcd")
    c = Cluster(base, kind="etcd", size=1)
    try:
        c.start()
        yield Target(c.nodes[0])
    finally:
        c.stop()


@pytest.fixture
def raftkv(cluster: Cluster) -> Target:
    """The raftkv leader (bad input goes where writes are decided)."""
    return Target(cluster.wait_leader())


def assert_serving(cluster: Cluster) -> None:
    """Every member is up; the cluster commits a put and every member reads it back."""
    for node in cluster.nodes:
        assert node.alive, f"{node.name} exited:\n{node.log_path.read_text()[-3000:]}"
    lead = cluster.wait_leader()
    value = os.urandom(8).hex().encode()
    lead.kv().Put(rpc_pb2.PutRequest(key=b"serving", value=value), timeout=10)
    for node in cluster.nodes:
        resp = node.kv().Range(rpc_pb2.RangeRequest(key=b"serving"), timeout=10)
        assert [kv.value for kv in resp.kvs] == [value], node.name


def _put(key: bytes, value: bytes = b"v") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))


def _revision(t: Target) -> int:
    for i in range(3):
        t.kv.Put(rpc_pb2.PutRequest(key=b"hist", value=b"%d" % i), timeout=10)
    rev: int = t.kv.Range(rpc_pb2.RangeRequest(key=b"hist"), timeout=10).header.revision
    return rev


def _compacted_range(t: Target) -> Any:
    rev = _revision(t)
    t.kv.Compact(rpc_pb2.CompactionRequest(revision=rev - 1, physical=True), timeout=10)
    return t.kv.Range(rpc_pb2.RangeRequest(key=b"hist", revision=rev - 2), timeout=10)


def _compact_twice(t: Target) -> Any:
    rev = _revision(t)
    t.kv.Compact(rpc_pb2.CompactionRequest(revision=rev - 1), timeout=10)
    return t.kv.Compact(rpc_pb2.CompactionRequest(revision=rev - 1), timeout=10)


def _hashkv_compacted(t: Target) -> Any:
    rev = _revision(t)
    t.kv.Compact(rpc_pb2.CompactionRequest(revision=rev - 1), timeout=10)
    return t.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=rev - 2), timeout=10)


def _future(t: Target) -> Any:
    rev = _revision(t)
    return t.kv.Range(rpc_pb2.RangeRequest(key=b"hist", revision=rev + 1), timeout=10)


def _compact_future(t: Target) -> Any:
    rev = _revision(t)
    return t.kv.Compact(rpc_pb2.CompactionRequest(revision=rev + 10), timeout=10)


def _hashkv_future(t: Target) -> Any:
    rev = _revision(t)
    return t.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=rev + 10), timeout=10)


def _range_end_before_key(t: Target) -> Any:
    t.kv.Put(rpc_pb2.PutRequest(key=b"m", value=b"1"), timeout=10)
    return t.kv.Range(rpc_pb2.RangeRequest(key=b"z", range_end=b"a"), timeout=10)


def _delete_end_before_key(t: Target) -> Any:
    t.kv.Put(rpc_pb2.PutRequest(key=b"m", value=b"1"), timeout=10)
    return t.kv.DeleteRange(
        rpc_pb2.DeleteRangeRequest(key=b"z", range_end=b"a", prev_kv=True), timeout=10
    )


CASES: dict[str, Callable[[Target], Any]] = {
    "put empty key": lambda t: t.kv.Put(rpc_pb2.PutRequest(key=b"", value=b"x"), timeout=10),
    "range empty key": lambda t: t.kv.Range(rpc_pb2.RangeRequest(key=b""), timeout=10),
    "range empty key with end": lambda t: t.kv.Range(
        rpc_pb2.RangeRequest(key=b"", range_end=b"z"), timeout=10
    ),
    "delete empty key": lambda t: t.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b""), timeout=10),
    "txn compare empty key": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=b"")]), timeout=10
    ),
    "txn put empty key": lambda t: t.kv.Txn(rpc_pb2.TxnRequest(success=[_put(b"")]), timeout=10),
    "txn empty op": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]), timeout=10
    ),
    "put ignore_value on a missing key": lambda t: t.kv.Put(
        rpc_pb2.PutRequest(key=b"missing", ignore_value=True), timeout=10
    ),
    "put unknown lease": lambda t: t.kv.Put(
        rpc_pb2.PutRequest(key=b"k", value=b"v", lease=12345), timeout=10
    ),
    "range end before key": _range_end_before_key,
    "delete end before key": _delete_end_before_key,
    "future revision": _future,
    "compacted revision": _compacted_range,
    "compact a compacted revision": _compact_twice,
    "compact a future revision": _compact_future,
    "hashkv compacted revision": _hashkv_compacted,
    "hashkv future revision": _hashkv_future,
    "put over max-request-bytes": lambda t: t.kv.Put(
        rpc_pb2.PutRequest(key=b"big", value=b"v" * (MAX_REQUEST_BYTES + 1000)), timeout=20
    ),
    "txn over max-request-bytes": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(success=[_put(b"a", b"v" * (MAX_REQUEST_BYTES + 1000))]), timeout=20
    ),
    "put over gRPC's receive limit": lambda t: t.kv.Put(
        rpc_pb2.PutRequest(key=b"huge", value=b"v" * (MAX_REQUEST_BYTES + GRPC_OVERHEAD)),
        timeout=20,
    ),
    "range over gRPC's receive limit": lambda t: t.kv.Range(
        rpc_pb2.RangeRequest(key=b"k" * (MAX_REQUEST_BYTES + GRPC_OVERHEAD)), timeout=20
    ),
    "txn over max-txn-ops": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(success=[_put(b"op%d" % i) for i in range(129)]), timeout=10
    ),
    "txn compares over max-txn-ops": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=b"c%d" % i) for i in range(129)]),
        timeout=10,
    ),
    "txn at max-txn-ops": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(success=[_put(b"op%d" % i) for i in range(128)]), timeout=10
    ),
    "txn duplicate put": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(success=[_put(b"d"), _put(b"d")]), timeout=10
    ),
    "txn put inside deleted range": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(
            success=[
                rpc_pb2.RequestOp(
                    request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"a", range_end=b"z")
                ),
                _put(b"m"),
            ]
        ),
        timeout=10,
    ),
    "nested txn duplicate put": lambda t: t.kv.Txn(
        rpc_pb2.TxnRequest(
            success=[
                _put(b"q"),
                rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(success=[_put(b"q")])),
            ]
        ),
        timeout=10,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_gets_etcds_error(
    case: str, raftkv: Target, etcd: Target, cluster: Cluster
) -> None:
    want = etcd.call(CASES[case])
    got = raftkv.call(CASES[case])
    assert got == want, f"{case}: etcd answered {want}, raftkv {got}"
    assert_serving(cluster)


# Request bytes that do not parse as the method's message (a length running past the end,
# a bad wire type, a truncated varint). gRPC answers INTERNAL; the message text is each
# implementation's own protobuf error.
MALFORMED = {
    "truncated length": b"\x0a\xff\xff\xff\x0f",
    "bad wire type": b"\x0f\x01",
    "truncated varint": b"\x18\xff",
}


@pytest.mark.parametrize("method", ["/etcdserverpb.KV/Put", "/etcdserverpb.KV/Range"])
@pytest.mark.parametrize("payload", list(MALFORMED))
def test_malformed_protobuf(
    method: str, payload: str, raftkv: Target, etcd: Target, cluster: Cluster
) -> None:
    want = etcd.raw(method, MALFORMED[payload])
    got = raftkv.raw(method, MALFORMED[payload])
    assert (got.code, want.code) == ("StatusCode.INTERNAL", "StatusCode.INTERNAL"), (want, got)
    for answer in (want, got):
        assert answer.details.startswith("grpc: error unmarshalling request"), answer
    assert_serving(cluster)


def test_unknown_method(raftkv: Target, etcd: Target, cluster: Cluster) -> None:
    for method in ["/etcdserverpb.KV/Nope", "/nope.Service/Call"]:
        want = etcd.raw(method, b"")
        got = raftkv.raw(method, b"")
        assert got.code == want.code == "StatusCode.UNIMPLEMENTED", (want, got)
    assert_serving(cluster)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([ftype, flags])
        + struct.pack(">I", stream)
        + payload
    )


GARBAGE: dict[str, bytes] = {
    "random bytes": bytes(range(256)) * 64,
    "http/1.1 request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "half a preface": PREFACE[:10],
    "preface then junk": PREFACE + b"\xff" * 4096,
    "preface, settings, an oversized frame": PREFACE
    + _frame(4, 0, 0, b"")
    + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01"
    + b"x" * 1024,
    "preface, settings, headers with bad hpack": PREFACE
    + _frame(4, 0, 0, b"")
    + _frame(1, 4, 1, b"\xff\xff\xff\xff\xff\xff"),
    "preface, settings, data on an unopened stream": PREFACE
    + _frame(4, 0, 0, b"")
    + _frame(0, 1, 7, b"\x00\x00\x00\x00\x05hello"),
}


def _send_garbage(node: Node, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", node.client_port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            for _ in range(64):  # read whatever comes back until the server closes; bounded
                if not s.recv(65536):
                    break
        except OSError:  # reset, broken pipe, not connected, timeout: all fine here
            pass


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_bytes_on_the_client_port(garbage: str, cluster: Cluster) -> None:
    for node in cluster.nodes:
        _send_garbage(node, GARBAGE[garbage])
    assert_serving(cluster)


def test_many_garbage_connections_at_once(cluster: Cluster) -> None:
    socks = [
        socket.create_connection(("127.0.0.1", n.client_port), timeout=5)
        for n in cluster.nodes
        for _ in range(20)
    ]
    try:
        for i, s in enumerate(socks):
            s.sendall(PREFACE[: i % len(PREFACE)] + os.urandom(64))
    finally:
        for s in socks:
            s.close()
    assert_serving(cluster)

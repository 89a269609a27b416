"""etcd's KV service checks (v3rpc/key.go) and the helpers the server calls around MvccStore.

- ``parse_and_validate(method, payload, limits)``: parse a KV request and run etcd's checks;
  raises GrpcError with etcd's code and message.
- ``proposal(method, payload, limits)``: the same for a write, returning the ``(kind, payload)``
  pair that ``MvccStore.apply`` takes (the payload is proposed as received).
- ``serve_range(store, payload)`` / ``serve_txn_read(store, payload)``: reads served locally.
- ``header_suffix(cluster_id, member_id, raft_term)``: bytes to append to any serialized KV
  response; protobuf merges the two ``header`` occurrences, so the response keeps the revision
  set by the store and gains the member's ids and term without being parsed again.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message  # type: ignore[import-untyped]

from raftkv.api import errors
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.status import GrpcError, StatusCode
from raftkv.storage import mvcc
from raftkv.storage.encoding import varint
from raftkv.storage.kvrules import txn_is_readonly
from raftkv.storage.mvcc import MvccStore

DEFAULT_MAX_TXN_OPS = 128
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024  # etcd's --max-request-bytes default (1.5 MiB)


GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd lets gRPC receive max_request_bytes + this


def proposal_size(payload_len: int, member_id: int = 0) -> int:
    """The size etcd compares with ``--max-request-bytes`` for a KV write of ``payload_len``
    bytes: its Raft entry, an InternalRaftRequest holding a RequestHeader (field 100) with
    the request id, and the request (fields 4 to 7)."""
    request_id = (member_id & 0xFFFF) << 48 | 1 << 47  # idutil: member bits, then time
    header = 1 + len(varint(request_id))
    return 2 + len(varint(header)) + header + 1 + len(varint(payload_len)) + payload_len


@dataclass(frozen=True, slots=True)
class Limits:
    """etcd's request limits (flags ``--max-txn-ops`` and ``--max-request-bytes``).

    ``member_id`` only refines the size etcd gives a proposal (its request ids start with
    the member id's low 16 bits); pass the member's id for byte-exact limits.
    """

    max_txn_ops: int = DEFAULT_MAX_TXN_OPS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    member_id: int = 0
    # the largest request that no size check can refuse (both are monotonic in the size)
    surely_small: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = self.max_request_bytes
        while n > 0 and proposal_size(n, self.member_id) > self.max_request_bytes:
            n -= proposal_size(n, self.member_id) - self.max_request_bytes
        fits = n > 0 and proposal_size(n, self.member_id) <= self.max_request_bytes
        object.__setattr__(self, "surely_small", n if fits else -1)


DEFAULT_LIMITS = Limits()
T = TypeVar("T")

_SORT_ORDERS = frozenset(rpc_pb2.RangeRequest.SortOrder.values())
_SORT_TARGETS = frozenset(rpc_pb2.RangeRequest.SortTarget.values())


# ---------------------------------------------------------------------- request checks


def check_range(req: rpc_pb2.RangeRequest) -> None:
    if not req.key:
        raise errors.EMPTY_KEY.exc()
    # etcd 3.5 rejects unknown sort enums (3.4 ignored an unknown order and crashed on an
    # unknown target).
    if req.sort_order not in _SORT_ORDERS or req.sort_target not in _SORT_TARGETS:
        raise errors.INVALID_SORT_OPTION.exc()


def check_put(req: rpc_pb2.PutRequest) -> None:
    if not req.key:
        raise errors.EMPTY_KEY.exc()
    if req.ignore_value and req.value:
        raise errors.VALUE_PROVIDED.exc()
    if req.ignore_lease and req.lease:
        raise errors.LEASE_PROVIDED.exc()


def check_delete_range(req: rpc_pb2.DeleteRangeRequest) -> None:
    if not req.key:
        raise errors.EMPTY_KEY.exc()


def check_txn(req: rpc_pb2.TxnRequest, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """etcd's checkTxnRequest: op counts (a nested txn gets what its parent left), keys."""
    opc = max(len(req.compare), len(req.success), len(req.failure))
    if opc > max_txn_ops:
        raise errors.TOO_MANY_OPS.exc()
    for c in req.compare:
        if not c.key:
            raise errors.EMPTY_KEY.exc()
    for op in req.success:
        _check_op(op, max_txn_ops - opc)
    for op in req.failure:
        _check_op(op, max_txn_ops - opc)


def _check_op(op: rpc_pb2.RequestOp, max_txn_ops: int) -> None:
    which = op.WhichOneof("request")
    if which == "request_range":
        check_range(op.request_range)
    elif which == "request_put":
        check_put(op.request_put)
    elif which == "request_delete_range":
        check_delete_range(op.request_delete_range)
    elif which == "request_txn":
        check_txn(op.request_txn, max_txn_ops)
    else:
        raise errors.KEY_NOT_FOUND.exc()  # an empty op, as etcd answers it


class _Cover:
    """A union of half-open byte-string intervals [begin, end), kept merged and sorted."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[bytes] = []
        self.ends: list[bytes] = []

    def add(self, begin: bytes, end: bytes) -> None:
        if end <= begin:
            return  # empty (etcd's interval for range_end "\0" or an end before the key)
        starts, ends = self.starts, self.ends
        i = bisect_right(starts, begin) - 1
        if i >= 0 and ends[i] >= begin:
            begin = starts[i]
        else:
            i += 1
        j = i
        while j < len(starts) and starts[j] <= end:
            end = max(end, ends[j])
            j += 1
        starts[i:j] = [begin]
        ends[i:j] = [end]

    def update(self, other: _Cover) -> None:
        for begin, end in zip(other.starts, other.ends, strict=True):
            self.add(begin, end)

    def covers(self, key: bytes) -> bool:
        i = bisect_right(self.starts, key) - 1
        return i >= 0 and key < self.ends[i]


def _check_intervals(ops: Iterable[rpc_pb2.RequestOp]) -> tuple[set[bytes], _Cover]:
    """etcd's checkIntervals: no key may be put twice, or put and deleted, in one txn.

    Deletes of a level are collected first; puts of nested txns are checked against them
    and against each other (the two branches of one nested txn may put the same key), then
    this level's puts. Deletes of nested txns join this level's for the levels above.
    """
    ops = list(ops)
    dels = _Cover()
    for op in ops:
        if op.HasField("request_delete_range"):
            d = op.request_delete_range
            dels.add(d.key, d.range_end if d.range_end else d.key + b"\x00")
    puts: set[bytes] = set()
    for op in ops:
        if not op.HasField("request_txn"):
            continue
        then_puts, then_dels = _check_intervals(op.request_txn.success)
        else_puts, else_dels = _check_intervals(op.request_txn.failure)
        for k in then_puts:
            if k in puts or dels.covers(k):
                raise errors.DUPLICATE_KEY.exc()
            puts.add(k)
        for k in else_puts:
            if (k in puts and k not in then_puts) or dels.covers(k):
                raise errors.DUPLICATE_KEY.exc()
            puts.add(k)
        dels.update(then_dels)
        dels.update(else_dels)
    for op in ops:
        if op.HasField("request_put"):
            k = op.request_put.key
            if k in puts or dels.covers(k):
                raise errors.DUPLICATE_KEY.exc()
            puts.add(k)
    return puts, dels


def validate_txn(req: rpc_pb2.TxnRequest, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """All of etcd's checks of a Txn, in etcd's order."""
    check_txn(req, max_txn_ops)
    _check_intervals(req.success)
    _check_intervals(req.failure)


# ---------------------------------------------------------------------- methods


@dataclass(frozen=True, slots=True)
class _Method:
    message: Any
    check: Callable[[Any, Limits], None]
    kind: int  # MvccStore.apply kind; 0 for reads


def _check_compaction(req: rpc_pb2.CompactionRequest, limits: Limits) -> None:
    return None


_METHODS: dict[str, _Method] = {
    "Range": _Method(rpc_pb2.RangeRequest, lambda r, lim: check_range(r), 0),
    "Put": _Method(rpc_pb2.PutRequest, lambda r, lim: check_put(r), mvcc.PUT),
    "DeleteRange": _Method(
        rpc_pb2.DeleteRangeRequest, lambda r, lim: check_delete_range(r), mvcc.DELETE_RANGE
    ),
    "Txn": _Method(rpc_pb2.TxnRequest, lambda r, lim: validate_txn(r, lim.max_txn_ops), mvcc.TXN),
    "Compact": _Method(rpc_pb2.CompactionRequest, _check_compaction, mvcc.COMPACTION),
}


def _method(method: str) -> _Method:
    name = method.rsplit("/", 1)[-1]
    if method.startswith("/") and not method.startswith("/etcdserverpb.KV/"):
        name = ""
    m = _METHODS.get(name)
    if m is None:
        raise GrpcError(StatusCode.UNIMPLEMENTED, f"unknown method {method}")
    return m


def parse_and_validate(method: str, payload: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse a KV request (``"Put"`` or ``"/etcdserverpb.KV/Put"``) and run etcd's checks,
    in etcd's order: gRPC's message size limit, parsing (bytes that do not parse get gRPC's
    INTERNAL "error unmarshalling request"), the request checks, then for what etcd proposes
    through Raft (writes and writing txns) "request is too large" (``proposal_size``).
    """
    m = _method(method)
    _check_grpc_size(payload, limits)
    req: Message = _parse(m.message, payload, lambda r: m.check(r, limits))
    if m.kind and not (m.kind == mvcc.TXN and txn_is_readonly(req)):
        _check_size(payload, limits)
    return req


def parse_range(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> rpc_pb2.RangeRequest:
    """A validated RangeRequest (only gRPC's size limit: etcd does not propose reads)."""
    _check_grpc_size(payload, limits)
    return _parse(rpc_pb2.RangeRequest, payload, check_range)


def parse_put(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> rpc_pb2.PutRequest:
    _check_grpc_size(payload, limits)
    req = _parse(rpc_pb2.PutRequest, payload, check_put)
    _check_size(payload, limits)
    return req


def parse_delete_range(
    payload: bytes, limits: Limits = DEFAULT_LIMITS
) -> rpc_pb2.DeleteRangeRequest:
    _check_grpc_size(payload, limits)
    req = _parse(rpc_pb2.DeleteRangeRequest, payload, check_delete_range)
    _check_size(payload, limits)
    return req


def parse_txn(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> rpc_pb2.TxnRequest:
    """A validated TxnRequest; the proposal size is checked only if it writes."""
    _check_grpc_size(payload, limits)
    req = _parse(rpc_pb2.TxnRequest, payload, lambda r: validate_txn(r, limits.max_txn_ops))
    if not txn_is_readonly(req):
        _check_size(payload, limits)
    return req


def parse_compaction(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> rpc_pb2.CompactionRequest:
    _check_grpc_size(payload, limits)
    req = _parse(rpc_pb2.CompactionRequest, payload, lambda r: None)
    _check_size(payload, limits)
    return req


def _check_size(payload: bytes, limits: Limits) -> None:
    if proposal_size(len(payload), limits.member_id) > limits.max_request_bytes:
        raise errors.REQUEST_TOO_LARGE.exc()


def _check_grpc_size(payload: bytes, limits: Limits) -> None:
    limit = limits.max_request_bytes + GRPC_OVERHEAD_BYTES
    if len(payload) > limit:
        raise GrpcError(
            StatusCode.RESOURCE_EXHAUSTED,
            f"grpc: received message larger than max ({len(payload)} vs. {limit})",
        )


def _parse(cls: Callable[[], T], payload: bytes, check: Callable[[T], None]) -> T:
    req = cls()
    try:
        req.ParseFromString(payload)  # type: ignore[attr-defined]
    except DecodeError as exc:
        raise GrpcError(StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}") from exc
    check(req)
    return req


_put_from = rpc_pb2.PutRequest.FromString


def put_proposal(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[int, bytes]:
    """``proposal("Put", payload, limits)`` with less overhead for the common case (the
    hottest call of a write-heavy load); same checks, same errors."""
    if len(payload) > limits.surely_small:
        return proposal("Put", payload, limits)
    try:
        req = _put_from(payload)
    except DecodeError as exc:
        raise GrpcError(StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}") from exc
    if not req.key or req.ignore_value or req.ignore_lease:
        check_put(req)
    return mvcc.PUT, payload


def write_kind(method: str) -> int:
    """The ``MvccStore.apply`` kind of a KV write method; 0 for Range."""
    return _method(method).kind


def proposal(method: str, payload: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[int, bytes]:
    """Validate a KV write and return the ``(kind, payload)`` to propose and apply."""
    m = _method(method)
    if not m.kind:
        raise ValueError(f"{method} is not a write")
    parse_and_validate(method, payload, limits)
    return m.kind, payload


def serve_range(store: MvccStore, payload: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Validate and serve a serialized RangeRequest from ``store``; the serialized response."""
    return store.range_serialized(parse_range(payload, limits))


def serve_txn_read(store: MvccStore, payload: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Validate and serve a read-only Txn locally (``is_txn_readonly``)."""
    req = parse_and_validate("Txn", payload, limits)
    assert isinstance(req, rpc_pb2.TxnRequest)
    out: bytes = store.txn_read(req).SerializeToString()
    return out


def is_txn_readonly(req: rpc_pb2.TxnRequest) -> bool:
    """True if the txn never writes, whichever branch it takes (served like a Range)."""
    return txn_is_readonly(req)


def header_suffix(cluster_id: int, member_id: int, raft_term: int) -> bytes:
    """Bytes that, appended to a serialized KV response, set its header's member fields."""
    h = rpc_pb2.ResponseHeader(cluster_id=cluster_id, member_id=member_id, raft_term=raft_term)
    body: bytes = h.SerializeToString()
    return b"\x0a" + varint(len(body)) + body

"""A thin client over MvccStore.apply for tests: one request per Raft index, parsed results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2 as pb
from raftkv.status import GrpcError
from raftkv.storage import mvcc
from raftkv.storage.mvcc import MvccStore

RESPONSES: dict[int, Any] = {
    mvcc.PUT: pb.PutResponse,
    mvcc.DELETE_RANGE: pb.DeleteRangeResponse,
    mvcc.TXN: pb.TxnResponse,
    mvcc.COMPACTION: pb.CompactionResponse,
}


class Client:
    def __init__(self, path: Path, leases: set[int] | None = None) -> None:
        self.path = path
        self.leases = leases if leases is not None else set()
        self.store = MvccStore(path, lease_exists=self.leases.__contains__)
        self.index = self.store.applied_index

    def reopen(self) -> None:
        self.store.close()
        self.store = MvccStore(self.path, lease_exists=self.leases.__contains__)
        self.index = self.store.applied_index

    def close(self) -> None:
        self.store.close()

    def apply(self, kind: int, msg: Any) -> Any:
        """Apply one request; the parsed response, or raise its GrpcError."""
        self.index += 1
        (result,) = self.store.apply(self.index, [(kind, msg.SerializeToString())])
        if isinstance(result, GrpcError):
            raise result
        return RESPONSES[kind].FromString(result)

    def put(self, key: bytes, value: bytes = b"", **kw: Any) -> pb.PutResponse:
        out: pb.PutResponse = self.apply(mvcc.PUT, pb.PutRequest(key=key, value=value, **kw))
        return out

    def delete(self, key: bytes, range_end: bytes = b"", **kw: Any) -> pb.DeleteRangeResponse:
        req = pb.DeleteRangeRequest(key=key, range_end=range_end, **kw)
        out: pb.DeleteRangeResponse = self.apply(mvcc.DELETE_RANGE, req)
        return out

    def txn(self, t: pb.TxnRequest) -> pb.TxnResponse:
        out: pb.TxnResponse = self.apply(mvcc.TXN, t)
        return out

    def compact(self, revision: int) -> pb.CompactionResponse:
        req = pb.CompactionRequest(revision=revision)
        out: pb.CompactionResponse = self.apply(mvcc.COMPACTION, req)
        return out

    def get(self, key: bytes, range_end: bytes = b"", **kw: Any) -> pb.RangeResponse:
        return self.store.range(pb.RangeRequest(key=key, range_end=range_end, **kw))

    def keys(self, key: bytes = b"\x00", range_end: bytes = b"\x00", **kw: Any) -> list[bytes]:
        return [kv.key for kv in self.get(key, range_end, **kw).kvs]


def put_op(key: bytes, value: bytes = b"", **kw: Any) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, **kw))


def del_op(key: bytes, range_end: bytes = b"", **kw: Any) -> pb.RequestOp:
    return pb.RequestOp(
        request_delete_range=pb.DeleteRangeRequest(key=key, range_end=range_end, **kw)
    )


def range_op(key: bytes, range_end: bytes = b"", **kw: Any) -> pb.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, range_end=range_end, **kw))


def txn_op(t: pb.TxnRequest) -> pb.RequestOp:
    return pb.RequestOp(request_txn=t)

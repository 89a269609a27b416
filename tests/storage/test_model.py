"""Seeded randomized test: MvccStore against the reference model over thousands of operations.

Writes go through the API checks and then ``apply`` (several requests per Raft index), reads
through ``range``/``txn_read``; the store is closed and reopened now and then, and every
response or error must equal the model's.
"""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from raftkv.api import kv as kvapi
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2 as pb
from raftkv.status import GrpcError
from raftkv.storage import mvcc
from raftkv.storage.mvcc import MvccStore
from tests.storage.model import Model, expect

KEYS = [b"a", b"ab", b"abc", b"b", b"ba", b"c", b"d", b"e"]
VALUES = [b"", b"v1", b"v2", b"zz", b"\x00\xff"]
LEASES = {100, 200}


def lease_exists(lease: int) -> bool:
    return lease in LEASES


class Gen:
    def __init__(self, rnd: random.Random, model: Model) -> None:
        self.r = rnd
        self.m = model

    def key(self) -> bytes:
        return self.r.choice(KEYS)

    def span(self) -> tuple[bytes, bytes]:
        k = self.key()
        c = self.r.random()
        if c < 0.45:
            return k, b""
        if c < 0.6:
            return k, b"\x00"
        if c < 0.75:
            return k, k[:-1] + bytes([k[-1] + 1])  # prefix
        return k, self.key()  # may end before the key

    def rev(self) -> int:
        return self.r.randint(-2, self.m.rev + 2)

    def put(self) -> pb.PutRequest:
        r = self.r
        p = pb.PutRequest(key=self.key(), value=r.choice(VALUES))
        p.lease = r.choice([0, 0, 0, 100, 200, 300])
        p.prev_kv = r.random() < 0.4
        if r.random() < 0.15:
            p.ignore_value = True
            if r.random() < 0.9:
                p.value = b""
        if r.random() < 0.15:
            p.ignore_lease = True
            if r.random() < 0.9:
                p.lease = 0
        return p

    def delete(self) -> pb.DeleteRangeRequest:
        k, e = self.span()
        return pb.DeleteRangeRequest(key=k, range_end=e, prev_kv=self.r.random() < 0.5)

    def range(self) -> pb.RangeRequest:
        r = self.r
        k, e = self.span()
        q = pb.RangeRequest(key=k, range_end=e)
        if r.random() < 0.3:
            q.revision = self.rev()
        if r.random() < 0.3:
            q.limit = r.randint(-1, 4)
        if r.random() < 0.4:
            q.sort_order = r.choice([0, 1, 2])  # type: ignore[assignment]
            q.sort_target = r.choice([0, 1, 2, 3, 4])  # type: ignore[assignment]
        q.keys_only = r.random() < 0.15
        q.count_only = r.random() < 0.1
        for f in (
            "min_mod_revision",
            "max_mod_revision",
            "min_create_revision",
            "max_create_revision",
        ):
            if r.random() < 0.1:
                setattr(q, f, r.randint(0, self.m.rev + 1))
        return q

    def compare(self) -> pb.Compare:
        r = self.r
        k, e = self.span()
        c = pb.Compare(key=k, range_end=e if r.random() < 0.3 else b"")
        c.result = r.choice([0, 1, 2, 3])  # type: ignore[assignment]
        c.target = r.choice([0, 1, 2, 3, 4])  # type: ignore[assignment]
        field = r.choice(
            ["version", "create_revision", "mod_revision", "value", "lease", "same", "same", "same"]
        )
        if field == "same":
            field = ["version", "create_revision", "mod_revision", "value", "lease"][c.target]
        if field == "value":
            c.value = r.choice(VALUES)
        elif field == "lease":
            c.lease = r.choice([0, 100, 200])
        else:
            setattr(c, field, r.randint(0, self.m.rev + 1))
        return c

    def op(self, depth: int) -> pb.RequestOp:
        c = self.r.random()
        if c < 0.3:
            return pb.RequestOp(request_put=self.put())
        if c < 0.5:
            return pb.RequestOp(request_delete_range=self.delete())
        if c < 0.85 or depth >= 2:
            q = self.range()
            if self.r.random() < 0.7:
                q.revision = 0
            return pb.RequestOp(request_range=q)
        return pb.RequestOp(request_txn=self.txn(depth + 1))

    def txn(self, depth: int = 0) -> pb.TxnRequest:
        r = self.r
        t = pb.TxnRequest()
        t.compare.extend(self.compare() for _ in range(r.randint(0, 3)))
        t.success.extend(self.op(depth) for _ in range(r.randint(0, 3)))
        t.failure.extend(self.op(depth) for _ in range(r.randint(0, 3)))
        return t

    def compaction(self) -> pb.CompactionRequest:
        lo = max(self.m.compacted - 1, 0)
        return pb.CompactionRequest(revision=self.r.randint(lo, self.m.rev + 1))


RESPONSE_TYPES: dict[int, Any] = {
    mvcc.PUT: pb.PutResponse,
    mvcc.DELETE_RANGE: pb.DeleteRangeResponse,
    mvcc.TXN: pb.TxnResponse,
    mvcc.COMPACTION: pb.CompactionResponse,
}
METHODS = {
    mvcc.PUT: "Put",
    mvcc.DELETE_RANGE: "DeleteRange",
    mvcc.TXN: "Txn",
    mvcc.COMPACTION: "Compact",
}


def same(got: object, want: object, what: str) -> None:
    if isinstance(want, GrpcError):
        assert isinstance(got, GrpcError), f"{what}: expected {want}, got {got}"
        assert (got.code, got.message) == (want.code, want.message), what
    else:
        assert not isinstance(got, GrpcError), f"{what}: unexpected {got}"
        assert got == want, f"{what}:\n got {got}\nwant {want}"


def model_apply(model: Model, kind: int, msg: Any) -> object:
    fn = {
        mvcc.PUT: model.put,
        mvcc.DELETE_RANGE: model.delete_range,
        mvcc.TXN: model.txn,
        mvcc.COMPACTION: model.compact,
    }[kind]
    return expect(lambda: fn(msg))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_store_matches_model(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    model = Model(lease_exists)
    gen = Gen(rnd, model)
    store = MvccStore(tmp_path / "db", lease_exists=lease_exists)
    raft_index = 0
    checked = {"write": 0, "read": 0, "rejected": 0, "reopen": 0}
    try:
        for step in range(1500):
            c = rnd.random()
            if c < 0.55:
                batch: list[tuple[int, bytes]] = []
                msgs: list[Any] = []
                for _ in range(rnd.randint(1, 4)):
                    k = rnd.random()
                    if k < 0.4:
                        kind, msg = mvcc.PUT, gen.put()
                    elif k < 0.55:
                        kind, msg = mvcc.DELETE_RANGE, gen.delete()
                    elif k < 0.95:
                        kind, msg = mvcc.TXN, gen.txn()
                    else:
                        kind, msg = mvcc.COMPACTION, gen.compaction()
                    payload = msg.SerializeToString()
                    try:
                        kvapi.parse_and_validate(METHODS[kind], payload)
                    except GrpcError:
                        checked["rejected"] += 1
                        continue
                    batch.append((kind, payload))
                    msgs.append((kind, msg))
                raft_index += 1
                results = store.apply(raft_index, batch)
                assert len(results) == len(batch)
                for (kind, msg), got in zip(msgs, results, strict=True):
                    want = model_apply(model, kind, msg)
                    if isinstance(got, bytes):
                        got = RESPONSE_TYPES[kind].FromString(got)
                    same(got, want, f"step {step} {METHODS[kind]} {msg}")
                    checked["write"] += 1
                assert store.revision == model.rev
            elif c < 0.9:
                q = gen.range()
                try:
                    kvapi.parse_and_validate("Range", q.SerializeToString())
                except GrpcError:
                    checked["rejected"] += 1
                    continue
                same(
                    expect(partial(store.range, q)),
                    expect(partial(model.range, q)),
                    f"step {step} range {q}",
                )
                fast = expect(partial(store.range_serialized, q))
                if isinstance(fast, bytes):  # the fast encoding equals protobuf's own
                    assert fast == store.range(q).SerializeToString()
                checked["read"] += 1
            elif c < 0.99:
                t = gen.txn()
                if not kvapi.is_txn_readonly(t):
                    continue
                try:
                    kvapi.validate_txn(t)
                except GrpcError:
                    continue
                same(
                    expect(partial(store.txn_read, t)),
                    expect(partial(model.txn, t)),
                    f"step {step} read txn {t}",
                )
                checked["read"] += 1
            else:
                store.close()
                store = MvccStore(tmp_path / "db", lease_exists=lease_exists)
                checked["reopen"] += 1
                assert store.applied_index == raft_index
                assert store.revision == model.rev
                assert store.compact_revision == model.compacted
        # Full check of every readable revision at the end.
        for rev in range(max(model.compacted, 1), model.rev + 1):
            q = pb.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev)
            same(store.range(q), model.range(q), f"final rev {rev}")
    finally:
        store.close()
    assert checked["write"] > 500 and checked["read"] > 300 and checked["reopen"] >= 3, checked

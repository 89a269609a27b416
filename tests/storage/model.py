"""A deliberately simple in-memory reference of etcd's KV semantics, for model tests.

Every revision's whole state is kept as a dict (key -> KV), so reads at any revision are a
lookup and there is no index to get wrong. Written from etcd's documented behaviour, not from
MvccStore's code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from raftkv.api import errors
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2 as pb
from raftkv.pb.etcd.api.mvccpb import kv_pb2
from raftkv.status import GrpcError


@dataclass(frozen=True)
class KV:
    key: bytes
    create: int
    mod: int
    version: int
    value: bytes
    lease: int

    def pb(self, keys_only: bool = False) -> kv_pb2.KeyValue:
        return kv_pb2.KeyValue(
            key=self.key,
            create_revision=self.create,
            mod_revision=self.mod,
            version=self.version,
            value=b"" if keys_only else self.value,
            lease=self.lease,
        )


State = dict[bytes, KV]


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end


class Model:
    def __init__(self, lease_exists: Callable[[int], bool]) -> None:
        self.lease_exists = lease_exists
        self.states: dict[int, State] = {1: {}}
        self.rev = 1
        self.compacted = -1

    @property
    def state(self) -> State:
        return self.states[self.rev]

    # ---------------------------------------------------------------- reads

    def _range(self, r: pb.RangeRequest, state: State, cur: int) -> pb.RangeResponse:
        at = r.revision
        if at > cur:
            raise errors.FUTURE_REV.exc()
        if at <= 0:
            at = cur
        if at < self.compacted:
            raise errors.COMPACTED.exc()
        view = state if at == cur else self.states[at]
        kvs = sorted(
            (kv for k, kv in view.items() if in_range(k, r.key, r.range_end)), key=lambda kv: kv.key
        )
        resp = pb.RangeResponse(count=len(kvs))
        resp.header.revision = cur
        if r.count_only:
            return resp
        if r.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod <= r.max_mod_revision]
        if r.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod >= r.min_mod_revision]
        if r.max_create_revision:
            kvs = [kv for kv in kvs if kv.create <= r.max_create_revision]
        if r.min_create_revision:
            kvs = [kv for kv in kvs if kv.create >= r.min_create_revision]
        order, target = r.sort_order, r.sort_target
        if target != pb.RangeRequest.KEY and order == pb.RangeRequest.NONE:
            order = pb.RangeRequest.ASCEND
        if order != pb.RangeRequest.NONE:
            field: Callable[[KV], object] = {
                pb.RangeRequest.KEY: lambda kv: kv.key,
                pb.RangeRequest.VERSION: lambda kv: kv.version,
                pb.RangeRequest.CREATE: lambda kv: kv.create,
                pb.RangeRequest.MOD: lambda kv: kv.mod,
                pb.RangeRequest.VALUE: lambda kv: kv.value,
            }[target]
            kvs = sorted(kvs, key=field, reverse=order == pb.RangeRequest.DESCEND)  # type: ignore[arg-type]
        if r.limit > 0 and len(kvs) > r.limit:
            kvs = kvs[: r.limit]
            resp.more = True
        resp.kvs.extend(kv.pb(r.keys_only) for kv in kvs)
        return resp

    def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        return self._range(r, self.state, self.rev)

    # ---------------------------------------------------------------- writes

    def _commit(self, state: State, changed: bool) -> None:
        if changed:
            self.rev += 1
            self.states[self.rev] = state

    def put(self, r: pb.PutRequest) -> pb.PutResponse:
        if r.lease and not self.lease_exists(r.lease):
            raise errors.LEASE_NOT_FOUND.exc()
        state = dict(self.state)
        resp = pb.PutResponse()
        self._put(r, state, self.rev + 1, resp)
        self._commit(state, True)
        return resp

    def _put(
        self, r: pb.PutRequest, state: State, rev: int, resp: pb.PutResponse, strict: bool = True
    ) -> None:
        prev = state.get(r.key)
        if (r.ignore_value or r.ignore_lease) and prev is None and strict:
            # In a txn the key was checked before the txn; a "from key" delete earlier in the
            # same txn can still remove it (etcd panics there): the given value/lease are used.
            raise errors.KEY_NOT_FOUND.exc()
        value = prev.value if r.ignore_value and prev else r.value
        lease = prev.lease if r.ignore_lease and prev else r.lease
        if prev is None:
            state[r.key] = KV(r.key, rev, rev, 1, value, lease)
        else:
            state[r.key] = replace(
                prev, mod=rev, version=prev.version + 1, value=value, lease=lease
            )
        resp.header.revision = rev
        if r.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev.pb())

    def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        state = dict(self.state)
        resp = pb.DeleteRangeResponse()
        n = self._delete(r, state, resp)
        resp.header.revision = self.rev + 1 if n else self.rev
        self._commit(state, n > 0)
        return resp

    def _delete(self, r: pb.DeleteRangeRequest, state: State, resp: pb.DeleteRangeResponse) -> int:
        gone = sorted(k for k in state if in_range(k, r.key, r.range_end))
        if r.prev_kv:
            resp.prev_kvs.extend(state[k].pb() for k in gone)
        for k in gone:
            del state[k]
        resp.deleted = len(gone)
        return len(gone)

    def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        if r.revision <= self.compacted:
            raise errors.COMPACTED.exc()
        if r.revision > self.rev:
            raise errors.FUTURE_REV.exc()
        self.compacted = r.revision
        resp = pb.CompactionResponse()
        resp.header.revision = self.rev
        return resp

    # ---------------------------------------------------------------- txn

    def _holds(self, c: pb.Compare, state: State) -> bool:
        kvs = [kv for k, kv in state.items() if in_range(k, c.key, c.range_end)]
        which = c.WhichOneof("target_union")
        if not kvs:
            if c.target == pb.Compare.VALUE:
                return False
            kvs = [KV(c.key, 0, 0, 0, b"", 0)]
        for kv in kvs:
            have: object
            want: object
            if c.target == pb.Compare.VALUE:
                have, want = kv.value, c.value if which == "value" else b""
            elif c.target == pb.Compare.VERSION:
                have, want = kv.version, c.version if which == "version" else 0
            elif c.target == pb.Compare.CREATE:
                have, want = kv.create, c.create_revision if which == "create_revision" else 0
            elif c.target == pb.Compare.MOD:
                have, want = kv.mod, c.mod_revision if which == "mod_revision" else 0
            else:
                have, want = kv.lease, c.lease if which == "lease" else 0
            res = (have > want) - (have < want)  # type: ignore[operator]
            ok = {
                pb.Compare.EQUAL: res == 0,
                pb.Compare.NOT_EQUAL: res != 0,
                pb.Compare.GREATER: res > 0,
                pb.Compare.LESS: res < 0,
            }[c.result]
            if not ok:
                return False
        return True

    def _branch(self, t: pb.TxnRequest, before: State) -> tuple[bool, list[pb.RequestOp]]:
        ok = all(self._holds(c, before) for c in t.compare)
        return ok, list(t.success if ok else t.failure)

    def _walk(self, t: pb.TxnRequest, before: State) -> list[pb.RequestOp]:
        """Every non-txn op on the taken path, in order."""
        _, ops = self._branch(t, before)
        out: list[pb.RequestOp] = []
        for op in ops:
            if op.HasField("request_txn"):
                out.extend(self._walk(op.request_txn, before))
            else:
                out.append(op)
        return out

    def txn(self, t: pb.TxnRequest) -> pb.TxnResponse:
        before = self.state
        ops = self._walk(t, before)
        writes = _writes(t)
        if writes:
            for op in ops:
                if op.HasField("request_put"):
                    p = op.request_put
                    if (p.ignore_value or p.ignore_lease) and p.key not in before:
                        raise errors.KEY_NOT_FOUND.exc()
                    if p.lease and not self.lease_exists(p.lease):
                        raise errors.LEASE_NOT_FOUND.exc()
        for op in ops:
            if op.HasField("request_range") and op.request_range.revision:
                rr = op.request_range.revision
                if rr > self.rev:
                    raise errors.FUTURE_REV.exc()
                if rr < self.compacted:
                    raise errors.COMPACTED.exc()
        state = dict(before)
        changes = [0]
        resp = pb.TxnResponse()
        self._exec(t, before, state, changes, resp)
        rev = self.rev + 1 if changes[0] else self.rev
        resp.header.revision = rev
        self._commit(state, changes[0] > 0)
        return resp

    def _exec(
        self,
        t: pb.TxnRequest,
        before: State,
        state: State,
        changes: list[int],
        resp: pb.TxnResponse,
    ) -> None:
        ok, ops = self._branch(t, before)
        resp.succeeded = ok
        base = self.rev
        for op in ops:
            out = resp.responses.add()
            which = op.WhichOneof("request")
            if which == "request_range":
                cur = base + 1 if changes[0] else base
                out.response_range.CopyFrom(self._range(op.request_range, state, cur))
            elif which == "request_put":
                self._put(op.request_put, state, base + 1, out.response_put, strict=False)
                changes[0] += 1
            elif which == "request_delete_range":
                changes[0] += self._delete(
                    op.request_delete_range, state, out.response_delete_range
                )
                out.response_delete_range.header.revision = base + 1 if changes[0] else base
            elif which == "request_txn":
                out.response_txn.header.SetInParent()
                self._exec(op.request_txn, before, state, changes, out.response_txn)


def _writes(t: pb.TxnRequest) -> bool:
    for op in list(t.success) + list(t.failure):
        if op.HasField("request_put") or op.HasField("request_delete_range"):
            return True
        if op.HasField("request_txn") and _writes(op.request_txn):
            return True
    return False


def expect(fn: Callable[[], object]) -> object:
    """fn()'s result, or the GrpcError it raised."""
    try:
        return fn()
    except GrpcError as err:
        return err

"""etcd's KV rules that need no store: read-only txns, compare results, range shapes."""

from __future__ import annotations

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2

_RangeRequest = rpc_pb2.RangeRequest
_Compare = rpc_pb2.Compare

SORT_NONE = _RangeRequest.NONE
SORT_ASCEND = _RangeRequest.ASCEND
SORT_DESCEND = _RangeRequest.DESCEND
TARGET_KEY = _RangeRequest.KEY
TARGET_VERSION = _RangeRequest.VERSION
TARGET_CREATE = _RangeRequest.CREATE
TARGET_MOD = _RangeRequest.MOD
TARGET_VALUE = _RangeRequest.VALUE

CMP_VERSION = _Compare.VERSION
CMP_CREATE = _Compare.CREATE
CMP_MOD = _Compare.MOD
CMP_VALUE = _Compare.VALUE
CMP_LEASE = _Compare.LEASE
CMP_EQUAL = _Compare.EQUAL
CMP_GREATER = _Compare.GREATER
CMP_LESS = _Compare.LESS
CMP_NOT_EQUAL = _Compare.NOT_EQUAL


def gte_end(range_end: bytes) -> bytes:
    """etcd's mkGteRange: a range end of "\\0" means no upper bound (b"" here)."""
    return b"" if range_end == b"\x00" else range_end


def txn_is_readonly(req: rpc_pb2.TxnRequest) -> bool:
    """True if no branch of the txn (nested ones included) writes (etcd's isTxnReadonly)."""
    for ops in (req.success, req.failure):
        for op in ops:
            which = op.WhichOneof("request")
            if which == "request_put" or which == "request_delete_range":
                return False
            if which == "request_txn" and not txn_is_readonly(op.request_txn):
                return False
    return True


def is_plain_range(req: rpc_pb2.RangeRequest) -> bool:
    """True if the range needs no revision filter and no sort other than by key ascending."""
    if (
        req.min_mod_revision
        or req.max_mod_revision
        or req.min_create_revision
        or req.max_create_revision
    ):
        return False
    target = req.sort_target
    if target != TARGET_KEY:
        return False
    return req.sort_order != SORT_DESCEND


def compare_fields(c: rpc_pb2.Compare, created: int, mod: int, ver: int, lease: int) -> int:
    """-1/0/1 comparing an integer field of a key with the compare's operand."""
    target = c.target
    which = c.WhichOneof("target_union")
    if target == CMP_VERSION:
        have, want = ver, (c.version if which == "version" else 0)
    elif target == CMP_CREATE:
        have, want = created, (c.create_revision if which == "create_revision" else 0)
    elif target == CMP_MOD:
        have, want = mod, (c.mod_revision if which == "mod_revision" else 0)
    elif target == CMP_LEASE:
        have, want = lease, (c.lease if which == "lease" else 0)
    else:  # VALUE is compared by the caller; an unknown target compares equal, like etcd
        return 0
    return (have > want) - (have < want)


def compare_result(result: int, res: int) -> bool:
    if result == CMP_EQUAL:
        return res == 0
    if result == CMP_NOT_EQUAL:
        return res != 0
    if result == CMP_GREATER:
        return res > 0
    if result == CMP_LESS:
        return res < 0
    return True

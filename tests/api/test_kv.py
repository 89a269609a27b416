"""etcd's KV request checks, errors and the server-side helpers of api/kv.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from raftkv.api import errors
from raftkv.api import kv as kvapi
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2 as pb
from raftkv.status import GrpcError, StatusCode
from raftkv.storage import mvcc
from raftkv.storage.mvcc import MvccStore
from tests.storage.helpers import del_op, put_op, range_op, txn_op


def raises(err: errors.EtcdError) -> AbstractContextManager[pytest.ExceptionInfo[GrpcError]]:
    return pytest.raises(GrpcError, match=f"^{err.code.name}: {err.message}$")


def test_error_constants_are_etcds() -> None:
    table = {
        errors.EMPTY_KEY: (StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        errors.KEY_NOT_FOUND: (StatusCode.INVALID_ARGUMENT, "etcdserver: key not found"),
        errors.VALUE_PROVIDED: (StatusCode.INVALID_ARGUMENT, "etcdserver: value is provided"),
        errors.LEASE_PROVIDED: (StatusCode.INVALID_ARGUMENT, "etcdserver: lease is provided"),
        errors.TOO_MANY_OPS: (
            StatusCode.INVALID_ARGUMENT,
            "etcdserver: too many operations in txn request",
        ),
        errors.DUPLICATE_KEY: (
            StatusCode.INVALID_ARGUMENT,
            "etcdserver: duplicate key given in txn request",
        ),
        errors.REQUEST_TOO_LARGE: (StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large"),
        errors.COMPACTED: (
            StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        errors.FUTURE_REV: (
            StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        errors.LEASE_NOT_FOUND: (StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
        errors.NO_LEADER: (StatusCode.UNAVAILABLE, "etcdserver: no leader"),
    }
    for err, (code, message) in table.items():
        assert (err.code, err.message) == (code, message)
        exc = err.exc()
        assert isinstance(exc, GrpcError) and (exc.code, exc.message) == (code, message)
        assert err.matches(exc) and not err.matches(ValueError(message))
    assert not errors.EMPTY_KEY.matches(errors.KEY_NOT_FOUND.exc())


# ---------------------------------------------------------------------- single requests


def test_range_checks() -> None:
    with raises(errors.EMPTY_KEY):
        kvapi.check_range(pb.RangeRequest(range_end=b"z"))
    with raises(errors.INVALID_SORT_OPTION):
        kvapi.check_range(pb.RangeRequest(key=b"a", sort_order=7))  # type: ignore[arg-type]
    with raises(errors.INVALID_SORT_OPTION):
        kvapi.check_range(pb.RangeRequest(key=b"a", sort_target=9))  # type: ignore[arg-type]
    kvapi.check_range(pb.RangeRequest(key=b"b", range_end=b"a"))  # etcd: an empty range


def test_put_checks() -> None:
    with raises(errors.EMPTY_KEY):
        kvapi.check_put(pb.PutRequest(value=b"v"))
    with raises(errors.VALUE_PROVIDED):
        kvapi.check_put(pb.PutRequest(key=b"a", value=b"v", ignore_value=True))
    with raises(errors.LEASE_PROVIDED):
        kvapi.check_put(pb.PutRequest(key=b"a", lease=5, ignore_lease=True))
    kvapi.check_put(pb.PutRequest(key=b"a", ignore_value=True, ignore_lease=True))


def test_delete_checks() -> None:
    with raises(errors.EMPTY_KEY):
        kvapi.check_delete_range(pb.DeleteRangeRequest(range_end=b"\x00"))
    kvapi.check_delete_range(pb.DeleteRangeRequest(key=b"a"))


# ---------------------------------------------------------------------- txn


def ops(n: int, make: object = put_op) -> list[pb.RequestOp]:
    return [make(b"k%d" % i) for i in range(n)]  # type: ignore[operator]


def test_txn_op_limit_counts_like_etcd() -> None:
    kvapi.validate_txn(pb.TxnRequest(success=ops(128), failure=ops(128)))
    with raises(errors.TOO_MANY_OPS):
        kvapi.validate_txn(pb.TxnRequest(success=ops(129)))
    with raises(errors.TOO_MANY_OPS):
        kvapi.validate_txn(pb.TxnRequest(compare=[pb.Compare(key=b"a")] * 129))
    kvapi.validate_txn(pb.TxnRequest(success=ops(3)), max_txn_ops=3)
    with raises(errors.TOO_MANY_OPS):
        kvapi.validate_txn(pb.TxnRequest(success=ops(4)), max_txn_ops=3)
    # a nested txn may use only what its parent left: 128 - 100
    inner_ok = pb.TxnRequest(success=[put_op(b"n%d" % i) for i in range(28)])
    inner_bad = pb.TxnRequest(success=[put_op(b"n%d" % i) for i in range(29)])
    kvapi.validate_txn(pb.TxnRequest(success=[*ops(99), txn_op(inner_ok)]))
    with raises(errors.TOO_MANY_OPS):
        kvapi.validate_txn(pb.TxnRequest(success=[*ops(99), txn_op(inner_bad)]))


def test_txn_key_checks() -> None:
    with raises(errors.EMPTY_KEY):
        kvapi.validate_txn(pb.TxnRequest(compare=[pb.Compare(range_end=b"z")]))
    with raises(errors.EMPTY_KEY):
        kvapi.validate_txn(pb.TxnRequest(failure=[range_op(b"")]))
    with raises(errors.VALUE_PROVIDED):
        kvapi.validate_txn(pb.TxnRequest(success=[put_op(b"a", b"v", ignore_value=True)]))
    with raises(errors.EMPTY_KEY):
        kvapi.validate_txn(pb.TxnRequest(success=[txn_op(pb.TxnRequest(success=[del_op(b"")]))]))
    with raises(errors.KEY_NOT_FOUND):  # an empty RequestOp
        kvapi.validate_txn(pb.TxnRequest(success=[pb.RequestOp()]))


DUPLICATES = {
    "two puts": [put_op(b"a"), put_op(b"a")],
    "put in a deleted point": [del_op(b"a"), put_op(b"a")],
    "put in a deleted range": [put_op(b"b"), del_op(b"a", b"c")],
    "nested put under a delete": [
        del_op(b"a", b"c"),
        txn_op(pb.TxnRequest(success=[put_op(b"b")])),
    ],
    "put under a nested delete": [txn_op(pb.TxnRequest(failure=[del_op(b"b")])), put_op(b"b")],
    "nested puts twice": [
        txn_op(pb.TxnRequest(success=[put_op(b"x")])),
        txn_op(pb.TxnRequest(failure=[put_op(b"x")])),
    ],
    "put then nested put": [put_op(b"x"), txn_op(pb.TxnRequest(success=[put_op(b"x")]))],
    "deep": [
        txn_op(pb.TxnRequest(success=[txn_op(pb.TxnRequest(success=[del_op(b"q")]))])),
        put_op(b"q"),
    ],
}

ALLOWED = {
    "deletes overlap": [del_op(b"a", b"c"), del_op(b"b")],
    "put beside a range": [put_op(b"c"), del_op(b"a", b"c")],
    "then and else of one txn": [
        txn_op(pb.TxnRequest(success=[put_op(b"x")], failure=[put_op(b"x")]))
    ],
    "put then a sibling nested delete": [
        txn_op(pb.TxnRequest(success=[put_op(b"k")])),
        txn_op(pb.TxnRequest(success=[del_op(b"k")])),
    ],
    "from-key delete is not an interval": [del_op(b"a", b"\x00"), put_op(b"b")],
    "delete ending before its key": [del_op(b"c", b"a"), put_op(b"b")],
    "ranges never conflict": [range_op(b"a"), put_op(b"a"), range_op(b"a", b"\x00")],
}


@pytest.mark.parametrize("name", sorted(DUPLICATES))
def test_duplicate_keys_are_refused(name: str) -> None:
    with raises(errors.DUPLICATE_KEY):
        kvapi.validate_txn(pb.TxnRequest(success=DUPLICATES[name]))
    with raises(errors.DUPLICATE_KEY):
        kvapi.validate_txn(pb.TxnRequest(failure=DUPLICATES[name]))


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_allowed_overlaps(name: str) -> None:
    kvapi.validate_txn(pb.TxnRequest(success=ALLOWED[name]))


def test_success_and_failure_are_checked_apart() -> None:
    kvapi.validate_txn(pb.TxnRequest(success=[put_op(b"a")], failure=[del_op(b"a")]))


def test_interval_cover_merges() -> None:
    cover = kvapi._Cover()
    for b, e in [(b"d", b"f"), (b"a", b"b"), (b"b", b"c"), (b"x", b"x"), (b"e", b"h")]:
        cover.add(b, e)
    assert cover.starts == [b"a", b"d"] and cover.ends == [b"c", b"h"]
    assert [cover.covers(k) for k in (b"a", b"bz", b"c", b"d", b"gz", b"h", b"x")] == [
        True,
        True,
        False,
        True,
        True,
        False,
        False,
    ]


# ---------------------------------------------------------------------- entry points


def test_parse_and_validate() -> None:
    put = pb.PutRequest(key=b"a", value=b"v")
    got = kvapi.parse_and_validate("/etcdserverpb.KV/Put", put.SerializeToString())
    assert got == put
    assert kvapi.parse_and_validate("Range", pb.RangeRequest(key=b"a").SerializeToString())
    with raises(errors.EMPTY_KEY):
        kvapi.parse_and_validate("DeleteRange", b"")
    with pytest.raises(GrpcError) as exc:
        kvapi.parse_and_validate("Put", b"\x0a\xff")
    assert exc.value.code == StatusCode.INTERNAL
    assert exc.value.message.startswith("grpc: error unmarshalling request")
    with pytest.raises(GrpcError) as exc:
        kvapi.parse_and_validate("/etcdserverpb.Lease/LeaseGrant", b"")
    assert exc.value.code == StatusCode.UNIMPLEMENTED
    assert kvapi.parse_and_validate("Compact", b"") == pb.CompactionRequest()


def test_request_size_limit() -> None:
    limits = kvapi.Limits(max_request_bytes=100)
    big = pb.PutRequest(key=b"a", value=b"x" * 84).SerializeToString()
    assert len(big) == 89 and kvapi.proposal_size(len(big)) == 102  # under 100, but not so
    with raises(errors.REQUEST_TOO_LARGE):
        kvapi.parse_and_validate("Put", big, limits)
    with raises(errors.REQUEST_TOO_LARGE):
        kvapi.parse_put(big, limits)
    with raises(errors.REQUEST_TOO_LARGE):
        kvapi.proposal("Put", big, limits)
    kvapi.parse_put(big)  # 1.5 MiB by default
    assert kvapi.DEFAULT_LIMITS.max_request_bytes == 1572864
    # etcd checks the request before its size
    with raises(errors.EMPTY_KEY):
        kvapi.parse_put(pb.PutRequest(value=b"x" * 200).SerializeToString(), limits)
    # reads and read-only txns are not proposed: only gRPC's limit applies
    ranged = pb.RangeRequest(key=b"a" * 200).SerializeToString()
    kvapi.parse_and_validate("Range", ranged, limits)
    kvapi.parse_range(ranged, limits)
    read_txn = pb.TxnRequest(success=[range_op(b"a" * 200)]).SerializeToString()
    kvapi.parse_txn(read_txn, limits)
    kvapi.parse_and_validate("Txn", read_txn, limits)
    write_txn = pb.TxnRequest(success=[put_op(b"a" * 200)]).SerializeToString()
    with raises(errors.REQUEST_TOO_LARGE):
        kvapi.parse_txn(write_txn, limits)
    with raises(errors.REQUEST_TOO_LARGE):
        kvapi.parse_compaction(b"\x08" + b"\xff" * 9 + b"\x01" + b"\x10\x01" * 50, limits)
    # beyond max_request_bytes + 512 KiB gRPC itself refuses the message
    huge = b"\x0a" + b"\x80\x80\x30" + b"k" * (100 + 512 * 1024)
    with pytest.raises(GrpcError) as exc:
        kvapi.parse_range(huge, limits)
    assert exc.value.code == StatusCode.RESOURCE_EXHAUSTED
    assert exc.value.message == f"grpc: received message larger than max ({len(huge)} vs. 524388)"


def test_proposal_size_counts_etcds_raft_entry() -> None:
    """InternalRaftRequest{header: {ID}, put: payload}: the id is the member id's low 16
    bits over 48 bits of time and counter, so its varint has 7 to 10 bytes."""
    assert kvapi.proposal_size(4088, member_id=0) == 4088 + 3 + 2 + 1 + 1 + 7
    assert kvapi.proposal_size(4088, member_id=0x8E9E05C52164694D) == 4088 + 16
    assert kvapi.proposal_size(4088, member_id=0xFFFF) == 4088 + 17
    assert kvapi.proposal_size(100, member_id=0xFFFF) == 100 + 16


def test_typed_parsers() -> None:
    assert kvapi.parse_range(pb.RangeRequest(key=b"a").SerializeToString()).key == b"a"
    assert kvapi.parse_delete_range(pb.DeleteRangeRequest(key=b"a").SerializeToString()).key
    t = pb.TxnRequest(success=[put_op(b"a")] * 2)
    with raises(errors.DUPLICATE_KEY):
        kvapi.parse_txn(t.SerializeToString())
    with raises(errors.TOO_MANY_OPS):
        kvapi.parse_txn(pb.TxnRequest(success=ops(3)).SerializeToString(), kvapi.Limits(2))
    assert (
        kvapi.parse_compaction(pb.CompactionRequest(revision=3).SerializeToString()).revision == 3
    )
    with raises(errors.EMPTY_KEY):
        kvapi.parse_range(b"")


def test_proposal_and_kinds() -> None:
    payload = pb.PutRequest(key=b"a").SerializeToString()
    assert kvapi.proposal("/etcdserverpb.KV/Put", payload) == (mvcc.PUT, payload)
    assert kvapi.write_kind("Txn") == mvcc.TXN
    assert kvapi.write_kind("DeleteRange") == mvcc.DELETE_RANGE
    assert kvapi.write_kind("Compact") == mvcc.COMPACTION
    assert kvapi.write_kind("Range") == 0
    with pytest.raises(ValueError):
        kvapi.proposal("Range", pb.RangeRequest(key=b"a").SerializeToString())
    with raises(errors.EMPTY_KEY):
        kvapi.proposal("Put", b"")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MvccStore]:
    with MvccStore(tmp_path / "db") as s:
        s.apply(1, [(mvcc.PUT, pb.PutRequest(key=b"a", value=b"1").SerializeToString())])
        yield s


def test_serve_range_and_header_suffix(store: MvccStore) -> None:
    out = kvapi.serve_range(store, pb.RangeRequest(key=b"a").SerializeToString())
    resp = pb.RangeResponse.FromString(out + kvapi.header_suffix(7, 8, 9))
    assert resp.header == pb.ResponseHeader(cluster_id=7, member_id=8, revision=2, raft_term=9)
    assert resp.kvs[0].value == b"1"
    big = kvapi.header_suffix(2**64 - 1, 2**63, 300)
    hdr = pb.PutResponse.FromString(b"\x0a\x02\x18\x05" + big).header
    assert (hdr.cluster_id, hdr.member_id, hdr.revision, hdr.raft_term) == (
        2**64 - 1,
        2**63,
        5,
        300,
    )
    with raises(errors.EMPTY_KEY):
        kvapi.serve_range(store, b"")
    with raises(errors.FUTURE_REV):
        kvapi.serve_range(store, pb.RangeRequest(key=b"a", revision=3).SerializeToString())


def test_serve_txn_read(store: MvccStore) -> None:
    t = pb.TxnRequest(
        compare=[pb.Compare(key=b"a", target=pb.Compare.VALUE, value=b"1")],
        success=[range_op(b"a")],
    )
    assert kvapi.is_txn_readonly(t)
    resp = pb.TxnResponse.FromString(kvapi.serve_txn_read(store, t.SerializeToString()))
    assert resp.succeeded and resp.responses[0].response_range.kvs[0].value == b"1"
    writes = pb.TxnRequest(failure=[txn_op(pb.TxnRequest(success=[del_op(b"a")]))])
    assert not kvapi.is_txn_readonly(writes)


def _outcome(f: object, *args: object) -> object:
    try:
        return f(*args)  # type: ignore[operator]
    except GrpcError as exc:
        return (exc.code, exc.message)


def test_put_fast_path_agrees_with_the_general_checks() -> None:
    """put_proposal skips work only where nothing can fail differently: same result or the
    same error as proposal("Put") for good, bad and boundary-sized requests."""
    payloads = [
        pb.PutRequest(key=b"k", value=b"v").SerializeToString(),
        pb.PutRequest(value=b"v").SerializeToString(),
        pb.PutRequest(key=b"k", value=b"v", ignore_value=True).SerializeToString(),
        pb.PutRequest(key=b"k", ignore_value=True).SerializeToString(),
        pb.PutRequest(key=b"k", lease=7, ignore_lease=True).SerializeToString(),
        pb.PutRequest(key=b"k", ignore_lease=True, prev_kv=True).SerializeToString(),
        b"\xff\xff",
        b"",
    ]
    payloads += [
        pb.PutRequest(key=b"a", value=b"x" * n).SerializeToString() for n in range(70, 100)
    ]
    for limits in (
        kvapi.Limits(max_request_bytes=100),
        kvapi.Limits(max_request_bytes=100, member_id=0xFFFF),
        kvapi.Limits(max_request_bytes=5),
        kvapi.DEFAULT_LIMITS,
    ):
        for p in payloads:
            fast = _outcome(kvapi.put_proposal, p, limits)
            assert fast == _outcome(kvapi.proposal, "Put", p, limits), (limits, p)

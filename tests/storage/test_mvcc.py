"""MvccStore: etcd's revision rules, every Range option, Put/Delete/Txn/Compact semantics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from raftkv.api import errors
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2 as pb
from raftkv.pb.etcd.api.mvccpb import kv_pb2
from raftkv.status import GrpcError, StatusCode
from raftkv.storage import encoding, mvcc
from raftkv.storage.mvcc import MvccStore
from tests.storage.helpers import Client, del_op, put_op, range_op, txn_op

SORT = pb.RangeRequest


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Client]:
    client = Client(tmp_path / "db", leases={100, 200})
    yield client
    client.close()


def raises(err: errors.EtcdError) -> AbstractContextManager[pytest.ExceptionInfo[GrpcError]]:
    return pytest.raises(GrpcError, match=f"^{err.code.name}: {err.message}$")


def kv(key: bytes, value: bytes, create: int, mod: int, version: int, lease: int = 0) -> object:
    return kv_pb2.KeyValue(
        key=key,
        value=value,
        create_revision=create,
        mod_revision=mod,
        version=version,
        lease=lease,
    )


# ---------------------------------------------------------------------- revisions


def test_fresh_store_is_at_revision_1(c: Client) -> None:
    assert (c.store.revision, c.store.compact_revision, c.store.applied_index) == (1, -1, 0)
    r = c.get(b"a")
    assert r.header.revision == 1 and r.count == 0 and not r.kvs
    assert len(c.store) == 0


def test_put_makes_revisions_and_versions(c: Client) -> None:
    assert c.put(b"a", b"1").header.revision == 2
    assert c.put(b"a", b"1").header.revision == 3  # same value: still a new revision
    assert c.put(b"b", b"x").header.revision == 4
    r = c.get(b"a")
    assert list(r.kvs) == [kv(b"a", b"1", 2, 3, 2)]
    assert r.header.revision == 4
    assert len(c.store) == 2


def test_delete_and_recreate(c: Client) -> None:
    c.put(b"a", b"1")
    c.put(b"a", b"2")
    d = c.delete(b"a")
    assert (d.deleted, d.header.revision) == (1, 4)
    assert c.get(b"a").count == 0
    c.put(b"a", b"3")
    assert list(c.get(b"a").kvs) == [kv(b"a", b"3", 5, 5, 1)]


def test_delete_of_nothing_makes_no_revision(c: Client) -> None:
    c.put(b"a")
    d = c.delete(b"zz")
    assert (d.deleted, d.header.revision) == (0, 2)
    d = c.delete(b"b", b"c", prev_kv=True)
    assert (d.deleted, d.header.revision, list(d.prev_kvs)) == (0, 2, [])
    assert c.store.revision == 2


def test_delete_range_takes_sub_revisions_of_one_revision(c: Client) -> None:
    for k in (b"a", b"b", b"c", b"d"):
        c.put(k, k)
    d = c.delete(b"b", b"d", prev_kv=True)
    assert d.deleted == 2 and d.header.revision == 6
    assert [p.key for p in d.prev_kvs] == [b"b", b"c"]
    assert c.keys() == [b"a", b"d"]
    assert c.keys(revision=5) == [b"a", b"b", b"c", b"d"]


def test_delete_from_key_and_prefix(c: Client) -> None:
    for k in (b"a", b"ab", b"abc", b"b", b"c"):
        c.put(k)
    assert c.delete(b"ab", b"ac").deleted == 2  # prefix "ab"
    assert c.keys() == [b"a", b"b", b"c"]
    assert c.delete(b"b", b"\x00").deleted == 2  # from "b"
    assert c.keys() == [b"a"]


def test_put_prev_kv(c: Client) -> None:
    r = c.put(b"a", b"1", prev_kv=True)
    assert not r.HasField("prev_kv")
    r = c.put(b"a", b"2", prev_kv=True)
    assert r.prev_kv == kv(b"a", b"1", 2, 2, 1)


def test_ignore_value_and_ignore_lease(c: Client) -> None:
    c.put(b"a", b"keep", lease=100)
    r = c.put(b"a", ignore_value=True, lease=200, prev_kv=True)
    assert r.prev_kv == kv(b"a", b"keep", 2, 2, 1, 100)
    assert list(c.get(b"a").kvs) == [kv(b"a", b"keep", 2, 3, 2, 200)]
    c.put(b"a", b"new", ignore_lease=True)
    assert list(c.get(b"a").kvs) == [kv(b"a", b"new", 2, 4, 3, 200)]
    c.put(b"a", ignore_value=True, ignore_lease=True)
    assert list(c.get(b"a").kvs) == [kv(b"a", b"new", 2, 5, 4, 200)]


def test_ignore_flags_need_an_existing_key(c: Client) -> None:
    with raises(errors.KEY_NOT_FOUND):
        c.put(b"a", ignore_value=True)
    with raises(errors.KEY_NOT_FOUND):
        c.put(b"a", b"v", ignore_lease=True)
    c.put(b"a")
    c.delete(b"a")
    with raises(errors.KEY_NOT_FOUND):
        c.put(b"a", ignore_value=True)
    assert c.store.revision == 3


def test_leases(c: Client) -> None:
    with raises(errors.LEASE_NOT_FOUND):
        c.put(b"a", lease=7)
    with raises(errors.LEASE_NOT_FOUND):  # the lease is checked before the key
        c.put(b"a", lease=7, ignore_value=True)
    assert c.store.revision == 1
    c.put(b"a", lease=100)
    assert c.get(b"a").kvs[0].lease == 100
    c.put(b"a")
    assert c.get(b"a").kvs[0].lease == 0


def test_default_lease_hook_knows_only_no_lease(tmp_path: Path) -> None:
    with MvccStore(tmp_path / "db") as store:
        bad = pb.PutRequest(key=b"a", lease=1).SerializeToString()
        good = pb.PutRequest(key=b"a").SerializeToString()
        res = store.apply(1, [(mvcc.PUT, bad), (mvcc.PUT, good)])
        assert errors.LEASE_NOT_FOUND.matches(res[0]) and isinstance(res[1], bytes)


# ---------------------------------------------------------------------- range


@pytest.fixture
def abc(c: Client) -> Client:
    c.put(b"a", b"3")  # 2
    c.put(b"b", b"1")  # 3
    c.put(b"c", b"2")  # 4
    c.put(b"a", b"4")  # 5
    c.put(b"ab", b"0")  # 6
    return c


def test_range_kinds(abc: Client) -> None:
    assert abc.keys(b"a", b"") == [b"a"]
    assert abc.keys(b"a", b"c") == [b"a", b"ab", b"b"]
    assert abc.keys(b"a", b"b") == [b"a", b"ab"]  # prefix "a"
    assert abc.keys(b"ab", b"\x00") == [b"ab", b"b", b"c"]
    assert abc.keys(b"\x00", b"\x00") == [b"a", b"ab", b"b", b"c"]
    assert abc.keys(b"c", b"a") == []  # end before key
    assert abc.keys(b"b", b"b") == []
    assert abc.keys(b"zz") == []


def test_range_limit_more_count(abc: Client) -> None:
    r = abc.get(b"a", b"\x00", limit=2)
    assert [k.key for k in r.kvs] == [b"a", b"ab"] and r.more and r.count == 4
    r = abc.get(b"a", b"\x00", limit=4)
    assert len(r.kvs) == 4 and not r.more and r.count == 4
    r = abc.get(b"a", b"\x00", limit=-1)
    assert len(r.kvs) == 4 and not r.more


def test_range_count_only_and_keys_only(abc: Client) -> None:
    r = abc.get(b"a", b"\x00", count_only=True, limit=1)
    assert r.count == 4 and not r.kvs and not r.more
    r = abc.get(b"a", b"\x00", keys_only=True)
    assert [(k.key, k.value, k.version) for k in r.kvs] == [
        (b"a", b"", 2),
        (b"ab", b"", 1),
        (b"b", b"", 1),
        (b"c", b"", 1),
    ]


def test_range_at_revision(abc: Client) -> None:
    r = abc.get(b"a", b"\x00", revision=4)
    assert [(k.key, k.value) for k in r.kvs] == [(b"a", b"3"), (b"b", b"1"), (b"c", b"2")]
    assert r.header.revision == 6  # the header always carries the current revision
    assert abc.get(b"a", revision=1).count == 0
    assert abc.get(b"a", revision=-5).kvs[0].value == b"4"  # <= 0: current
    with raises(errors.FUTURE_REV):
        abc.get(b"a", revision=7)


def test_range_sorting(abc: Client) -> None:
    def order(**kw: int) -> list[bytes]:
        return abc.keys(b"a", b"\x00", **kw)

    assert order(sort_order=SORT.ASCEND) == [b"a", b"ab", b"b", b"c"]
    assert order(sort_order=SORT.DESCEND) == [b"c", b"b", b"ab", b"a"]
    assert order(sort_order=SORT.ASCEND, sort_target=SORT.VALUE) == [b"ab", b"b", b"c", b"a"]
    assert order(sort_order=SORT.DESCEND, sort_target=SORT.VALUE) == [b"a", b"c", b"b", b"ab"]
    assert order(sort_order=SORT.ASCEND, sort_target=SORT.CREATE) == [b"a", b"b", b"c", b"ab"]
    assert order(sort_order=SORT.DESCEND, sort_target=SORT.MOD) == [b"ab", b"a", b"c", b"b"]
    # version ties keep key order, in both directions (etcd's sort on <= 12 items)
    assert order(sort_order=SORT.ASCEND, sort_target=SORT.VERSION) == [b"ab", b"b", b"c", b"a"]
    assert order(sort_order=SORT.DESCEND, sort_target=SORT.VERSION) == [b"a", b"ab", b"b", b"c"]
    # NONE with a target other than KEY sorts ascending
    assert order(sort_target=SORT.MOD) == [b"b", b"c", b"a", b"ab"]
    # sorting happens before the limit
    r = abc.get(b"a", b"\x00", sort_order=SORT.DESCEND, sort_target=SORT.MOD, limit=1)
    assert [k.key for k in r.kvs] == [b"ab"] and r.more and r.count == 4
    r = abc.get(b"a", b"\x00", sort_order=SORT.DESCEND, sort_target=SORT.VALUE, limit=2)
    assert [k.value for k in r.kvs] == [b"4", b"2"] and r.more


def test_range_revision_filters(abc: Client) -> None:
    def keys(**kw: int) -> tuple[list[bytes], int]:
        r = abc.get(b"a", b"\x00", **kw)
        return [k.key for k in r.kvs], r.count

    assert keys(min_mod_revision=5) == ([b"a", b"ab"], 4)  # count ignores the filters
    assert keys(max_mod_revision=4) == ([b"b", b"c"], 4)
    assert keys(min_create_revision=3, max_create_revision=4) == ([b"b", b"c"], 4)
    assert keys(max_create_revision=2) == ([b"a"], 4)
    r = abc.get(b"a", b"\x00", min_mod_revision=4, limit=1)
    assert [k.key for k in r.kvs] == [b"a"] and r.more


def test_range_large_key_set(c: Client) -> None:
    for i in range(300):
        c.put(b"k%03d" % i, b"%d" % i)
    r = c.get(b"k", b"l", limit=10, revision=150)
    assert r.count == 149 and r.more and r.kvs[0].key == b"k000" and len(r.kvs) == 10


# ---------------------------------------------------------------------- txn


def cmp(
    key: bytes, target: str, result: str, range_end: bytes = b"", **value: object
) -> pb.Compare:
    return pb.Compare(
        key=key,
        target=getattr(pb.Compare, target),
        result=getattr(pb.Compare, result),
        range_end=range_end,
        **value,  # type: ignore[arg-type]
    )


def holds(c: Client, *compares: pb.Compare) -> bool:
    t = pb.TxnRequest(compare=compares)
    return bool(c.txn(t).succeeded)


def test_compare_targets(abc: Client) -> None:
    c = abc
    c.put(b"l", b"v", lease=100)
    assert holds(c, cmp(b"a", "VALUE", "EQUAL", value=b"4"))
    assert holds(c, cmp(b"a", "VALUE", "GREATER", value=b"3"))
    assert holds(c, cmp(b"a", "VALUE", "LESS", value=b"5"))
    assert holds(c, cmp(b"a", "VALUE", "NOT_EQUAL", value=b"3"))
    assert holds(c, cmp(b"a", "VERSION", "EQUAL", version=2))
    assert holds(c, cmp(b"a", "CREATE", "EQUAL", create_revision=2))
    assert holds(c, cmp(b"a", "MOD", "EQUAL", mod_revision=5))
    assert holds(c, cmp(b"a", "MOD", "LESS", mod_revision=6))
    assert holds(c, cmp(b"l", "LEASE", "EQUAL", lease=100))
    assert holds(c, cmp(b"a", "LEASE", "EQUAL", lease=0))
    assert not holds(c, cmp(b"a", "VERSION", "GREATER", version=2))
    # all compares must hold
    assert not holds(c, cmp(b"a", "VERSION", "EQUAL", version=2), cmp(b"b", "MOD", "LESS"))


def test_compare_missing_key(c: Client) -> None:
    assert holds(c, cmp(b"x", "VERSION", "EQUAL", version=0))
    assert holds(c, cmp(b"x", "CREATE", "EQUAL", create_revision=0))
    assert holds(c, cmp(b"x", "MOD", "LESS", mod_revision=1))
    assert not holds(c, cmp(b"x", "VALUE", "EQUAL", value=b""))
    assert not holds(c, cmp(b"x", "VALUE", "NOT_EQUAL", value=b"a"))


def test_compare_operand_of_another_target_counts_as_zero(abc: Client) -> None:
    # target VERSION with a mod_revision operand compares the version with 0
    assert holds(abc, cmp(b"a", "VERSION", "GREATER", mod_revision=100))
    assert not holds(abc, cmp(b"a", "VALUE", "EQUAL", version=4))  # value vs b""


def test_compare_over_ranges(abc: Client) -> None:
    assert holds(abc, cmp(b"a", "VERSION", "GREATER", b"\x00", version=0))
    assert not holds(abc, cmp(b"a", "VERSION", "EQUAL", b"c", version=1))
    assert holds(abc, cmp(b"ab", "VERSION", "EQUAL", b"c", version=1))
    assert holds(abc, cmp(b"a", "CREATE", "LESS", b"b", create_revision=7))
    # an empty range compares the zero key-value, except VALUE which fails
    assert holds(abc, cmp(b"x", "VERSION", "EQUAL", b"z", version=0))
    assert not holds(abc, cmp(b"x", "VALUE", "EQUAL", b"z", value=b""))


def test_txn_is_one_revision_with_sub_revisions(abc: Client) -> None:
    t = pb.TxnRequest(
        compare=[cmp(b"a", "VALUE", "EQUAL", value=b"4")],
        success=[
            put_op(b"x", b"1"),
            range_op(b"x"),
            del_op(b"b", b"c", prev_kv=True),
            put_op(b"y", b"2", prev_kv=True),
            range_op(b"a", b"\x00", count_only=True),
        ],
        failure=[put_op(b"never")],
    )
    r = abc.txn(t)
    assert r.succeeded and r.header.revision == 7
    rr = [x.WhichOneof("response") for x in r.responses]
    assert rr == [
        "response_put",
        "response_range",
        "response_delete_range",
        "response_put",
        "response_range",
    ]
    assert r.responses[0].response_put.header.revision == 7
    assert list(r.responses[1].response_range.kvs) == [kv(b"x", b"1", 7, 7, 1)]
    assert r.responses[1].response_range.header.revision == 7
    assert r.responses[2].response_delete_range.deleted == 1
    assert r.responses[4].response_range.count == 5
    assert abc.keys() == [b"a", b"ab", b"c", b"x", b"y"]
    assert abc.keys(revision=6) == [b"a", b"ab", b"b", b"c"]
    assert abc.get(b"y").kvs[0].mod_revision == 7


def test_txn_failure_branch_and_readonly_txn(abc: Client) -> None:
    t = pb.TxnRequest(
        compare=[cmp(b"a", "VALUE", "EQUAL", value=b"nope")],
        success=[put_op(b"x")],
        failure=[range_op(b"a"), del_op(b"zz")],
    )
    r = abc.txn(t)
    assert not r.succeeded and r.header.revision == 6  # deleting nothing: no revision
    assert r.responses[0].response_range.kvs[0].value == b"4"
    assert r.responses[0].response_range.header.revision == 6
    assert r.responses[1].response_delete_range.header.revision == 6
    assert abc.store.revision == 6
    empty = abc.txn(pb.TxnRequest())
    assert empty.succeeded and empty.header.revision == 6 and not empty.responses


def test_nested_txn_compares_see_the_state_before_the_txn(c: Client) -> None:
    inner = pb.TxnRequest(
        compare=[cmp(b"k", "VERSION", "EQUAL", version=0)],  # k does not exist before
        success=[put_op(b"inner-then")],
        failure=[put_op(b"inner-else")],
    )
    t = pb.TxnRequest(success=[put_op(b"k", b"1"), txn_op(inner), range_op(b"i", b"j")])
    r = c.txn(t)
    assert r.header.revision == 2
    nested = r.responses[1].response_txn
    assert nested.succeeded and nested.HasField("header") and nested.header.revision == 0
    assert nested.responses[0].response_put.header.revision == 2
    assert [k.key for k in r.responses[2].response_range.kvs] == [b"inner-then"]
    assert c.keys() == [b"inner-then", b"k"]


def test_put_then_delete_of_a_key_in_sibling_nested_txns(c: Client) -> None:
    t = pb.TxnRequest(
        success=[
            txn_op(pb.TxnRequest(success=[put_op(b"k")])),
            txn_op(pb.TxnRequest(success=[del_op(b"k")])),
        ]
    )
    r = c.txn(t)
    assert r.header.revision == 2
    assert r.responses[1].response_txn.responses[0].response_delete_range.deleted == 1
    assert c.keys() == []
    c.put(b"k")
    assert c.get(b"k").kvs[0].version == 1


def test_txn_errors_leave_no_trace(abc: Client) -> None:
    before = abc.store.hash()
    before_kv = abc.store.hash_kv()
    bad_lease = pb.TxnRequest(success=[put_op(b"x"), put_op(b"y", lease=9)])
    with raises(errors.LEASE_NOT_FOUND):
        abc.txn(bad_lease)
    missing = pb.TxnRequest(success=[put_op(b"x"), put_op(b"nokey", ignore_value=True)])
    with raises(errors.KEY_NOT_FOUND):
        abc.txn(missing)
    future = pb.TxnRequest(success=[put_op(b"x"), range_op(b"a", revision=7)])
    with raises(errors.FUTURE_REV):
        abc.txn(future)
    nested = pb.TxnRequest(success=[txn_op(pb.TxnRequest(failure=[put_op(b"x", lease=9)]))])
    abc.txn(nested)  # the nested failure branch is not taken: no check there
    nested_bad = pb.TxnRequest(
        success=[
            txn_op(
                pb.TxnRequest(
                    compare=[cmp(b"a", "VERSION", "EQUAL", version=9)],
                    failure=[put_op(b"x", lease=9)],
                )
            )
        ]
    )
    with raises(errors.LEASE_NOT_FOUND):
        abc.txn(nested_bad)
    assert abc.store.revision == 6
    # the applied index moved on; nothing else did
    assert abc.store.hash_kv() == before_kv
    assert abc.store.hash() != before


def test_readonly_txn_is_checked_like_etcd(abc: Client) -> None:
    abc.compact(4)
    t = pb.TxnRequest(success=[range_op(b"a", revision=3)])
    with raises(errors.COMPACTED):
        abc.store.txn_read(t)
    assert abc.store.txn_read(pb.TxnRequest(success=[range_op(b"a", revision=4)])).succeeded
    with raises(errors.COMPACTED):  # a negative revision below the compaction
        abc.store.txn_read(pb.TxnRequest(success=[range_op(b"a", revision=-1)]))
    with pytest.raises(ValueError):
        abc.store.txn_read(pb.TxnRequest(failure=[put_op(b"x")]))


# ---------------------------------------------------------------------- compaction


def test_compaction(abc: Client) -> None:
    c = abc
    c.delete(b"b")  # 7
    with raises(errors.FUTURE_REV):
        c.compact(8)
    assert c.compact(5).header.revision == 7
    assert c.store.compact_revision == 5
    with raises(errors.COMPACTED):
        c.compact(5)
    with raises(errors.COMPACTED):
        c.get(b"a", revision=4)
    assert [k.value for k in c.get(b"a", b"\x00", revision=5).kvs] == [b"4", b"1", b"2"]
    assert c.keys() == [b"a", b"ab", b"c"]
    assert list(c.get(b"a").kvs) == [kv(b"a", b"4", 2, 5, 2)]
    c.compact(7)
    assert c.keys(revision=7) == [b"a", b"ab", b"c"]
    assert c.store.hash_kv().compact_revision == 7


def test_compaction_is_physical(c: Client) -> None:
    for i in range(20):
        c.put(b"k", b"%d" % i)
    c.put(b"gone")
    c.delete(b"gone")
    stored = len(list(c.store._kv.keys()))
    assert stored == 22
    c.compact(c.store.revision)
    assert len(list(c.store._kv.keys())) == 1
    c.reopen()
    assert list(c.get(b"k").kvs) == [kv(b"k", b"19", 2, 21, 20)]
    c.put(b"k", b"next")
    assert c.get(b"k").kvs[0].version == 21
    assert c.get(b"k").kvs[0].create_revision == 2
    c.put(b"gone")
    assert c.get(b"gone").kvs[0].version == 1


def test_compaction_from_a_fresh_store(c: Client) -> None:
    assert c.compact(0).header.revision == 1
    assert c.store.compact_revision == 0
    with raises(errors.COMPACTED):
        c.compact(0)
    c.compact(1)


def test_compaction_keeps_history_above_it(c: Client) -> None:
    c.put(b"a", b"1")  # 2
    c.delete(b"a")  # 3
    c.put(b"a", b"2")  # 4
    c.put(b"a", b"3")  # 5
    c.compact(3)
    assert c.get(b"a", revision=3).count == 0
    assert c.get(b"a", revision=4).kvs[0].value == b"2"
    c.compact(4)
    assert c.get(b"a", revision=4).kvs[0] == kv(b"a", b"2", 4, 4, 1)
    c.reopen()
    assert c.get(b"a", revision=4).kvs[0] == kv(b"a", b"2", 4, 4, 1)
    assert c.get(b"a", revision=5).kvs[0] == kv(b"a", b"3", 4, 5, 2)


# ---------------------------------------------------------------------- apply


def test_apply_batches_see_earlier_requests(c: Client) -> None:
    t = pb.TxnRequest(
        compare=[cmp(b"a", "VALUE", "EQUAL", value=b"1")],
        success=[put_op(b"b", b"yes", prev_kv=True), range_op(b"a")],
    )
    reqs = [
        (mvcc.PUT, pb.PutRequest(key=b"a", value=b"1").SerializeToString()),
        (mvcc.TXN, t.SerializeToString()),
        (mvcc.PUT, pb.PutRequest(key=b"a", value=b"2", prev_kv=True).SerializeToString()),
    ]
    res = c.store.apply(1, reqs)
    assert c.store.applied_index == 1 and c.store.revision == 4
    assert isinstance(res[1], bytes) and isinstance(res[2], bytes)
    txn = pb.TxnResponse.FromString(res[1])
    assert txn.succeeded and txn.responses[1].response_range.kvs[0].value == b"1"
    put = pb.PutResponse.FromString(res[2])
    assert put.prev_kv.value == b"1" and put.header.revision == 4


def test_apply_of_an_applied_index_is_a_no_op(c: Client) -> None:
    p = (mvcc.PUT, pb.PutRequest(key=b"a").SerializeToString())
    assert len(c.store.apply(5, [p])) == 1
    assert c.store.apply(5, [p]) == []
    assert c.store.apply(3, [p, p]) == []
    assert c.store.revision == 2 and c.store.applied_index == 5
    assert c.store.apply(6, []) == []  # an entry without requests still moves the index
    assert c.store.applied_index == 6
    c.reopen()
    assert c.store.applied_index == 6 and c.store.apply(6, [p]) == []


def test_apply_answers_garbage_with_an_error(c: Client) -> None:
    good = (mvcc.PUT, pb.PutRequest(key=b"a").SerializeToString())
    res = c.store.apply(1, [(mvcc.PUT, b"\xff\xff\xff"), (99, b""), good])
    assert errors.MALFORMED_REQUEST.matches(res[0])
    assert errors.MALFORMED_REQUEST.matches(res[1])
    assert isinstance(res[2], bytes)
    assert pb.PutResponse.FromString(res[2]).header.revision == 2


def test_add_handler_and_column_family(c: Client) -> None:
    cf = c.store.column_family("leases")

    def grant(payload: bytes) -> bytes:
        c.store.write_batch.put(b"lease", payload, c.store._db.get_column_family_handle("leases"))
        return b"ok"

    c.store.add_handler(50, grant)
    with pytest.raises(ValueError):
        c.store.add_handler(mvcc.PUT, grant)
    assert c.store.apply(1, [(50, b"L1")]) == [b"ok"]
    assert cf[b"lease"] == b"L1"
    with pytest.raises(RuntimeError):
        _ = c.store.write_batch
    del cf
    c.reopen()  # the extra family is opened again
    assert c.store.column_family("leases")[b"lease"] == b"L1"
    assert c.store.db_size() > 0
    c.store.sync()


def test_apply_error_codes(c: Client) -> None:
    res = c.store.apply(
        1, [(mvcc.COMPACTION, pb.CompactionRequest(revision=5).SerializeToString())]
    )
    err = res[0]
    assert isinstance(err, GrpcError) and err.code == StatusCode.OUT_OF_RANGE
    assert err.__traceback__ is None


# ---------------------------------------------------------------------- hashes and reopen


def feed(c: Client, n: int, salt: bytes = b"") -> None:
    for i in range(n):
        c.put(b"k%d" % (i % 7), b"v%d" % i + salt)
        if i % 5 == 4:
            c.delete(b"k%d" % (i % 3))
        if i % 11 == 10:
            c.txn(pb.TxnRequest(success=[put_op(b"t%d" % i), del_op(b"k0", b"k3")]))


def test_hashes_equal_for_the_same_log(tmp_path: Path) -> None:
    a, b = Client(tmp_path / "a"), Client(tmp_path / "b")
    try:
        feed(a, 60)
        feed(b, 60)
        a.compact(30)
        b.compact(30)
        assert a.store.hash_kv() == b.store.hash_kv()
        assert a.store.hash_kv(40) == b.store.hash_kv(40)
        assert a.store.hash() == b.store.hash()
        assert a.store.hash_kv(40) != a.store.hash_kv()
        h = a.store.hash_kv()
        assert (h.compact_revision, h.hash_revision) == (30, a.store.revision)
        with raises(errors.COMPACTED):
            a.store.hash_kv(30)
        with raises(errors.FUTURE_REV):
            a.store.hash_kv(a.store.revision + 1)
        b.put(b"k1", b"different")
        assert a.store.hash_kv() != b.store.hash_kv()
        assert a.store.hash_kv(40) == b.store.hash_kv(40)  # history up to 40 is the same
        a.reopen()
        assert a.store.hash_kv(40) == b.store.hash_kv(40)
    finally:
        a.close()
        b.close()


def test_hash_kv_differs_for_different_values(tmp_path: Path) -> None:
    a, b = Client(tmp_path / "a"), Client(tmp_path / "b")
    try:
        feed(a, 20)
        feed(b, 20, salt=b"!")
        assert a.store.revision == b.store.revision
        assert a.store.hash_kv() != b.store.hash_kv()
    finally:
        a.close()
        b.close()


def test_reopen_restores_everything(c: Client) -> None:
    feed(c, 80)
    c.compact(50)
    c.put(b"lease", lease=100)
    before = {
        rev: c.store.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev))
        for rev in range(50, c.store.revision + 1)
    }
    state = (c.store.revision, c.store.compact_revision, c.store.applied_index, c.store.hash())
    c.reopen()
    assert (
        c.store.revision,
        c.store.compact_revision,
        c.store.applied_index,
        c.store.hash(),
    ) == state
    for rev, resp in before.items():
        assert c.store.range(pb.RangeRequest(key=b"\x00", range_end=b"\x00", revision=rev)) == resp
    assert c.get(b"lease").kvs[0].lease == 100
    c.put(b"lease", ignore_value=True, ignore_lease=True)
    assert c.get(b"lease").kvs[0].lease == 100


def test_revision_survives_compacting_away_the_latest_revision(c: Client) -> None:
    c.put(b"a")
    c.delete(b"a")
    c.compact(3)
    assert len(list(c.store._kv.keys())) == 0
    c.reopen()
    assert c.store.revision == 3 and c.store.compact_revision == 3
    assert c.put(b"a").header.revision == 4


@pytest.mark.parametrize(
    "n", [1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 2**62]
)
def test_revision_only_response_encoding(n: int) -> None:
    r = pb.PutResponse()
    r.header.revision = n
    assert encoding.revision_only(n) == r.SerializeToString()


def test_history_lists_changes_in_revision_order(c: Client) -> None:
    c.put(b"a", b"1")  # 2
    c.txn(pb.TxnRequest(success=[put_op(b"b"), del_op(b"a")]))  # 3.0, 3.1
    c.put(b"a", b"2")  # 4
    got = [
        (r >> 32, r & 0xFFFFFFFF, tomb, kv_pb2.KeyValue.FromString(v).key)
        for r, tomb, v in c.store.history(3)
    ]
    assert got == [(3, 0, False, b"b"), (3, 1, True, b"a"), (4, 0, False, b"a")]
    assert [r >> 32 for r, _, _ in c.store.history(2, 4)] == [2, 3, 3]
    c.compact(3)
    with raises(errors.COMPACTED):
        list(c.store.history(3))
    assert [r >> 32 for r, _, _ in c.store.history(4)] == [4]

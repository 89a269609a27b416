"""etcdctl (v3.4, as a subprocess) prints the same for raftkv as for etcd.

Every command runs against a 3-member etcd cluster and a 3-member raftkv cluster started with
the same flags, in the same order, so revisions line up; outputs are compared after
normalizing only what legitimately differs (ids, ports, terms, raft indexes, sizes, versions,
hashes, timings: see ``dual.py``). Both clusters run with small limits (``--max-txn-ops=4
--max-request-bytes=4096``) so the limit errors are cheap to reach.

etcdctl 3.4 has no ``get --count-only`` (it came with 3.5): count-only and keys-only ranges are
compared over gRPC instead (``test_count_only_and_keys_only_over_grpc``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from tests.cluster.dual import Dual, start_both
from tests.cluster.harness import Cluster

MAX_TXN_OPS = 4
MAX_REQUEST_BYTES = 4096
LIMITS = [f"--max-txn-ops={MAX_TXN_OPS}", f"--max-request-bytes={MAX_REQUEST_BYTES}"]


@pytest.fixture(scope="module")
def dual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dual]:
    base: Path = tmp_path_factory.mktemp("dual")
    etcd = Cluster(base / "etcd", kind="etcd", extra_args=LIMITS)
    raftkv = Cluster(base / "raftkv", extra_args=LIMITS)
    try:
        yield start_both(etcd, raftkv)
    finally:
        etcd.stop()
        raftkv.stop()


@pytest.fixture
def d(dual: Dual) -> Dual:
    """The pair, with revisions aligned (an earlier failure must not shift later output)."""
    dual.align_revisions()
    return dual


def txn(compares: list[str], success: list[str], failure: list[str]) -> str:
    """etcdctl txn's stdin: compares, a blank line, success ops, a blank line, failure ops."""
    return "".join(f"{line}\n" for line in [*compares, "", *success, "", *failure, ""])


def test_put_and_get_forms(d: Dual) -> None:
    d.both("put", "k/a", "1")
    d.both("put", "k/b", "2")
    d.both("put", "k/c", "3", "-w", "json")
    d.both("put", "k/d", "4", "--prev-kv")
    d.both("put", "k/a", "11", "--prev-kv")
    d.both("put", "k/a", "111", "--prev-kv", "-w", "json")
    d.both("put", "k0", "zero")
    d.both("put", "k/e", "-w", "json", stdin="from stdin\n")
    for args in [
        ["get", "k/a"],
        ["get", "k/a", "-w", "json"],
        ["get", "k/a", "-w", "fields"],
        ["get", "k/a", "--print-value-only"],
        ["get", "k/zz"],
        ["get", "k/zz", "-w", "json"],
        ["get", "k/", "--prefix"],
        ["get", "k/", "--prefix", "-w", "json"],
        ["get", "k/a", "k/c"],
        ["get", "k/a", "k/c", "-w", "json"],
        ["get", "k/c", "k/a"],  # range_end before the key: nothing
        ["get", "k/b", "--from-key"],
        ["get", "k/b", "--from-key", "--keys-only"],
        ["get", "k/", "--prefix", "--limit", "2"],
        ["get", "k/", "--prefix", "--limit", "2", "-w", "json"],
        ["get", "k/", "--prefix", "--limit", "1", "-w", "fields"],
        ["get", "k/", "--prefix", "--order", "DESCEND"],
        ["get", "k/", "--prefix", "--order", "ASCEND", "-w", "json"],
        ["get", "k/", "--prefix", "--sort-by", "KEY", "--order", "DESCEND"],
        ["get", "k/", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND"],
        ["get", "k/", "--prefix", "--sort-by", "CREATE", "--order", "ASCEND"],
        ["get", "k/", "--prefix", "--sort-by", "VERSION"],
        ["get", "k/", "--prefix", "--sort-by", "VERSION", "--order", "DESCEND", "--limit", "2"],
        ["get", "k/", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND", "-w", "json"],
        ["get", "k/", "--prefix", "--keys-only"],
        ["get", "k/", "--prefix", "--keys-only", "-w", "json"],
        ["get", "k/", "--prefix", "--consistency", "s"],
        ["get", "k/", "--prefix", "--consistency", "s", "-w", "json"],
        ["get", "k/", "--prefix", "-w", "fields"],
        ["get", "k/", "--prefix", "--print-value-only"],
        ["get", "k/", "--prefix", "--max-mod-rev", "9"],
        ["get", "k/", "--prefix", "--min-create-rev", "9", "-w", "json"],
        ["get", "k/", "--prefix", "--hex"],
    ]:
        d.both(*args)


def test_get_rev(d: Dual) -> None:
    d.both("put", "r/x", "v1")
    first = d.align_revisions()
    d.both("put", "r/x", "v2")
    d.both("put", "r/y", "y1")
    d.both("del", "r/x")
    d.both("put", "r/x", "v3")
    for rev in range(first - 1, first + 5):
        d.both("get", "r/", "--prefix", "--rev", str(rev))
        d.both("get", "r/", "--prefix", "--rev", str(rev), "-w", "json")
    d.both("get", "r/x", "--rev", str(first + 1), "--consistency", "s", "-w", "json")
    d.both("get", "r/x", "--rev", "0")
    d.both("get", "r/x", "--rev", str(first + 1000))  # a future revision


def test_writes_and_reads_through_every_member(d: Dual) -> None:
    """Followers forward writes to the leader; any member answers reads."""
    for round_ in range(3):
        for i in range(3):
            d.both("put", f"m/{i}", f"{round_}", node=i)
            d.both("put", f"m/{i}", f"{round_}+", "--prev-kv", "-w", "json", node=i)
    for i in range(3):
        d.both("get", "m/", "--prefix", "-w", "json", node=i)
        d.both("get", "m/", "--prefix", "--consistency", "s", "-w", "json", node=i)
        d.both("del", f"m/{i}", "--prev-kv", node=i)
    d.both("get", "m/", "--prefix", node=None)


def test_del_forms(d: Dual) -> None:
    for k in ["a", "b", "c", "d", "e", "f"]:
        d.both("put", f"x/{k}", k)
    d.both("put", "y", "why")
    d.both("del", "x/a")
    d.both("del", "x/a")  # gone already: 0
    d.both("del", "x/b", "--prev-kv")
    d.both("del", "x/c", "x/e", "--prev-kv", "-w", "json")
    d.both("del", "x/zz", "x/a")  # range_end before the key: nothing
    d.both("del", "x/", "--prefix", "--prev-kv")
    d.both("put", "x/g", "g")
    d.both("del", "x/", "--from-key", "-w", "json")
    d.both("get", "", "--from-key")
    d.both("del", "nothing-here", "-w", "fields")


def test_txn_from_stdin(d: Dual) -> None:
    d.both("put", "t/x", "1")
    d.both("put", "t/y", "2")
    cases = [
        txn(['value("t/x") = "1"', 'version("t/y") > "0"'], ["put t/x 10", "get t/y"], []),
        txn(['value("t/x") = "1"'], ["put t/won 1"], ["put t/lost 1", "get t/x"]),
        txn(['mod("t/x") < "5"', 'create("t/y") != "0"'], ["put t/z 3"], ["get t/ --prefix"]),
        txn(['create("t/none") = "0"', 'version("t/none") = "0"'], ["put t/none 0"], []),
        txn(['value("t/x") != "10"'], [], ["del t/y --prev-kv", "get t/ --prefix --keys-only"]),
        txn(['value("t/x") > "1"', 'value("t/x") < "2"'], ["get t/x"], ["get t/z"]),
        txn([], ["put t/a 1", "put t/b 2", "get t/ --prefix --limit 2"], []),
        txn(['mod("t/a") = "0"'], [], ["del t/a t/c", "put t/c 3"]),
    ]
    for stdin in cases:
        d.both("txn", stdin=stdin)
        d.both("get", "t/", "--prefix", "-w", "json")
    for stdin in cases[:3]:
        d.both("txn", "-w", "json", stdin=stdin)
        d.both("txn", "--interactive=false", "-w", "fields", stdin=stdin)


def test_txn_errors(d: Dual) -> None:
    too_many = [f"put t2/{i} {i}" for i in range(MAX_TXN_OPS + 1)]
    d.both("txn", stdin=txn([], too_many, []))
    d.both("txn", stdin=txn([], [], too_many))
    d.both("txn", stdin=txn([f'value("t2/{i}") = "x"' for i in range(MAX_TXN_OPS + 1)], [], []))
    d.both("txn", stdin=txn([], too_many[:MAX_TXN_OPS], []))  # exactly at the limit: fine
    d.both("txn", stdin=txn([], ["put t2/d 1", "put t2/d 2"], []))  # duplicate key
    d.both("txn", stdin=txn([], [], ["del t2/ --prefix", "put t2/b 2"]))  # put in a deleted range
    d.both("txn", stdin=txn([], ["del t2/a", "del t2/a"], []))  # deleting twice is allowed
    d.both("txn", stdin=txn([], ["put t2/d 1"], ["put t2/d 2"]))  # one per branch is fine
    d.both("txn", stdin=txn(['value("") = "x"'], [], []))  # empty key in a compare
    d.both("txn", stdin=txn([], ["put '' x"], []))
    d.both("txn", stdin="bogus line\n\n\n")  # etcdctl's own parse error
    d.both("get", "t2/", "--prefix", "-w", "json")


def test_request_errors(d: Dual) -> None:
    d.both("put", "", "x")
    d.both("get", "")
    d.both("del", "")
    d.both("put", "nokey-yet", "--ignore-value")
    d.both("put", "k", "v", "--lease", "1234")  # no such lease
    d.both("get", "k", "--rev", "1000000")
    d.both("put", "big", "v" * (MAX_REQUEST_BYTES + 100))
    d.both("put", "big", "v" * (MAX_REQUEST_BYTES // 2))
    d.both("get", "big", "--keys-only")
    # Over --max-request-bytes plus gRPC's 512 KiB allowance: gRPC's own limit answers.
    d.both("put", "huge", stdin="v" * (MAX_REQUEST_BYTES + 600_000))
    d.both("get", "huge", "--keys-only")


def test_request_size_limit_counts_like_etcd(d: Dual) -> None:
    """etcd compares --max-request-bytes with the size of the raft entry it would propose
    (the request wrapped in an InternalRaftRequest with a header: about 16 bytes more than
    the gRPC payload), so a put whose payload is just under the limit is already too large."""
    value = "v" * (MAX_REQUEST_BYTES - 16)  # payload 4088 bytes; as etcd counts it, 4104
    d.both("put", "edge", value)
    d.both("get", "edge", "--keys-only")


def test_compaction(d: Dual) -> None:
    d.both("put", "c/a", "1")
    first = d.align_revisions()
    d.both("put", "c/a", "2")
    d.both("put", "c/b", "1")
    d.both("put", "c/a", "3")
    d.both("del", "c/b")
    d.both("compaction", str(first + 2))
    d.both("get", "c/", "--prefix", "--rev", str(first + 1))
    d.both("get", "c/", "--prefix", "--rev", str(first + 1), "-w", "json")
    d.both("get", "c/", "--prefix", "--rev", str(first + 2), "-w", "json")
    d.both("get", "c/", "--prefix", "--rev", str(first + 3))
    d.both("get", "c/", "--prefix", "-w", "json")
    d.both("compaction", str(first + 2))  # again: compacted
    d.both("compaction", str(first))  # below: compacted
    d.both("compaction", str(first + 1_000_000))  # future
    d.both("compaction", "0")
    d.both("compaction", str(first + 3), "--physical")
    d.both("txn", stdin=txn([], ["get c/a --rev " + str(first)], []))
    d.both("endpoint", "hashkv", "--rev", str(first))
    d.both("endpoint", "hashkv", "--rev", str(first + 4), "-w", "json")
    d.both("endpoint", "hashkv", "--rev", str(first + 1_000_000))
    d.both("get", "c/", "--prefix", "--rev", str(first + 3), "--consistency", "s", node=2)


def test_endpoint_status_health_hashkv(d: Dual) -> None:
    d.both("put", "e/x", "1")
    d.both("endpoint", "status")
    d.both("endpoint", "status", "-w", "json")
    d.both("endpoint", "status", "-w", "fields")
    d.both("endpoint", "status", node=None)
    d.both("endpoint", "status", "-w", "json", node=None)
    d.both("endpoint", "health")
    d.both("endpoint", "health", "-w", "json")
    d.both("endpoint", "health", node=None, sort=True)
    d.both("endpoint", "hashkv")
    d.both("endpoint", "hashkv", node=None)
    d.both("endpoint", "hashkv", "-w", "json", node=None)


def test_hashkv_equal_on_all_members(d: Dual) -> None:
    d.both("put", "h/x", "1")
    for c in (d.etcd, d.raftkv):
        docs = json.loads(c.ctl("endpoint", "hashkv", "-w", "json").stdout)
        assert len(docs) == 3
        hashes = {doc["HashKV"]["hash"] for doc in docs}
        revs = {doc["HashKV"]["header"]["revision"] for doc in docs}
        assert len(hashes) == 1 and len(revs) == 1, (c.kind, docs)


def test_member_list(d: Dual) -> None:
    d.both("member", "list", sort=True)
    d.both("member", "list", "-w", "json")
    for i in range(3):
        d.both("member", "list", "-w", "json", node=i)


def test_endpoints_given_as_urls(d: Dual) -> None:
    """``--endpoints=http://host:port`` (as etcd's docs write them): etcdctl 3.4 then sends
    ``:authority: http://host:port`` on some calls (status, hashkv), which etcd accepts."""
    d.both("put", "u/a", "1", urls=True)
    d.both("get", "u/a", "-w", "json", urls=True)
    d.both("member", "list", "-w", "json", urls=True)
    d.both("endpoint", "health", urls=True)
    d.both("endpoint", "status", "-w", "json", urls=True)
    d.both("endpoint", "hashkv", urls=True)
    d.both("endpoint", "status", node=None, urls=True)


def test_cluster_flag_endpoints(d: Dual) -> None:
    """``--cluster`` dials the members' advertised client URLs (``http://host:port``); etcdctl
    3.4 then sends ``:authority: http://host:port``, which etcd accepts."""
    d.both("endpoint", "health", "--cluster", sort=True)
    d.both("endpoint", "status", "--cluster", sort=True)
    d.both("endpoint", "hashkv", "--cluster", sort=True)


def _range(c: Cluster, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
    resp: rpc_pb2.RangeResponse = c.nodes[0].kv().Range(req, timeout=10)
    resp.ClearField("header")
    return resp


def test_count_only_and_keys_only_over_grpc(d: Dual) -> None:
    for i in range(5):
        d.both("put", f"n/{i}", str(i))
    requests = [
        rpc_pb2.RangeRequest(key=b"n/", range_end=b"n0", count_only=True),
        rpc_pb2.RangeRequest(key=b"n/", range_end=b"n0", count_only=True, limit=2),
        rpc_pb2.RangeRequest(key=b"n/", range_end=b"n0", keys_only=True, limit=2),
        rpc_pb2.RangeRequest(key=b"n/", range_end=b"n0", keys_only=True, serializable=True),
        rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True),
        rpc_pb2.RangeRequest(key=b"n/3", range_end=b"n/1"),
        rpc_pb2.RangeRequest(
            key=b"n/",
            range_end=b"n0",
            sort_order=rpc_pb2.RangeRequest.DESCEND,
            sort_target=rpc_pb2.RangeRequest.MOD,
            limit=3,
        ),
    ]
    for req in requests:
        assert _range(d.raftkv, req) == _range(d.etcd, req), req


def _txn(c: Cluster, req: rpc_pb2.TxnRequest) -> str:
    try:
        resp = c.nodes[0].kv().Txn(req, timeout=10)
    except grpc.RpcError as exc:
        return f"{exc.code()}: {exc.details()}"
    resp.ClearField("header")
    for r in resp.responses:
        which = r.WhichOneof("response")
        getattr(r, which).ClearField("header")
    return str(resp)


def test_txn_compares_over_grpc(d: Dual) -> None:
    """Compare targets and results etcdctl cannot express (range compares, lease, create and
    mod on missing keys, nested txns), one revision per txn."""
    for k in ["g/a", "g/b", "g/c"]:
        d.both("put", k, "5")
    d.both("put", "g/b", "7")
    C = rpc_pb2.Compare
    R = C.CompareResult
    T = C.CompareTarget

    def cmp(key: bytes, target: Any, result: Any, end: bytes = b"", **value: Any) -> Any:
        return C(key=key, range_end=end, target=target, result=result, **value)

    get_all = rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"g/", range_end=b"g0"))
    compares = [
        cmp(b"g/a", T.VALUE, R.EQUAL, value=b"5"),
        cmp(b"g/a", T.VALUE, R.GREATER, value=b"4"),
        cmp(b"g/a", T.VALUE, R.LESS, value=b"6"),
        cmp(b"g/a", T.VALUE, R.NOT_EQUAL, value=b"5"),
        cmp(b"g/", T.VALUE, R.EQUAL, b"g0", value=b"5"),  # every key in the range
        cmp(b"g/", T.VERSION, R.GREATER, b"g0", version=0),
        cmp(b"g/", T.VERSION, R.LESS, b"g0", version=2),
        cmp(b"g/", T.MOD, R.GREATER, b"\x00", mod_revision=0),  # from the key on
        cmp(b"g/zz", T.CREATE, R.EQUAL, create_revision=0),  # missing key
        cmp(b"g/zz", T.MOD, R.EQUAL, mod_revision=0),
        cmp(b"g/zz", T.VALUE, R.EQUAL, value=b""),
        cmp(b"g/zz", T.VERSION, R.LESS, version=1),
        cmp(b"g/a", T.LEASE, R.EQUAL, lease=0),
        cmp(b"g/a", T.LEASE, R.GREATER, lease=0),
        cmp(b"g/c", T.CREATE, R.LESS, create_revision=1_000_000),
    ]
    for c in compares:
        req = rpc_pb2.TxnRequest(compare=[c], success=[get_all], failure=[])
        assert _txn(d.raftkv, req) == _txn(d.etcd, req), c
    nested = rpc_pb2.TxnRequest(
        compare=[compares[0]],
        success=[
            rpc_pb2.RequestOp(
                request_txn=rpc_pb2.TxnRequest(
                    compare=[compares[3]],
                    success=[],
                    failure=[
                        rpc_pb2.RequestOp(
                            request_put=rpc_pb2.PutRequest(key=b"g/n", value=b"1", prev_kv=True)
                        ),
                        rpc_pb2.RequestOp(
                            request_delete_range=rpc_pb2.DeleteRangeRequest(
                                key=b"g/c", prev_kv=True
                            )
                        ),
                    ],
                )
            ),
            get_all,
        ],
    )
    assert _txn(d.raftkv, nested) == _txn(d.etcd, nested)
    d.both("get", "g/", "--prefix", "-w", "json")


def test_quorum_lost_last(d: Dual) -> None:
    """Runs last: kills two members of each cluster. The survivor reports no leader in its
    status and serves serializable reads, as etcd's does. (Writes differ on purpose: etcd
    3.4 holds a proposal until its request timeout, raftkv answers "etcdserver: no leader"
    at once; both are UNAVAILABLE-class failures, see test_crash.)"""
    d.both("put", "q/a", "1")
    for c in (d.etcd, d.raftkv):
        c.kill(c.nodes[1])
        c.kill(c.nodes[2])
    for c in (d.etcd, d.raftkv):
        survivor = c.nodes[0]
        deadline = time.monotonic() + 30
        while survivor.status().leader != 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # poll interval: the survivor notices it lost the quorum
    d.both("endpoint", "status")
    d.both("endpoint", "status", "-w", "json")
    d.both("get", "q/a", "--consistency", "s")
    d.both("get", "q/", "--prefix", "--consistency", "s", "-w", "json")

"""Crash safety of apply: all-or-nothing batches, the applied index, replay after restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2 as pb
from raftkv.storage import mvcc
from raftkv.storage.mvcc import MvccStore, StoreBrokenError

ROOT = Path(__file__).resolve().parents[2]


def entry(i: int) -> list[tuple[int, bytes]]:
    """The requests of Raft entry ``i`` (deterministic)."""
    reqs = [(mvcc.PUT, pb.PutRequest(key=b"k%d" % (i % 13), value=b"v%d" % i).SerializeToString())]
    if i % 4 == 0:
        reqs.append(
            (
                mvcc.DELETE_RANGE,
                pb.DeleteRangeRequest(key=b"k1", range_end=b"k3").SerializeToString(),
            )
        )
    if i % 9 == 0:
        t = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"t%d" % i))])
        reqs.append((mvcc.TXN, t.SerializeToString()))
    if i % 25 == 0:
        reqs.append((mvcc.COMPACTION, pb.CompactionRequest(revision=i).SerializeToString()))
    return reqs


def state(store: MvccStore) -> tuple[Any, ...]:
    everything = pb.RangeRequest(key=b"\x00", range_end=b"\x00")
    return (
        store.applied_index,
        store.revision,
        store.compact_revision,
        store.hash_kv(),
        store.range(everything),
    )


def reference(path: Path, last: int) -> tuple[Any, ...]:
    with MvccStore(path) as ref:
        for i in range(1, last + 1):
            ref.apply(i, entry(i))
        return state(ref)


class FailingDb:
    """Wraps the Rdict; ``write`` fails (a full disk, an I/O error)."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def write(self, *args: Any) -> None:
        raise OSError("disk on fire")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def test_failed_write_applies_nothing_and_breaks_the_store(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "db")
    for i in range(1, 31):
        store.apply(i, entry(i))
    before = state(store)
    store._db = FailingDb(store._db)  # type: ignore[assignment]
    with pytest.raises(StoreBrokenError):
        store.apply(31, entry(31) + entry(32))
    with pytest.raises(StoreBrokenError):
        store.apply(32, entry(32))
    store._db = store._db._db  # type: ignore[attr-defined]
    store.close()
    with MvccStore(tmp_path / "db") as again:
        assert state(again) == before
        again.apply(31, entry(31))
        assert state(again) == reference(tmp_path / "ref", 31)


def test_failing_handler_midway_applies_nothing(tmp_path: Path) -> None:
    store = MvccStore(tmp_path / "db")
    store.apply(1, entry(1))
    before = state(store)

    def boom(payload: bytes) -> bytes:
        raise RuntimeError("bug")

    store.add_handler(77, boom)
    with pytest.raises(StoreBrokenError):
        store.apply(2, [*entry(2), (77, b""), *entry(3)])
    store.close()
    with MvccStore(tmp_path / "db") as again:
        assert state(again) == before


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from tests.storage.test_crash import entry
    from raftkv.storage.mvcc import MvccStore
    store = MvccStore({path!r})
    for i in range(store.applied_index + 1, {last} + 1):
        store.apply(i, entry(i))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def run_child(path: Path, last: int) -> None:
    code = CHILD.format(root=str(ROOT), path=str(path), last=last)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_kill_without_close_keeps_every_applied_entry(tmp_path: Path) -> None:
    db = tmp_path / "db"
    run_child(db, 60)
    run_child(db, 110)  # a second life continues from the stored applied index
    with MvccStore(db) as store:
        assert state(store) == reference(tmp_path / "ref", 110)


def test_replaying_the_log_after_a_crash_applies_each_entry_once(tmp_path: Path) -> None:
    db = tmp_path / "db"
    run_child(db, 70)
    with MvccStore(db) as store:
        for i in range(1, 101):  # the Raft log is replayed from its start
            results = store.apply(i, entry(i))
            assert (results == []) == (i <= 70)
        assert state(store) == reference(tmp_path / "ref", 100)


def test_checkpoint_is_a_consistent_copy_to_install_elsewhere(tmp_path: Path) -> None:
    with MvccStore(tmp_path / "db") as store:
        for i in range(1, 41):
            store.apply(i, entry(i))
        at_40 = state(store)
        assert store.checkpoint(tmp_path / "snap") == 40
        for i in range(41, 61):
            store.apply(i, entry(i))
    with MvccStore(tmp_path / "snap") as copy:
        assert state(copy) == at_40
    # a follower replaces its (older) store by the snapshot, then applies the log after it
    follower = tmp_path / "follower"
    with MvccStore(follower) as old:
        old.apply(1, entry(1))
    MvccStore.install_checkpoint(follower, tmp_path / "snap")
    assert not (tmp_path / "snap").exists()
    with MvccStore(follower) as store:
        assert state(store) == at_40
        for i in range(1, 61):
            store.apply(i, entry(i))
        assert state(store) == reference(tmp_path / "ref", 60)

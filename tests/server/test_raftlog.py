"""The member's Raft log: a memory window over the WAL, restart, conflicting suffixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft import CompactedError, Entry, EntryType, HardState
from raftkv.server.raftlog import DurableLog


def ents(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, EntryType.NORMAL, b"data-%d" % i) for i in range(lo, hi)]


def test_trimmed_entries_are_read_back_from_the_wal(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    log.wal.wait(log.persist(ents(1, 101), HardState(1, 0, 100)))
    log.trim_memory(61)
    assert log.memory_first == 61
    assert log.first_index() == 1
    assert log.term(30) == 1 and log.term(60) == 1 and log.term(61) == 1
    got = log.entries(50, 70, 1 << 20)
    assert [e.index for e in got] == list(range(50, 70))
    assert got[0].data == b"data-50"
    assert [e.index for e in log.entries(10, 20, 1)] == [10], "byte limit: at least one"
    log.close()


def test_restart_replays_the_wal(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    log.persist(ents(1, 11), HardState(1, 2, 5))
    log.wal.wait(log.persist(ents(6, 9, term=2), HardState(2, 3, 7)))  # conflict from 6
    log.close()
    again = DurableLog(tmp_path)
    assert again.last_index() == 8
    assert [again.term(i) for i in (5, 6, 8)] == [1, 2, 2]
    assert again.hard_state() == HardState(2, 3, 7)
    again.close()


def test_snapshot_index_is_compacted(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    log.wal.wait(log.persist(ents(1, 21), HardState(1, 0, 20)))
    log.create_snapshot(10, log.snapshot_meta().conf_state, b"")
    log.compact(10)
    with pytest.raises(CompactedError):
        log.entries(5, 8, 1 << 20)
    assert log.term(10) == 1
    log.close()


def test_restart_loads_only_a_window_into_memory(tmp_path: Path) -> None:
    log = DurableLog(tmp_path)
    log.wal.wait(log.persist(ents(1, 501), HardState(1, 0, 500)))
    log.close()
    again = DurableLog(tmp_path, memory_window=100)
    assert again.memory_first == 401
    assert again.first_index() == 1 and again.last_index() == 500
    assert [e.index for e in again.entries(1, 501, 1 << 30)] == list(range(1, 501))
    again.close()

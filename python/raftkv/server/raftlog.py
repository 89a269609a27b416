"""The Raft log of a member: entries in memory for the core, made durable by the native WAL.

The core reads entries through the ``LogStorage`` protocol (served from memory); every append
and hard state also goes to the WAL, whose sequence numbers tell when they are durable. On
start the WAL is replayed into memory. Snapshot metadata (index, term, membership) lives in a
small file written atomically next to the WAL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from raftkv._native import Wal
from raftkv.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMeta,
)
from raftkv.server.wire import entries_to_records, records_to_entries

SNAPSHOT_META = "snapshot.json"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _load_snapshot_meta(path: Path) -> SnapshotMeta:
    if not path.exists():
        return SnapshotMeta()
    doc = json.loads(path.read_text())
    conf = ConfState(frozenset(doc["voters"]), frozenset(doc["learners"]))
    return SnapshotMeta(doc["index"], doc["term"], conf)


class DurableLog(MemoryStorage):
    """``LogStorage`` over memory, persisted by a native :class:`Wal`."""

    __slots__ = ("_dir", "wal")

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._dir = directory
        meta = _load_snapshot_meta(directory / SNAPSHOT_META)
        super().__init__(Snapshot(meta))
        self.wal = Wal(directory / "wal")
        first = max(self.wal.first_index, meta.index + 1)
        last = self.wal.last_index
        if last >= first:
            MemoryStorage.append(self, records_to_entries(self.wal.read(first, last + 1)))

    @property
    def is_empty(self) -> bool:
        return self.last_index() == 0 and self.hard_state() == HardState()

    def hard_state(self) -> HardState:
        term, vote, commit = self.wal.hard_state
        return HardState(term, vote, commit)

    def persist(self, entries: Sequence[Entry], hard_state: HardState | None) -> int:
        """Append entries (replacing a conflicting suffix) and save the hard state; returns
        the WAL sequence number to wait on for durability (0: nothing written)."""
        snap_index = self.snapshot_meta().index
        if entries and entries[0].index <= snap_index:
            entries = [e for e in entries if e.index > snap_index]
        hs = None if hard_state is None else (hard_state.term, hard_state.vote, hard_state.commit)
        if not entries and hs is None:
            return 0
        MemoryStorage.append(self, entries)
        return self.wal.append(entries_to_records(list(entries)) if entries else b"", hs)

    def append(self, entries: Sequence[Entry]) -> None:
        self.persist(entries, None)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        snap = MemoryStorage.create_snapshot(self, index, conf_state, data)
        meta = snap.meta
        doc = {
            "index": meta.index,
            "term": meta.term,
            "voters": sorted(meta.conf_state.voters),
            "learners": sorted(meta.conf_state.learners),
        }
        _write_atomically(self._dir / SNAPSHOT_META, json.dumps(doc).encode())
        return snap

    def compact(self, index: int) -> None:
        MemoryStorage.compact(self, index)
        self.wal.release_before(index + 1)

    def close(self) -> None:
        self.wal.close()

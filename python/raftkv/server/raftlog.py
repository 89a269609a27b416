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
    CompactedError,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Snapshot,
    SnapshotMeta,
)
from raftkv.raft.log import limit_size
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

    def __init__(self, directory: Path, memory_window: int = 10_000) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._dir = directory
        meta = _load_snapshot_meta(directory / SNAPSHOT_META)
        super().__init__(Snapshot(meta))
        self.wal = Wal(directory / "wal")
        first = max(self.wal.first_index, meta.index + 1)
        last = self.wal.last_index
        # Only the newest entries go to memory; older ones are read from the WAL on demand.
        start = max(first, last - memory_window + 1)
        if start > first:
            self._ents = [Entry(start - 1, self.wal.term(start - 1))]
        if last >= start:
            MemoryStorage.append(self, records_to_entries(self.wal.read(start, last + 1)))

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

    # --- a bounded window in memory; older entries are read back from the WAL ---------------

    @property
    def memory_first(self) -> int:
        """First index held in memory (older ones come from the WAL)."""
        return self._ents[0].index + 1

    def memory_entries(self) -> int:
        return len(self._ents) - 1

    def first_index(self) -> int:
        return self._snap.meta.index + 1

    def trim_memory(self, keep_from: int) -> None:
        """Drop entries before ``keep_from`` from memory (they stay in the WAL). Only
        applied entries may be trimmed: they can never be overwritten."""
        off = self._ents[0].index
        if keep_from <= off + 1 or keep_from > self.last_index() + 1:
            return
        pos = keep_from - 1 - off
        head = self._ents[pos]
        self._ents = [Entry(head.index, head.term), *self._ents[pos + 1 :]]

    def term(self, index: int) -> int:
        off = self._ents[0].index
        snap = self._snap.meta
        if index >= off or index <= snap.index:
            return MemoryStorage.term(self, index) if index >= off else self._snap_term(index)
        return self.wal.term(index)

    def _snap_term(self, index: int) -> int:
        if index == self._snap.meta.index:
            return self._snap.meta.term
        raise CompactedError(index)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        off = self._ents[0].index
        if lo > off:
            return MemoryStorage.entries(self, lo, hi, max_bytes)
        if lo <= self._snap.meta.index:
            raise CompactedError(lo)
        old = records_to_entries(self.wal.read(lo, min(hi, off + 1), max_bytes))
        if hi > off + 1 and len(old) == off + 1 - lo:
            old.extend(MemoryStorage.entries(self, off + 1, hi, max_bytes))
        return limit_size(old, max_bytes)

    def close(self) -> None:
        self.wal.close()

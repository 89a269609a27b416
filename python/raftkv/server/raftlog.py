"""The Raft log of a member: the newest entries in the native log window, every entry in the
native WAL.

The core reads entries through the ``LogStorage`` protocol. Recent entries are served from
:class:`raftkv._native.LogWindow`, which keeps them as encoded records (the bytes the WAL
stores and peers send); older ones are read back from the WAL. Every append and hard state
goes to the WAL, whose sequence numbers tell when they are durable. Snapshot metadata
(index, term, membership) lives in a small file written atomically next to the WAL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from raftkv._native import LogUnavailableError, LogWindow, PeerTransport, Wal
from raftkv.raft import (
    CompactedError,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMeta,
    UnavailableError,
)
from raftkv.raft.log import limit_size
from raftkv.server.wire import EntryCodec

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


class DurableLog:
    """``LogStorage`` over the native log window, persisted by the native :class:`Wal`."""

    __slots__ = ("_dir", "_snap", "codec", "wal", "window")

    def __init__(self, directory: Path, memory_window: int = 10_000) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.codec = EntryCodec()
        self._dir = directory
        meta = _load_snapshot_meta(directory / SNAPSHOT_META)
        self._snap = Snapshot(meta)
        self.wal = Wal(directory / "wal")
        first = max(self.wal.first_index, meta.index + 1)
        last = self.wal.last_index
        # Only the newest entries go to memory; older ones are read from the WAL on demand.
        start = max(first, last - memory_window + 1)
        prev_term = meta.term if start - 1 <= meta.index else self.wal.term(start - 1)
        self.window = LogWindow(start, prev_term)
        if last >= start:
            self.window.append(self.wal.read(start, last + 1))

    # --- LogStorage ------------------------------------------------------------------

    def first_index(self) -> int:
        return self._snap.meta.index + 1

    def last_index(self) -> int:
        return self.window.last_index

    def term(self, index: int) -> int:
        window = self.window
        if index >= window.first_index - 1:
            try:
                return window.term(index)
            except LogUnavailableError as exc:
                raise UnavailableError(index) from exc
        snap = self._snap.meta
        if index == snap.index:
            return snap.term
        if index < snap.index:
            raise CompactedError(index)
        return self.wal.term(index)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        if lo <= self._snap.meta.index:
            raise CompactedError(lo)
        if hi > self.last_index() + 1:
            raise UnavailableError(hi)
        wfirst = self.window.first_index
        if lo >= wfirst:
            return self.codec.decode(self.window.slice(lo, hi, max_bytes))
        old = self.codec.decode(self.wal.read(lo, min(hi, wfirst), max_bytes))
        if hi > wfirst and len(old) == wfirst - lo:
            old.extend(self.codec.decode(self.window.slice(wfirst, hi, max_bytes)))
        return limit_size(old, max_bytes)

    def snapshot_meta(self) -> SnapshotMeta:
        return self._snap.meta

    def snapshot(self) -> Snapshot:
        return self._snap

    def append(self, entries: Sequence[Entry]) -> None:
        self.persist(entries, None)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if meta.index < self._snap.meta.index:
            raise ValueError("snapshot out of date")
        self._save_meta(meta)
        self._snap = snapshot
        self.window.reset(meta.index + 1, meta.term)
        self.wal.release_before(meta.index + 1)

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        if index <= self._snap.meta.index:
            return self._snap
        if index > self.last_index():
            raise UnavailableError(index)
        meta = SnapshotMeta(index, self.term(index), conf_state)
        self._save_meta(meta)
        self._snap = Snapshot(meta, data)
        return self._snap

    def compact(self, index: int) -> None:
        if index > self._snap.meta.index:
            raise ValueError("compact beyond the snapshot")
        self.window.compact_to(index + 1)
        self.wal.release_before(index + 1)

    # --- persistence ---------------------------------------------------------------------

    def _save_meta(self, meta: SnapshotMeta) -> None:
        doc = {
            "index": meta.index,
            "term": meta.term,
            "voters": sorted(meta.conf_state.voters),
            "learners": sorted(meta.conf_state.learners),
        }
        _write_atomically(self._dir / SNAPSHOT_META, json.dumps(doc).encode())

    @property
    def is_empty(self) -> bool:
        return self.last_index() == 0 and self.hard_state() == HardState()

    def hard_state(self) -> HardState:
        term, vote, commit = self.wal.hard_state
        return HardState(term, vote, commit)

    def persist(
        self,
        entries: Sequence[Entry],
        hard_state: HardState | None,
        sync: bool = True,
        then_send: tuple[PeerTransport, list[tuple[int, bytes]]] | None = None,
    ) -> int:
        """Append entries (replacing a conflicting suffix) and save the hard state; returns
        the WAL sequence number to wait on for durability (0: nothing written). Entries
        before the memory window are applied ones, identical to what we have: skipped.
        ``sync=False`` (Raft's must_sync unset: only the commit index moved) writes nothing
        unless there are entries. ``then_send`` messages leave from the WAL's writer thread
        once the write is durable (see ``Wal.append``)."""
        wfirst = self.window.first_index
        if entries and entries[0].index < wfirst:
            entries = [e for e in entries if e.index >= wfirst]
        hs = None if hard_state is None else (hard_state.term, hard_state.vote, hard_state.commit)
        if not entries and (hs is None or not sync):
            # Only the commit index moved: not worth a write (and a writer wake-up) of its
            # own; it rides along with the next append. After a crash the member relearns it
            # from the leader, and its state machine knows how far it applied.
            return 0
        records = self.codec.encode(list(entries)) if entries else b""
        if records:
            self.window.append(records)
        return self.wal.append(records, hs, sync=sync or bool(entries), then_send=then_send)

    # --- the memory window -----------------------------------------------------------------

    @property
    def memory_first(self) -> int:
        """First index held in memory (older ones come from the WAL)."""
        return self.window.first_index

    def memory_entries(self) -> int:
        return len(self.window)

    def trim_memory(self, keep_from: int) -> None:
        """Drop entries before ``keep_from`` from memory (they stay in the WAL). Only applied
        entries may be trimmed: they can never be overwritten."""
        self.window.compact_to(min(keep_from, self.last_index() + 1))

    def close(self) -> None:
        self.wal.close()

"""Raft log: the storage protocol, an in-memory storage, and the core's view over it.

``LogStorage`` is the narrow, typed contract between the core and whatever holds durable log
entries (this module's ``MemoryStorage`` for tests, the native log window in production). The core
only *reads* storage; the application *writes* it while processing a ``Ready``
(``apply_snapshot``, ``append``) and compacts it (``create_snapshot`` + ``compact``).

``RaftLog`` is the core's view: stable entries in storage, followed by unstable entries (appended
by the core, not yet persisted), plus the committed and applied indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Protocol

from .messages import ConfState, Entry, Snapshot, SnapshotMeta, entry_size


class CompactedError(LookupError):
    """The requested index is at or below the storage's snapshot (no longer available)."""


class UnavailableError(LookupError):
    """The requested index is beyond the last entry."""


class LogStorage(Protocol):
    """Durable log entries behind a snapshot. Indexes are 1-based; index 0 is the empty log.

    Invariants: ``first_index() == snapshot_meta().index + 1`` and entries
    ``first_index() .. last_index()`` are contiguous. ``term(snapshot_meta().index)`` is valid.
    """

    def first_index(self) -> int:
        """Index of the first available entry (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """Index of the last entry (the snapshot index if there are no entries)."""
        ...

    def term(self, index: int) -> int:
        """Term of entry ``index``; raises CompactedError / UnavailableError when out of range."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``lo <= index < hi``, as many as fit in ``max_bytes`` (always at least one)."""
        ...

    def snapshot_meta(self) -> SnapshotMeta:
        """Metadata of the latest snapshot (index 0 and term 0 when there is none)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot, with its data, to send to a lagging follower."""
        ...

    def append(self, entries: Sequence[Entry]) -> None:
        """Append contiguous entries; an existing suffix from ``entries[0].index`` is replaced."""
        ...

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (entries after it are discarded)."""
        ...

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine at applied ``index`` (entries stay)."""
        ...

    def compact(self, index: int) -> None:
        """Discard entries up to ``index`` (``index`` must be <= the snapshot index)."""
        ...


class MemoryStorage:
    """In-memory ``LogStorage``. ``ents[0]`` is a placeholder for the snapshot index/term."""

    __slots__ = ("_ents", "_snap")

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self._snap = snapshot if snapshot is not None else Snapshot()
        m = self._snap.meta
        self._ents: list[Entry] = [Entry(m.index, m.term)]

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def term(self, index: int) -> int:
        off = self._ents[0].index
        if index < off:
            raise CompactedError(index)
        if index - off >= len(self._ents):
            raise UnavailableError(index)
        return self._ents[index - off].term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        off = self._ents[0].index
        if lo <= off:
            raise CompactedError(lo)
        if hi > self.last_index() + 1:
            raise UnavailableError(hi)
        return limit_size(self._ents[lo - off : hi - off], max_bytes)

    def snapshot_meta(self) -> SnapshotMeta:
        return self._snap.meta

    def snapshot(self) -> Snapshot:
        return self._snap

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        off = self._ents[0].index
        first = entries[0].index
        if first <= off:
            # Entries at or before the snapshot are already committed and identical; skip them.
            skip = off + 1 - first
            if skip >= len(entries):
                return
            entries = entries[skip:]
            first = entries[0].index
        pos = first - off
        if pos > len(self._ents):
            raise ValueError(f"gap: appending {first} after {self.last_index()}")
        del self._ents[pos:]
        self._ents.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.meta.index < self._snap.meta.index:
            raise ValueError("snapshot out of date")
        self._snap = snapshot
        self._ents = [Entry(snapshot.meta.index, snapshot.meta.term)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        if index <= self._snap.meta.index:
            return self._snap
        if index > self.last_index():
            raise UnavailableError(index)
        meta = SnapshotMeta(index, self.term(index), conf_state)
        self._snap = Snapshot(meta, data)
        return self._snap

    def compact(self, index: int) -> None:
        off = self._ents[0].index
        if index <= off:
            return
        if index > self._snap.meta.index:
            raise ValueError("compact beyond the snapshot")
        pos = index - off
        head = self._ents[pos]
        self._ents = [Entry(head.index, head.term), *self._ents[pos + 1 :]]

    def all_entries(self) -> list[Entry]:
        """Every stored entry (for tests and invariant checks)."""
        return self._ents[1:]


_data = attrgetter("data")


def limit_size(ents: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix of ``ents`` within ``max_bytes``, but at least one entry."""
    n = len(ents)
    if n <= 1:
        return ents
    if sum(map(len, map(_data, ents))) + 16 * n <= max_bytes:  # the common case, in C
        return ents
    total = 0
    for i, e in enumerate(ents):
        total += len(e.data) + 16
        if total > max_bytes and i > 0:
            return ents[:i]
    return ents


class RaftLog:
    """Stable entries (storage) + unstable entries (in memory) + committed/applied indexes."""

    __slots__ = ("applied", "committed", "offset", "storage", "unstable", "unstable_snapshot")

    def __init__(self, storage: LogStorage) -> None:
        self.storage = storage
        self.unstable: list[Entry] = []
        self.offset = storage.last_index() + 1  # index of unstable[0]
        self.unstable_snapshot: Snapshot | None = None
        snap_index = storage.first_index() - 1
        self.committed = snap_index
        self.applied = snap_index

    # --- queries ---------------------------------------------------------------------------
    def first_index(self) -> int:
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.meta.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self.unstable:
            return self.offset + len(self.unstable) - 1
        if self.unstable_snapshot is not None:
            return self.unstable_snapshot.meta.index
        return self.storage.last_index()

    def term(self, index: int) -> int:
        """Term at ``index``; raises CompactedError / UnavailableError."""
        off = self.offset
        if index >= off:
            pos = index - off
            if pos < len(self.unstable):
                return self.unstable[pos].term
            raise UnavailableError(index)
        snap = self.unstable_snapshot
        if snap is not None:
            if index == snap.meta.index:
                return snap.meta.term
            if index < snap.meta.index:
                raise CompactedError(index)
            raise UnavailableError(index)
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except LookupError:
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except LookupError:
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        lt = self.last_term()
        return term > lt or (term == lt and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``lo <= index < hi`` within ``max_bytes`` (at least one if any)."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise CompactedError(lo)
        off = self.offset
        if hi <= off:
            return self.storage.entries(lo, hi, max_bytes)
        if lo >= off:
            return limit_size(self.unstable[lo - off : hi - off], max_bytes)
        stable = self.storage.entries(lo, off, max_bytes)
        if len(stable) < off - lo:
            return stable
        size = sum(entry_size(e) for e in stable)
        rest = limit_size(self.unstable[: hi - off], max_bytes - size)
        if rest and size + entry_size(rest[0]) > max_bytes:
            return stable
        return stable + rest

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """Index of the first entry of ``ents`` not already in the log (0 if none)."""
        last = self.last_index()
        for e in ents:
            if e.index > last:
                return e.index
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest ``i <= index`` whose term is ``<= term``, with that term (0 if unknown)."""
        while index > 0:
            try:
                t = self.term(index)
            except LookupError:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # --- mutations -------------------------------------------------------------------------
    def append(self, ents: Sequence[Entry]) -> int:
        """Append (truncating any conflicting unstable/stable suffix); returns the last index."""
        if not ents:
            return self.last_index()
        after = ents[0].index
        if after <= self.committed:
            raise AssertionError(f"truncating committed entry {after} <= {self.committed}")
        off = self.offset
        n = len(self.unstable)
        if after == off + n:
            self.unstable.extend(ents)
        elif after <= off:
            # Replaces stable entries too: storage truncates them when these are persisted.
            self.offset = after
            self.unstable = list(ents)
        else:
            del self.unstable[after - off :]
            self.unstable.extend(ents)
        return self.last_index()

    def maybe_append(self, index: int, log_term: int, committed: int, ents: list[Entry]) -> int:
        """Follower append: returns the last new index, or -1 if ``index/log_term`` mismatch."""
        if not self.match_term(index, log_term):
            return -1
        last_new = index + len(ents)
        if ents:
            ci = self.find_conflict(ents)
            if ci:
                if ci <= self.committed:
                    raise AssertionError(f"conflict at committed index {ci}")
                self.append(ents[ci - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        if index > self.committed and self.term_or_zero(index) == term:
            self.committed = index
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.meta.index
        self.unstable = []
        self.offset = snapshot.meta.index + 1
        self.unstable_snapshot = snapshot

    def stable_to(self, index: int) -> None:
        """Entries up to ``index`` were persisted (after a Ready)."""
        n = index + 1 - self.offset
        if n > 0:
            del self.unstable[:n]
            self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        snap = self.unstable_snapshot
        if snap is not None and snap.meta.index == index:
            self.unstable_snapshot = None

    def next_committed(self, max_bytes: int) -> list[Entry]:
        lo = max(self.applied + 1, self.first_index())
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, max_bytes)

"""The in-memory key index: key -> generations of revisions, ordered by key for range scans.

A key's life is a list of generations. A generation starts with the put that creates the key
and ends with the deletion (tombstone) that removes it. ``KeyIndex`` keeps its current
generation in its own fields (``revs``, ``created``, ``ver``; ``rev`` is the latest revision,
0 while the key does not exist) so that the write path and reads of the current state touch
one object; finished generations are ``Generation`` objects in ``closed``. Revisions are
packed ints (``revision.pack``), stored in ``array('Q')``: 8 bytes each instead of a list
slot plus an int object (40 bytes); with every revision kept until compaction, that is most of
the index's memory. Besides what etcd's index keeps, each key remembers the lease
of its latest put, so that the write path never reads RocksDB.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from operator import attrgetter

from sortedcontainers import SortedKeyList

from raftkv.storage.revision import SUB_BITS


class Generation:
    """A finished life of a key: revisions from its creating put to its tombstone (last)."""

    __slots__ = ("created", "revs", "ver")

    def __init__(self, created: int, ver: int, revs: array[int]) -> None:
        self.created = created  # main revision of the creating put
        self.ver = ver  # version at the last revision of ``revs`` (the tombstone)
        self.revs = revs


class KeyIndex:
    """Generations of one key."""

    __slots__ = ("closed", "created", "key", "lease", "rev", "revs", "ver")

    def __init__(self, key: bytes) -> None:
        self.key = key
        # Most keys never get deleted: share one empty tuple instead of a list per key.
        self.closed: list[Generation] | tuple[()] = ()
        self.revs: array[int] = array("Q")  # revisions of the current generation
        self.rev = 0  # latest revision while the key exists, else 0
        self.created = 0  # main revision of the current generation's creating put
        self.ver = 0  # version at ``rev``
        self.lease = 0  # lease of the latest put while the key exists

    def put(self, rev: int, lease: int) -> None:
        """Record a put at ``rev``; ``created`` and ``ver`` then describe it."""
        if self.rev:
            self.ver += 1
        else:
            self.created = rev >> SUB_BITS
            self.ver = 1
        self.revs.append(rev)
        self.rev = rev
        self.lease = lease

    def tombstone(self, rev: int) -> None:
        """Record a deletion at ``rev``; the key must exist."""
        revs = self.revs
        revs.append(rev)
        gen = Generation(self.created, self.ver + 1, revs)
        if isinstance(self.closed, list):
            self.closed.append(gen)
        else:
            self.closed = [gen]
        self.revs = array("Q")
        self.rev = 0
        self.created = 0
        self.ver = 0
        self.lease = 0

    def restore(self, rev: int, created: int, ver: int, lease: int) -> None:
        """Record a stored put (while rebuilding from disk), trusting its stored metadata."""
        self.revs.append(rev)
        self.rev = rev
        self.created = created
        self.ver = ver
        self.lease = lease

    def get(self, at_main: int) -> tuple[int, int, int] | None:
        """(revision, create main revision, version) as of main revision ``at_main``."""
        at = (at_main + 1) << SUB_BITS  # first revision after at_main
        revs = self.revs
        if revs and revs[0] < at:
            if revs[-1] < at:
                return revs[-1], self.created, self.ver
            i = bisect_left(revs, at) - 1
            return revs[i], self.created, self.ver - (len(revs) - 1 - i)
        for g in reversed(self.closed):
            revs = g.revs
            if revs[0] >= at:
                continue
            if revs[-1] < at:
                return None  # deleted at or before at_main
            i = bisect_left(revs, at) - 1
            return revs[i], g.created, g.ver - (len(revs) - 1 - i)
        return None

    def compact(self, at_main: int, drop: list[int], drop_tombs: list[int]) -> bool:
        """Forget revisions not needed to read at ``at_main`` or later.

        Appends the dropped revisions to ``drop`` (puts) and ``drop_tombs`` (tombstones).
        Returns True when nothing is left, i.e. the key can leave the index.
        """
        at = (at_main + 1) << SUB_BITS
        closed = self.closed
        i = 0
        while i < len(closed) and closed[i].revs[-1] < at:
            drop.extend(closed[i].revs[:-1])
            drop_tombs.append(closed[i].revs[-1])
            i += 1
        if i and isinstance(closed, list):
            del closed[:i]
        revs = closed[0].revs if closed else self.revs
        if revs:
            j = bisect_left(revs, at) - 1
            if j > 0:
                drop.extend(revs[:j])
                del revs[:j]
        return not closed and not self.revs


class TreeIndex:
    """Key -> KeyIndex, with the keys kept sorted for range scans."""

    __slots__ = ("_map", "_sorted")

    def __init__(self) -> None:
        self._map: dict[bytes, KeyIndex] = {}
        self._sorted = SortedKeyList(key=attrgetter("key"))

    def __len__(self) -> int:
        return len(self._map)

    def __iter__(self) -> Iterator[KeyIndex]:
        return iter(self._sorted)

    def get(self, key: bytes) -> KeyIndex | None:
        return self._map.get(key)

    def lookup(self) -> Callable[[bytes], KeyIndex | None]:
        """``get`` without the method layer (the hot path); valid until ``bulk_load``."""
        return self._map.get

    def create(self, key: bytes) -> KeyIndex:
        ki = KeyIndex(key)
        self._map[key] = ki
        self._sorted.add(ki)
        return ki

    def remove(self, key: bytes) -> None:
        self._sorted.remove(self._map.pop(key))

    def range(self, key: bytes, end: bytes) -> list[KeyIndex]:
        """Key indexes of keys in [key, end); an empty ``end`` means no upper bound."""
        s = self._sorted
        i = s.bisect_key_left(key)
        j = s.bisect_key_left(end) if end else len(s)
        if j <= i:
            return []
        return s[i:j]  # type: ignore[no-any-return]

    def bulk_load(self, entries: dict[bytes, KeyIndex]) -> None:
        """Replace the contents (used when rebuilding from disk)."""
        self._map = entries
        self._sorted = SortedKeyList(entries.values(), key=attrgetter("key"))

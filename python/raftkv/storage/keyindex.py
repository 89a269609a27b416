"""The in-memory key index: key -> generations of revisions, ordered by key for range scans.

A key's life is a list of generations. A generation starts with the put that creates the key
and ends with the deletion (tombstone) that removes it; the last generation is the current one
and is empty while the key does not exist. Revisions are packed ints (``revision.pack``).
Besides what etcd's index keeps, each key remembers the lease of its latest put, so that the
write path never reads RocksDB.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from sortedcontainers import SortedList

from raftkv.storage.revision import SUB_BITS


class Generation:
    """One life of a key: revisions from its creating put up to (closed ones) its tombstone."""

    __slots__ = ("created", "revs", "ver")

    def __init__(self) -> None:
        self.created = 0  # main revision of the creating put
        self.ver = 0  # version of the key at the last revision in ``revs``
        self.revs: list[int] = []


class KeyIndex:
    """Generations of one key."""

    __slots__ = ("gens", "key", "lease")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.gens = [Generation()]
        self.lease = 0  # lease of the latest put while the key exists

    def alive(self) -> bool:
        return bool(self.gens[-1].revs)

    def latest(self) -> tuple[int, int, int] | None:
        """(revision, create main revision, version) now, or None if the key is deleted."""
        g = self.gens[-1]
        if g.revs:
            return g.revs[-1], g.created, g.ver
        return None

    def put(self, rev: int, lease: int) -> tuple[int, int]:
        """Record a put at ``rev``; returns (create main revision, version)."""
        g = self.gens[-1]
        if g.revs:
            g.ver += 1
        else:
            g.created = rev >> SUB_BITS
            g.ver = 1
        g.revs.append(rev)
        self.lease = lease
        return g.created, g.ver

    def tombstone(self, rev: int) -> None:
        """Record a deletion at ``rev``; the key must exist."""
        g = self.gens[-1]
        g.revs.append(rev)
        g.ver += 1
        self.gens.append(Generation())
        self.lease = 0

    def restore(self, rev: int, created: int, ver: int, lease: int) -> None:
        """Record a stored put (while rebuilding from disk), trusting its stored metadata."""
        g = self.gens[-1]
        g.created = created
        g.ver = ver
        g.revs.append(rev)
        self.lease = lease

    def get(self, at_main: int) -> tuple[int, int, int] | None:
        """(revision, create main revision, version) as of main revision ``at_main``."""
        at = (at_main + 1) << SUB_BITS  # first revision after at_main
        gens = self.gens
        g = gens[-1]
        revs = g.revs
        if revs and revs[-1] < at:
            return revs[-1], g.created, g.ver
        last = len(gens) - 1
        for gi in range(last, -1, -1):
            g = gens[gi]
            revs = g.revs
            if not revs or revs[0] >= at:
                continue
            if gi != last and revs[-1] < at:
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
        gens = self.gens
        i = 0
        while i < len(gens) - 1 and gens[i].revs[-1] < at:
            drop.extend(gens[i].revs[:-1])
            drop_tombs.append(gens[i].revs[-1])
            i += 1
        g = gens[i]
        if g.revs:
            j = bisect_left(g.revs, at) - 1
            if j > 0:
                drop.extend(g.revs[:j])
                del g.revs[:j]
        if i:
            del gens[:i]
        return len(gens) == 1 and not gens[0].revs


class TreeIndex:
    """Key -> KeyIndex, with the keys kept sorted for range scans."""

    __slots__ = ("_keys", "_map")

    def __init__(self) -> None:
        self._map: dict[bytes, KeyIndex] = {}
        self._keys = SortedList()

    def __len__(self) -> int:
        return len(self._map)

    def __iter__(self) -> Iterator[KeyIndex]:
        m = self._map
        return (m[k] for k in self._keys)

    def get(self, key: bytes) -> KeyIndex | None:
        return self._map.get(key)

    def create(self, key: bytes) -> KeyIndex:
        ki = KeyIndex(key)
        self._map[key] = ki
        self._keys.add(key)
        return ki

    def remove(self, key: bytes) -> None:
        del self._map[key]
        self._keys.remove(key)

    def range(self, key: bytes, end: bytes) -> list[KeyIndex]:
        """Key indexes of keys in [key, end); an empty ``end`` means no upper bound."""
        keys = self._keys
        i = keys.bisect_left(key)
        j = keys.bisect_left(end) if end else len(keys)
        if j <= i:
            return []
        m = self._map
        return [m[k] for k in keys[i:j]]

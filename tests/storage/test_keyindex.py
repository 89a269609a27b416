"""KeyIndex and TreeIndex: generations, reads at a revision, compaction."""

from __future__ import annotations

from raftkv.storage.keyindex import KeyIndex, TreeIndex
from raftkv.storage.revision import pack, parse_key, rev_key, tombstone_key


def history() -> KeyIndex:
    """put@2, put@4, del@6, put@8, put@10.1, del@12, put@14."""
    ki = KeyIndex(b"k")
    ki.put(pack(2, 0), 0)
    ki.put(pack(4, 0), 5)
    ki.tombstone(pack(6, 0))
    ki.put(pack(8, 0), 0)
    ki.put(pack(10, 1), 0)
    ki.tombstone(pack(12, 0))
    ki.put(pack(14, 0), 7)
    return ki


def test_revision_encoding() -> None:
    r = pack(300, 5)
    assert parse_key(rev_key(r)) == (r, False)
    assert parse_key(tombstone_key(r)) == (r, True)
    assert rev_key(pack(1, 2)) < rev_key(pack(1, 3)) < rev_key(pack(2, 0))
    assert rev_key(pack(1, 0)) < tombstone_key(pack(1, 0)) < rev_key(pack(1, 1))


def test_get_at_revisions() -> None:
    ki = history()
    assert ki.get(1) is None
    assert ki.get(2) == (pack(2, 0), 2, 1)
    assert ki.get(5) == (pack(4, 0), 2, 2)
    assert ki.get(6) is None and ki.get(7) is None
    assert ki.get(8) == (pack(8, 0), 8, 1)
    assert ki.get(11) == (pack(10, 1), 8, 2)
    assert ki.get(13) is None
    assert ki.get(14) == (pack(14, 0), 14, 1)
    assert (ki.rev, ki.created, ki.ver, ki.lease) == (pack(14, 0), 14, 1, 7)


def test_compact_drops_what_no_read_needs() -> None:
    ki = history()
    drop: list[int] = []
    tombs: list[int] = []
    assert not ki.compact(5, drop, tombs)
    assert (drop, tombs) == ([pack(2, 0)], [])
    assert ki.get(5) == (pack(4, 0), 2, 2)
    assert not ki.compact(6, drop, tombs)  # the tombstone at 6 ends the first generation
    assert (drop, tombs) == ([pack(2, 0), pack(4, 0)], [pack(6, 0)])
    assert ki.get(7) is None and ki.get(8) == (pack(8, 0), 8, 1)
    drop.clear()
    tombs.clear()
    assert not ki.compact(11, drop, tombs)
    assert drop == [pack(8, 0)] and ki.get(11) == (pack(10, 1), 8, 2)
    drop.clear()
    assert not ki.compact(20, drop, tombs)
    assert drop == [pack(10, 1)] and tombs == [pack(12, 0)]
    assert ki.get(20) == (pack(14, 0), 14, 1) and not ki.closed


def test_compact_of_a_deleted_key_empties_it() -> None:
    ki = KeyIndex(b"k")
    ki.put(pack(2, 0), 0)
    ki.tombstone(pack(3, 0))
    drop: list[int] = []
    tombs: list[int] = []
    assert not ki.compact(2, drop, tombs)
    assert ki.compact(3, drop, tombs)
    assert (drop, tombs) == ([pack(2, 0)], [pack(3, 0)])


def test_restore_trusts_stored_metadata() -> None:
    ki = KeyIndex(b"k")
    ki.restore(pack(9, 0), 3, 4, 11)  # the put that created it was compacted away
    ki.put(pack(10, 0), 0)
    assert ki.get(9) == (pack(9, 0), 3, 4)
    assert ki.get(10) == (pack(10, 0), 3, 5)


def test_tree_index_ranges() -> None:
    t = TreeIndex()
    for k in (b"b", b"a", b"ab", b"c"):
        t.create(k)
    assert [ki.key for ki in t.range(b"a", b"")] == [b"a", b"ab", b"b", b"c"]
    assert [ki.key for ki in t.range(b"a", b"b")] == [b"a", b"ab"]
    assert t.range(b"c", b"a") == []
    t.remove(b"ab")
    assert [ki.key for ki in t] == [b"a", b"b", b"c"] and len(t) == 3
    assert t.get(b"ab") is None and t.get(b"a") is not None

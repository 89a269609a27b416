"""Raft messages on the wire: round trips, damage, and the encode-once cache."""

from __future__ import annotations

import pytest

from raftkv.raft import ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMeta
from raftkv.server.wire import WireError, decode_message, encode_message


def test_round_trip_with_entries_and_snapshot() -> None:
    snap = Snapshot(SnapshotMeta(3, 2, ConfState(frozenset({1, 2}), frozenset({3}))), b"data")
    m = Message(
        MessageType.APP,
        2,
        1,
        5,
        4,
        10,
        [Entry(11, 5, EntryType.NORMAL, b"x" * 10), Entry(12, 5, EntryType.CONF_CHANGE, b"cc")],
        9,
        False,
        0,
        snap,
        b"ctx",
    )
    assert decode_message(encode_message(m)) == m


def test_forwarded_proposals_are_never_confused() -> None:
    """Forwarded proposals carry index 0 and term 0: each must keep its own payload."""
    a = Message(MessageType.PROP, 1, 2, entries=[Entry(0, 0, EntryType.NORMAL, b"first")])
    b = Message(MessageType.PROP, 1, 2, entries=[Entry(0, 0, EntryType.NORMAL, b"second")])
    assert decode_message(encode_message(a)).entries[0].data == b"first"
    assert decode_message(encode_message(b)).entries[0].data == b"second"


def test_same_slice_encodes_to_the_same_bytes() -> None:
    ents = [Entry(7, 3, EntryType.NORMAL, b"v")]
    m1 = Message(MessageType.APP, 2, 1, 3, 3, 6, ents, 5)
    m2 = Message(MessageType.APP, 3, 1, 3, 3, 6, list(ents), 5)
    assert encode_message(m1)[17:] == encode_message(m2)[17:]  # all but type/to/frm


@pytest.mark.parametrize("cut", [1, 10, 40, 70])
def test_truncated_messages_raise_wire_error(cut: int) -> None:
    m = Message(MessageType.APP, 2, 1, 5, 4, 10, [Entry(11, 5, EntryType.NORMAL, b"x" * 20)], 9)
    data = encode_message(m)
    with pytest.raises(WireError):
        decode_message(data[:cut])

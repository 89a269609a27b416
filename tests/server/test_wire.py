"""Raft messages on the wire: round trips, damage, and the encode-once cache."""

from __future__ import annotations

import pytest

from raftkv.raft import ConfState, Entry, EntryType, Message, MessageType, Snapshot, SnapshotMeta
from raftkv.server.wire import EntryCodec, WireError, decode_message, encode_message


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
    codec = EntryCodec()
    a = Message(MessageType.PROP, 1, 2, entries=[Entry(0, 0, EntryType.NORMAL, b"first")])
    b = Message(MessageType.PROP, 1, 2, entries=[Entry(0, 0, EntryType.NORMAL, b"second")])
    assert decode_message(encode_message(a, codec), codec).entries[0].data == b"first"
    assert decode_message(encode_message(b, codec), codec).entries[0].data == b"second"


def test_two_logs_never_share_encodings() -> None:
    """Two clusters in one process have different entries at the same index and term."""
    one, two = EntryCodec(), EntryCodec()
    a = [Entry(1, 1, EntryType.CONF_CHANGE, b"member-a")]
    b = [Entry(1, 1, EntryType.CONF_CHANGE, b"member-b")]
    assert one.decode(one.encode(a)) == a
    assert two.decode(two.encode(b)) == b


def test_same_slice_encodes_to_the_same_bytes() -> None:
    codec = EntryCodec()
    ents = [Entry(7, 3, EntryType.NORMAL, b"v")]
    first = codec.encode(ents)
    assert codec.encode(list(ents)) is first, "encoded once, reused"


@pytest.mark.parametrize("cut", [1, 10, 40, 70])
def test_truncated_messages_raise_wire_error(cut: int) -> None:
    m = Message(MessageType.APP, 2, 1, 5, 4, 10, [Entry(11, 5, EntryType.NORMAL, b"x" * 20)], 9)
    data = encode_message(m)
    with pytest.raises(WireError):
        decode_message(data[:cut])

"""Messages handed to the WAL with an append leave from its writer thread, only once the
append is durable (a follower's acknowledgement must never promise what a crash can lose)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv._native import Wal, encode_entries
from tests.native.helpers import run
from tests.peer.helpers import Member, numbered


def test_messages_leave_only_after_the_append_is_durable(tmp_path: Path) -> None:
    async def main() -> None:
        b = Member.start(2)
        a = Member.start(1, peers={2: b.addr})
        await a.connected_to(2)
        with Wal(tmp_path) as wal:
            wal.suspend_writer()
            records = encode_entries([(1, 1, 0, b"x" * 100)])
            seq = wal.append(records, (1, 0, 1), then_send=(a.native, [(2, numbered(7))]))
            assert wal.synced_seq < seq
            peer = a.native.stats()["peers"][2]
            assert (peer["frames_sent"], peer["queued_frames"]) == (0, 0), peer
            wal.resume_writer()
            wal.wait(seq)
            await b.received_count(1, 1)
            assert b.from_peer(1) == [7]
        await a.close()
        await b.close()

    run(main())


def test_then_send_to_a_closed_transport_is_harmless(tmp_path: Path) -> None:
    async def main() -> None:
        a = Member.start(1, peers={2: "127.0.0.1:9"})
        await a.close()
        with Wal(tmp_path) as wal:
            records = encode_entries([(1, 1, 0, b"y")])
            wal.wait(wal.append(records, None, then_send=(a.native, [(2, b"z")])))
            assert wal.last_index == 1

    run(main())


def test_then_send_wants_peer_and_bytes_pairs(tmp_path: Path) -> None:
    async def main() -> None:
        a = Member.start(1)
        with Wal(tmp_path) as wal, pytest.raises(TypeError):
            wal.append(encode_entries([(1, 1, 0, b"y")]), None, then_send=(a.native, [b"z"]))  # type: ignore[list-item]
        await a.close()

    run(main())

"""Peer transport over real sockets on 127.0.0.1: order, coalescing, restarts, membership."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from raftkv._native import PeerTransport, PeerTransportClosedError
from tests.native.helpers import run
from tests.peer.helpers import CLUSTER, FAST, Member, numbered


def test_two_transports_exchange_batches_in_order() -> None:
    async def main() -> None:
        a = Member.start(1)
        b = Member.start(2, peers={1: a.addr})
        a.native.add_peer(2, b.addr)
        for turn in range(20):
            for i in range(25):
                seq = turn * 25 + i
                a.t.send(2, numbered(seq))
                b.t.send(1, numbered(seq, 300))
            await asyncio.sleep(0)  # end the turn: one batch per turn
        await b.received_count(1, 500)
        await a.received_count(2, 500)
        assert b.from_peer(1) == list(range(500))
        assert a.from_peer(2) == list(range(500))
        sa = a.native.stats()
        sb = b.native.stats()
        assert sa["peers"][2]["frames_sent"] == 500
        assert sa["peers"][2]["bytes_sent"] == 500 * 64
        assert sb["peers"][1]["frames_received"] == 500
        assert sb["peers"][1]["bytes_received"] == 500 * 64
        assert sa["peers"][2]["frames_received"] == 500
        assert sa["peers"][2]["bytes_received"] == 500 * 300
        assert sa["peers"][2]["dropped_frames"] == 0
        await a.close()
        await b.close()

    run(main())


def test_three_transports_all_to_all_in_order() -> None:
    async def main() -> None:
        members = [Member.start(i) for i in (1, 2, 3)]
        for m in members:
            for other in members:
                if other is not m:
                    m.native.add_peer(other.native.member_id, other.addr)
        for turn in range(10):
            for m in members:
                for other in members:
                    if other is not m:
                        for i in range(10):
                            m.t.send(other.native.member_id, numbered(turn * 10 + i, 120))
            await asyncio.sleep(0)
        for m in members:
            for other in members:
                if other is not m:
                    peer = other.native.member_id
                    await m.received_count(peer, 100)
                    assert m.from_peer(peer) == list(range(100))
        for m in members:
            await m.close()

    run(main())


def test_each_turn_is_one_write_per_peer() -> None:
    async def main() -> None:
        b = Member.start(2)
        c = Member.start(3)
        a = Member.start(1, peers={2: b.addr, 3: c.addr})
        await a.connected_to(2)
        await a.connected_to(3)
        for turn in range(5):
            for i in range(200):
                # Interleave peers inside the turn: each still gets one write.
                a.t.send(2, numbered(turn * 200 + i))
                a.t.send(3, numbered(turn * 200 + i))
            await b.received_count(1, (turn + 1) * 200)
            await c.received_count(1, (turn + 1) * 200)
        stats = a.native.stats()["peers"]
        assert a.t.flushes == 5
        for peer in (2, 3):
            assert stats[peer]["frames_sent"] == 1000
            assert stats[peer]["writes"] == 5, stats[peer]
        assert b.from_peer(1) == list(range(1000))
        assert c.from_peer(1) == list(range(1000))
        for m in (a, b, c):
            await m.close()

    run(main())


def test_peer_restart_resumes_in_order_without_duplicates() -> None:
    async def main() -> None:
        b = Member.start(2)
        port_addr = b.addr
        a = Member.start(1, peers={2: port_addr})
        await a.connected_to(2)
        a.t.send_many([(2, numbered(i)) for i in range(100)])
        await b.received_count(1, 100)
        first = b.from_peer(1)
        await b.close()

        # While it is down: the link goes, sends are dropped, and Raft hears about it.
        await a.wait_for("link loss", lambda: bool(a.events_of("disconnected", 2)))
        a.t.send_many([(2, numbered(i)) for i in range(100, 150)])
        await a.wait_for("unreachable signal", lambda: 2 in a.unreachable)
        await a.wait_for(
            "a failed reconnect", lambda: a.native.stats()["peers"][2]["connect_failures"] > 0
        )

        b2 = Member.start(2, listen=port_addr)
        await a.connected_to(2, times=2)
        for turn in range(3):
            a.t.send_many([(2, numbered(150 + turn * 50 + i)) for i in range(50)])
            await asyncio.sleep(0)
        await b2.wait_for("the resumed traffic", lambda: 299 in b2.from_peer(1))
        second = b2.from_peer(1)
        assert first == list(range(100))
        # In order, nothing twice, everything sent after the reconnect delivered.
        assert second == sorted(set(second))
        assert set(range(150, 300)) <= set(second)
        assert not set(first) & set(second)
        stats = a.native.stats()["peers"][2]
        assert stats["reconnects"] >= 1
        assert stats["dropped_frames"] + len(second) >= 200
        await a.close()
        await b2.close()

    run(main())


def test_update_and_remove_peer() -> None:
    async def main() -> None:
        b = Member.start(2)
        b_other = Member.start(2)
        a = Member.start(1, peers={2: b.addr})
        await a.connected_to(2)
        a.t.send(2, numbered(0))
        await b.received_count(1, 1)
        a.native.update_peer(2, b_other.addr)
        await a.connected_to(2, times=2)
        a.t.send(2, numbered(1))
        await b_other.received_count(1, 1)
        assert b_other.from_peer(1) == [1]
        a.native.remove_peer(2)
        assert a.native.peer_ids() == []
        a.t.send(2, numbered(2))
        await a.wait_for("unknown peer drop", lambda: 2 in a.unreachable)
        assert a.native.stats()["unknown_peer_drops"] == 1
        with pytest.raises(ValueError):
            a.native.update_peer(9, "127.0.0.1:1")
        with pytest.raises(ValueError):
            a.native.add_peer(1, "127.0.0.1:1")
        for m in (a, b, b_other):
            await m.close()

    run(main())


def test_unreachable_peer_drops_and_signals() -> None:
    async def main() -> None:
        # A port nobody listens on: bind one, learn it, close it.
        probe = PeerTransport(9, CLUSTER, "127.0.0.1:0")
        dead = probe.listen_addr
        probe.close()
        a = Member.start(1, peers={2: dead})
        await a.wait_for("connect failure", lambda: bool(a.events_of("connect_failed", 2)))
        await a.wait_for("unreachable", lambda: 2 in a.unreachable)
        a.t.send_many([(2, numbered(i)) for i in range(10)])
        await a.wait_for(
            "drops counted", lambda: a.native.stats()["peers"][2]["dropped_frames"] > 0
        )
        assert "connect" in a.events_of("connect_failed", 2)[0][2]
        await a.close()

    run(main())


def test_full_queue_drops_and_signals() -> None:
    async def main() -> None:
        b = Member.start(2)
        a = Member.start(1, peers={2: b.addr}, max_queue_frames=10)
        await a.connected_to(2)
        # A turn far bigger than the queue: the surplus is dropped, not reordered.
        queued, dropped = a.native.send_batch([(2, numbered(i)) for i in range(25)])
        assert (queued, dropped) == (10, 15)
        await b.received_count(1, 10)
        await a.wait_for("unreachable", lambda: 2 in a.unreachable)
        assert b.from_peer(1) == list(range(10))
        assert a.native.stats()["peers"][2]["dropped_frames"] == 15
        await a.close()
        await b.close()

    run(main())


def test_oversized_send_is_refused_whole() -> None:
    t = PeerTransport(1, CLUSTER, "127.0.0.1:0", max_frame_size=1024, **FAST)
    with pytest.raises(ValueError, match="exceeds the frame limit"):
        t.send_batch([(2, b"x"), (2, b"y" * 1025)])
    assert t.stats()["unknown_peer_drops"] == 0
    with pytest.raises(TypeError):
        t.send_batch([(2, "text")])  # type: ignore[list-item]
    t.close()
    with pytest.raises(PeerTransportClosedError):
        t.send_batch([(2, b"x")])


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> list[str]:
    """Names of the process's native threads (Python's own threads share the main name)."""
    main = Path("/proc/self/comm").read_text()
    names = (Path(f"/proc/self/task/{t}/comm").read_text() for t in os.listdir("/proc/self/task"))
    return sorted(n.strip() for n in names if n != main)


def test_close_leaks_no_sockets_or_threads() -> None:
    async def cycle() -> None:
        ms = [Member.start(i) for i in (1, 2, 3)]
        for m in ms:
            for o in ms:
                if o is not m:
                    m.native.add_peer(o.native.member_id, o.addr)
        for m in ms:
            for o in ms:
                if o is not m:
                    m.t.send(o.native.member_id, numbered(0))
        for m in ms:
            for o in ms:
                if o is not m:
                    await m.received_count(o.native.member_id, 1)
        for m in ms:
            await m.close()
            assert m.native.closed

    run(cycle())  # starts the shared runtime
    fds, threads = _fds(), _threads()
    for _ in range(3):
        run(cycle())
    assert _fds() == fds
    assert _threads() == threads


def test_same_port_can_be_reused_right_after_close() -> None:
    t = PeerTransport(1, CLUSTER, "127.0.0.1:0")
    addr = t.listen_addr
    t.close()
    t.close()  # idempotent
    again = PeerTransport(1, CLUSTER, addr)
    assert again.listen_addr == addr
    again.close()

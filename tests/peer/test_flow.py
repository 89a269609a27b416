"""Flow control on the native transport: inbox back-pressure, write timeout, supersession."""

from __future__ import annotations

import select
import struct
import time
from collections.abc import Callable

from raftkv._native import PeerTransport
from tests.peer.helpers import CLUSTER, FAST, TIMEOUT

BIG = 256 * 1024


def big(seq: int) -> bytes:
    return struct.pack("<Q", seq) + bytes([seq & 0xFF]) * (BIG - 8)


class Watch:
    """Collects everything a native transport reports, woken by its eventfd."""

    def __init__(self, t: PeerTransport) -> None:
        self.t = t
        self.received: list[tuple[int, bytes]] = []
        self.events: list[tuple[str, int, str]] = []
        self.unreachable: list[int] = []

    def drain(self) -> None:
        self.received.extend(self.t.take_received())
        self.events.extend(self.t.take_events())
        self.unreachable.extend(self.t.take_unreachable())

    def until(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        self.drain()
        while not done():
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; events: {self.events}"
            select.select([self.t.notify_fd], [], [], left)
            self.drain()

    def seqs(self) -> list[int]:
        return [struct.unpack_from("<Q", data)[0] for _, data in self.received]


def test_full_inbox_pushes_back_until_the_writer_times_out() -> None:
    limit = BIG
    b = PeerTransport(2, CLUSTER, "127.0.0.1:0", max_inbox_bytes=limit, max_frame_size=2 * BIG)
    a = PeerTransport(
        1,
        CLUSTER,
        "127.0.0.1:0",
        {2: b.listen_addr},
        max_frame_size=2 * BIG,
        max_queue_bytes=64 << 20,
        write_timeout=0.3,
        **FAST,
    )
    wa, wb = Watch(a), Watch(b)
    total = 192  # 48 MiB: more than loopback socket buffers hold
    queued, dropped = a.send_batch([(2, big(i)) for i in range(total)])
    assert (queued, dropped) == (total, 0)
    # b never takes its inbox: its reader pauses, the sockets fill, a's write times out.
    wa.until(
        "the write timeout",
        lambda: any("peer not reading" in e[2] for e in wa.events if e[0] == "disconnected"),
    )
    stats = b.stats()
    # Bounded: the limit, plus what one read can decode before the reader pauses.
    assert stats["inbox_bytes"] <= limit + 2 * BIG + 64 * 1024, stats
    assert 2 in wa.unreachable
    assert a.stats()["peers"][2]["dropped_frames"] > 0

    # Taking resumes the reader; a's new link supersedes the stalled one.
    wa.until("reconnect", lambda: len([e for e in wa.events if e[0] == "connected"]) >= 2)
    a.send_batch([(2, big(total + i)) for i in range(3)])
    wb.until("the frames after the reconnect", lambda: total + 2 in wb.seqs())
    got = wb.seqs()
    assert got == sorted(set(got)), "reordered or duplicated"
    assert got[: got.index(total)] == list(range(got.index(total))), "gap before the timeout"
    assert got[-3:] == [total, total + 1, total + 2]
    assert all(len(d) == BIG for _, d in wb.received)
    wb.until(
        "the stalled connection to go",
        lambda: any("superseded" in e[2] for e in wb.events if e[0] == "inbound_closed"),
    )
    a.close()
    b.close()

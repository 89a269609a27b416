"""Helpers for peer transport tests: members that record what they see, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from typing import Any

from raftkv._native import PeerTransport
from raftkv.transport import AsyncPeerTransport, PeerEvent, Received

CLUSTER = 0xC1A5_7E12
TIMEOUT = 10.0

FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.1}
"""Short backoff so reconnects in tests take milliseconds."""

MODE: dict[str, bool] = {"inbound_handoff": False}
"""Whether members read inbound links on their event loop (set per test by conftest)."""


def numbered(seq: int, size: int = 64) -> bytes:
    """A message carrying its sequence number, padded to ``size`` bytes."""
    head = struct.pack("<Q", seq)
    return head + bytes((seq + i) & 0xFF for i in range(max(0, size - len(head))))


def seq_of(data: bytes) -> int:
    value: int = struct.unpack_from("<Q", data)[0]
    assert data == numbered(value, len(data)), "message body damaged"
    return value


class Member:
    """An :class:`AsyncPeerTransport` that records what it receives and sees."""

    def __init__(self, native: PeerTransport) -> None:
        self.received: Received = []
        self.unreachable: list[int] = []
        self.events: list[PeerEvent] = []
        self._changed = asyncio.Event()
        self.t = AsyncPeerTransport(
            native,
            self._on_receive,
            on_unreachable=self._on_unreachable,
            on_event=self._on_event,
        )

    @classmethod
    def start(
        cls,
        member_id: int,
        listen: str = "127.0.0.1:0",
        peers: dict[int, str] | None = None,
        cluster_id: int = CLUSTER,
        **options: Any,
    ) -> Member:
        options = {**FAST, "inbound_handoff": MODE["inbound_handoff"], **options}
        return cls(PeerTransport(member_id, cluster_id, listen, peers, **options))

    @property
    def native(self) -> PeerTransport:
        return self.t.native

    @property
    def addr(self) -> str:
        return self.native.listen_addr

    def notice(self) -> None:
        """Wake :meth:`wait_for` (for callbacks installed by a test)."""
        self._changed.set()

    def _on_receive(self, batch: Received) -> None:
        self.received.extend(batch)
        self._changed.set()

    def _on_unreachable(self, peers: list[int]) -> None:
        self.unreachable.extend(peers)
        self._changed.set()

    def _on_event(self, event: PeerEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, what: str, done: Callable[[], bool]) -> None:
        """Wait, woken by this member's callbacks, until ``done()``; fail after TIMEOUT."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not done():
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; events: {self.events}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def events_of(self, kind: str, peer: int | None = None) -> list[PeerEvent]:
        return [e for e in self.events if e[0] == kind and (peer is None or e[1] == peer)]

    async def connected_to(self, peer: int, times: int = 1) -> None:
        await self.wait_for(
            f"link {self.native.member_id}->{peer} #{times}",
            lambda: len(self.events_of("connected", peer)) >= times,
        )

    def from_peer(self, peer: int) -> list[int]:
        return [seq_of(data) for sender, data in self.received if sender == peer]

    async def received_count(self, peer: int, n: int) -> None:
        await self.wait_for(
            f"{n} messages from {peer} at {self.native.member_id}",
            lambda: len(self.from_peer(peer)) >= n,
        )

    async def close(self) -> None:
        await self.t.close()

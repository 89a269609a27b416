"""asyncio front of the native peer transport.

Outgoing messages are buffered for the current event-loop turn and handed to the native
transport as one batch by a callback scheduled with ``loop.call_soon``, so every message a
turn produces for one peer leaves in one write. Incoming messages arrive the other way: the
transport's eventfd is watched with ``add_reader`` (no polling), and each wake-up hands the
whole inbox to ``on_receive`` as one list. Lost links and dropped messages are reported to
``on_unreachable`` (the Raft layer marks those followers as probing); connection events are
logged to the ``raftkv.transport`` logger with their reasons.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from raftkv._native import PeerLink, PeerTransport

log = logging.getLogger("raftkv.transport")

Received = list[tuple[int, bytes]]
"""One batch of (from_id, message)."""

PeerEvent = tuple[str, int, str]
"""(kind, peer_id, detail) as reported by :meth:`PeerTransport.take_events`."""

# Event kinds and the level they are logged at; a failing peer is logged at WARNING once,
# then at DEBUG until it connects again.


def peer_address(url: str) -> str:
    """``host:port`` of an etcd-style peer URL (``http://10.0.0.1:2380``,
    ``https://[::1]:2380``) or of a bare ``host:port``."""
    rest = url.strip()
    for scheme in ("http://", "https://", "unix://"):
        if rest.lower().startswith(scheme):
            if scheme == "unix://":
                raise ValueError(f"unix sockets are not supported for peers: {url!r}")
            rest = rest[len(scheme) :]
            break
    rest = rest.rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise ValueError(f"not a peer address (host:port): {url!r}")
    return rest


_LEVELS = {
    "connected": logging.INFO,
    "inbound_connected": logging.DEBUG,
    "disconnected": logging.WARNING,
    "connect_failed": logging.WARNING,
    "inbound_closed": logging.INFO,
    "rejected": logging.WARNING,
    "accept_failed": logging.ERROR,
}


class AsyncPeerTransport:
    """Per-turn batching over a :class:`raftkv._native.PeerTransport`.

    ``send(peer, data)`` never blocks and never raises for an unreachable peer: Raft
    tolerates loss, and the peer is reported to ``on_unreachable`` instead.
    """

    def __init__(
        self,
        native: PeerTransport,
        on_receive: Callable[[Received], None],
        *,
        on_unreachable: Callable[[list[int]], None] | None = None,
        on_event: Callable[[PeerEvent], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.native = native
        self._loop = loop or asyncio.get_running_loop()
        self._on_receive = on_receive
        self._on_unreachable = on_unreachable
        self._on_event = on_event
        self._pending: list[tuple[int, bytes]] = []
        self._flush_scheduled = False
        self._failing: set[int] = set()
        self._fd = native.notify_fd
        self._loop.add_reader(self._fd, self._on_ready)
        self._closed = False
        # Inbound links this loop reads itself (the native transport hands them over when
        # created with inbound_handoff=True), by file descriptor.
        self._links: dict[int, PeerLink] = {}
        # Turns that flushed at least one message, and messages flushed (for tests).
        self.flushes = 0
        self.flushed = 0

    @property
    def member_id(self) -> int:
        return self.native.member_id

    def send(self, peer_id: int, data: bytes) -> None:
        """Queue a message for this turn's batch."""
        if self._closed:
            return
        self._pending.append((peer_id, data))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def send_many(self, items: list[tuple[int, bytes]]) -> None:
        if self._closed or not items:
            return
        self._pending.extend(items)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def flush(self) -> None:
        """Hand what this turn queued to the native transport now."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._closed:
            self._pending.clear()
            return
        batch, self._pending = self._pending, []
        self.flushes += 1
        self.flushed += len(batch)
        try:
            self.native.send_batch(batch)
        except ValueError:
            # A message over the frame limit is a bug upstream; send the rest.
            limit = self.native.max_frame_size
            log.exception("peer batch refused; dropping messages over %d bytes", limit)
            ok = [(p, d) for p, d in batch if len(d) <= limit]
            self.native.send_batch(ok)

    def _on_ready(self) -> None:
        native = self.native
        for link in native.take_inbound():
            fd = link.fd
            if self._closed or fd < 0:
                link.close()
                continue
            self._links[fd] = link
            self._loop.add_reader(fd, self._on_link_readable, link)
            # Bytes that came with the handshake are buffered already.
            self._on_link_readable(link)
        received = native.take_received()
        unreachable = native.take_unreachable()
        events = native.take_events()
        if events:
            self._log_events(events)
        if received:
            try:
                self._on_receive(received)
            except Exception:
                log.exception("on_receive callback failed")
        if unreachable and self._on_unreachable is not None:
            try:
                self._on_unreachable(unreachable)
            except Exception:
                log.exception("on_unreachable callback failed")
        if events and self._on_event is not None:
            for event in events:
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("on_event callback failed")

    def _log_events(self, events: list[PeerEvent]) -> None:
        me = self.native.member_id
        for kind, peer, detail in events:
            level = _LEVELS.get(kind, logging.INFO)
            if kind == "connected":
                self._failing.discard(peer)
            elif kind == "connect_failed":
                if peer in self._failing:
                    level = logging.DEBUG
                self._failing.add(peer)
            elif kind == "inbound_closed" and "closing:" in detail:
                level = logging.WARNING
            log.log(level, "member %x: peer %x %s: %s", me, peer, kind, detail)

    def _on_link_readable(self, link: PeerLink) -> None:
        batch = link.read()
        if batch is None:  # over (closed, broken or superseded)
            self._drop_link(link.fd)
            return
        if batch:
            try:
                self._on_receive(batch)
            except Exception:
                log.exception("on_receive callback failed")
        if link.ended:
            self._drop_link(link.fd)

    def _drop_link(self, fd: int) -> None:
        link = self._links.pop(fd, None)
        if link is not None:
            self._loop.remove_reader(fd)
            link.close()

    async def close(self) -> None:
        """Hand over what this turn queued, then close every link and the listener.

        Messages still queued natively when the links close are dropped (Raft retries)."""
        if self._closed:
            return
        self._flush()
        self._closed = True
        self._loop.remove_reader(self._fd)
        for fd in list(self._links):
            self._drop_link(fd)
        # Only aborts tasks and waits for them to drop their sockets: quick, no executor.
        self.native.close()

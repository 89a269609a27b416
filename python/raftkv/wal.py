"""asyncio front of the native write-ahead log.

The native writer thread signals durability through an eventfd; the event loop watches it
with ``add_reader`` (no polling, no busy waiting) and resolves the futures of every append
that the last sync covered, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from os import PathLike

from raftkv._native import DEFAULT_SEGMENT_SIZE, Wal, WalClosedError, WalError

log = logging.getLogger(__name__)

DurableCallback = Callable[[BaseException | None], None]


class AsyncWal:
    """Awaitable appends over a :class:`raftkv._native.Wal`.

    ``await wal.append(data)`` returns once the entries are durable (fdatasync done). Many
    coroutines may append concurrently: whatever they queue while a sync runs shares the
    next one.
    """

    def __init__(self, wal: Wal, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.wal = wal
        self._loop = loop or asyncio.get_running_loop()
        # callbacks to call on the loop (with None, or the error), by sequence number
        self._waiters: deque[tuple[int, DurableCallback]] = deque()
        self._fd = wal.notify_fd
        self._loop.add_reader(self._fd, self._on_synced)
        self._closed = False

    @classmethod
    async def open(
        cls, path: str | PathLike[str], segment_size: int = DEFAULT_SEGMENT_SIZE
    ) -> AsyncWal:
        loop = asyncio.get_running_loop()
        # Recovery reads every segment: keep it off the event loop.
        wal = await loop.run_in_executor(None, lambda: Wal(path, segment_size))
        return cls(wal, loop)

    def _on_synced(self) -> None:
        try:
            synced = self.wal.drain_notifications()
        except WalError as exc:
            self._fail_all(exc)
            return
        waiters = self._waiters
        while waiters and waiters[0][0] <= synced:
            self._call(waiters.popleft()[1], None)

    @staticmethod
    def _call(callback: DurableCallback, exc: BaseException | None) -> None:
        try:
            callback(exc)
        except Exception:
            log.exception("WAL durability callback failed")

    def _fail_all(self, exc: BaseException) -> None:
        while self._waiters:
            self._call(self._waiters.popleft()[1], exc)

    def durable(self, seq: int) -> asyncio.Future[None]:
        """A future that resolves once sequence number ``seq`` is durable."""
        fut: asyncio.Future[None] = self._loop.create_future()

        def settle(exc: BaseException | None) -> None:
            if fut.done():
                return
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)

        self.on_durable(seq, settle)
        return fut

    def on_durable(self, seq: int, callback: DurableCallback) -> None:
        """Call ``callback(None)`` on the loop as soon as ``seq`` is durable (right away if
        it is), without a task or a future in between; ``callback(error)`` if the log
        fails or closes first."""
        if self._closed:
            self._call(callback, WalClosedError("write-ahead log is closed"))
        elif seq <= self.wal.synced_seq:
            self._call(callback, None)
        else:
            self._waiters.append((seq, callback))

    def append_nowait(self, entries: bytes, hard_state: tuple[int, int, int] | None = None) -> int:
        """Queue entries; returns the sequence number to pass to :meth:`durable`."""
        return self.wal.append(entries, hard_state)

    async def append(self, entries: bytes, hard_state: tuple[int, int, int] | None = None) -> None:
        """Append encoded entries and return once they are durable."""
        await self.durable(self.wal.append(entries, hard_state))

    async def save_hard_state(self, term: int, vote: int, commit: int) -> None:
        await self.durable(self.wal.save_hard_state(term, vote, commit))

    async def truncate_suffix(self, index: int) -> None:
        await self.durable(self.wal.truncate_suffix(index))

    async def release_before(self, index: int) -> None:
        await self.durable(self.wal.release_before(index))

    async def close(self) -> None:
        """Flush what is queued, resolve every waiter, stop the writer."""
        if self._closed:
            return
        self._closed = True
        await self._loop.run_in_executor(None, self.wal.close)
        self._on_synced()
        self._loop.remove_reader(self._fd)
        self._fail_all(WalClosedError("write-ahead log is closed"))

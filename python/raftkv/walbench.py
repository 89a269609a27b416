"""WAL throughput workloads, shared by ``raftkv demo`` and the benchmarks.

Two shapes, both durable (every acknowledged entry was fdatasynced):

- pipelined: one producer appends batches of entries, keeping up to ``in_flight`` batches
  queued (what a Raft leader does with proposals);
- concurrent: many coroutines each append one entry and wait (what many clients do).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from raftkv._native import encode_entries, encode_entry
from raftkv.wal import AsyncWal

Progress = Callable[[int], None]


@dataclass(slots=True)
class Result:
    entries: int
    seconds: float
    syncs: int

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0

    @property
    def syncs_per_second(self) -> float:
        return self.syncs / self.seconds if self.seconds else 0.0


async def pipelined(
    wal: AsyncWal,
    batches: int,
    batch_size: int = 64,
    in_flight: int = 8,
    value_size: int = 256,
    progress: Progress | None = None,
) -> Result:
    """One producer, batches of ``batch_size`` entries, ``in_flight`` batches queued."""
    value = b"x" * value_size
    next_index = wal.wal.last_index + 1
    syncs_before = wal.wal.stats()["syncs"]
    pending: deque[asyncio.Future[None]] = deque()
    started = time.perf_counter()
    for n in range(batches):
        data = encode_entries((next_index + i, 1, 0, value) for i in range(batch_size))
        next_index += batch_size
        pending.append(wal.durable(wal.append_nowait(data)))
        if len(pending) >= in_flight:
            await pending.popleft()
            if progress is not None:
                progress(n + 1 - len(pending))
    while pending:
        await pending.popleft()
    elapsed = time.perf_counter() - started
    if progress is not None:
        progress(batches)
    return Result(batches * batch_size, elapsed, wal.wal.stats()["syncs"] - syncs_before)


async def concurrent(
    wal: AsyncWal,
    appenders: int,
    per_appender: int,
    value_size: int = 256,
    progress: Progress | None = None,
) -> Result:
    """``appenders`` coroutines, each appending one entry at a time and waiting for it."""
    value = b"x" * value_size
    next_index = wal.wal.last_index + 1
    done = 0
    syncs_before = wal.wal.stats()["syncs"]

    async def appender() -> None:
        nonlocal next_index, done
        for _ in range(per_appender):
            index = next_index
            next_index += 1
            await wal.append(encode_entry(index, 1, 0, value))
            done += 1
            if progress is not None and done % 1024 == 0:
                progress(done)

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - started
    if progress is not None:
        progress(done)
    return Result(appenders * per_appender, elapsed, wal.wal.stats()["syncs"] - syncs_before)

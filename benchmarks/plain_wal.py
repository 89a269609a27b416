"""The baseline: a write-ahead log in plain Python.

struct framing, zlib.crc32, os.write and one os.fdatasync per batch, on the event loop's
thread. It is what the native WAL is measured against.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from pathlib import Path

from raftkv.walbench import Result

HEADER = struct.Struct("<IIBBQQ")


class PlainWal:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path / "plain.wal", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.syncs = 0

    def append(self, entries: list[tuple[int, int, int, bytes]]) -> None:
        parts = []
        for index, term, etype, data in entries:
            body_len = 18 + len(data)
            crc = zlib.crc32(data, zlib.crc32(struct.pack("<BBQQ", 0, etype, term, index)))
            parts.append(HEADER.pack(body_len, crc, 1, etype, term, index))
            parts.append(data)
        os.write(self.fd, b"".join(parts))
        os.fdatasync(self.fd)
        self.syncs += 1

    def close(self) -> None:
        os.close(self.fd)


def pipelined(wal: PlainWal, batches: int, batch_size: int = 64, value_size: int = 256) -> Result:
    value = b"x" * value_size
    index = 1
    started = time.perf_counter()
    for _ in range(batches):
        wal.append([(index + i, 1, 0, value) for i in range(batch_size)])
        index += batch_size
    return Result(batches * batch_size, time.perf_counter() - started, wal.syncs)


async def concurrent(
    wal: PlainWal, appenders: int, per_appender: int, value_size: int = 256
) -> Result:
    value = b"x" * value_size
    next_index = 1

    async def appender() -> None:
        nonlocal next_index
        for _ in range(per_appender):
            index = next_index
            next_index += 1
            wal.append([(index, 1, 0, value)])
            await asyncio.sleep(0)  # yield like an awaiting client would

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    return Result(appenders * per_appender, time.perf_counter() - started, wal.syncs)

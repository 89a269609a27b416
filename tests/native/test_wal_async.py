"""The asyncio front: completion through the eventfd, group commit under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv._native import WalClosedError, encode_entry
from raftkv.wal import AsyncWal
from tests.native.helpers import batch, run


def test_concurrent_single_entry_appenders_share_syncs(tmp_path: Path) -> None:
    async def main() -> dict[str, float]:
        wal = await AsyncWal.open(tmp_path)
        next_index = 1

        async def appender(rounds: int) -> None:
            nonlocal next_index
            for _ in range(rounds):
                index = next_index
                next_index += 1
                await wal.append(encode_entry(index, 1, 0, b"v" * 256))

        await asyncio.gather(*(appender(8) for _ in range(256)))
        stats = {k: float(v) for k, v in wal.wal.stats().items() if isinstance(v, int | float)}
        assert wal.wal.last_index == 256 * 8
        await wal.close()
        return stats

    stats = run(main())
    assert stats["batches"] == 256 * 8
    # 256 appenders queue their entries while one fdatasync runs: syncs are shared.
    assert stats["syncs"] * 4 < stats["batches"], stats
    assert stats["max_batches_per_sync"] > 1


def test_append_resolves_only_after_durability(tmp_path: Path) -> None:
    async def main() -> None:
        wal = await AsyncWal.open(tmp_path)
        wal.wal.suspend_writer()
        task = asyncio.ensure_future(wal.append(batch(1, 4)))
        # Let the loop run many turns: the append must stay pending while nothing syncs.
        for _ in range(50):
            await asyncio.sleep(0)
        assert not task.done()
        wal.wal.resume_writer()
        await task
        assert wal.wal.synced_seq >= 1
        await wal.close()

    run(main())


def test_pipelined_batches_complete_in_order(tmp_path: Path) -> None:
    async def main() -> list[int]:
        wal = await AsyncWal.open(tmp_path)
        done: list[int] = []

        async def one(i: int, fut: asyncio.Future[None]) -> None:
            await fut
            done.append(i)

        tasks = []
        for i in range(64):
            seq = wal.append_nowait(batch(i * 64 + 1, i * 64 + 65))
            tasks.append(one(i, wal.durable(seq)))
        await asyncio.gather(*tasks)
        await wal.close()
        return done

    assert run(main()) == list(range(64))


def test_close_flushes_and_later_appends_fail(tmp_path: Path) -> None:
    async def main() -> None:
        wal = await AsyncWal.open(tmp_path)
        fut = wal.durable(wal.append_nowait(batch(1, 10)))
        await wal.close()
        assert fut.done() and fut.exception() is None
        with pytest.raises(WalClosedError):
            await wal.append(batch(10, 11))

    run(main())

"""The member's garbage-collector policy: full passes freeze their survivors."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from raftkv.server.gcpolicy import GcPolicy


class Node:
    __slots__ = ("payload",)

    def __init__(self, payload: int) -> None:
        self.payload = payload


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def _policy() -> GcPolicy:
    policy = GcPolicy(asyncio.get_running_loop())
    policy.install()
    return policy


def test_a_full_pass_freezes_its_survivors(unfrozen: None) -> None:
    async def scenario() -> None:
        policy = await _policy()
        try:
            assert gc.get_freeze_count() > 0  # install freezes what start-up built
            kept = [Node(i) for i in range(20_000)]
            assert gc.is_tracked(kept[0])
            frozen_before = gc.get_freeze_count()
            gc.collect()  # a full pass: survivors move to the permanent generation next
            assert policy.collections[2] >= 1
            await asyncio.sleep(0)  # the freeze runs on the loop, after the pass
            assert policy.freezes >= 1
            assert gc.get_freeze_count() >= frozen_before + len(kept)
            # the next full pass walks only what was created since
            tracked_now = len(gc.get_objects())
            assert tracked_now < len(kept)
            stats = policy.stats()
            assert stats["collections"][2] == policy.collections[2]
            assert stats["max_seconds"][2] > 0
            assert stats["frozen"] == gc.get_freeze_count()
        finally:
            policy.uninstall()

    asyncio.run(scenario())


def test_frozen_objects_are_still_freed_when_dropped(unfrozen: None) -> None:
    import weakref

    class Box:
        pass

    async def scenario() -> None:
        policy = await _policy()
        try:
            box = Box()
            ref = weakref.ref(box)
            gc.collect()
            await asyncio.sleep(0)
            assert policy.freezes >= 1
            del box  # no cycle: reference counting frees it although it is frozen
            assert ref() is None
        finally:
            policy.uninstall()

    asyncio.run(scenario())


def test_uninstall_stops_counting(unfrozen: None) -> None:
    async def scenario() -> None:
        policy = await _policy()
        policy.uninstall()
        gc.collect()
        await asyncio.sleep(0)
        assert policy.collections == [0, 0, 0]
        assert policy.freezes == 0

    asyncio.run(scenario())

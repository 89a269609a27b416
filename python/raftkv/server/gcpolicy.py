"""Keep the cyclic garbage collector's full passes short while the key index grows.

A member keeps two long-lived objects per key in its index. CPython's full (generation 2)
collection walks every tracked object, and it runs each time the long-lived population has
grown by a quarter: with a few hundred thousand keys written since start-up a pass took
100 ms and more, and every client waited for it. After each full pass the survivors are
moved to the permanent generation (``gc.freeze()``), so the next pass walks only what was
created since. Frozen objects are still freed by reference counting when they are dropped;
only a reference cycle among them would stay, and the store builds none.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any


class GcPolicy:
    """Counts collections and pause time per generation; freezes after full passes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._started = 0.0
        self._freeze_pending = False
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_seconds = [0.0, 0.0, 0.0]
        self.freezes = 0

    def install(self) -> None:
        gc.freeze()  # what start-up loaded (the key index read from disk)
        gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        gen = info["generation"]
        took = time.perf_counter() - self._started
        self.collections[gen] += 1
        self.seconds[gen] += took
        if took > self.max_seconds[gen]:
            self.max_seconds[gen] = took
        if gen == 2 and not self._freeze_pending and not self._loop.is_closed():
            # Not from inside the collection: on the loop, right after it.
            self._freeze_pending = True
            self._loop.call_soon_threadsafe(self._freeze)

    def _freeze(self) -> None:
        self._freeze_pending = False
        gc.freeze()
        self.freezes += 1

    def stats(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "seconds": [round(s, 6) for s in self.seconds],
            "max_seconds": [round(s, 6) for s in self.max_seconds],
            "freezes": self.freezes,
            "frozen": gc.get_freeze_count(),
        }

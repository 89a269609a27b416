"""Shared helpers for tests of the native core."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

from raftkv._native import encode_entries

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def payload(index: int, size: int = 64) -> bytes:
    """Deterministic payload for an index, so recovered contents can be checked."""
    stem = f"entry-{index}-".encode()
    return (stem * (size // len(stem) + 1))[:size]


def batch(lo: int, hi: int, term: int = 1, size: int = 64) -> bytes:
    """Encoded entries [lo, hi) with deterministic payloads."""
    return encode_entries((i, term, 0, payload(i, size)) for i in range(lo, hi))

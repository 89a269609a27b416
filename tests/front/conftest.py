"""Fixtures: a native front served by Python handlers on a uvloop loop, and a grpcio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc

from raftkv._native import Front
from raftkv.front import FrontServer, StreamFactory, UnaryHandler

T = TypeVar("T")
POOL = ThreadPoolExecutor(max_workers=32)


@asynccontextmanager
async def serving(
    unary: Mapping[str, UnaryHandler],
    streams: Mapping[str, StreamFactory] | None = None,
    **front_options: Any,
) -> AsyncIterator[tuple[FrontServer, grpc.Channel]]:
    front = Front(["127.0.0.1:0"], **front_options)
    server = FrontServer(front, unary, streams)
    channel = grpc.insecure_channel(server.addresses[0])
    try:
        yield server, channel
    finally:
        channel.close()
        await server.close()


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking grpcio call off the event loop, which keeps serving meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(POOL, lambda: fn(*args, **kwargs))


def unary(channel: grpc.Channel, path: str) -> Any:
    return channel.unary_unary(path)

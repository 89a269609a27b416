"""asyncio side of the native client front.

The native front (Rust, tonic) accepts gRPC calls on its own threads and queues them; an
eventfd wakes this adapter, which takes the whole queue in one call, dispatches each call
to a plain Python handler, and sends all answers produced in that loop turn back in one
batch.

Handlers:

- unary: ``handler(request: bytes, metadata: dict | None) -> bytes | Awaitable[bytes]``;
  raising :class:`GrpcError` answers with that status, any other exception with UNKNOWN.
- streams (bidi and server-streaming): ``factory(stream: ServerStream, request, metadata)``
  returns a :class:`StreamHandler` that receives the stream's messages and events; it
  answers through ``stream.send()`` and ``stream.close()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Protocol

from raftkv._native import (
    EV_STREAM_GONE,
    EV_STREAM_HALF_CLOSE,
    EV_STREAM_MESSAGE,
    EV_STREAM_OPEN,
    EV_STREAM_WRITABLE,
    EV_UNARY,
    FRONT_METHODS,
    Front,
)
from raftkv.status import GrpcError, StatusCode

log = logging.getLogger(__name__)

Metadata = dict[str, str]
UnaryHandler = Callable[[bytes, Metadata | None], "bytes | Awaitable[bytes]"]


class StreamHandler(Protocol):
    def on_message(self, payload: bytes) -> None: ...
    def on_half_close(self) -> None: ...
    def on_gone(self) -> None: ...
    def on_writable(self) -> None: ...


StreamFactory = Callable[["ServerStream", bytes | None, Metadata | None], StreamHandler]

METHOD_IDS: dict[str, int] = {path: i for i, (path, _kind) in enumerate(FRONT_METHODS)}
"""Method id for each full gRPC path, e.g. ``/etcdserverpb.KV/Put``."""


class ServerStream:
    """Our end of one streaming call."""

    __slots__ = ("_server", "closed", "congested", "id", "method")

    def __init__(self, server: FrontServer, stream_id: int, method: str) -> None:
        self._server = server
        self.id = stream_id
        self.method = method
        self.congested = False
        self.closed = False

    def send(self, payload: bytes) -> None:
        """Queue a message; it leaves with this loop turn's batch."""
        if not self.closed:
            self._server._queue_stream_message(self.id, payload)

    def close(self, code: StatusCode = StatusCode.OK, message: str = "") -> None:
        """End the stream after everything already sent."""
        if not self.closed:
            self.closed = True
            self._server._close_stream(self.id, code, message)


class FrontServer:
    """Serves the native front's calls with Python handlers on the running event loop."""

    def __init__(
        self,
        front: Front,
        unary: Mapping[str, UnaryHandler],
        streams: Mapping[str, StreamFactory] | None = None,
    ) -> None:
        self.front = front
        self._loop = asyncio.get_running_loop()
        self._unary: list[UnaryHandler | None] = [None] * len(FRONT_METHODS)
        self._stream_factories: list[StreamFactory | None] = [None] * len(FRONT_METHODS)
        for path, handler in unary.items():
            self._unary[self._method_id(path, "unary")] = handler
        for path, factory in (streams or {}).items():
            self._stream_factories[self._method_id(path, "stream")] = factory
        self._streams: dict[int, tuple[ServerStream, StreamHandler]] = {}
        self._responses: list[tuple[int, int, bytes | str]] = []
        self._outgoing: list[tuple[int, bytes]] = []
        self._flush_scheduled = False
        self._fd = front.notify_fd
        self._loop.add_reader(self._fd, self._on_events)
        self._closed = False

    @staticmethod
    def _method_id(path: str, want: str) -> int:
        if path not in METHOD_IDS:
            raise ValueError(f"unknown method {path}")
        i = METHOD_IDS[path]
        kind = FRONT_METHODS[i][1]
        if (want == "unary") != (kind == "unary"):
            raise ValueError(f"{path} is a {kind} method")
        return i

    @property
    def addresses(self) -> list[str]:
        return self.front.addresses

    # --- incoming -----------------------------------------------------------------------

    def _on_events(self) -> None:
        for kind, ident, method, payload, meta in self.front.take_events():
            if kind == EV_UNARY:
                assert payload is not None
                self._dispatch_unary(ident, method, payload, meta)
            elif kind == EV_STREAM_MESSAGE:
                entry = self._streams.get(ident)
                if entry is not None:
                    assert payload is not None
                    self._guard(entry, entry[1].on_message, payload)
            elif kind == EV_STREAM_OPEN:
                self._open_stream(ident, method, payload, meta)
            elif kind == EV_STREAM_HALF_CLOSE:
                entry = self._streams.get(ident)
                if entry is not None:
                    self._guard(entry, entry[1].on_half_close)
            elif kind == EV_STREAM_GONE:
                entry = self._streams.pop(ident, None)
                if entry is not None:
                    entry[0].closed = True
                    self._guard(entry, entry[1].on_gone)
            elif kind == EV_STREAM_WRITABLE:
                entry = self._streams.get(ident)
                if entry is not None:
                    entry[0].congested = False
                    self._guard(entry, entry[1].on_writable)
        self._schedule_flush()

    def _dispatch_unary(
        self, call_id: int, method: int, payload: bytes, meta: Metadata | None
    ) -> None:
        handler = self._unary[method]
        if handler is None:
            path = FRONT_METHODS[method][0]
            self._responses.append((call_id, StatusCode.UNIMPLEMENTED, f"unknown method {path}"))
            return
        try:
            result = handler(payload, meta)
        except GrpcError as exc:
            self._responses.append((call_id, exc.code, exc.message))
            return
        except Exception as exc:
            log.exception("handler for %s failed", FRONT_METHODS[method][0])
            self._responses.append((call_id, StatusCode.UNKNOWN, f"internal error: {exc}"))
            return
        if isinstance(result, bytes):
            self._responses.append((call_id, 0, result))
        else:
            fut = asyncio.ensure_future(result)
            fut.add_done_callback(partial(self._finish_unary, call_id, method))

    def _finish_unary(self, call_id: int, method: int, fut: asyncio.Future[bytes]) -> None:
        if fut.cancelled():
            self._responses.append((call_id, StatusCode.CANCELLED, "request cancelled"))
        else:
            exc = fut.exception()
            if exc is None:
                self._responses.append((call_id, 0, fut.result()))
            elif isinstance(exc, GrpcError):
                self._responses.append((call_id, exc.code, exc.message))
            else:
                log.error("handler for %s failed", FRONT_METHODS[method][0], exc_info=exc)
                self._responses.append((call_id, StatusCode.UNKNOWN, f"internal error: {exc}"))
        self._schedule_flush()

    def _open_stream(
        self, stream_id: int, method: int, payload: bytes | None, meta: Metadata | None
    ) -> None:
        path = FRONT_METHODS[method][0]
        stream = ServerStream(self, stream_id, path)
        factory = self._stream_factories[method]
        if factory is None:
            stream.close(StatusCode.UNIMPLEMENTED, f"unknown method {path}")
            return
        try:
            handler = factory(stream, payload, meta)
        except GrpcError as exc:
            stream.close(exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("opening a %s stream failed", path)
            stream.close(StatusCode.UNKNOWN, f"internal error: {exc}")
            return
        if not stream.closed:
            self._streams[stream_id] = (stream, handler)

    def _guard(
        self, entry: tuple[ServerStream, StreamHandler], fn: Callable[..., None], *args: bytes
    ) -> None:
        """Run a stream callback; a failure ends that stream, never the server."""
        try:
            fn(*args)
        except GrpcError as exc:
            entry[0].close(exc.code, exc.message)
        except Exception as exc:
            log.exception("%s stream handler failed", entry[0].method)
            entry[0].close(StatusCode.UNKNOWN, f"internal error: {exc}")

    # --- outgoing -----------------------------------------------------------------------

    def _queue_stream_message(self, stream_id: int, payload: bytes) -> None:
        self._outgoing.append((stream_id, payload))
        self._schedule_flush()

    def _close_stream(self, stream_id: int, code: StatusCode, message: str) -> None:
        self._flush()  # messages already queued go first
        self.front.stream_close(stream_id, int(code), message)
        self._streams.pop(stream_id, None)

    def flush_soon(self) -> None:
        """Flush right after the callbacks queued so far on the loop: called once a batch of
        results is set, it sends their answers in the same turn as their done-callbacks run
        instead of one turn later."""
        if not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and (self._responses or self._outgoing):
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._responses:
            batch, self._responses = self._responses, []
            self.front.respond(batch)
        if self._outgoing:
            out, self._outgoing = self._outgoing, []
            for stream_id in self.front.stream_send(out):
                entry = self._streams.get(stream_id)
                if entry is not None:
                    entry[0].congested = True

    async def close(self) -> None:
        """Answer what is ready, then stop: pending calls get UNAVAILABLE."""
        if self._closed:
            return
        self._closed = True
        self._flush()
        self._loop.remove_reader(self._fd)
        await self._loop.run_in_executor(None, self.front.close)

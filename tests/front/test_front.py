"""The native gRPC front: calls round-trip into Python handlers and back."""

from __future__ import annotations

import asyncio
import queue
import socket
from collections.abc import Iterator

import grpc
import pytest

from raftkv.front import ServerStream
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.status import GrpcError, StatusCode
from tests.front.conftest import blocking, serving, unary
from tests.native.helpers import run

PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
SNAPSHOT = "/etcdserverpb.Maintenance/Snapshot"


def put_handler(request: bytes, meta: dict[str, str] | None) -> bytes:
    req = rpc_pb2.PutRequest.FromString(request)
    if not req.key:  # etcd's check and message
        raise GrpcError(StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
    resp = rpc_pb2.PutResponse()
    resp.header.revision = len(req.value)
    resp.header.member_id = 7 if meta and meta.get("token") == "secret" else 0
    out: bytes = resp.SerializeToString()
    return out


def test_unary_round_trip_with_metadata() -> None:
    async def main() -> None:
        async with serving({PUT: put_handler}) as (_server, channel):
            call = unary(channel, PUT)
            req = rpc_pb2.PutRequest(key=b"k", value=b"hello").SerializeToString()
            raw = await blocking(call, req, metadata=[("token", "secret")])
            resp = rpc_pb2.PutResponse.FromString(raw)
            assert (resp.header.revision, resp.header.member_id) == (5, 7)
            raw = await blocking(call, req)
            assert rpc_pb2.PutResponse.FromString(raw).header.member_id == 0

    run(main())


def test_handler_errors_become_grpc_errors_and_server_keeps_serving() -> None:
    def broken(request: bytes, meta: dict[str, str] | None) -> bytes:
        raise RuntimeError("boom")

    async def main() -> None:
        async with serving({PUT: put_handler, RANGE: broken}) as (_server, channel):
            with pytest.raises(grpc.RpcError) as err:
                await blocking(unary(channel, PUT), rpc_pb2.PutRequest().SerializeToString())
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details() == "etcdserver: key is not provided"
            with pytest.raises(grpc.RpcError) as err:
                await blocking(unary(channel, RANGE), b"")
            assert err.value.code() == grpc.StatusCode.UNKNOWN
            assert "boom" in (err.value.details() or "")
            with pytest.raises(grpc.RpcError) as err:
                await blocking(unary(channel, "/etcdserverpb.KV/Compact"), b"")
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.RpcError) as err:
                await blocking(unary(channel, "/etcdserverpb.KV/NoSuchMethod"), b"")
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            ok = rpc_pb2.PutRequest(key=b"a", value=b"xy").SerializeToString()
            assert (
                rpc_pb2.PutResponse.FromString(
                    await blocking(unary(channel, PUT), ok)
                ).header.revision
                == 2
            )

    run(main())


def test_async_handler_and_slow_call_does_not_block_others() -> None:
    async def main() -> None:
        release = asyncio.Event()
        fast_done = 0

        async def slow_or_fast(request: bytes, meta: dict[str, str] | None) -> bytes:
            nonlocal fast_done
            if request == b"slow":
                await release.wait()
                return b"slow-done"
            fast_done += 1
            if fast_done == 20:
                release.set()  # the slow call can only finish after 20 fast ones
            return b"fast"

        async with serving({RANGE: slow_or_fast}) as (_server, channel):
            call = unary(channel, RANGE)
            slow = asyncio.ensure_future(blocking(call, b"slow"))
            fast = await asyncio.gather(*(blocking(call, b"x") for _ in range(20)))
            assert fast == [b"fast"] * 20
            assert await slow == b"slow-done"

    run(main())


def test_many_concurrent_calls_are_batched() -> None:
    async def main() -> None:
        async with serving({PUT: put_handler}) as (server, channel):
            call = unary(channel, PUT)
            req = rpc_pb2.PutRequest(key=b"k", value=b"v").SerializeToString()
            futures = [call.future(req) for _ in range(500)]
            results = await asyncio.gather(*(blocking(f.result) for f in futures))
            assert len(results) == 500
            stats = server.front.stats()
            assert stats["unary_calls"] == 500
            assert stats["batches_taken"] < 500, stats
            assert stats["pending_unary"] == 0

    run(main())


class Echo:
    """Bidi handler: echoes each message, reports half-close and departure."""

    def __init__(self, stream: ServerStream, log: list[str]) -> None:
        self.stream = stream
        self.log = log

    def on_message(self, payload: bytes) -> None:
        self.log.append(f"msg:{payload.decode()}")
        self.stream.send(b"echo:" + payload)

    def on_half_close(self) -> None:
        self.log.append("half_close")
        self.stream.send(b"bye")
        self.stream.close()

    def on_gone(self) -> None:
        self.log.append("gone")

    def on_writable(self) -> None:
        self.log.append("writable")


def test_bidi_stream_round_trip_and_half_close() -> None:
    log: list[str] = []

    async def main() -> None:
        streams = {WATCH: lambda stream, req, meta: Echo(stream, log)}
        async with serving({}, streams) as (_server, channel):
            call = channel.stream_stream(WATCH)

            def talk() -> list[bytes]:
                return list(call(iter([b"a", b"b", b"c"])))

            assert await blocking(talk) == [b"echo:a", b"echo:b", b"echo:c", b"bye"]

    run(main())
    assert log[:4] == ["msg:a", "msg:b", "msg:c", "half_close"]


def test_cancelled_stream_reports_gone() -> None:
    log: list[str] = []

    async def main() -> None:
        gone = asyncio.Event()

        class Watcher(Echo):
            def on_half_close(self) -> None:
                self.log.append("half_close")  # keep the stream open: clients may read on

            def on_gone(self) -> None:
                super().on_gone()
                gone.set()

        streams = {WATCH: lambda stream, req, meta: Watcher(stream, log)}
        async with serving({}, streams) as (server, channel):
            requests: queue.Queue[bytes | None] = queue.Queue()

            def gen() -> Iterator[bytes]:
                while (item := requests.get()) is not None:
                    yield item

            call = channel.stream_stream(WATCH)(gen())
            requests.put(b"one")
            assert await blocking(next, call) == b"echo:one"
            call.cancel()
            requests.put(None)
            await asyncio.wait_for(gone.wait(), 10)
            assert server.front.stats()["open_streams"] == 0

    run(main())
    assert log[0] == "msg:one" and log[-1] == "gone"


def test_server_streaming_with_back_pressure() -> None:
    total = 3000
    chunk = b"z" * 4096
    states: list[str] = []

    class Snapshot:
        def __init__(self, stream: ServerStream) -> None:
            self.stream = stream
            self.sent = 0
            self.pump()

        def pump(self) -> None:
            while self.sent < total and not self.stream.congested:
                self.stream.send(self.sent.to_bytes(4, "big") + chunk)
                self.sent += 1
                if self.sent % 64 == 0:
                    # let the batch go out so congestion is noticed
                    asyncio.get_running_loop().call_soon(self.pump)
                    return
            if self.stream.congested:
                states.append("congested")
            elif self.sent >= total:
                self.stream.close()

        def on_message(self, payload: bytes) -> None: ...
        def on_half_close(self) -> None: ...
        def on_gone(self) -> None: ...

        def on_writable(self) -> None:
            states.append("writable")
            self.pump()

    async def main() -> None:
        streams = {SNAPSHOT: lambda stream, req, meta: Snapshot(stream)}
        async with serving({}, streams) as (_server, channel):
            call = channel.unary_stream(SNAPSHOT)
            responses = call(b"")
            first = await blocking(next, responses)  # the client reads slowly at first
            assert int.from_bytes(first[:4], "big") == 0
            for _ in range(50):
                await asyncio.sleep(0)
            rest: list[bytes] = await blocking(list, responses)
            numbers = [int.from_bytes(m[:4], "big") for m in [first, *rest]]
            assert numbers == list(range(total)), "every message once, in order"

    run(main())
    assert "congested" in states and "writable" in states, states


def test_shutdown_answers_pending_calls_unavailable() -> None:
    async def main() -> None:
        never = asyncio.Event()

        async def hang(request: bytes, meta: dict[str, str] | None) -> bytes:
            await never.wait()
            return b""

        async with serving({RANGE: hang}) as (server, channel):
            pending = asyncio.ensure_future(blocking(unary(channel, RANGE), b"x"))
            while server.front.stats()["pending_unary"] == 0:
                await asyncio.sleep(0.001)
            await server.close()
            with pytest.raises(grpc.RpcError) as err:
                await pending
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    run(main())


def test_garbage_and_oversized_input_get_errors_and_server_survives() -> None:
    async def main() -> None:
        async with serving({PUT: put_handler}, max_recv_bytes=1024) as (server, channel):
            host, port = server.addresses[0].rsplit(":", 1)

            def garbage() -> None:
                for payload in (b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100, b"PRI * HTTP/2.0\r\n"):
                    with socket.create_connection((host, int(port)), timeout=5) as s:
                        try:  # the server may hang up at any point: that is fine
                            s.sendall(payload)
                            s.shutdown(socket.SHUT_WR)
                            while s.recv(4096):
                                pass
                        except OSError:
                            pass

            await blocking(garbage)
            big = rpc_pb2.PutRequest(key=b"k", value=b"v" * 5000).SerializeToString()
            with pytest.raises(grpc.RpcError) as err:
                await blocking(unary(channel, PUT), big)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # a body that is not a PutRequest: the handler's parse error becomes UNKNOWN
            with pytest.raises(grpc.RpcError) as err:
                await blocking(unary(channel, PUT), b"\xff\xff\xff")
            assert err.value.code() == grpc.StatusCode.UNKNOWN
            ok = rpc_pb2.PutRequest(key=b"k", value=b"v").SerializeToString()
            assert await blocking(unary(channel, PUT), ok)

    run(main())


def test_scheme_qualified_authority_is_accepted() -> None:
    """etcdctl 3.4 sends ``:authority: http://host:port`` for URL endpoints; etcd accepts it,
    and so must we (h2 alone would reset the stream)."""

    async def main() -> None:
        async with serving({PUT: put_handler}) as (server, _channel):
            target = server.addresses[0]
            options = [("grpc.default_authority", f"http://{target}")]
            with grpc.insecure_channel(target, options=options) as channel:
                req = rpc_pb2.PutRequest(key=b"k", value=b"abc").SerializeToString()
                for _ in range(3):  # several calls: HPACK tables must stay in step
                    raw = await blocking(unary(channel, PUT), req, timeout=10)
                    assert rpc_pb2.PutResponse.FromString(raw).header.revision == 3

    run(main())

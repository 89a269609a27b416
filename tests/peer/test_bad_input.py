"""Garbage, oversized and corrupted frames, and wrong cluster ids: refused, logged, survived."""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from raftkv._native import (
    PEER_FRAME_HEADER_LEN,
    encode_peer_frame,
    encode_peer_hello,
)
from tests.native.helpers import run
from tests.peer.helpers import CLUSTER, TIMEOUT, Member, numbered

MAX_FRAME = 4096


async def raw_session(addr: str, data: bytes, *, hello: bool = True) -> bytes:
    """Connect, (say hello and read the answer,) send ``data`` and end the stream, read
    until the server closes; returns what the server sent after the hello answer."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        if hello:
            writer.write(encode_peer_hello(CLUSTER, 77))
            answer = await asyncio.wait_for(reader.readexactly(PEER_FRAME_HEADER_LEN + 16), TIMEOUT)
            assert answer[8] == 2, answer  # HelloOk
            assert struct.unpack_from("<QQ", answer, PEER_FRAME_HEADER_LEN) == (CLUSTER, 1)
        writer.write(data)
        await writer.drain()
        writer.write_eof()  # a half frame must not wait for its end forever
        try:
            return await asyncio.wait_for(reader.read(), TIMEOUT)
        except ConnectionResetError:
            return b""
    finally:
        writer.close()


def bad_header(length: int, kind: int = 4) -> bytes:
    return struct.pack("<IIB", length, 0, kind)


def test_garbage_oversized_and_corrupt_frames_close_only_their_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="raftkv.transport")

    async def main() -> None:
        a = Member.start(1, max_frame_size=MAX_FRAME)

        async def closed_with(reason: str) -> None:
            await a.wait_for(
                f"a close for {reason!r}",
                lambda: any(
                    reason in e[2] for e in a.events if e[0] in ("inbound_closed", "rejected")
                ),
            )

        # Not even a hello: an HTTP request.
        assert await raw_session(a.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", hello=False) == b""
        await closed_with("oversized frame")
        rejected = a.events_of("rejected")
        assert rejected and "handshake" in rejected[0][2]

        # A good frame, then a length over the limit: the good one arrives, nothing after.
        good = encode_peer_frame(numbered(1))
        await raw_session(a.addr, good + bad_header(MAX_FRAME + 1) + b"z" * 64)
        await closed_with(f"oversized frame: {MAX_FRAME + 1} bytes, limit {MAX_FRAME}")

        # A frame whose body was damaged on the way: checksum refuses it.
        damaged = bytearray(encode_peer_frame(numbered(3)))
        damaged[-1] ^= 0xFF
        await raw_session(a.addr, encode_peer_frame(numbered(2)) + bytes(damaged))
        await closed_with("checksum mismatch")

        # Random bytes with an unknown kind.
        await raw_session(a.addr, bad_header(16, kind=200) + b"\x00" * 16)
        await closed_with("unknown frame kind 200")

        # Half a frame, then the dialer goes away: never delivered.
        half = encode_peer_frame(numbered(99))[:30]
        await raw_session(a.addr, encode_peer_frame(numbered(4)) + half)
        await closed_with("in the middle of a frame")

        # A second hello on an open link is a protocol error.
        await raw_session(a.addr, encode_peer_hello(CLUSTER, 77))
        await closed_with("unexpected Hello frame")

        await a.wait_for("frames", lambda: len(a.from_peer(77)) >= 3)
        assert a.from_peer(77) == [1, 2, 4]
        assert a.native.stats()["frame_errors"] == 4

        # The transport still serves a real peer.
        b = Member.start(2, peers={1: a.addr})
        b.t.send_many([(1, numbered(i)) for i in range(10)])
        await a.received_count(2, 10)
        assert a.from_peer(2) == list(range(10))
        await b.close()
        await a.close()

    run(main())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "checksum mismatch" in logged
    assert "oversized frame" in logged


def test_handshake_must_come_in_time() -> None:
    async def main() -> None:
        a = Member.start(1, handshake_timeout=0.2)
        host, port = a.addr.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        await a.wait_for("timeout", lambda: bool(a.events_of("rejected")))
        assert "timed out" in a.events_of("rejected")[0][2]
        await a.close()

    run(main())


def test_wrong_cluster_id_is_refused_with_a_clear_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="raftkv.transport")

    async def main() -> None:
        a = Member.start(1)
        stranger = Member.start(2, peers={1: a.addr}, cluster_id=0xBAD)
        await a.wait_for("refusal", lambda: bool(a.events_of("rejected", 2)))
        await stranger.wait_for("failure", lambda: bool(stranger.events_of("connect_failed", 1)))
        reason = a.events_of("rejected", 2)[0][2]
        assert "cluster id mismatch" in reason
        assert f"{0xBAD:#x}" in reason and f"{CLUSTER:#x}" in reason
        assert "cluster id mismatch" in stranger.events_of("connect_failed", 1)[0][2]
        stranger.t.send(1, numbered(0))
        await stranger.wait_for("unreachable", lambda: 1 in stranger.unreachable)
        assert a.received == []
        assert a.native.stats()["rejected"] >= 1
        await stranger.close()
        await a.close()

    run(main())
    assert any("cluster id mismatch" in r.getMessage() for r in caplog.records)


def test_dialing_the_wrong_member_is_refused() -> None:
    async def main() -> None:
        a = Member.start(1)
        # Member 3 believes member 2 lives at a's address.
        c = Member.start(3, peers={2: a.addr})
        await a.wait_for("refusal", lambda: bool(a.events_of("rejected", 3)))
        assert "expected member 0x2, this is member 0x1" in a.events_of("rejected", 3)[0][2]
        await c.close()
        await a.close()

    run(main())

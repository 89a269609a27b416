"""The asyncio adapter: address parsing, refused batches, callbacks that fail."""

from __future__ import annotations

import logging

import pytest

from raftkv.transport import peer_address
from tests.native.helpers import run
from tests.peer.helpers import Member, numbered


@pytest.mark.parametrize(
    ("url", "addr"),
    [
        ("http://127.0.0.1:2380", "127.0.0.1:2380"),
        ("https://member-1.example:2380/", "member-1.example:2380"),
        ("HTTPS://[::1]:12380", "[::1]:12380"),
        ("10.0.0.7:2380", "10.0.0.7:2380"),
    ],
)
def test_peer_address(url: str, addr: str) -> None:
    assert peer_address(url) == addr


@pytest.mark.parametrize(
    "url", ["http://host", "127.0.0.1", "http://h:99999", "unix://sock", "http://h:1/x"]
)
def test_peer_address_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        peer_address(url)


def test_an_oversized_message_is_dropped_and_the_rest_of_the_turn_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        b = Member.start(2, max_frame_size=1024)
        a = Member.start(1, peers={2: b.addr}, max_frame_size=1024)
        a.t.send(2, numbered(0))
        a.t.send(2, b"x" * 2000)
        a.t.send(2, numbered(1))
        await b.received_count(1, 2)
        assert b.from_peer(1) == [0, 1]
        await a.close()
        await b.close()

    run(main())
    assert any("over 1024 bytes" in r.getMessage() for r in caplog.records)


def test_a_failing_callback_is_logged_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="raftkv.transport")

    async def main() -> None:
        b = Member.start(2)
        a = Member.start(1, peers={2: b.addr})
        calls = 0
        inner = b.t._on_receive

        def flaky(batch: list[tuple[int, bytes]]) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                b.notice()
                raise RuntimeError("boom")
            inner(batch)

        b.t._on_receive = flaky
        a.t.send(2, numbered(0))
        await b.wait_for("the first batch", lambda: calls >= 1)
        a.t.send(2, numbered(1))
        await b.received_count(1, 1)
        assert b.from_peer(1) == [1]
        await a.close()
        await b.close()

    run(main())
    assert any("on_receive callback failed" in r.getMessage() for r in caplog.records)

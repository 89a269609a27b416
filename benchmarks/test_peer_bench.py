"""Peer transport: frames/s between two members through the asyncio adapter, and round trips.

Both members run in this process on one uvloop loop (the sender's and the receiver's Python
work share one core), over 127.0.0.1, with and without TLS.
Run: ``pytest benchmarks/test_peer_bench.py --benchmark-only -s``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from raftkv._native import PeerTransport
from raftkv.transport import AsyncPeerTransport, Received

CLUSTER = 0xBE7C
FRAMES = 200_000
FRAME_SIZE = 300
PER_TURN = 256
IN_FLIGHT = 8_192  # sent but not yet received; below the default queue bound
ROUND_TRIPS = 2_000


@dataclass
class Result:
    frames_per_second: float
    mb_per_second: float
    cpu_us_per_frame: float
    writes: int


def _run(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


class Counter:
    def __init__(self) -> None:
        self.frames = 0
        self.target = 0
        self.progress = asyncio.Event()

    def on_receive(self, batch: Received) -> None:
        self.frames += len(batch)
        if self.frames >= self.target:
            self.progress.set()

    async def reach(self, n: int) -> None:
        while self.frames < n:
            self.target = n
            self.progress.clear()
            await asyncio.wait_for(self.progress.wait(), 30)


def _pair(tls: dict[str, Any] | None) -> tuple[PeerTransport, PeerTransport]:
    opts = tls or {}
    b = PeerTransport(2, CLUSTER, "127.0.0.1:0", **opts)
    a = PeerTransport(1, CLUSTER, "127.0.0.1:0", {2: b.listen_addr}, **opts)
    return a, b


async def _stream(tls: dict[str, Any] | None) -> Result:
    na, nb = _pair(tls)
    counter = Counter()
    a = AsyncPeerTransport(na, lambda _: None)
    b = AsyncPeerTransport(nb, counter.on_receive)
    payload = bytes(range(256)) * 2
    msg = payload[:FRAME_SIZE]
    # Warm up: the link is up once the first frame arrives.
    a.send(2, msg)
    await counter.reach(1)
    start, cpu = time.perf_counter(), time.process_time()
    sent = 0
    while sent < FRAMES:
        if sent - (counter.frames - 1) > IN_FLIGHT:
            await counter.reach(counter.frames + PER_TURN)
        a.send_many([(2, msg)] * PER_TURN)
        sent += PER_TURN
        await asyncio.sleep(0)  # end the turn: the batch is flushed
    await counter.reach(sent + 1)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = na.stats()["peers"][2]
    assert stats["dropped_frames"] == 0, stats
    await a.close()
    await b.close()
    return Result(
        sent / elapsed, sent * FRAME_SIZE / elapsed / 1e6, cpu / sent * 1e6, stats["writes"]
    )


async def _round_trips(tls: dict[str, Any] | None) -> float:
    """Median microseconds for a message to go to the peer and back."""
    na, nb = _pair(tls)
    nb.add_peer(1, na.listen_addr)
    got = asyncio.Event()
    a = AsyncPeerTransport(na, lambda _: got.set())
    b: AsyncPeerTransport

    def echo(batch: Received) -> None:
        for sender, data in batch:
            b.send(sender, data)

    b = AsyncPeerTransport(nb, echo)
    samples: list[float] = []
    for i in range(ROUND_TRIPS + 50):
        got.clear()
        t0 = time.perf_counter()
        a.send(2, b"x" * FRAME_SIZE)
        await asyncio.wait_for(got.wait(), 30)
        if i >= 50:
            samples.append(time.perf_counter() - t0)
    await a.close()
    await b.close()
    samples.sort()
    return samples[len(samples) // 2] * 1e6


def _tls_files(d: Path) -> dict[str, Any]:
    from tests.peer.certs import Authority

    ca = Authority(d, "bench")
    member = ca.issue("member")
    return {
        "cert_file": member.cert,
        "key_file": member.key,
        "trusted_ca_file": ca.ca_file,
        "client_cert_auth": True,
    }


def _record(figures: dict[str, dict[str, float]], name: str, results: list[Result]) -> Result:
    best = max(results, key=lambda r: r.frames_per_second)
    figures[name] = {
        "frames/s": best.frames_per_second,
        "MB/s": best.mb_per_second,
        "cpu_us/frame": best.cpu_us_per_frame,
        "frames/write": FRAMES / max(1, best.writes),
    }
    return best


def test_peer_stream_300_byte_frames(benchmark: Any, figures: dict[str, dict[str, float]]) -> None:
    plain: list[Result] = []
    benchmark.pedantic(lambda: plain.append(_run(_stream(None))), rounds=3, iterations=1)
    best = _record(figures, "peer stream 300 B, 256/turn: plain TCP", plain)
    with tempfile.TemporaryDirectory() as d:
        tls = [_run(_stream(_tls_files(Path(d)))) for _ in range(2)]
    tls_best = _record(figures, "peer stream 300 B, 256/turn: TLS (mutual)", tls)
    benchmark.extra_info.update(
        plain_frames_per_s=best.frames_per_second, tls_frames_per_s=tls_best.frames_per_second
    )


def test_peer_round_trip(benchmark: Any, figures: dict[str, dict[str, float]]) -> None:
    plain: list[float] = []
    benchmark.pedantic(lambda: plain.append(_run(_round_trips(None))), rounds=2, iterations=1)
    figures["peer round trip 300 B: plain TCP"] = {"p50_us": min(plain)}
    with tempfile.TemporaryDirectory() as d:
        tls = _run(_round_trips(_tls_files(Path(d))))
    figures["peer round trip 300 B: TLS (mutual)"] = {"p50_us": tls}
    benchmark.extra_info.update(plain_rtt_us=min(plain), tls_rtt_us=tls)

"""What `etcdctl check perf` can reach on this machine against a server that costs nothing.

Usage: python -m benchmarks.checkperf_ceiling [--load l] [--endpoints 3]
                                              [--delay-ms D] [--group-ms G]

Starts do-nothing etcd KV endpoints (the native client front with Put, Range and
DeleteRange handlers that answer at once) and runs `etcdctl check perf` against them.
Optionally each Put is answered ``--delay-ms`` after it arrived, and with ``--group-ms``
the answers leave together on a fixed grid of that period (as a server that answers a
batch of calls at each commit does). It prints etcdctl's verdict and the CPU used by
etcdctl and by the endpoints.

Why: check perf's load generator takes one token at a time from a rate limiter (burst 1)
and sleeps between tokens; how late it wakes decides the rate it reaches, and it wakes
earlier the more often answers arrive. This separates that ceiling from the server's
own cost (see the README's "etcdctl check perf" notes).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable

import uvloop

from benchmarks.checkperf import run_check_perf
from benchmarks.cluster_bench import cpu_seconds
from raftkv._native import Front
from raftkv.front import FrontServer
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2

Metadata = dict[str, str] | None


def _response(message: rpc_pb2.PutResponse | rpc_pb2.DeleteRangeResponse) -> bytes:
    message.header.revision = 2
    out: bytes = message.SerializeToString()
    return out


PUT_RESPONSE = _response(rpc_pb2.PutResponse())
DELETE_RESPONSE = _response(rpc_pb2.DeleteRangeResponse())
RANGE_RESPONSE: bytes = rpc_pb2.RangeResponse().SerializeToString()


class DelayedAnswers:
    """Resolves futures ``delay`` seconds after they were queued; with ``group`` > 0, on
    the next multiple of ``group`` seconds after that, all due ones together. A thread
    with plain sleeps: the event loop's timers have millisecond steps."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, group: float) -> None:
        self._loop = loop
        self._delay = delay
        self._group = group
        self._queue: collections.deque[tuple[float, asyncio.Future[bytes]]] = collections.deque()
        self._ready = threading.Condition()
        threading.Thread(target=self._run, name="delayed-answers", daemon=True).start()

    def answer(self) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = self._loop.create_future()
        with self._ready:
            self._queue.append((time.perf_counter() + self._delay, fut))
            self._ready.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                due = self._queue[0][0]
            if self._group:
                due = (int(due / self._group) + 1) * self._group
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            batch: list[asyncio.Future[bytes]] = []
            with self._ready:
                while self._queue and self._queue[0][0] <= due:
                    batch.append(self._queue.popleft()[1])
            self._loop.call_soon_threadsafe(_resolve, batch)


def _resolve(batch: list[asyncio.Future[bytes]]) -> None:
    for fut in batch:
        if not fut.done():
            fut.set_result(PUT_RESPONSE)


async def run(args: argparse.Namespace) -> int:
    if shutil.which("etcdctl") is None:
        print("etcdctl not found (apt-get install etcd-client)", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    delayed = (
        DelayedAnswers(loop, args.delay_ms / 1000, args.group_ms / 1000)
        if args.delay_ms or args.group_ms
        else None
    )

    def put(request: bytes, meta: Metadata) -> bytes | asyncio.Future[bytes]:
        return PUT_RESPONSE if delayed is None else delayed.answer()

    handlers: dict[str, Callable[[bytes, Metadata], bytes | asyncio.Future[bytes]]] = {
        "/etcdserverpb.KV/Put": put,
        "/etcdserverpb.KV/Range": lambda request, meta: RANGE_RESPONSE,
        "/etcdserverpb.KV/DeleteRange": lambda request, meta: DELETE_RESPONSE,
    }
    servers = [FrontServer(Front(["127.0.0.1:0"]), handlers) for _ in range(args.endpoints)]
    endpoints = ",".join(s.addresses[0] for s in servers)
    server_cpu0 = cpu_seconds(os.getpid())
    # etcdctl is waited for on another thread: this loop serves it meanwhile.
    run = await loop.run_in_executor(None, run_check_perf, endpoints, args.load)
    server_cpu = cpu_seconds(os.getpid()) - server_cpu0
    for server in servers:
        await server.close()
    print(
        f"etcdctl check perf --load={args.load} against {args.endpoints} do-nothing endpoints, "
        f"answers after {args.delay_ms} ms"
        + (f" on a {args.group_ms} ms grid" if args.group_ms else "")
    )
    print("\n".join(run.verdict) if run.verdict else run.output[-2000:])
    print(
        f"cpu over {run.seconds:.0f} s: etcdctl {run.etcdctl_cpu_s / run.seconds:.2f} cores, "
        f"endpoints {server_cpu / run.seconds:.2f} cores"
    )
    return run.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", default="l", choices=["s", "m", "l", "xl"])
    parser.add_argument("--endpoints", type=int, default=3, help="endpoints (default: 3)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="answer Puts this late")
    parser.add_argument(
        "--group-ms", type=float, default=0.0, help="answer on a grid of this period"
    )
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.group_ms < 0 or args.endpoints < 1:
        parser.error("--delay-ms and --group-ms must be >= 0, --endpoints >= 1")
    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

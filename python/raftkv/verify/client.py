"""Recording clients: worker processes that run random KV operations over a small key set
through etcd's v3 gRPC API and record what they asked, when, and what came back.

Times are ``time.monotonic()``, one system-wide clock shared by every worker process on this
machine, so invocations and completions of different workers compare directly.

What an error means for a write decides the checker's freedom: an operation that certainly
did not happen is dropped; one that may have happened (the call timed out, the connection
broke after sending, the server said "request timed out") is recorded with ``complete=None``
and may take effect at any time after its invocation, or never. Failed reads are recorded
with an unknown outcome too, but the checker drops them (reads have no effect).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

# operation kinds as recorded: "get" is linearizable, "sget" serializable
PUT, GET, SGET, DELETE, CAS = "put", "get", "sget", "delete", "cas"
KINDS = (PUT, GET, SGET, DELETE, CAS)

# codes with which etcd refuses a request before it reaches consensus
_DEFINITE_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# UNAVAILABLE messages that prove the request was never proposed: grpc failed to connect so
# nothing was sent, or the member refused it for want of a leader before proposing it
_DEFINITE_UNAVAILABLE = (
    "failed to connect to all addresses",
    "connection refused",
    "etcdserver: no leader",
)


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded operation. ``complete`` is None when the outcome is unknown."""

    client: int
    endpoint: str
    kind: str
    key: bytes
    invoke: float
    complete: float | None
    value: bytes | None = None  # written by put/cas
    expect: bytes | None = None  # cas: compare value (None: the key must not exist)
    result: bytes | bool | None = None  # get/sget: value read; cas: succeeded
    revision: int = 0  # response header revision
    mod_revision: int = 0  # get/sget: mod revision of the value read (0: no key)
    error: str = ""


def definite_failure(e: grpc.RpcError) -> bool:
    """Whether this error proves the request had no effect (when in doubt: no)."""
    code = e.code()
    if code in _DEFINITE_CODES:
        return True
    if code == grpc.StatusCode.UNAVAILABLE:
        details = (e.details() or "").lower()
        return any(m in details for m in _DEFINITE_UNAVAILABLE)
    return False


def error_text(e: grpc.RpcError) -> str:
    return f"{e.code().name}: {e.details()}"


@dataclass
class Mix:
    """Relative weights of the operation kinds."""

    put: float = 3.0
    get: float = 3.0
    sget: float = 1.0
    delete: float = 0.5
    cas: float = 2.5

    def weights(self) -> list[float]:
        return [self.put, self.get, self.sget, self.delete, self.cas]


@dataclass
class WorkerConfig:
    client: int
    endpoints: list[str]
    keys: list[bytes]
    seed: int
    mix: Mix = field(default_factory=Mix)
    call_timeout: float = 1.5
    max_ops: int = 100_000
    max_seconds: float = 600.0
    # test hook: record serializable reads as linearizable ones, which is wrong (they may be
    # stale); the harness must then report anomalies
    mislabel_serializable: bool = False
    slot: int = 0  # index in the progress array


class _Endpoint:
    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = grpc.insecure_channel(target)
        self.kv: Any = rpc_pb2_grpc.KVStub(self.channel)  # type: ignore[no-untyped-call]
        self.cooldown_until = 0.0  # skip it briefly after a failure: no busy loop on it


def _cas_request(key: bytes, expect: bytes | None, value: bytes) -> rpc_pb2.TxnRequest:
    if expect is None:
        # an absent key has version 0 (a value compare on a missing key is always false)
        cmp = rpc_pb2.Compare(
            key=key,
            result=rpc_pb2.Compare.EQUAL,
            target=rpc_pb2.Compare.VERSION,
            version=0,
        )
    else:
        cmp = rpc_pb2.Compare(
            key=key, result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VALUE, value=expect
        )
    put = rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value))
    return rpc_pb2.TxnRequest(compare=[cmp], success=[put])


def run_worker(cfg: WorkerConfig, stop: Any, out: Any, progress: Any = None) -> None:
    """Run operations until ``stop`` (an Event) is set, or the op/time bound is reached; then
    put the list of records on ``out``. ``progress`` (a shared array, one slot per worker,
    each written by its worker only) shows the parent how far it got."""
    rng = random.Random(cfg.seed)
    eps = [_Endpoint(t) for t in cfg.endpoints]
    records: list[Record] = []
    seen: dict[bytes, bytes | None] = {}  # last value this client saw per key (cas expects)
    counter = 0
    started = time.monotonic()
    try:
        while (
            not stop.is_set()
            and len(records) < cfg.max_ops
            and time.monotonic() - started < cfg.max_seconds
        ):
            now = time.monotonic()
            ready = [e for e in eps if e.cooldown_until <= now]
            if not ready:
                # every endpoint failed just now: wait for the first to come off cooldown
                stop.wait(min(e.cooldown_until for e in eps) - now)
                continue
            ep = rng.choice(ready)
            kind = rng.choices(KINDS, cfg.mix.weights())[0]
            key = rng.choice(cfg.keys)
            counter += 1
            value = f"{cfg.client}-{counter}".encode()
            rec = _one(cfg, ep, kind, key, value, seen.get(key), rng)
            if rec is None:
                ep.cooldown_until = time.monotonic() + 0.1
                continue
            if rec.complete is None:
                ep.cooldown_until = time.monotonic() + 0.1
            records.append(rec)
            if progress is not None:
                progress[cfg.slot] = len(records)
            if rec.kind in (GET, SGET) and rec.complete is not None:
                seen[key] = rec.result if not isinstance(rec.result, bool) else None
            elif (rec.kind == PUT and rec.complete is not None) or rec.result is True:
                seen[key] = value  # an acknowledged put or a successful cas
    finally:
        for e in eps:
            e.channel.close()
        out.put((cfg.client, records))


def _one(
    cfg: WorkerConfig,
    ep: _Endpoint,
    kind: str,
    key: bytes,
    value: bytes,
    expect: bytes | None,
    rng: random.Random,
) -> Record | None:
    """Run one operation; None when it was a write that certainly had no effect."""
    t0 = time.monotonic()
    try:
        if kind in (GET, SGET):
            resp = ep.kv.Range(
                rpc_pb2.RangeRequest(key=key, serializable=kind == SGET), timeout=cfg.call_timeout
            )
            t1 = time.monotonic()
            kvs = list(resp.kvs)
            got = kvs[0].value if kvs else None
            mod = kvs[0].mod_revision if kvs else 0
            recorded = GET if cfg.mislabel_serializable else kind
            return Record(
                cfg.client,
                ep.target,
                recorded,
                key,
                t0,
                t1,
                result=got,
                revision=resp.header.revision,
                mod_revision=mod,
            )
        if kind == PUT:
            resp = ep.kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=cfg.call_timeout)
            return Record(
                cfg.client,
                ep.target,
                PUT,
                key,
                t0,
                time.monotonic(),
                value=value,
                revision=resp.header.revision,
            )
        if kind == DELETE:
            resp = ep.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key), timeout=cfg.call_timeout)
            return Record(
                cfg.client,
                ep.target,
                DELETE,
                key,
                t0,
                time.monotonic(),
                revision=resp.header.revision,
            )
        resp = ep.kv.Txn(_cas_request(key, expect, value), timeout=cfg.call_timeout)
        return Record(
            cfg.client,
            ep.target,
            CAS,
            key,
            t0,
            time.monotonic(),
            value=value,
            expect=expect,
            result=bool(resp.succeeded),
            revision=resp.header.revision,
        )
    except grpc.RpcError as e:
        if kind in (GET, SGET):
            # kept (with an unknown outcome) to show where reads were tried; a read has no
            # effect, so the checker leaves it out
            recorded = GET if cfg.mislabel_serializable else kind
            return Record(cfg.client, ep.target, recorded, key, t0, None, error=error_text(e))
        if definite_failure(e):
            return None
        return Record(
            cfg.client,
            ep.target,
            kind,
            key,
            t0,
            None,
            value=value,
            expect=expect if kind == CAS else None,
            error=error_text(e),
        )


class Workers:
    """A pool of recording worker processes (spawned, not forked: grpc does not survive a
    fork)."""

    def __init__(self, configs: list[WorkerConfig]) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.out: Any = ctx.Queue()
        self.progress: Any = ctx.Array("q", len(configs), lock=False)
        for i, c in enumerate(configs):
            c.slot = i
        self.procs = [
            ctx.Process(
                target=run_worker, args=(c, self.stop_event, self.out, self.progress), daemon=True
            )
            for c in configs
        ]

    def ops(self) -> int:
        """Operations recorded so far, over all workers."""
        return sum(self.progress)

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def check(self) -> None:
        """Raise if a worker died before being told to stop (its records would be lost)."""
        for p in self.procs:
            if p.exitcode is not None and not self.stop_event.is_set():
                raise RuntimeError(f"worker {p.name} exited early ({p.exitcode})")

    def stop(self, deadline_s: float = 60.0) -> list[Record]:
        """Stop the workers and gather their records (a worker that does not report within
        the deadline is terminated and its records are lost: the run then fails)."""
        self.stop_event.set()
        deadline = time.monotonic() + deadline_s
        records: list[Record] = []
        got = 0
        while got < len(self.procs):
            try:
                _client, recs = self.out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            records.extend(recs)
            got += 1
        for p in self.procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        if got < len(self.procs):
            raise RuntimeError(f"only {got} of {len(self.procs)} workers reported")
        return records


def final_reads(
    endpoints: list[str], keys: list[bytes], client: int, deadline_s: float = 60.0
) -> list[Record]:
    """A linearizable read of every key, retried over the endpoints until it succeeds (the
    cluster has been healed): the history's last word on each key."""
    chans = [grpc.insecure_channel(t) for t in endpoints]
    stubs: list[Any] = [rpc_pb2_grpc.KVStub(c) for c in chans]  # type: ignore[no-untyped-call]
    out: list[Record] = []
    deadline = time.monotonic() + deadline_s
    try:
        for key in keys:
            i = 0
            while True:
                t0 = time.monotonic()
                try:
                    resp = stubs[i % len(stubs)].Range(rpc_pb2.RangeRequest(key=key), timeout=2)
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"final read of {key!r} never succeeded") from None
                    i += 1
                    time.sleep(0.05)  # retry pause
                    continue
                kvs = list(resp.kvs)
                out.append(
                    Record(
                        client,
                        endpoints[i % len(endpoints)],
                        GET,
                        key,
                        t0,
                        time.monotonic(),
                        result=kvs[0].value if kvs else None,
                        revision=resp.header.revision,
                        mod_revision=kvs[0].mod_revision if kvs else 0,
                    )
                )
                break
    finally:
        for c in chans:
            c.close()
    return out

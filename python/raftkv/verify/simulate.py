"""Synthetic histories for testing and timing the checker.

``linearizable_history`` runs a real in-memory store: every operation takes effect at one
instant inside its [invoke, complete] interval, so the recorded history is linearizable by
construction. Member "crashes" make every call in flight at that moment indeterminate (as a
real client sees a burst of timeouts), some of them having taken effect and some not; a few
calls time out on their own too. Every written value is unique, which the mutations below
rely on to break linearizability for certain.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from raftkv.verify.history import Kind, Op


@dataclass(frozen=True)
class Workload:
    clients: int = 6
    keys: int = 8
    seconds: float = 30.0
    ops_per_second: float = 1000.0  # in total, across clients
    crashes: int = 3  # crash instants, each making all calls in flight indeterminate
    timeout_rate: float = 0.002  # stray indeterminate calls besides crashes
    mix: tuple[float, float, float, float] = (0.35, 0.4, 0.05, 0.2)  # put, get, delete, cas
    final_reads: bool = True


@dataclass
class _Call:
    client: int
    key: bytes
    kind: Kind
    invoke: float
    point: float  # when it takes effect
    complete: float | None
    applied: bool = True


def linearizable_history(w: Workload, seed: int) -> list[Op]:
    rng = random.Random(seed)
    keys = [b"k%02d" % i for i in range(w.keys)]
    mean_latency = w.clients / w.ops_per_second  # each client has one call in flight
    crash_at = sorted(rng.uniform(0, w.seconds) for _ in range(w.crashes))
    timeout = 20 * mean_latency
    calls: list[_Call] = []
    for client in range(w.clients):
        t = rng.uniform(0, mean_latency)
        while t < w.seconds:
            kind = rng.choices(list(Kind), weights=_weights(w.mix))[0]
            latency = rng.expovariate(1 / mean_latency)
            point = t + rng.uniform(0.05, 0.95) * latency
            done: float | None = t + latency
            applied = True
            crash = next((c for c in crash_at if t < c < t + latency), None)
            if crash is not None or rng.random() < w.timeout_rate:
                done = None
                # it took effect before the crash, or was lost, or survived it
                applied = crash is None or point < crash or rng.random() < 0.5
            calls.append(_Call(client, rng.choice(keys), kind, t, point, done, applied))
            t = (t + latency if done is not None else t + timeout) + rng.uniform(0, 1e-4)
    return _execute(calls, keys, w, rng)


def _weights(mix: tuple[float, float, float, float]) -> list[float]:
    order = {Kind.PUT: 0, Kind.GET: 1, Kind.DELETE: 2, Kind.CAS: 3}
    return [mix[order[k]] for k in Kind]


def _execute(calls: list[_Call], keys: list[bytes], w: Workload, rng: random.Random) -> list[Op]:
    """Apply the calls to a real store in the order they take effect, recording results."""
    store: dict[bytes, bytes | None] = dict.fromkeys(keys)
    history: dict[bytes, list[bytes]] = {k: [] for k in keys}  # values ever written
    revision = 1
    ops: list[Op] = []
    for serial, c in enumerate(sorted(calls, key=lambda c: c.point)):
        cur = store[c.key]
        value = b"v%d" % serial
        rev = revision
        if c.kind is Kind.GET:
            op = Op(c.client, c.key, c.kind, c.invoke, c.complete, result=cur, revision=rev)
        elif c.kind is Kind.CAS:
            # expect what is there (succeeds) or a stale value (fails), as clients do
            past = history[c.key]
            expect = cur if rng.random() < 0.6 or not past else rng.choice(past[-3:])
            hit = expect == cur
            if hit and c.applied:
                store[c.key] = value
                history[c.key].append(value)
                revision += 1
            op = Op(
                c.client,
                c.key,
                c.kind,
                c.invoke,
                c.complete,
                value=value,
                expect=expect,
                result=hit,
                revision=revision,
            )
        else:
            if c.applied:
                store[c.key] = value if c.kind is Kind.PUT else None
                if c.kind is Kind.PUT:
                    history[c.key].append(value)
                revision += 1
            v = value if c.kind is Kind.PUT else None
            op = Op(c.client, c.key, c.kind, c.invoke, c.complete, value=v, revision=revision)
        if op.indeterminate:
            op = replace(op, result=None, revision=0)
        ops.append(op)
    if w.final_reads:
        end = max((c.complete or c.invoke) for c in calls) + 1.0
        for i, k in enumerate(keys):
            t = end + i * 1e-3
            ops.append(Op(0, k, Kind.GET, t, t + 5e-4, result=store[k], revision=revision))
    ops.sort(key=lambda o: o.invoke)
    return ops


# Mutations that make a linearizable history (with unique written values) certainly not
# linearizable. Each returns None when the history offers no place to apply it.

Mutation = Callable[[list[Op], random.Random], list[Op] | None]


def _writes_in_order(ops: list[Op], key: bytes) -> list[Op]:
    """Completed writes of one key that took effect (puts; successful CASes)."""
    return [
        o
        for o in ops
        if o.key == key
        and not o.indeterminate
        and (o.kind is Kind.PUT or (o.kind is Kind.CAS and o.result is True))
    ]


def _overwritten(ops: list[Op], before: float, key: bytes) -> Op | None:
    """A completed write w0 that finished before another completed write w1 started, w1
    itself finishing before ``before``: a read invoked after ``before`` cannot see w0."""
    ws = _writes_in_order(ops, key)
    w1s = [w for w in ws if w.end < before]
    if not w1s:
        return None
    w1 = max(w1s, key=lambda w: w.end)
    w0s = [w for w in ws if w.end < w1.invoke]
    return w0s[-1] if w0s else None


def _replace(ops: list[Op], old: Op, new: Op) -> list[Op]:
    i = next(i for i, o in enumerate(ops) if o is old)
    return [*ops[:i], new, *ops[i + 1 :]]


def stale_read(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """A completed read returns a value overwritten before the read was invoked."""
    reads = [o for o in ops if o.kind is Kind.GET and not o.indeterminate]
    return _read_overwritten_value(ops, reads, rng)


def lost_write(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """A final read (invoked after everything else) misses acknowledged writes: it sees an
    older value."""
    last = max(o.end for o in ops if not o.indeterminate and o.kind is not Kind.GET)
    finals = [o for o in ops if o.kind is Kind.GET and o.invoke > last and not o.indeterminate]
    return _read_overwritten_value(ops, finals, rng)


def _read_overwritten_value(ops: list[Op], reads: list[Op], rng: random.Random) -> list[Op] | None:
    """Make one of ``reads`` (picked at random) return a value overwritten before it began."""
    rng.shuffle(reads)
    for r in reads:
        w0 = _overwritten(ops, r.invoke, r.key)
        if w0 is not None and w0.value != r.result:
            return _replace(ops, r, replace(r, result=w0.value))
    return None


def resurrection(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """A new read, after the rest, of a value that was overwritten: a write applied twice."""
    t = max(o.end if not o.indeterminate else o.invoke for o in ops) + 1.0
    keys = sorted({o.key for o in ops})
    rng.shuffle(keys)
    for k in keys:
        w0 = _overwritten(ops, t, k)
        if w0 is not None:
            return [*ops, Op(99, k, Kind.GET, t, t + 1e-3, result=w0.value)]
    return None


def flipped_cas(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """A completed CAS reports the wrong outcome where the state it saw is certain: a
    completed read right before it, and nothing else that could fall in between."""
    by_key: dict[bytes, list[Op]] = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    found = []
    for kops in by_key.values():
        for c in kops:
            if c.kind is not Kind.CAS or c.indeterminate:
                continue
            reads = [
                g for g in kops if g.kind is Kind.GET and not g.indeterminate and g.end < c.invoke
            ]
            if not reads:
                continue
            g = max(reads, key=lambda g: g.end)
            # any other op that could take effect between g's start and c's end
            if all(o is g or o is c or o.end < g.invoke or o.invoke > c.end for o in kops):
                found.append(c)
    if not found:
        return None
    c = rng.choice(found)
    return _replace(ops, c, replace(c, result=not c.result))


def early_unknown_write(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """A completed read sees the value of an indeterminate put invoked after the read
    finished."""
    puts = [o for o in ops if o.kind is Kind.PUT and o.indeterminate]
    rng.shuffle(puts)
    for p in puts:
        reads = [o for o in ops if o.key == p.key and o.kind is Kind.GET and o.end < p.invoke]
        reads = [r for r in reads if not r.indeterminate]
        if reads:
            r = rng.choice(reads)
            return _replace(ops, r, replace(r, result=p.value))
    return None


MUTATIONS: dict[str, Mutation] = {
    "stale read": stale_read,
    "lost acknowledged write": lost_write,
    "write applied twice": resurrection,
    "CAS result flipped": flipped_cas,
    "indeterminate write seen early": early_unknown_write,
}

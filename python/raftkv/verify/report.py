"""One verdict for a recorded history: every check, and a readable account of what failed.

``check_history`` runs the per-key linearizability search, the per-client revision check and
an explicit lost-acknowledged-write check on the final reads, then shrinks each key that is
not linearizable to a small sub-history that still is not, for the report.

Shrinking only takes steps that keep the sub-history a certificate: if the shrunk history is
not linearizable, neither is the original. Dropping an arbitrary operation does not have that
property (drop the write a read saw and the read becomes unexplained for a new reason), so a
step that drops operations R also drops, transitively,

* every read of a value some write in R wrote, and every CAS expecting such a value;
* every completed failed CAS that could come after a write in R (with the write gone, the
  register might hold just the value that CAS expected).

With those gone, any linearization of the original minus R's writes' effects still explains
every remaining operation (a failed unknown CAS can simply be left out), so a failure of the
smaller history is a failure of the original one.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from raftkv.verify.history import Kind, Op
from raftkv.verify.linearizability import (
    KeyResult,
    State,
    check_key,
    revisions_go_backwards,
    writes,
    written,
)

# The whole check's time when the caller sets no budget.
DEFAULT_BUDGET_S = 300.0
# Share of a budget given to the linearizability search; shrinking gets the rest.
SEARCH_SHARE = 0.7
# Anomalies of one sort listed individually before the rest are summarised.
LIST_AT_MOST = 20


@dataclass
class KeyFailure:
    """A key whose history is not linearizable (or could not be checked in time)."""

    key: bytes
    verdict: str  # "violation" or "unknown"
    operations: int
    result: KeyResult
    shrunk: list[Op] = field(default_factory=list)  # smallest failing sub-history found
    shrink_finished: bool = False  # False: the time ran out, a smaller one may exist
    initial: State = None
    evidence: str = "smallest failing sub-history"


@dataclass
class Report:
    ok: bool
    anomalies: list[str]
    stats: dict[str, int | float]
    failures: list[KeyFailure] = field(default_factory=list)
    # keys whose check ran out of budget: a failure to verify, not a pass
    unknown_keys: list[bytes] = field(default_factory=list)
    origin: float = 0.0  # times in the rendering are relative to this
    # "ok"; "anomalies" (something is certainly wrong); "unknown" (nothing proven wrong, but
    # some key could not be verified within the budget)
    verdict: str = "ok"

    def render(self) -> str:
        lines = [f"history check: {self.verdict.upper()}"]
        lines.append("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.stats.items()))
        for a in self.anomalies:
            lines.append(f"- {a}")
        for f in self.failures:
            if not f.shrunk:
                continue
            state = "minimal" if f.shrink_finished else "shrinking stopped by the time budget"
            if f.evidence != KeyFailure.evidence:
                state = "not shrunk"
            lines.append("")
            lines.append(
                f"key {f.key!r}: {f.evidence}, {len(f.shrunk)} of "
                f"{f.operations} ops ({state}), initial value {f.initial!r}:"
            )
            lines.extend("  " + row for row in op_table(f.shrunk, self.origin))
        return "\n".join(lines)


def _fmt(v: int | float) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def describe_op(op: Op) -> str:
    if op.kind is Kind.PUT:
        return f"put {op.value!r}"
    if op.kind is Kind.DELETE:
        return "delete"
    if op.kind is Kind.GET:
        return "get"
    return f"cas {op.expect!r} -> {op.value!r}"


def describe_result(op: Op) -> str:
    if op.indeterminate:
        return "?"
    if op.kind is Kind.GET:
        return repr(op.result)
    if op.kind is Kind.CAS:
        return "ok" if op.result else "failed"
    return "ok"


def op_table(ops: Sequence[Op], origin: float = 0.0) -> list[str]:
    """A time-ordered table: client, invoke, complete, op, result, revision."""
    header = ("client", "invoke", "complete", "op", "result", "revision")
    rows = [header]
    for o in sorted(ops, key=lambda o: (o.invoke, o.end)):
        rows.append(
            (
                str(o.client),
                f"{o.invoke - origin:.6f}",
                "?" if o.complete is None else f"{o.complete - origin:.6f}",
                describe_op(o),
                describe_result(o),
                str(o.revision) if o.revision else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def lost_writes(ops: Sequence[Op], initial: State = None) -> list[tuple[Op, Op]]:
    """(acknowledged write, final read) pairs where the final read of the key saw a value
    that only writes ending before that write started produced: the write was lost.

    A final read is a completed GET invoked after every completed write of the key ended.
    Whatever the linearization, the write precedes the read, and every write of the value
    read precedes the write, so the read cannot see that value.
    """
    last_write = max(
        (o.end for o in ops if not o.indeterminate and o.kind is not Kind.GET), default=-math.inf
    )
    finals = [
        o for o in ops if o.kind is Kind.GET and not o.indeterminate and o.invoke > last_write
    ]
    acked = [
        o
        for o in ops
        if not o.indeterminate
        and (o.kind in (Kind.PUT, Kind.DELETE) or (o.kind is Kind.CAS and o.result is True))
    ]
    out = []
    for r in finals:
        # the latest end of anything that may have written what the read saw
        latest = -math.inf if initial == r.result else None
        for z in ops:
            if writes(z) and written(z) == r.result and z.invoke < r.end and z is not r:
                latest = z.end if latest is None else max(latest, z.end)
        for w in acked:
            if (
                written(w) != r.result
                and w.end < r.invoke
                and (latest is None or latest < w.invoke)
            ):
                out.append((w, r))
    return out


def shrink(
    ops: Sequence[Op],
    initial: State = None,
    deadline: float | None = None,
    fails: Callable[[list[Op]], bool] | None = None,
    hint: float | None = None,
) -> tuple[list[Op], bool]:
    """A small sub-history of a non-linearizable ``ops`` that still is not linearizable, and
    whether it is 1-minimal (no allowed step shrinks it further) rather than cut short by the
    deadline. ``fails`` (for tests) replaces the check of a candidate; ``hint`` is a time
    around which the search got stuck."""
    if fails is None:

        def fails(cand: list[Op]) -> bool:
            r = check_key(cand[0].key, cand, initial, deadline=deadline)
            return r.verdict == "violation"  # unknown: keep the bigger one

    # unknown GETs never explain a failure
    cur = sorted((o for o in ops if not (o.indeterminate and o.kind is Kind.GET)), key=_order)

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    if hint is not None:
        # the search got stuck around ``hint``: what comes later is likely irrelevant
        cand = _without(cur, {i for i, o in enumerate(cur) if o.invoke > hint})
        if cand and fails(cand):
            cur = cand
    # Failures are local in time: first look for a short failing prefix, then for a short
    # failing suffix of that (binary searches; failing is not monotone in the length, so
    # this only finds some short one), then delta-debug what is left.
    for from_end in (False, True):
        lo, hi = 1, len(cur)  # keeping all ``hi`` fails
        best = cur
        while lo < hi and not out_of_time():
            mid = (lo + hi) // 2
            drop = range(mid, len(cur)) if not from_end else range(len(cur) - mid)
            cand = _without(cur, set(drop))
            if cand and fails(cand):
                hi, best = mid, cand
            else:
                lo = mid + 1
        cur = best
    # delta debugging: drop chunks while it still fails, finer and finer
    n = 2
    while len(cur) > 1:
        size = math.ceil(len(cur) / n)
        for start in range(0, len(cur), size):
            if out_of_time():
                return cur, False
            cand = _without(cur, set(range(start, min(start + size, len(cur)))))
            if cand and fails(cand):
                cur = cand
                n = max(n - 1, 2)
                break
        else:
            if size == 1:
                return cur, True
            n = min(2 * n, len(cur))
    return cur, True


def with_context(shrunk: list[Op], ops: Sequence[Op], initial: State) -> list[Op]:
    """Add to a shrunk history the failed CASes that carried a value one of its reads saw but
    none of its writes wrote: "read a value nobody wrote" is clearer with the CAS that
    failed to write it. (Adding failed CASes cannot make it linearizable: they change
    nothing.)"""
    produced = {written(o) for o in shrunk if writes(o)} | {initial}
    orphans = {
        o.result
        for o in shrunk
        if o.kind is Kind.GET and not o.indeterminate and o.result not in produced
    }
    extra = [
        o
        for o in ops
        if o.kind is Kind.CAS and o.result is False and o.value in orphans and o not in shrunk
    ]
    return sorted([*shrunk, *extra], key=_order)


def _without(ops: Sequence[Op], remove: set[int]) -> list[Op]:
    gone = _closure(ops, remove)
    return [o for i, o in enumerate(ops) if i not in gone]


def _order(o: Op) -> tuple[float, float]:
    return (o.invoke, o.end)


def _closure(ops: Sequence[Op], remove: set[int]) -> set[int]:
    """``remove`` plus what must go with it for the rest to still be a certificate (see the
    module docstring)."""
    gone = set(remove)
    while True:
        values = {written(ops[i]) for i in gone if writes(ops[i])}
        first = min((ops[i].invoke for i in gone if writes(ops[i])), default=math.inf)
        more = set()
        for i, o in enumerate(ops):
            if i in gone:
                continue
            if o.kind is Kind.GET:
                if not o.indeterminate and o.result in values:
                    more.add(i)
            elif o.kind is Kind.CAS:
                failed = not o.indeterminate and o.result is False
                if o.expect in values or (failed and o.end >= first):
                    more.add(i)
        if not more:
            return gone
        gone |= more


def check_history(
    history: list[Op],
    initial: dict[bytes, bytes | None] | None = None,
    budget_s: float | None = None,
) -> Report:
    """Check a recorded history; ``initial`` gives keys' values before it (default: absent).

    ``budget_s`` (default ``DEFAULT_BUDGET_S``) bounds the whole check: a share for the
    search, then for refuting keys whose search did not finish, then for shrinking. Keys
    neither verified nor refuted in time are reported as unknown, which is not ok.
    """
    started = time.monotonic()
    initial = initial or {}
    deadline = started + (DEFAULT_BUDGET_S if budget_s is None else budget_s)
    search_until = started + SEARCH_SHARE * (deadline - started)
    by_key: dict[bytes, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)

    anomalies: list[str] = []
    failures: list[KeyFailure] = []
    unknown_keys: list[bytes] = []
    states = 0
    keys = sorted(by_key)
    for n, key in enumerate(keys):
        # an even share of what is left, so a fast key leaves time for the others
        now = time.monotonic()
        key_deadline = now + max(0.0, search_until - now) / (len(keys) - n)
        r = check_key(key, by_key[key], initial.get(key), deadline=key_deadline)
        states += r.states
        if r.ok:
            continue
        failures.append(KeyFailure(key, r.verdict, len(by_key[key]), r, initial=initial.get(key)))

    # A search that ran out of budget may still be refuted by a small failing sub-history
    # around where it got stuck (failures are local in time; refuting a long history is
    # what costs, as every alternative of its whole prefix must be tried).
    undecided = [f for f in failures if f.verdict == "unknown"]
    certificates: dict[bytes, list[Op]] = {}
    for i, f in enumerate(undecided):
        until = _share(started, deadline, len(undecided) - i, SEARCH_SHARE + (1 - SEARCH_SHARE) / 2)
        lost = lost_writes(by_key[f.key], f.initial)
        if lost:
            # a lost write is a proof by itself: show the write, the read, and what wrote
            # the value the read saw
            w, final = lost[-1]
            f.verdict, f.shrink_finished = "violation", True
            f.evidence = "evidence of the lost write"
            f.shrunk = [
                z
                for z in by_key[f.key]
                if writes(z) and written(z) == final.result and z.invoke < final.end
            ]
            f.shrunk = sorted([*f.shrunk, w, final], key=_order)
            continue
        cert = find_certificate(by_key[f.key], f.initial, _hint(f.result), until)
        if cert is not None:
            f.verdict = "violation"
            certificates[f.key] = cert
    for f in failures:
        r = f.result
        if f.verdict == "unknown":
            unknown_keys.append(f.key)
            anomalies.append(
                f"key {f.key!r}: could not verify linearizability of {r.operations} ops within "
                f"the budget ({r.states} search states, {r.seconds:.1f} s): unknown, not ok"
            )
        elif f.shrunk:
            anomalies.append(
                f"key {f.key!r}: not linearizable ({r.operations} ops; the full search ran out "
                f"of budget, the lost acknowledged write below proves it)"
            )
        elif f.key in certificates:
            anomalies.append(
                f"key {f.key!r}: not linearizable ({r.operations} ops; the full search ran out "
                f"of budget, a failing sub-history proves it)"
            )
        else:
            anomalies.append(f"key {f.key!r}: not linearizable ({r.operations} ops)")

    origin = _origin(history)
    for key in keys:
        lost = lost_writes(by_key[key], initial.get(key))
        for w, final in lost[-LIST_AT_MOST:]:
            anomalies.append(
                f"key {key!r}: lost acknowledged write: client {w.client} {describe_op(w)} "
                f"(done at {w.end - origin:.6f}, revision {w.revision}), yet the final read "
                f"by client {final.client} saw {final.result!r}, which no write that could "
                f"come after it produced"
            )
        if len(lost) > LIST_AT_MOST:
            anomalies.append(f"key {key!r}: {len(lost) - LIST_AT_MOST} more lost writes")

    backwards = revisions_go_backwards(history)
    for a, b in backwards[:LIST_AT_MOST]:
        anomalies.append(
            f"client {a.client}: revision went backwards from {a.revision} "
            f"({describe_op(a)} at {a.invoke - origin:.6f}) to {b.revision} "
            f"({describe_op(b)} at {b.invoke - origin:.6f})"
        )
    if len(backwards) > LIST_AT_MOST:
        anomalies.append(f"{len(backwards) - LIST_AT_MOST} more revisions went backwards")

    proven = len(anomalies) - len(unknown_keys)
    violations = [f for f in failures if f.verdict == "violation" and not f.shrunk]
    for i, f in enumerate(violations):
        until = _share(started, deadline, len(violations) - i, 1.0)
        start = certificates.get(f.key, by_key[f.key])
        shrunk, f.shrink_finished = shrink(start, f.initial, until, hint=_hint(f.result))
        f.shrunk = with_context(shrunk, by_key[f.key], f.initial)

    kinds = Counter(op.kind.value for op in history)
    stats: dict[str, int | float] = {
        "ops": len(history),
        **{k.value: kinds.get(k.value, 0) for k in Kind},
        "indeterminate": sum(op.indeterminate for op in history),
        "keys": len(keys),
        "clients": len({op.client for op in history}),
        "search_states": states,
        "seconds": time.monotonic() - started,
    }
    return Report(
        ok=not anomalies,
        anomalies=anomalies,
        stats=stats,
        failures=failures,
        unknown_keys=unknown_keys,
        origin=origin,
        verdict="ok" if not anomalies else "unknown" if proven == 0 else "anomalies",
    )


def _share(started: float, deadline: float, left: int, upto: float) -> float:
    """A deadline: an even share, among ``left`` tasks, of what remains until the fraction
    ``upto`` of the budget."""
    end = started + upto * (deadline - started)
    now = time.monotonic()
    return now + max(0.0, end - now) / left


def _hint(r: KeyResult) -> float | None:
    """Where the search got stuck: the latest end of the ops it could not place."""
    ends = [o.end for o in r.stuck if not o.indeterminate]
    return max(ends) if ends else None


def find_certificate(
    ops: Sequence[Op], initial: State, hint: float | None, deadline: float
) -> list[Op] | None:
    """A sub-history that provably fails, found among growing time windows ending at
    ``hint``: each keeps the ops overlapping the window and the writers of every value
    they observe (with the closure, so a failure is a failure of ``ops``)."""
    if hint is None:
        return None
    cur = sorted((o for o in ops if not (o.indeterminate and o.kind is Kind.GET)), key=_order)
    writers: dict[State, list[int]] = defaultdict(list)
    for i, o in enumerate(cur):
        if writes(o):
            writers[written(o)].append(i)
    span = hint - cur[0].invoke
    width = 0.01
    while time.monotonic() < deadline:
        window = {i for i, o in enumerate(cur) if o.invoke <= hint and o.end >= hint - width}
        keep = set(window)
        for i in window:
            o = cur[i]
            seen = o.expect if o.kind is Kind.CAS else o.result if o.kind is Kind.GET else None
            if o.kind in (Kind.GET, Kind.CAS) and not isinstance(seen, bool):
                keep.update(writers.get(seen, ()))
        cand = _without(cur, set(range(len(cur))) - keep)
        if cand:
            r = check_key(cand[0].key, cand, initial, deadline=deadline)
            if r.verdict == "violation":
                return cand
        if width > span:
            return None
        width *= 4
    return None


def _origin(history: Sequence[Op]) -> float:
    return min((op.invoke for op in history), default=0.0)

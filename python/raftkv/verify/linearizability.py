"""Linearizability of a key-value history, checked key by key (a register per key).

The search is Wing & Gong's, with Lowe's memoization: repeatedly pick an operation that can
go next (one invoked before every not-yet-placed completed operation finished), apply it to
the register model, and backtrack when its observed result disagrees. Keys are independent
(linearizability is compositional), which keeps each search small.

Operations with an unknown outcome may take effect anywhere after their invocation, or never.
Left as ordinary candidates they blow the search up (each stays a candidate forever, so every
subset of them is a distinct search state). Two facts tame them:

* Normal form. If a history is linearizable it has a linearization that places as few unknown
  operations as possible and, among those, places them as late as possible. In it, an unknown
  operation X (state s before it, s' after) is never removable and never swappable with the
  completed operation Y right after it. Spelled out with the model this means that Y must
  disagree with s (or, for an unknown Y, end in a different state from s than from s'), so the
  search only places X when the very next operation needs it. In particular an unknown write
  is only ever placed right before a read of its value, a CAS expecting it, or a failed CAS
  whose failure it explains; one nobody observes is never tried.
* Window. Completed operations are kept in invoke order; all those before ``lo`` are placed,
  and a small bit mask covers the rest, so each search node only scans the operations
  concurrent with the earliest unplaced one, stopping at the first invoked after the running
  minimum of the unplaced ends.

* Merging. Search states whose futures are the same are one: a value no later op observes
  is as good as any other such value, and unknown writes of such values that are already
  invocable are interchangeable, so only how many were used counts (fewer is better).

The search is bounded by a number of states and a deadline; running out gives a third
outcome, "unknown", which is never reported as ok.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from raftkv.verify.history import Kind, Op

State = bytes | None

# A marker for "no unknown operation was just placed" in search states.
_NO_PEND: tuple[int, State] = (-1, None)


def step(state: State, op: Op) -> tuple[bool, State]:
    """(does the op's observed result agree with ``state``, state after the op)."""
    if op.kind is Kind.PUT:
        return True, op.value
    if op.kind is Kind.DELETE:
        return True, None
    if op.kind is Kind.GET:
        return (op.indeterminate or op.result == state), state
    hit = state == op.expect  # CAS
    if op.indeterminate:
        return True, op.value if hit else state
    return op.result == hit, op.value if hit else state


def writes(op: Op) -> bool:
    """Can this operation change the register?"""
    if op.kind is Kind.GET:
        return False
    return not (op.kind is Kind.CAS and op.result is False and not op.indeterminate)


@dataclass
class KeyResult:
    key: bytes
    ok: bool
    operations: int
    # when not ok: the operations that could not be placed at the deepest point reached
    stuck: list[Op] = field(default_factory=list)
    placed: int = 0
    # the budget ran out before a verdict: neither ok nor a proven violation
    unknown: bool = False
    states: int = 0
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else "unknown" if self.unknown else "violation"


class _OutOfBudget(Exception):
    pass


def written(op: Op) -> State:
    """The value a (successful) write leaves in the register."""
    return None if op.kind is Kind.DELETE else op.value


def _observations(ops: Sequence[Op]) -> tuple[set[State], set[State], float]:
    """(values some operation observes: completed GET results and CAS expectations;
    expectations of failed or unknown CASes; the latest end of such a CAS)."""
    observed: set[State] = set()
    cas_expects: set[State] = set()
    latest_cas = -math.inf
    for op in ops:
        if op.kind is Kind.GET and not op.indeterminate and not isinstance(op.result, bool):
            observed.add(op.result)
        elif op.kind is Kind.CAS:
            observed.add(op.expect)
            if op.indeterminate or op.result is False:
                cas_expects.add(op.expect)
                latest_cas = max(latest_cas, op.end)
    return observed, cas_expects, latest_cas


def _useful_unknowns(ops: Sequence[Op]) -> tuple[list[Op], list[Op]]:
    """Split into (completed, unknown ops worth searching over).

    Unknown GETs constrain nothing. An unknown write whose value nobody reads and that no CAS
    expects could only matter by making a later failed CAS fail (its value sits in the
    register where the CAS's expected one would otherwise be), so it is dropped when no
    failed or unknown CAS can come after it. The normal form would never place it anyway;
    dropping it only saves scanning it.
    """
    observed, _, latest_cas = _observations(ops)
    done, unknown = [], []
    for op in ops:
        if not op.indeterminate:
            done.append(op)
        elif op.kind is Kind.GET:
            continue
        elif op.kind is Kind.CAS or written(op) in observed or latest_cas >= op.invoke:
            unknown.append(op)
    return done, unknown


def check_key(
    key: bytes,
    ops: Sequence[Op],
    initial: State = None,
    *,
    max_states: int | None = None,
    deadline: float | None = None,
) -> KeyResult:
    """Is this key's history linearizable (starting from ``initial``)?

    ``max_states`` bounds the number of search states and ``deadline`` (a ``time.monotonic()``
    instant) the time; if either runs out the result is ``unknown``, not ok.
    """
    started = time.monotonic()
    done, unknown = _useful_unknowns(ops)
    done.sort(key=lambda o: o.invoke)
    unknown.sort(key=lambda o: o.invoke)
    n = len(done)
    inv = [o.invoke for o in done]
    end = [o.end for o in done]
    u_inv = [o.invoke for o in unknown]

    # indexes of the unknown ops by what they write, for unknown_children
    u_by_value: dict[State, list[int]] = defaultdict(list)
    u_cas_by_expect: dict[State, list[int]] = defaultdict(list)
    for x, o in enumerate(unknown):
        if o.kind is Kind.CAS:
            u_cas_by_expect[o.expect].append(x)
        else:
            u_by_value[written(o)].append(x)
    u_cas_expects = set(u_cas_by_expect)

    # Dead values and interchangeable unknown writes, to merge search states whose futures
    # are the same. A value is dead once every completed op observing it (a GET of it, a CAS
    # expecting it) is placed, i.e. lies before ``lo``, and no unknown CAS expects it: no
    # later op can tell it apart from any other dead value. An unknown PUT or DELETE of a dead
    # value that is invoked before ``lo``'s op can still go at any later point; all such are
    # interchangeable (each can only ever displace a value a failed CAS must not see, and
    # leaves a dead value), so only how many of them were placed matters, not which.
    last_observer: dict[State, int] = {}
    for j, o in enumerate(done):
        if o.kind is Kind.GET and not isinstance(o.result, bool):
            last_observer[o.result] = j
        elif o.kind is Kind.CAS:
            last_observer[o.expect] = j

    def dead_from(v: State) -> int:
        """The least ``lo`` from which ``v`` is dead (n + 1: never)."""
        return n + 1 if v in u_cas_expects else last_observer.get(v, -1) + 1

    thresholds = []
    for x, o in enumerate(unknown):
        if o.kind is not Kind.CAS:
            available = bisect.bisect_left(inv, o.invoke)  # first lo with inv[lo] >= invoke
            thresholds.append((max(dead_from(written(o)), available), x))
    thresholds.sort()
    steps = [t for t, _ in thresholds]
    spare_masks = [0]  # spare_masks[i]: the first i of them
    for _, x in thresholds:
        spare_masks.append(spare_masks[-1] | 1 << x)
    dead_cache: dict[State, int] = {}

    def memo_key(
        lo: int, cmask: int, imask: int, state: State, pend: tuple[int, State]
    ) -> tuple[tuple[int, int, int, State, tuple[int, State], bool], int]:
        """(the search state up to which spare unknown writes were used, how many were)."""
        spare = spare_masks[bisect.bisect_right(steps, lo)]
        dead = False
        if pend is _NO_PEND:
            if state not in dead_cache:
                dead_cache[state] = dead_from(state)
            dead = lo >= dead_cache[state]
        key = (lo, cmask, imask & ~spare, None if dead else state, pend, dead)
        return key, (imask & spare).bit_count()

    # search states seen, each with the fewest spare unknown writes used to reach it: one
    # reached having used more of them has no option the other lacks, so is not searched
    seen: dict[tuple[int, int, int, State, tuple[int, State], bool], int] = {}
    states = 0
    best_depth = -1
    best_stuck: list[Op] = []

    def frontier(lo: int, cmask: int) -> tuple[list[int], float]:
        """Unplaced completed ops that may go next, and the horizon: the earliest end of an
        unplaced completed op (nothing invoked after it may go before it)."""
        horizon = float("inf")
        j = lo
        found = []
        while j < n and inv[j] <= horizon:
            if not cmask >> (j - lo) & 1:
                found.append(j)
                if end[j] < horizon:
                    horizon = end[j]
            j += 1
        return [j for j in found if inv[j] <= horizon], horizon

    def unknown_children(
        lo: int, cmask: int, imask: int, state: State, pend: tuple[int, State]
    ) -> list[int]:
        """Unknown ops worth placing now: ones the next op needs (see the module docstring).
        That next op is an unknown CAS, or a completed op that may go next but disagrees
        with ``state``: a read of another value, a successful CAS expecting another value,
        or a failed CAS expecting ``state`` (then any other value does)."""
        cands, horizon = frontier(lo, cmask)
        limit = bisect.bisect_right(u_inv, horizon)
        need: set[State] = set()
        displace = state in u_cas_expects  # an unknown CAS expecting state may follow
        for j in cands:
            y = done[j]
            if step(state, y)[0]:
                continue
            if y.kind is Kind.GET:
                need.add(y.result if not isinstance(y.result, bool) else None)
            elif y.result is True:
                need.add(y.expect)
            else:
                displace = True
        if displace:
            pool: Iterable[int] = range(limit)
        else:
            pool = sorted(
                {x for v in need | u_cas_expects for x in u_by_value.get(v, ())}
                | set(u_cas_by_expect.get(state, ()))
            )
        out = []
        for x in pool:
            if x >= limit or imask >> x & 1:
                continue
            op = unknown[x]
            after = step(state, op)[1]
            if after == state:
                continue  # changes nothing: could be left out
            if not (displace or after in need or after in u_cas_expects):
                continue
            if pend is _NO_PEND or may_follow(pend, state, op):
                out.append(x)
        return out

    def may_follow(pend: tuple[int, State], state: State, y: Op) -> bool:
        """May ``y`` come right after the unknown op placed from state ``pend[1]`` (giving
        ``state``)? Not if that op could be left out, or moved after a completed ``y``."""
        x = unknown[pend[0]]
        ok_without, after_without = step(pend[1], y)
        if not ok_without:
            return True  # y needs it
        _, after_with = step(state, y)
        if after_without == after_with:
            return False
        return y.indeterminate or step(after_without, x)[1] != after_with

    # depth-first; a frame: (lo, completed mask from lo, unknown mask, state, pending unknown,
    # children, next child, horizon, whether the unknown children were added)
    Frame = tuple[int, int, int, State, tuple[int, State], list[int], int, float, bool]

    def make_frame(lo: int, cmask: int, imask: int, state: State, pend: tuple[int, State]) -> Frame:
        cands, horizon = frontier(lo, cmask)
        children = []
        for j in cands:
            ok, _ = step(state, done[j])
            if ok and (pend is _NO_PEND or may_follow(pend, state, done[j])):
                children.append(j)
        return (lo, cmask, imask, state, pend, children, 0, horizon, False)

    stack: list[Frame] = [make_frame(0, 0, 0, initial, _NO_PEND)]
    try:
        while stack:
            lo, cmask, imask, state, pend, children, k, horizon, expanded = stack.pop()
            if lo == n:
                return KeyResult(
                    key,
                    True,
                    len(ops),
                    placed=n,
                    states=states,
                    seconds=time.monotonic() - started,
                )
            depth = lo + cmask.bit_count()
            if depth > best_depth:
                best_depth = depth
                cands, _ = frontier(lo, cmask)
                best_stuck = [done[j] for j in cands]
            if k == len(children) and not expanded:
                # completed children exhausted: now try placing an unknown op first
                children = children + [
                    -1 - x for x in unknown_children(lo, cmask, imask, state, pend)
                ]
                expanded = True
            pushed = False
            while k < len(children):
                c = children[k]
                k += 1
                if c >= 0:
                    op = done[c]
                    _, nxt = step(state, op)
                    nlo, ncmask = lo, cmask | 1 << (c - lo)
                    while ncmask & 1:
                        ncmask >>= 1
                        nlo += 1
                    nimask, npend = imask, _NO_PEND
                else:
                    x = -1 - c
                    _, nxt = step(state, unknown[x])
                    nlo, ncmask, nimask, npend = lo, cmask, imask | 1 << x, (x, state)
                memo, used = memo_key(nlo, ncmask, nimask, nxt, npend)
                if seen.get(memo, used + 1) <= used:
                    continue
                seen[memo] = used
                states += 1
                if max_states is not None and states > max_states:
                    raise _OutOfBudget
                if deadline is not None and states & 255 == 0 and time.monotonic() > deadline:
                    raise _OutOfBudget
                stack.append((lo, cmask, imask, state, pend, children, k, horizon, expanded))
                stack.append(make_frame(nlo, ncmask, nimask, nxt, npend))
                pushed = True
                break
            if not pushed and not expanded:
                stack.append((lo, cmask, imask, state, pend, children, k, horizon, False))
        out_of_budget = False
    except _OutOfBudget:
        out_of_budget = True
    # (an unknown operation never placed simply never happened: the search succeeds once
    # every completed operation is placed)
    return KeyResult(
        key,
        False,
        len(ops),
        stuck=best_stuck,
        placed=best_depth,
        unknown=out_of_budget,
        states=states,
        seconds=time.monotonic() - started,
    )


def check(history: Iterable[Op]) -> list[KeyResult]:
    """Check every key; results for all keys, failing ones first."""
    by_key: dict[bytes, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    results = [check_key(k, v) for k, v in sorted(by_key.items())]
    return sorted(results, key=lambda r: r.ok)


def revisions_go_backwards(history: Iterable[Op]) -> list[tuple[Op, Op]]:
    """Pairs (earlier, later) of one client's completed operations where the response
    revision went down: a client must never see the store go back in time."""
    by_client: dict[int, list[Op]] = defaultdict(list)
    for op in history:
        if op.complete is not None and op.revision:
            by_client[op.client].append(op)
    bad = []
    for ops in by_client.values():
        ops.sort(key=lambda o: o.invoke)
        for a, b in pairwise(ops):
            if b.revision < a.revision:
                bad.append((a, b))
    return bad

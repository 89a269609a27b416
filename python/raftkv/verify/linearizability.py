"""Linearizability of a key-value history, checked key by key (a register per key).

The search is Wing & Gong's, with Lowe's memoization: repeatedly pick an operation that can
go next (one invoked before every not-yet-placed completed operation finished), apply it to
the register model, and backtrack when its observed result disagrees. Operations with an
unknown outcome may be placed anywhere after their invocation, or left out. Keys are
independent (linearizability is compositional), which keeps each search small.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from raftkv.verify.history import Kind, Op

State = bytes | None


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


@dataclass
class KeyResult:
    key: bytes
    ok: bool
    operations: int
    # when not ok: the operations that could not be placed at the deepest point reached
    stuck: list[Op] = field(default_factory=list)
    placed: int = 0


def check_key(key: bytes, ops: Sequence[Op], initial: State = None) -> KeyResult:
    ops = sorted(ops, key=lambda o: o.invoke)
    n = len(ops)
    required = 0
    for i, op in enumerate(ops):
        if not op.indeterminate:
            required |= 1 << i
    seen: set[tuple[int, State]] = set()
    best_depth = -1
    best_frontier: list[int] = []

    def candidates(mask: int) -> list[int]:
        """Unplaced ops invoked before every unplaced op's completion (unknown outcomes
        never constrain: they could complete arbitrarily late)."""
        horizon = min((ops[i].end for i in range(n) if not mask >> i & 1), default=0.0)
        return [i for i in range(n) if not mask >> i & 1 and ops[i].invoke <= horizon]

    # depth-first; a frame is (placed mask, register state, candidates, next one to try)
    stack: list[tuple[int, State, list[int], int]] = [(0, initial, candidates(0), 0)]
    while stack:
        mask, state, cands, k = stack.pop()
        if mask & required == required:
            return KeyResult(key, True, n, placed=n)
        depth = bin(mask & required).count("1")
        if depth > best_depth:
            best_depth, best_frontier = depth, cands
        while k < len(cands):
            i = cands[k]
            k += 1
            ok, nxt = step(state, ops[i])
            new_mask = mask | 1 << i
            if ok and (new_mask, nxt) not in seen:
                seen.add((new_mask, nxt))
                stack.append((mask, state, cands, k))
                stack.append((new_mask, nxt, candidates(new_mask), 0))
                break
    # (an operation with an unknown outcome that is never placed simply never happened: the
    # search succeeds once every completed operation is placed)
    return KeyResult(key, False, n, stuck=[ops[i] for i in best_frontier], placed=best_depth)


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

"""Property tests of the linearizability checker.

Small random histories are compared with a brute-force oracle (every real-time-respecting
order of every subset of the unknown operations), which checks the search's shortcuts (the
window, the normal form for unknown outcomes, the pruning) against the definition. Large
histories produced by a real store must pass, and each kind of certain violation must fail.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

import pytest

from raftkv.verify.history import Kind, Op
from raftkv.verify.linearizability import State, check_key, step
from raftkv.verify.simulate import MUTATIONS, Workload, linearizable_history

K = b"k"


def brute_force(ops: list[Op], initial: State = None) -> bool:
    """Linearizable by the definition: some order of all completed ops and some of the unknown
    ones, respecting real time (a before b when a ended before b started), fits a register."""
    n = len(ops)

    def go(placed: frozenset[int], state: State) -> bool:
        if all(i in placed or ops[i].indeterminate for i in range(n)):
            return True
        for i in range(n):
            if i in placed:
                continue
            # i may go next only if no unplaced op finished before it started
            if any(j not in placed and j != i and ops[j].end < ops[i].invoke for j in range(n)):
                continue
            ok, nxt = step(state, ops[i])
            if ok and go(placed | {i}, nxt):
                return True
        return False

    return go(frozenset(), initial)


def random_small_history(rng: random.Random, n: int) -> list[Op]:
    """Arbitrary (mostly not linearizable) small histories over a tiny value pool, so that
    values repeat and unknown outcomes matter."""
    pool = [b"a", b"b", b"c"]
    ops = []
    for i in range(n):
        t0 = rng.uniform(0, 10)
        t1: float | None = t0 + rng.uniform(0.1, 4)
        if rng.random() < 0.3:
            t1 = None
        kind = rng.choice(list(Kind))
        if kind is Kind.PUT:
            ops.append(Op(i, K, kind, t0, t1, value=rng.choice(pool)))
        elif kind is Kind.DELETE:
            ops.append(Op(i, K, kind, t0, t1))
        elif kind is Kind.GET:
            ops.append(Op(i, K, kind, t0, t1, result=rng.choice([*pool, None])))
        else:
            ops.append(
                Op(
                    i, K, kind, t0, t1, value=rng.choice(pool),
                    expect=rng.choice([*pool, None]),
                    result=None if t1 is None else rng.random() < 0.5,
                )
            )  # fmt: skip
    return ops


def test_agrees_with_brute_force_on_small_random_histories() -> None:
    rng = random.Random(2026)
    verdicts: dict[bool, int] = defaultdict(int)
    for _ in range(3000):
        ops = random_small_history(rng, rng.randint(1, 7))
        initial = rng.choice([None, b"a"])
        expected = brute_force(ops, initial)
        got = check_key(K, ops, initial)
        assert not got.unknown
        assert got.ok == expected, [o.describe() for o in ops]
        verdicts[expected] += 1
    # both outcomes were exercised substantially
    assert verdicts[True] > 300 and verdicts[False] > 300


def test_agrees_with_brute_force_on_small_simulated_histories() -> None:
    """Small histories from a real store (with crashes) pass; so does the oracle, and
    mutating one result usually breaks both in the same way."""
    tried = 0
    for seed in range(400):
        w = Workload(clients=3, keys=1, seconds=0.01, ops_per_second=600, crashes=1)
        ops = linearizable_history(w, seed)
        if len(ops) > 9:
            continue  # too many for the oracle
        tried += 1
        assert brute_force(ops)
        assert check_key(ops[0].key, ops).ok
        rng = random.Random(seed)
        i = rng.randrange(len(ops))
        o = ops[i]
        if o.kind is Kind.GET and not o.indeterminate:
            mutated = [*ops[:i], replace(o, result=b"v0"), *ops[i + 1 :]]
            assert check_key(o.key, mutated).ok == brute_force(mutated)
    assert tried > 100


def by_key(ops: list[Op]) -> dict[bytes, list[Op]]:
    out: dict[bytes, list[Op]] = defaultdict(list)
    for o in ops:
        out[o.key].append(o)
    return out


WORKLOAD = Workload(clients=6, keys=4, seconds=3.0, ops_per_second=800, crashes=3)


@pytest.mark.parametrize("seed", range(5))
def test_histories_of_a_real_store_pass(seed: int) -> None:
    h = linearizable_history(WORKLOAD, seed)
    assert sum(o.indeterminate for o in h) > 5  # the crashes left unknown outcomes
    for key, ops in by_key(h).items():
        r = check_key(key, ops)
        assert r.ok, (key, r.stuck)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_certain_violations_fail(name: str) -> None:
    applied = 0
    for seed in range(8):
        h = linearizable_history(WORKLOAD, seed)
        bad = MUTATIONS[name](h, random.Random(seed))
        if bad is None:
            continue
        applied += 1
        changed = {o.key for o in set(bad) ^ set(h)}
        results = {k: check_key(k, ops) for k, ops in by_key(bad).items()}
        assert sorted(k for k, r in results.items() if not r.ok) == sorted(changed)
        assert all(r.verdict == "violation" for k, r in results.items() if k in changed)
    assert applied >= 3


def test_a_budget_gives_unknown_not_ok() -> None:
    h = linearizable_history(WORKLOAD, 1)
    key, ops = next(iter(by_key(h).items()))
    r = check_key(key, ops, max_states=10)
    assert not r.ok and r.unknown and r.verdict == "unknown"
    r = check_key(key, ops, deadline=0.0)  # checked every 256 states
    assert not r.ok and r.unknown

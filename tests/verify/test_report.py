"""check_history: verdicts, named anomalies, and the shrunk sub-histories it reports."""

from __future__ import annotations

import random

import pytest

from raftkv.verify.history import Kind, Op
from raftkv.verify.linearizability import check_key
from raftkv.verify.report import _closure, check_history, lost_writes, shrink
from raftkv.verify.simulate import MUTATIONS, Workload, linearizable_history
from tests.verify.test_checker_properties import brute_force, random_small_history

K = b"k"


def put(client: int, t0: float, t1: float | None, value: bytes, rev: int = 0) -> Op:
    return Op(client, K, Kind.PUT, t0, t1, value=value, revision=rev)


def get(client: int, t0: float, t1: float | None, seen: bytes | None, rev: int = 0) -> Op:
    return Op(client, K, Kind.GET, t0, t1, result=seen, revision=rev)


WORKLOAD = Workload(clients=6, keys=4, seconds=3.0, ops_per_second=800, crashes=3)


def test_a_good_history_is_ok_with_stats() -> None:
    h = linearizable_history(WORKLOAD, 4)
    r = check_history(h, budget_s=30)
    assert r.ok and r.verdict == "ok" and r.anomalies == [] and r.failures == []
    assert r.stats["ops"] == len(h)
    assert r.stats["keys"] == 4
    assert sum(int(r.stats[k.value]) for k in Kind) == len(h)
    assert r.stats["indeterminate"] == sum(o.indeterminate for o in h) > 0
    assert r.render().startswith("history check: OK")


def test_a_stale_read_is_shrunk_to_its_cause() -> None:
    noise = [get(3, 0.1 * i, 0.1 * i + 0.05, None) for i in range(5)]
    h = [
        *noise,
        put(1, 1, 2, b"a"),
        get(2, 2.5, 3, b"a"),
        put(1, 4, 5, b"b"),
        get(2, 5.5, 6, b"b"),
        get(3, 7, 8, b"a"),  # stale: b overwrote a before this began
        get(2, 9, 10, b"b"),
    ]
    r = check_history(h)
    assert not r.ok and r.verdict == "anomalies"
    assert r.anomalies[0] == "key b'k': not linearizable (11 ops)"
    (f,) = r.failures
    assert f.shrink_finished
    assert set(f.shrunk) == {put(1, 1, 2, b"a"), put(1, 4, 5, b"b"), get(3, 7, 8, b"a")}
    text = r.render()
    assert "smallest failing sub-history, 3 of 11 ops (minimal)" in text
    table = text.splitlines()[-4:]
    assert table[0].split() == ["client", "invoke", "complete", "op", "result", "revision"]
    assert [row.split()[3:] for row in table[1:]] == [
        ["put", "b'a'", "ok"],
        ["put", "b'b'", "ok"],
        ["get", "b'a'"],
    ]


def test_a_lost_write_is_named() -> None:
    h = [
        put(1, 0, 1, b"a"),
        put(2, 2, 3, b"b", rev=7),
        put(3, 2.5, None, b"c"),
        get(0, 10, 11, b"a"),
    ]
    assert [(w.value, r.result) for w, r in lost_writes(h)] == [(b"b", b"a")]
    r = check_history(h)
    assert any(
        a.startswith("key b'k': lost acknowledged write: client 2 put b'b'") for a in r.anomalies
    )
    # seeing an unknown write that may have come after it is no loss
    assert lost_writes([*h[:3], get(0, 10, 11, b"c")]) == []
    # nor is seeing a write concurrent with it
    assert lost_writes([put(1, 0, 3, b"a"), put(2, 1, 2, b"b"), get(0, 10, 11, b"a")]) == []
    # a missing key after an acknowledged put is a loss too (initially absent)
    assert len(lost_writes([put(1, 0, 1, b"a"), get(0, 10, 11, None)])) == 1
    assert lost_writes([put(1, 0, 1, b"a"), get(0, 10, 11, b"a")]) == []


def test_revisions_going_backwards_are_named() -> None:
    h = [put(1, 0, 1, b"a", rev=5), get(1, 2, 3, b"a", rev=4)]
    r = check_history(h)
    assert not r.ok
    assert r.anomalies == [
        "client 1: revision went backwards from 5 (put b'a' at 0.000000) to 4 (get at 2.000000)"
    ]


def test_initial_values_are_used() -> None:
    h = [get(1, 0, 1, b"x"), put(1, 2, 3, b"a"), get(1, 4, 5, b"a")]
    assert not check_history(h).ok
    assert check_history(h, initial={K: b"x"}).ok


def test_out_of_budget_is_unknown_not_ok() -> None:
    h = linearizable_history(WORKLOAD, 2)
    r = check_history(h, budget_s=0.0)
    assert not r.ok and r.verdict == "unknown"
    assert sorted(r.unknown_keys) == sorted({o.key for o in h})
    assert all("unknown, not ok" in a for a in r.anomalies)
    assert r.render().startswith("history check: UNKNOWN")


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_certain_violation_is_reported_and_shrunk(name: str) -> None:
    for seed in range(8):
        h = linearizable_history(WORKLOAD, seed)
        bad = MUTATIONS[name](h, random.Random(seed))
        if bad is not None:
            break
    assert bad is not None
    r = check_history(bad, budget_s=60)
    assert not r.ok and r.verdict == "anomalies"
    (f,) = r.failures
    assert f.verdict == "violation"
    assert set(f.shrunk) <= set(bad)
    assert 1 <= len(f.shrunk) <= 5
    assert check_key(f.key, f.shrunk).verdict == "violation"


def test_shrinking_steps_keep_a_certificate() -> None:
    """Whatever is removed (with what the closure adds), a linearizable history stays
    linearizable: so a shrunk history that fails shows that the original fails."""
    rng = random.Random(11)
    checked = 0
    for _ in range(3000):
        ops = random_small_history(rng, rng.randint(2, 7))
        if not brute_force(ops):
            continue
        remove = {i for i in range(len(ops)) if rng.random() < 0.4}
        gone = _closure(ops, remove)
        assert brute_force([o for i, o in enumerate(ops) if i not in gone])
        checked += 1
    assert checked > 500


def test_shrinking_is_bounded_in_time() -> None:
    ops = [put(1, 0, 1, b"a"), put(1, 2, 3, b"b"), get(2, 4, 5, b"a")]
    calls = []

    def fails(cand: list[Op]) -> bool:
        calls.append(cand)
        return True

    shrunk, finished = shrink(ops, deadline=0.0, fails=fails)
    assert not finished and shrunk == ops and calls == []


def test_a_lost_write_proves_a_key_whose_search_ran_out_of_budget() -> None:
    h = linearizable_history(WORKLOAD, 3)
    bad = MUTATIONS["lost acknowledged write"](h, random.Random(3))
    assert bad is not None
    r = check_history(bad, budget_s=0.0)
    assert not r.ok
    proven = [f for f in r.failures if f.verdict == "violation"]
    assert len(proven) == 1 and proven[0].evidence == "evidence of the lost write"
    assert any("the lost acknowledged write below proves it" in a for a in r.anomalies)
    # the evidence ends with the lost write and the final read that missed it
    *writers, w, final = proven[0].shrunk
    assert w.end < final.invoke and final.result != w.value
    assert all(z.value == final.result for z in writers)
    assert "evidence of the lost write" in r.render()

"""The checker is itself checked: hand-made bad histories are caught, good ones pass."""

from __future__ import annotations

from raftkv.verify.history import Kind, Op
from raftkv.verify.linearizability import check, check_key, revisions_go_backwards

K = b"k"


def put(client: int, t0: float, t1: float | None, value: bytes, rev: int = 0) -> Op:
    return Op(client, K, Kind.PUT, t0, t1, value=value, revision=rev)


def get(client: int, t0: float, t1: float | None, seen: bytes | None, rev: int = 0) -> Op:
    return Op(client, K, Kind.GET, t0, t1, result=seen, revision=rev)


def cas(
    client: int, t0: float, t1: float | None, expect: bytes | None, value: bytes, ok: bool | None
) -> Op:
    return Op(client, K, Kind.CAS, t0, t1, value=value, expect=expect, result=ok)


def test_sequential_history_passes() -> None:
    h = [put(1, 0, 1, b"a"), get(1, 2, 3, b"a"), put(1, 4, 5, b"b"), get(1, 6, 7, b"b")]
    assert check_key(K, h).ok


def test_concurrent_ops_may_take_either_order() -> None:
    h = [put(1, 0, 10, b"a"), put(2, 1, 9, b"b"), get(3, 11, 12, b"a")]
    assert check_key(K, h).ok
    h = [put(1, 0, 10, b"a"), put(2, 1, 9, b"b"), get(3, 11, 12, b"b")]
    assert check_key(K, h).ok


def test_stale_read_is_caught() -> None:
    h = [put(1, 0, 1, b"a"), put(1, 2, 3, b"b"), get(2, 4, 5, b"a")]
    r = check_key(K, h)
    assert not r.ok
    assert any(o.kind is Kind.GET for o in r.stuck)


def test_lost_write_is_caught() -> None:
    """An acknowledged put that a later read (after it completed) does not see."""
    h = [put(1, 0, 1, b"a"), put(2, 2, 3, b"b"), get(3, 10, 11, b"a")]
    assert not check_key(K, h).ok
    h = [put(1, 0, 1, b"a"), get(3, 10, 11, None)]
    assert not check_key(K, h).ok


def test_write_applied_twice_is_caught() -> None:
    """a reappears after b overwrote it, though a was written once."""
    h = [put(1, 0, 1, b"a"), put(2, 2, 3, b"b"), get(3, 4, 5, b"b"), get(3, 6, 7, b"a")]
    assert not check_key(K, h).ok


def test_unknown_outcomes_may_or_may_not_have_happened() -> None:
    happened = [put(1, 0, 1, b"a"), put(2, 2, None, b"b"), get(3, 5, 6, b"b")]
    assert check_key(K, happened).ok
    never = [put(1, 0, 1, b"a"), put(2, 2, None, b"b"), get(3, 5, 6, b"a")]
    assert check_key(K, never).ok
    # but it cannot take effect before it was invoked
    early = [put(1, 0, 1, b"a"), get(3, 2, 3, b"b"), put(2, 5, None, b"b")]
    assert not check_key(K, early).ok


def test_compare_and_set() -> None:
    good = [put(1, 0, 1, b"a"), cas(2, 2, 3, b"a", b"b", True), get(1, 4, 5, b"b")]
    assert check_key(K, good).ok
    wrong_success = [put(1, 0, 1, b"a"), cas(2, 2, 3, b"x", b"b", True)]
    assert not check_key(K, wrong_success).ok
    wrong_failure = [put(1, 0, 1, b"a"), cas(2, 2, 3, b"a", b"b", False)]
    assert not check_key(K, wrong_failure).ok


def test_keys_are_checked_independently() -> None:
    a = [put(1, 0, 1, b"x"), get(1, 2, 3, b"x")]
    b = [Op(2, b"other", Kind.PUT, 0, 1, value=b"y"), Op(2, b"other", Kind.GET, 2, 3, result=b"z")]
    results = check([*a, *b])
    assert [(r.key, r.ok) for r in results] == [(b"other", False), (K, True)]


def test_revision_going_backwards_is_caught() -> None:
    h = [put(1, 0, 1, b"a", rev=5), get(1, 2, 3, b"a", rev=4), get(2, 2, 3, b"a", rev=5)]
    bad = revisions_go_backwards(h)
    assert len(bad) == 1 and bad[0][1].revision == 4
    assert revisions_go_backwards([put(1, 0, 1, b"a", rev=5), get(1, 2, 3, b"a", rev=5)]) == []


def test_a_longer_random_linearizable_history_passes() -> None:
    """A history produced by a real sequential register, with overlapping intervals."""
    import random

    rng = random.Random(7)
    state: bytes | None = None
    ops = []
    t = 0.0
    for i in range(300):
        t += 1
        start = t - rng.random() * 0.9  # overlaps the previous op a little
        if rng.random() < 0.5:
            v = b"v%d" % i
            ops.append(put(rng.randrange(4), start, t + 0.5, v))
            state = v
        else:
            ops.append(get(rng.randrange(4), start, t + 0.5, state))
    assert check_key(K, ops).ok

"""Entry codec: round trips, damage detection, no crash on arbitrary bytes."""

from __future__ import annotations

import contextlib
import random

import pytest

from raftkv._native import (
    ENTRY_OVERHEAD,
    CodecError,
    decode_entries,
    decode_hard_state,
    encode_entries,
    encode_entry,
    encode_hard_state,
    entry_batch_info,
)


def test_round_trip_keeps_every_field() -> None:
    entries = [(i, 3 + i // 10, i % 2, bytes([i % 256]) * i) for i in range(1, 50)]
    data = encode_entries(entries)
    assert decode_entries(data) == entries
    assert len(data) == sum(ENTRY_OVERHEAD + len(e[3]) for e in entries)


def test_batch_is_the_concatenation_of_single_entries() -> None:
    a, b = (7, 2, 0, b"alpha"), (8, 2, 1, b"beta")
    assert encode_entries([a, b]) == encode_entry(*a) + encode_entry(*b)


def test_batch_info() -> None:
    data = encode_entries([(10, 1, 0, b"x"), (11, 2, 0, b"y"), (12, 2, 0, b"")])
    assert entry_batch_info(data) == (3, 10, 12, 2)
    gap = encode_entries([(10, 1, 0, b"x"), (12, 1, 0, b"y")])
    with pytest.raises(CodecError, match="does not follow"):
        entry_batch_info(gap)


def test_hard_state_round_trip_and_kind_check() -> None:
    hs = encode_hard_state(5, 2, 99)
    assert decode_hard_state(hs) == (5, 2, 99)
    with pytest.raises(CodecError):
        decode_hard_state(encode_entry(1, 1, 0, b"x"))
    with pytest.raises(CodecError, match="where an entry was expected"):
        decode_entries(hs)


def test_every_single_byte_flip_is_detected() -> None:
    data = encode_entry(42, 7, 0, b"some payload worth protecting")
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0x01
        with pytest.raises(CodecError):
            decode_entries(bytes(damaged))


def test_every_truncation_is_detected() -> None:
    data = encode_entries([(1, 1, 0, b"first"), (2, 1, 0, b"second")])
    for cut in range(1, len(data)):
        if cut == len(encode_entry(1, 1, 0, b"first")):
            continue  # a clean record boundary is a valid shorter batch
        with pytest.raises(CodecError, match=r"truncated|invalid record length"):
            decode_entries(data[:cut])


def test_arbitrary_bytes_raise_codec_error_and_never_crash() -> None:
    rng = random.Random(1234)
    valid = encode_entries([(i, 1, 0, b"v" * i) for i in range(1, 20)])
    for _ in range(5000):
        kind = rng.random()
        if kind < 0.4:
            data = rng.randbytes(rng.randrange(0, 200))
        else:
            damaged = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            data = bytes(damaged[: rng.randrange(len(damaged) + 1)])
        with contextlib.suppress(CodecError):
            decode_entries(data)
        with contextlib.suppress(CodecError):
            entry_batch_info(data)


def test_huge_declared_length_is_refused_not_allocated() -> None:
    data = (0xFFFFFFF0).to_bytes(4, "little") + b"\0" * 40
    with pytest.raises(CodecError, match="invalid record length"):
        decode_entries(data)

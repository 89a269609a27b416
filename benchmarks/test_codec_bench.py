"""Entry codec: encode and decode batches of 64 entries of 256 bytes."""

from __future__ import annotations

from typing import Any

from raftkv._native import decode_entries, encode_entries

ENTRIES = [(i, 1, 0, b"v" * 256) for i in range(1, 65)]


def test_encode_64x256(benchmark: Any, figures: dict[str, dict[str, float]]) -> None:
    data = benchmark(encode_entries, ENTRIES)
    assert len(data) > 64 * 256
    figures["codec encode 64x256B"] = {"entries/s": 64 / benchmark.stats["mean"]}


def test_decode_64x256(benchmark: Any, figures: dict[str, dict[str, float]]) -> None:
    data = encode_entries(ENTRIES)
    out = benchmark(decode_entries, data)
    assert out == ENTRIES
    figures["codec decode 64x256B"] = {"entries/s": 64 / benchmark.stats["mean"]}

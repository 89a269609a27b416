"""SIGKILL a process in the middle of appending; every acknowledged entry survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from raftkv._native import Wal, decode_entries
from tests.native.helpers import payload

ROOT = Path(__file__).resolve().parents[2]


def run_until_acked(path: Path, segment_size: int, seed: int, acks: int) -> tuple[int, int]:
    """Start the writer child, read ``acks`` acknowledgements, SIGKILL it mid-append.

    Returns (last index before this run, last acknowledged index)."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'python'}{os.pathsep}{ROOT}")
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.native.wal_writer_child",
            str(path),
            str(segment_size),
            str(seed),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert child.stdout is not None
    try:
        first = child.stdout.readline().split()
        assert first[0] == "ready", first
        start = int(first[1])
        acked = start
        for _ in range(acks):
            line = child.stdout.readline()
            assert line.startswith("acked "), line
            acked = int(line.split()[1])
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    return start, acked


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_acknowledged_entries_survive_sigkill(tmp_path: Path, seed: int) -> None:
    segment_size = 64 * 1024  # small, so crashes also land around segment rotation
    acked = 0
    for round_ in range(3):
        start, acked_now = run_until_acked(tmp_path, segment_size, seed * 10 + round_, 60)
        assert start >= acked, "a restart never loses acknowledged entries"
        acked = acked_now
        with Wal(tmp_path, segment_size) as wal:
            assert wal.last_index >= acked
            entries = decode_entries(wal.read(1, acked + 1))
            assert [e[0] for e in entries] == list(range(1, acked + 1))
            for index, _term, _type, data in entries:
                assert data == payload(index, len(data))

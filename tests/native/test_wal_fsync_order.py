"""fdatasync really runs before completion is signalled: checked on real syscalls.

A child process appends under ``strace``; in the WAL writer thread's syscall sequence,
every completion signal (the 8-byte write to the eventfd) must follow an fdatasync that
itself follows the data writes it covers, with no data written in between.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from raftkv._native import Wal
from tests.native.helpers import batch
wal = Wal(sys.argv[1])
print(wal.notify_fd, flush=True)
seqs = []
for i in range(200):
    seqs.append(wal.append(batch(i * 4 + 1, i * 4 + 5)))
    if len(seqs) > 8:
        wal.wait(seqs.pop(0))
wal.wait(seqs[-1])
wal.close()
"""


def test_every_completion_follows_an_fdatasync(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'python'}{os.pathsep}{ROOT}")
    out = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=pwrite64,fdatasync,write",
            "-o",
            str(trace),
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "wal"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    notify_fd = int(out.stdout.split()[0])
    calls = []
    for line in trace.read_text().splitlines():
        m = re.match(r"(\d+)\s+(\w+)\((\d+)", line)
        if m:
            calls.append((int(m.group(1)), m.group(2), int(m.group(3))))
    signals = [c for c in calls if c[1] == "write" and c[2] == notify_fd]
    assert len(signals) >= 10, "the writer signalled completions"
    writer_tid = signals[0][0]
    state = "idle"  # idle -> dirty (data written) -> synced (fdatasync) -> idle (signal)
    syncs = 0
    for tid, name, _fd in calls:
        if tid != writer_tid:
            continue
        if name == "pwrite64":
            state = "dirty"
        elif name == "fdatasync":
            if state == "dirty":
                syncs += 1
            state = "synced"
        elif name == "write" and _fd == notify_fd:
            assert state == "synced", "completion signalled without an fdatasync after the data"
            state = "idle"
    assert syncs >= len(signals) - 1

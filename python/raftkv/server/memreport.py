"""Where a member's memory goes: a JSON report written on SIGUSR1.

Enabled by ``RAFTKV_MEMORY_REPORT=<path>`` in the member's environment (``{pid}`` in the path
becomes the process id; off by default: it costs nothing then). With ``RAFTKV_TRACEMALLOC=1``
as well, Python allocations are traced from start-up (slows the member down) and the report
lists the top allocation sites.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV_REPORT = "RAFTKV_MEMORY_REPORT"
ENV_TRACE = "RAFTKV_TRACEMALLOC"


def proc_status() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile... of this process, in KiB (Linux)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.startswith(("Vm", "Rss")):
                    out[name] = int(rest.split()[0])
    except OSError:
        pass
    return out


def malloc_info() -> dict[str, int]:
    """glibc's view of its heap (mallinfo2): bytes in use and free-but-held, all arenas."""

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = MallInfo2
    mi = fn()
    return {
        "arena_bytes": mi.arena,  # sbrk/arena heap obtained from the OS
        "mmap_bytes": mi.hblkhd,  # large blocks mmapped directly
        "in_use_bytes": mi.uordblks,
        "free_held_bytes": mi.fordblks,
    }


def install(sources: dict[str, Callable[[], Any]]) -> None:
    """Write a report to ``$RAFTKV_MEMORY_REPORT`` on each SIGUSR1, if that is set.

    ``sources`` name callables giving JSON-able figures (storage, Raft log...)."""
    path = os.environ.get(ENV_REPORT)
    if not path:
        return
    path = path.replace("{pid}", str(os.getpid()))  # one file per member of a local cluster
    if os.environ.get(ENV_TRACE) == "1" and not tracemalloc.is_tracing():
        tracemalloc.start(1)

    def report(_signum: int, _frame: object) -> None:
        doc: dict[str, Any] = {"status_kib": proc_status(), "malloc": malloc_info()}
        for name, fn in sources.items():
            try:
                doc[name] = fn()
            except Exception as exc:  # a report must never take the member down
                doc[name] = repr(exc)
        doc["gc_tracked"] = len(gc.get_objects())  # not counting frozen ones
        doc["gc_frozen"] = gc.get_freeze_count()
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot()
            stats = snap.statistics("lineno")
            doc["tracemalloc_total"] = sum(s.size for s in stats)
            doc["tracemalloc_top"] = [[str(s.traceback), s.size, s.count] for s in stats[:25]]
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)  # readers never see a half-written report
        print(f"memory report written to {path}", file=sys.stderr)

    signal.signal(signal.SIGUSR1, report)

"""A small progress bar for long operations, written to stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``[#####.....]  52%  1,234/2,345 batches  12,345/s``; redraws at most 10 times a second."""

    def __init__(
        self, total: int, unit: str, stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.total = max(total, 1)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.perf_counter()
        self._last_draw = 0.0
        self._tty = self.stream.isatty()
        self._last_decile = -1

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if done < self.total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        frac = min(done / self.total, 1.0)
        filled = int(frac * self.width)
        rate = done / (now - self.started) if now > self.started else 0.0
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {frac:4.0%}  "
            f"{done:,}/{self.total:,} {self.unit}  {rate:,.0f}/s"
        )
        if self._tty:
            self.stream.write("\r" + line)
            if done >= self.total:
                self.stream.write("\n")
        elif int(frac * 10) > self._last_decile:
            # Not a terminal (a log file, CI): one line per 10% instead of redraws.
            self._last_decile = int(frac * 10)
            self.stream.write(line + "\n")
        self.stream.flush()

"""Child process for crash tests: appends forever, printing each durable last index.

Usage: python -m tests.native.wal_writer_child DIR SEGMENT_SIZE SEED

It keeps up to 8 batches in flight and prints ``acked N`` once every entry up to N is
durable, so the parent knows exactly which entries were acknowledged before it kills us.
"""

from __future__ import annotations

import random
import sys
from collections import deque

from raftkv._native import Wal
from tests.native.helpers import batch


def main() -> None:
    path, segment_size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    wal = Wal(path, segment_size)
    next_index = wal.last_index + 1
    in_flight: deque[tuple[int, int]] = deque()
    out = sys.stdout
    out.write(f"ready {wal.last_index}\n")
    out.flush()
    while True:
        count = rng.randrange(1, 40)
        seq = wal.append(batch(next_index, next_index + count, size=rng.randrange(1, 600)))
        next_index += count
        in_flight.append((seq, next_index - 1))
        if len(in_flight) >= 8:
            seq, last = in_flight.popleft()
            wal.wait(seq)
            out.write(f"acked {last}\n")
            out.flush()


if __name__ == "__main__":
    main()

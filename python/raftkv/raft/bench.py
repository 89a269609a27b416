"""Throughput of the Raft core alone: a 3-member in-memory cluster, no disk, no sockets.

``python -m raftkv.raft.bench [--batches 2000] [--batch 64] [--size 256]`` proposes batches of
entries on the leader and delivers every message synchronously (lockstep: each batch commits
before the next is proposed), and prints committed entries per second. ``run()`` is the same for
pytest-benchmark.
"""

from __future__ import annotations

import argparse
import random
import time

from .confchange import ConfChange, ConfChangeType
from .core import Config, RaftCore
from .log import MemoryStorage
from .messages import NONE, Entry, EntryType, HardState, Message, Role


class LockstepCluster:
    def __init__(self, n: int = 3) -> None:
        ids = list(range(1, n + 1))
        self.storages: dict[int, MemoryStorage] = {}
        self.cores: dict[int, RaftCore] = {}
        self.msgs: list[Message] = []
        self.applied = 0
        boot = [
            Entry(i, 1, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_VOTER, x).encode())
            for i, x in enumerate(ids, 1)
        ]
        for i in ids:
            st = MemoryStorage()
            st.append(boot)
            self.storages[i] = st
            self.cores[i] = RaftCore(Config(i), st, random.Random(i), HardState(1, NONE, n))
        for i in ids:
            self.process(i)
        self.cores[1].campaign()
        self.process(1)
        self.deliver()
        assert self.cores[1].role == Role.LEADER

    def process(self, i: int) -> None:
        c = self.cores[i]
        st = self.storages[i]
        while c.has_ready():
            rd = c.ready()
            if rd.entries:
                st.append(rd.entries)
            if rd.messages:
                self.msgs.extend(rd.messages)
            if i == 1:
                self.applied += len(rd.committed_entries)
            c.advance()

    def deliver(self) -> None:
        while self.msgs:
            batch, self.msgs = self.msgs, []
            for m in batch:
                self.cores[m.to].step(m)
                self.process(m.to)

    def compact(self, keep: int = 1000) -> None:
        for i, c in self.cores.items():
            st = self.storages[i]
            a = c.log.applied
            if a - st.first_index() > 2 * keep:
                st.create_snapshot(a - keep, c.conf, b"")
                st.compact(a - keep)


def run(batches: int = 2000, batch: int = 64, size: int = 256) -> float:
    """Committed entries per second."""
    cl = LockstepCluster()
    data = [b"x" * size] * batch
    leader = cl.cores[1]
    cl.applied = 0
    t0 = time.perf_counter()
    for r in range(batches):
        leader.propose_batch(data)
        cl.process(1)
        cl.deliver()
        if r % 100 == 99:
            cl.compact()
    dt = time.perf_counter() - t0
    assert cl.applied == batches * batch
    return cl.applied / dt


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m raftkv.raft.bench")
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    rate = run(a.batches, a.batch, a.size)
    print(f"{rate:,.0f} committed entries/s (3 members, batches of {a.batch}, {a.size} B)")


if __name__ == "__main__":
    main()

"""Per-follower replication progress kept by the leader: match/next, state, in-flight window.

States (as in etcd-io/raft):
- PROBE: the leader does not know where the follower's log matches; it sends one append at a
  time (``paused`` after each) and waits for a reply or a heartbeat reply.
- REPLICATE: the follower is known to match; appends are pipelined optimistically (``next`` moves
  ahead on send) limited by the in-flight window (message count and bytes).
- SNAPSHOT: a snapshot is being sent; appends stop until the follower reports it installed it.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


_PROBE = ProgressState.PROBE
_REPLICATE = ProgressState.REPLICATE
_SNAPSHOT = ProgressState.SNAPSHOT


class Inflights:
    """The last index (and byte size) of each append in flight, oldest first."""

    __slots__ = ("bytes", "max_bytes", "max_count", "q")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.q: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def add(self, last: int, size: int) -> None:
        self.q.append((last, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        q = self.q
        while q and q[0][0] <= index:
            self.bytes -= q.popleft()[1]

    def free_first(self) -> None:
        if self.q:
            self.bytes -= self.q.popleft()[1]

    def full(self) -> bool:
        if len(self.q) >= self.max_count:
            return True
        return self.max_bytes > 0 and self.bytes >= self.max_bytes

    def reset(self) -> None:
        self.q.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.q)


class Progress:
    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "snapshot_wait",
        "state",
    )

    def __init__(
        self, next_index: int, max_inflight: int, max_inflight_bytes: int, is_learner: bool = False
    ) -> None:
        self.match = 0
        self.next = next_index
        self.state = _PROBE
        self.paused = False
        self.pending_snapshot = 0
        self.snapshot_wait = 0
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight, max_inflight_bytes)

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.name}, "
            f"paused={self.paused}, inflight={len(self.inflights)})"
        )

    def become_probe(self) -> None:
        if self.state == _SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self.state = _PROBE
        self.paused = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = _REPLICATE
        self.next = self.match + 1
        self.paused = False
        self.pending_snapshot = 0
        self.inflights.reset()

    def become_snapshot(self, index: int) -> None:
        self.state = _SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_wait = 0
        self.paused = False
        self.inflights.reset()

    def maybe_update(self, index: int) -> bool:
        """An append up to ``index`` was acknowledged; True if ``match`` moved."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.paused = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append at ``rejected`` was refused: move ``next`` back (False if stale)."""
        if self.state == _REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.paused = False
        return True

    def sent(self, last: int, size: int, count: int) -> None:
        """Account for an append of ``count`` entries ending at ``last``."""
        if self.state == _REPLICATE:
            if count:
                self.next = last + 1
                self.inflights.add(last, size)
        elif self.state == _PROBE:
            self.paused = True

    def is_paused(self) -> bool:
        st = self.state
        if st == _PROBE:
            return self.paused
        if st == _REPLICATE:
            return self.inflights.full()
        return True

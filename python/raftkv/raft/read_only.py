"""ReadIndex bookkeeping on the leader.

Each request records the leader's commit index when it arrived and gets a round id (increasing).
Every heartbeat carries the newest round id; a follower echoes it back. A request of round ``r``
is confirmed once a quorum of voters (the leader included) has echoed some round ``>= r``: they
received a heartbeat sent after the request arrived, so the leader was still leader then. One
heartbeat round thus confirms every request pending when it was sent; the core broadcasts at most
one such round per Ready.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from .quorum import committed_index


class ReadRequest:
    __slots__ = ("ctx", "frm", "index", "round")

    def __init__(self, round_id: int, index: int, ctx: bytes, frm: int) -> None:
        self.round = round_id
        self.index = index
        self.ctx = ctx
        self.frm = frm


class ReadOnly:
    __slots__ = ("acked", "broadcast_round", "last_round", "queue")

    def __init__(self) -> None:
        self.queue: deque[ReadRequest] = deque()
        self.last_round = 0  # newest round id handed out
        self.broadcast_round = 0  # newest round id already sent in a heartbeat
        self.acked: dict[int, int] = {}  # member -> newest round id it echoed

    def add(self, index: int, ctx: bytes, frm: int) -> None:
        self.last_round += 1
        self.queue.append(ReadRequest(self.last_round, index, ctx, frm))

    def needs_broadcast(self) -> bool:
        return self.broadcast_round < self.last_round

    def ack(self, frm: int, round_id: int) -> None:
        if round_id > self.acked.get(frm, 0):
            self.acked[frm] = round_id

    def confirm(self, voters: Collection[int], self_id: int) -> list[ReadRequest]:
        """Pop every request confirmed by a quorum of ``voters``."""
        if not self.queue:
            return []
        last = self.last_round
        acked = self.acked
        r = committed_index(voters, lambda v: last if v == self_id else acked.get(v, 0))
        out: list[ReadRequest] = []
        q = self.queue
        while q and q[0].round <= r:
            out.append(q.popleft())
        return out

    def drain(self) -> list[ReadRequest]:
        out = list(self.queue)
        self.queue.clear()
        return out

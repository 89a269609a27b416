"""Three members on loopback: the node loop over the real WAL and peer transport.

The state machine here is a recorder (the MVCC store is tested on its own): what matters is
that every member applies the same requests in the same order, that writes survive restarts,
and that a member that was down catches up.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from raftkv.server.config import ConfigError, MemberConfig
from raftkv.server.member import Member
from raftkv.status import GrpcError
from tests.native.helpers import run


class Recorder:
    """Applies requests by appending them; answers with the request count so far."""

    def __init__(self) -> None:
        self.applied_index = 0
        self.log: list[tuple[int, bytes]] = []

    def apply(
        self, raft_index: int, requests: Sequence[tuple[int, bytes]]
    ) -> Sequence[bytes | GrpcError]:
        assert raft_index > self.applied_index
        self.applied_index = raft_index
        out: list[bytes | GrpcError] = []
        for kind, payload in requests:
            self.log.append((kind, payload))
            out.append(len(self.log).to_bytes(8, "big"))
        return out


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def configs(tmp: Path, n: int = 3) -> list[MemberConfig]:
    ports = free_ports(2 * n)
    cluster = {f"m{i}": [f"http://127.0.0.1:{ports[n + i]}"] for i in range(n)}
    return [
        MemberConfig(
            name=f"m{i}",
            data_dir=tmp / f"m{i}",
            listen_client_urls=[f"http://127.0.0.1:{ports[i]}"],
            advertise_client_urls=[f"http://127.0.0.1:{ports[i]}"],
            listen_peer_urls=cluster[f"m{i}"],
            initial_advertise_peer_urls=cluster[f"m{i}"],
            initial_cluster=cluster,
            heartbeat_interval_ms=20,
            election_timeout_ms=200,
        )
        for i in range(n)
    ]


async def leader_of(members: list[Member], timeout: float = 10) -> Member:
    async def find() -> Member:
        while True:
            leaders = [m for m in members if m.is_leader]
            if len(leaders) == 1 and all(m.leader == leaders[0].id for m in members):
                return leaders[0]
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(find(), timeout)


async def applied_everywhere(members: list[Member], n: int, timeout: float = 10) -> None:
    async def wait() -> None:
        while not all(len(m.sm.log) >= n for m in members):  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


def test_three_members_replicate_in_the_same_order(tmp_path: Path) -> None:
    async def main() -> None:
        cfgs = configs(tmp_path)
        members = [Member(c, Recorder()) for c in cfgs]
        try:
            leader = await leader_of(members)
            follower = next(m for m in members if m is not leader)
            futs = [leader.propose(1, f"L{i}".encode()) for i in range(100)]
            futs += [follower.propose(2, f"F{i}".encode()) for i in range(100)]
            results = await asyncio.gather(*futs)
            assert sorted(int.from_bytes(r, "big") for r in results) == list(  # type: ignore[arg-type]
                range(1, 201)
            )
            await applied_everywhere(members, 200)
            logs = [m.sm.log for m in members]  # type: ignore[attr-defined]
            assert logs[0] == logs[1] == logs[2]
            # linearizable read barrier on a follower sees every acknowledged write
            await follower.read_barrier()
            assert len(follower.sm.log) >= 200  # type: ignore[attr-defined]
        finally:
            for m in members:
                await m.stop()

    run(main())


def test_restart_keeps_the_log_and_a_lagging_member_catches_up(tmp_path: Path) -> None:
    async def main() -> None:
        cfgs = configs(tmp_path)
        # a small in-memory window: the lagging member is served from the leader's WAL
        members = [Member(c, Recorder(), memory_window=20) for c in cfgs]
        try:
            leader = await leader_of(members)
            await asyncio.gather(*(leader.propose(1, b"a%d" % i) for i in range(50)))
            down = next(m for m in members if m is not leader)
            idx = members.index(down)
            await down.stop()
            alive = [m for m in members if m is not down]
            leader = await leader_of(alive)
            await asyncio.gather(*(leader.propose(1, b"b%d" % i) for i in range(300)))
            # the member comes back with a fresh state machine: it replays the log and
            # receives what it missed
            assert leader.raftlog.memory_first > 100, "the leader trimmed its memory"
            members[idx] = Member(cfgs[idx], Recorder(), memory_window=20)
            await applied_everywhere(members, 350)
            logs = [m.sm.log for m in members]  # type: ignore[attr-defined]
            assert logs[0] == logs[1] == logs[2]
        finally:
            for m in members:
                await m.stop()

    run(main())


def test_no_leader_proposals_fail_or_time_out(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = configs(tmp_path)[0]
        lonely = Member(cfg, Recorder(), request_timeout=0.5)  # its two peers never start
        try:
            with pytest.raises(GrpcError) as err:
                await lonely.propose(1, b"x")
            assert "etcdserver:" in err.value.message
        finally:
            await lonely.stop()

    run(main())


def test_a_data_dir_of_another_cluster_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = configs(tmp_path)[0]
        first = Member(cfg, Recorder())
        await first.stop()
        other = configs(tmp_path)[0]  # new ports: another member of another cluster
        other.data_dir = cfg.data_dir
        with pytest.raises(ConfigError, match="use a fresh --data-dir"):
            Member(other, Recorder())

    run(main())

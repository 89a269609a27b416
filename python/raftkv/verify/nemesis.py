"""Nemeses: faults injected into a cluster under load, each with an inject and a heal.

Every choice (which member, which follower gets the leadership, which revision to compact
to) comes from the ``random.Random`` the runner passes in, seeded from the run's seed, so a
failing schedule can be replayed. Process and network faults need a cluster this process
started (``NetnsCluster``); leadership transfer and compaction go through etcd's API and
work against any endpoints.

Not here yet, because raftkv does not implement what they exercise: membership changes
(Cluster.MemberAdd/Remove), defragmentation, and faults aimed at watches and leases. A new
nemesis is a subclass registered in ``NEMESES``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.verify.cluster import Endpoints, Member, NetnsCluster


@dataclass
class Event:
    """One nemesis action, for the report and for checks that must know when a member was
    down (``killed``: the endpoints whose process was killed at ``time``)."""

    time: float
    nemesis: str
    action: str  # "inject" or "heal"
    detail: str
    killed: list[str] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)  # endpoints of the members it hit


class Nemesis:
    name = "none"
    needs_processes = False

    def inject(self, target: Endpoints, rng: random.Random) -> Event:
        raise NotImplementedError

    def heal(self, target: Endpoints) -> Event | None:
        return None

    def _event(
        self, detail: str, killed: list[str] | None = None, victims: list[Member] | None = None
    ) -> Event:
        hit = [m.endpoint for m in victims or []]
        return Event(time.monotonic(), self.name, "inject", detail, killed or [], hit)


def _pick(target: Endpoints, role: str, rng: random.Random) -> Member | None:
    """A member by role: "leader", "follower" (of the current leader) or "any" (of the
    members that can answer now)."""
    live = [m for m in target.members if target.reachable(m)]
    if role == "any":
        return rng.choice(live) if live else None
    lead = target.leader()
    if lead is None:
        return None
    if role == "leader":
        return lead
    followers = [m for m in live if m is not lead]
    return rng.choice(followers) if followers else None


def _cluster(target: Endpoints) -> NetnsCluster:
    if not isinstance(target, NetnsCluster):
        raise TypeError("this nemesis needs a cluster started by the harness")
    return target


class _OneMember(Nemesis):
    """A process fault on one member chosen by role; heal undoes it on the same member."""

    needs_processes = True
    prefix = ""

    def __init__(self, role: str) -> None:
        self.role = role
        self.name = f"{self.prefix}-{role if role != 'any' else 'member'}"
        self.victim: Member | None = None

    def inject(self, target: Endpoints, rng: random.Random) -> Event:
        c = _cluster(target)
        self.victim = _pick(c, self.role, rng)
        if self.victim is None:
            return self._event(f"skipped: no {self.role}")
        return self._strike(c, self.victim)

    def heal(self, target: Endpoints) -> Event | None:
        if self.victim is None:
            return None
        detail = self._undo(_cluster(target), self.victim)
        self.victim = None
        return Event(time.monotonic(), self.name, "heal", detail)

    def _strike(self, c: NetnsCluster, m: Member) -> Event:
        raise NotImplementedError

    def _undo(self, c: NetnsCluster, m: Member) -> str:
        raise NotImplementedError


class Kill(_OneMember):
    """SIGKILL a member; heal restarts it on the same data directory."""

    prefix = "kill"

    def _strike(self, c: NetnsCluster, m: Member) -> Event:
        c.kill(m)
        return self._event(f"SIGKILL {m.name}", [m.endpoint], [m])

    def _undo(self, c: NetnsCluster, m: Member) -> str:
        c.restart(m)
        return f"restart {m.name}"


class KillAll(Nemesis):
    """SIGKILL every member at once (a whole-cluster crash); heal restarts them all. What
    was acknowledged must survive on the members' disks."""

    name = "kill-all"
    needs_processes = True

    def inject(self, target: Endpoints, rng: random.Random) -> Event:
        c = _cluster(target)
        for m in c.members:
            c.kill(m)
        eps = [m.endpoint for m in c.members]
        return self._event("SIGKILL all members", eps, list(c.members))

    def heal(self, target: Endpoints) -> Event | None:
        c = _cluster(target)
        for m in c.members:
            c.restart(m)
        return Event(time.monotonic(), self.name, "heal", "restart all members")


class Pause(_OneMember):
    """SIGSTOP a member; heal sends SIGCONT."""

    prefix = "pause"

    def _strike(self, c: NetnsCluster, m: Member) -> Event:
        c.pause(m)
        return self._event(f"SIGSTOP {m.name}", victims=[m])

    def _undo(self, c: NetnsCluster, m: Member) -> str:
        c.resume(m)
        return f"SIGCONT {m.name}"


class Partition(Nemesis):
    """Cut peer links (clients still reach every member).

    - "leader": the leader alone on one side (it keeps receiving client requests: reads
      sent to it must not be served stale once the others elect a new leader);
    - "minority": a random member alone;
    - "bridge": A-B and B-C connected, A-C cut (B sees both sides).
    """

    needs_processes = True

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"partition-{mode}"

    def inject(self, target: Endpoints, rng: random.Random) -> Event:
        c = _cluster(target)
        if len(c.members) < 3:
            return self._event("skipped: fewer than 3 members")
        if self.mode == "bridge":
            a, b, z = rng.sample(c.members, 3)
            c.cut(a, z)
            return self._event(f"cut {a.name}-{z.name}, {b.name} bridges", victims=[a, z])
        alone = _pick(c, "leader" if self.mode == "leader" else "any", rng)
        if alone is None:
            return self._event(f"skipped: no {'leader' if self.mode == 'leader' else 'member'}")
        for other in c.members:
            if other is not alone:
                c.cut(alone, other)
        return self._event(f"isolate {alone.name}", victims=[alone])

    def heal(self, target: Endpoints) -> Event | None:
        _cluster(target).heal_network()
        return Event(time.monotonic(), self.name, "heal", "links restored")


class MoveLeader(Nemesis):
    """Transfer leadership to a random follower (Maintenance.MoveLeader at the leader)."""

    name = "move-leader"

    def inject(self, target: Endpoints, rng: random.Random) -> Event:
        lead = target.leader()
        if lead is None:
            return self._event("skipped: no leader")
        followers = [m for m in target.members if m is not lead and target.reachable(m)]
        if not followers:
            return self._event("skipped: no follower")
        to = rng.choice(followers)
        try:
            lead.maintenance().MoveLeader(
                rpc_pb2.MoveLeaderRequest(targetID=to.member_id), timeout=5
            )
        except grpc.RpcError as e:
            # a transfer can fail (the target lagged, an election intervened): not an anomaly
            return self._event(f"{lead.name} -> {to.name} failed: {e.details()}")
        return self._event(f"{lead.name} -> {to.name}")


class Compact(Nemesis):
    """Compact to a recent revision while clients run (their reads are at the latest
    revision, so compaction must not disturb them)."""

    name = "compact"

    def inject(self, target: Endpoints, rng: random.Random) -> Event:
        for m in target.members:
            if not target.reachable(m):
                continue
            try:
                rev = m.status(timeout=1).header.revision
                to = max(1, rev - rng.randint(0, 50))
                m.kv().Compact(rpc_pb2.CompactionRequest(revision=to), timeout=5)
                return self._event(f"compact to {to} via {m.name}")
            except grpc.RpcError as e:
                # e.g. "required revision has been compacted" when an earlier compaction went
                # further: harmless; an unreachable member: try the next one
                last = e.details()
                if "compacted" in last:
                    return self._event(f"compact via {m.name}: {last}")
        return self._event("skipped: no member answered")


NEMESES: dict[str, Callable[[], Nemesis]] = {
    "kill-leader": lambda: Kill("leader"),
    "kill-follower": lambda: Kill("follower"),
    "kill-member": lambda: Kill("any"),
    "kill-all": KillAll,
    "pause-leader": lambda: Pause("leader"),
    "pause-follower": lambda: Pause("follower"),
    "partition-leader": lambda: Partition("leader"),
    "partition-minority": lambda: Partition("minority"),
    "partition-bridge": lambda: Partition("bridge"),
    "move-leader": MoveLeader,
    "compact": Compact,
}

# the nemeses that work over etcd's API alone (``raftkv verify --endpoints``)
API_NEMESES = [name for name, make in NEMESES.items() if not make().needs_processes]

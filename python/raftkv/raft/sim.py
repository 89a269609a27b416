"""Deterministic simulation of a Raft cluster built from ``RaftCore`` instances.

One seed fully determines a run: a seeded in-process network of 3 or 5 members with message
loss, duplication, reordering and delay, partitions (symmetric and asymmetric), crashes that lose
whatever was not yet persisted (including crashes in the middle of processing a Ready), restarts
from persisted state, log compaction with snapshots, membership changes (learners, promotion,
removal), leadership transfers, proposals and linearizable reads. Persistence is modelled like
the node loop does it: a Ready's write may stay in flight while the member keeps stepping
messages, and a leader may send its messages before its own write completes.

Invariants are checked after every step (every tick, delivery and client operation):
- election safety: at most one leader per term;
- log matching: an (index, term) pair always names the same entry with the same predecessor term;
- leader completeness: a new leader's log holds the newest entry known committed;
- state-machine safety: no two members apply different entries at one index (and snapshots agree);
- commit never decreases (per incarnation, and in persisted hard state); a vote never changes
  within a term;
- every released read index covers every write committed before the read was requested.

Liveness, once the last fault heals: a leader within two election timeouts (in ticks), every
proposal still pending commits (clients retry), and every member catches up.

Use ``run_seed(seed, members)``; ``python -m raftkv.raft.soak`` runs many seeds.
"""

from __future__ import annotations

import heapq
import random
import struct
import zlib
from dataclasses import dataclass

from .confchange import ConfChange, ConfChangeType
from .core import Config, RaftCore
from .log import MemoryStorage
from .messages import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)

_SM = struct.Struct(">QI")


class SimFailure(AssertionError):
    """An invariant or liveness check failed; the message says how to replay the seed."""


@dataclass(slots=True)
class SimConfig:
    seed: int
    members: int = 3
    chaos_ticks: int = 400
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_inflight_msgs: int = 4
    max_size_per_msg: int = 200
    trace: bool = False


def replay_command(seed: int, members: int) -> str:
    return (
        f"PYTHONPATH=python python -m raftkv.raft.soak --start {seed} --seeds 1 "
        f"--members {members} -v"
    )


def bootstrap_storage(ids: list[int]) -> tuple[MemoryStorage, HardState]:
    """The initial log of an initial member: one ADD_VOTER entry per member, all committed."""
    st = MemoryStorage()
    add = ConfChangeType.ADD_VOTER
    st.append(
        [
            Entry(i, 1, EntryType.CONF_CHANGE, ConfChange(add, nid).encode())
            for i, nid in enumerate(ids, 1)
        ]
    )
    return st, HardState(1, NONE, len(ids))


class SimNode:
    __slots__ = (
        "applied",
        "core",
        "hs",
        "id",
        "incarnation",
        "inflight",
        "last_commit",
        "sm_hash",
        "storage",
    )

    def __init__(self, nid: int, storage: MemoryStorage, hs: HardState) -> None:
        self.id = nid
        self.storage = storage  # what survived on "disk"
        self.hs = hs
        self.core: RaftCore | None = None
        self.inflight: tuple[Ready, bool] | None = None  # a Ready whose write is in flight
        self.incarnation = 0
        self.applied = 0
        self.sm_hash = 0
        self.last_commit = 0


class Simulation:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        rng = self.rng
        self.now = 0
        self.nodes: dict[int, SimNode] = {}
        ids = list(range(1, cfg.members + 1))
        for nid in ids:
            st, hs = bootstrap_storage(ids)
            self.nodes[nid] = SimNode(nid, st, hs)
        self.next_id = cfg.members + 1
        # network
        self.queue: list[tuple[int, int, Message]] = []
        self.seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.p_drop = rng.choice([0.0, 0.02, 0.05, 0.15])
        self.p_dup = rng.choice([0.0, 0.02, 0.1])
        self.max_delay = rng.choice([0, 1, 3])
        self.p_skip_tick = rng.choice([0.0, 0.05])
        self.p_crash_in_ready = rng.choice([0.0, 0.002, 0.01])
        self.p_async = rng.choice([0.0, 0.2, 0.5])
        self.p_early_send = rng.choice([0.0, 0.5])
        # checks
        self.leader_of_term: dict[int, int] = {}
        self.entry_reg: dict[tuple[int, int], tuple[bytes, int, int]] = {}
        self.applied_reg: dict[int, tuple[int, bytes]] = {}
        self.hash_reg: dict[int, int] = {}
        self.max_committed = 0
        self.read_floor: dict[bytes, int] = {}
        self.proposed: dict[bytes, int] = {}  # data -> 1 (pending) ; removed once committed
        self.committed_data: set[bytes] = set()
        self.n_props = 0
        self.n_reads = 0
        self.reads_released = 0
        self.trace_log: list[str] = []
        self.healed = False
        for nid in ids:
            self._start(self.nodes[nid])

    # ------------------------------------------------------------------ plumbing
    def _trace(self, s: str) -> None:
        if self.cfg.trace:
            self.trace_log.append(f"[{self.now}] {s}")

    def fail(self, what: str) -> SimFailure:
        tail = "\n".join(self.trace_log[-80:])
        if self.cfg.trace:
            for n in self.nodes.values():
                tail += f"\n  n{n.id}: {n.core!r} conf={n.core.conf if n.core else None}"
                if n.core is not None:
                    tail += f" elapsed={n.core.election_elapsed}/{n.core.randomized_timeout}"

        return SimFailure(
            f"seed {self.cfg.seed} ({self.cfg.members} members) at tick {self.now}: "
            f"{what}\n  replay: {replay_command(self.cfg.seed, self.cfg.members)}"
            + (f"\n{tail}" if tail else "")
        )

    def _start(self, n: SimNode) -> None:
        c = self.cfg
        n.incarnation += 1
        conf = Config(
            n.id,
            election_tick=c.election_tick,
            heartbeat_tick=c.heartbeat_tick,
            max_inflight_msgs=c.max_inflight_msgs,
            max_size_per_msg=c.max_size_per_msg,
        )
        core_rng = random.Random(self.rng.getrandbits(64))
        n.core = RaftCore(conf, n.storage, core_rng, n.hs)
        snap = n.storage.snapshot()
        if snap.meta.index:
            n.applied, n.sm_hash = _SM.unpack(snap.data)
        else:
            n.applied, n.sm_hash = 0, 0
        n.last_commit = n.core.log.committed
        self._trace(f"start n{n.id} #{n.incarnation} term={n.hs.term} commit={n.hs.commit}")
        self._process(n)

    def _crash(self, n: SimNode, why: str) -> None:
        n.core = None
        n.inflight = None
        self._trace(f"crash n{n.id} ({why})")

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def send(self, msgs: list[Message]) -> None:
        rng = self.rng
        for m in msgs:
            if self.p_drop and rng.random() < self.p_drop:
                continue
            copies = 2 if self.p_dup and rng.random() < self.p_dup else 1
            for _ in range(copies):
                delay = rng.randint(0, self.max_delay) if self.max_delay else 0
                self.seq += 1
                heapq.heappush(self.queue, (self.now + delay, self.seq, m))

    def deliver_due(self) -> None:
        due: list[Message] = []
        q = self.queue
        while q and q[0][0] <= self.now:
            due.append(heapq.heappop(q)[2])
        if len(due) > 1:
            self.rng.shuffle(due)
        for m in due:
            self.deliver(m)

    def deliver(self, m: Message) -> None:
        if (m.frm, m.to) in self.blocked:
            return
        n = self.nodes.get(m.to)
        if n is None or n.core is None:
            return
        n.core.step(m)
        self._process(n)
        self._check_node(n)

    def deliver_until_quiet(self) -> None:
        for _ in range(10_000):
            self.complete_writes(all_of_them=True)
            if not self.queue:
                return
            batch = [m for _, _, m in sorted(self.queue)]
            self.queue = []
            for m in batch:
                self.deliver(m)
        raise self.fail("network never went quiet")

    # ------------------------------------------------------------------ Ready processing
    def _process(self, n: SimNode) -> None:
        """Drain ``n``'s Readies. With asynchronous writes on, a Ready's write may stay in
        flight across later events (the node keeps stepping messages meanwhile)."""
        rng = self.rng
        while n.core is not None and n.inflight is None and n.core.has_ready():
            core = n.core
            rd = core.ready()
            # A leader may send its messages while its own write is in flight (Raft thesis
            # 10.2.1), as long as the Ready does not change its term or vote.
            early = (
                core.role == Role.LEADER
                and self.p_early_send > 0
                and (
                    rd.hard_state is None
                    or (rd.hard_state.term, rd.hard_state.vote) == (n.hs.term, n.hs.vote)
                )
                and rng.random() < self.p_early_send
            )
            if early:
                self.send(rd.messages)
            if self.p_async and rng.random() < self.p_async:
                n.inflight = (rd, early)
                return
            self._complete(n, rd, early)

    def _complete(self, n: SimNode, rd: Ready, early: bool) -> None:
        """The write of ``rd`` finishes (or the node crashes on the way)."""
        core = n.core
        assert core is not None
        phase = -1
        p = self.p_crash_in_ready
        if p and not self.healed and self.rng.random() < p:
            phase = self.rng.randrange(3)
        if phase == 0:
            self._crash(n, "before persisting a Ready")
            return
        self._persist(n, rd)
        if phase == 1:
            self._crash(n, "after persisting, before sending")
            return
        if not early:
            self.send(rd.messages)
        if phase == 2:
            self._crash(n, "after sending, before applying")
            return
        self._apply(n, rd)
        core.advance()
        self._check_node(n)

    def complete_writes(self, all_of_them: bool = False) -> None:
        for n in list(self.nodes.values()):
            if n.inflight is not None and (all_of_them or self.rng.random() < 0.5):
                rd, early = n.inflight
                n.inflight = None
                self._complete(n, rd, early)
                self._process(n)

    def _persist(self, n: SimNode, rd: Ready) -> None:
        st = n.storage
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            st.apply_snapshot(rd.snapshot)
            idx, h = _SM.unpack(rd.snapshot.data)
            if idx != meta.index:
                raise self.fail(f"n{n.id}: snapshot data index {idx} != meta {meta.index}")
            known_h = self.hash_reg.get(idx)
            if known_h is not None and known_h != h:
                raise self.fail(f"n{n.id}: snapshot at {idx} disagrees with applied state")
            n.applied, n.sm_hash = idx, h
            self._trace(f"n{n.id} installs snapshot {meta.index}/{meta.term}")
        if rd.entries:
            st.append(rd.entries)
            reg = self.entry_reg
            for e in rd.entries:
                key = (e.index, e.term)
                try:
                    prev = st.term(e.index - 1)
                except LookupError:
                    prev = -1
                known = reg.get(key)
                if known is None:
                    reg[key] = (e.data, e.entry_type, prev)
                else:
                    if known[0] != e.data or known[1] != e.entry_type:
                        raise self.fail(f"log matching: two entries at index/term {key}")
                    if prev >= 0 and known[2] >= 0 and known[2] != prev:
                        raise self.fail(
                            f"log matching: entry {key} follows term {prev} on "
                            f"n{n.id} but term {known[2]} elsewhere"
                        )
        hs = rd.hard_state
        if hs is not None:
            old = n.hs
            if hs.term < old.term:
                raise self.fail(f"n{n.id}: persisted term went back {old.term} -> {hs.term}")
            if hs.term == old.term and old.vote != NONE and hs.vote != old.vote:
                raise self.fail(f"n{n.id}: changed vote in term {hs.term}: {old.vote} -> {hs.vote}")
            if hs.commit < old.commit:
                raise self.fail(f"n{n.id}: persisted commit went back {old.commit} -> {hs.commit}")
            if hs.commit > st.last_index():
                raise self.fail(f"n{n.id}: commit {hs.commit} beyond persisted log")
            n.hs = hs

    def _apply(self, n: SimNode, rd: Ready) -> None:
        for e in rd.committed_entries:
            if e.index <= n.applied:
                continue  # re-delivered after a restart; the state machine already has it
            if e.index != n.applied + 1:
                raise self.fail(f"n{n.id}: applied gap {n.applied} -> {e.index}")
            known = self.applied_reg.get(e.index)
            if known is None:
                self.applied_reg[e.index] = (e.term, e.data)
                if e.index > self.max_committed:
                    self.max_committed = e.index
                if e.entry_type == EntryType.NORMAL and e.data:
                    self.committed_data.add(e.data)
            elif known != (e.term, e.data):
                raise self.fail(
                    f"state machine safety: n{n.id} applies {e.index}/{e.term} "
                    f"but {known[0]} was applied elsewhere"
                )
            n.sm_hash = zlib.crc32(e.data, zlib.crc32(_SM.pack(e.index, e.term), n.sm_hash))
            n.applied = e.index
            h = self.hash_reg.setdefault(e.index, n.sm_hash)
            if h != n.sm_hash:
                raise self.fail(f"state machine safety: n{n.id} state differs at {e.index}")
        for rs in rd.read_states:
            floor = self.read_floor.pop(rs.ctx, None)
            if floor is None:
                continue  # a duplicate answer
            self.reads_released += 1
            if rs.index < floor:
                raise self.fail(
                    f"read {rs.ctx!r} on n{n.id} released at index {rs.index} but "
                    f"{floor} was committed before it was requested"
                )
        for rdr in rd.dropped_reads:
            self.read_floor.pop(rdr.ctx, None)
        if rd.soft_state is not None and self.cfg.trace:
            c = n.core
            assert c is not None
            self._trace(
                f"n{n.id} is {rd.soft_state.role.name} term={c.term} "
                f"lead={rd.soft_state.lead} last={c.log.last_index()}"
            )

    def _check_leader_completeness(self, n: SimNode) -> None:
        core = n.core
        assert core is not None
        c = self.max_committed
        if c == 0:
            return
        log = core.log
        if c < log.first_index():
            return  # covered by the snapshot: checked by state-machine safety
        try:
            t = log.term(c)
        except LookupError:
            raise self.fail(
                f"leader completeness: n{n.id} leads term {core.term} without committed entry {c}"
            ) from None
        if t != self.applied_reg[c][0]:
            raise self.fail(f"leader completeness: n{n.id} has term {t} at committed index {c}")

    def _check_node(self, n: SimNode) -> None:
        core = n.core
        if core is None:
            return
        if core.role == Role.LEADER:
            lt = self.leader_of_term.get(core.term)
            if lt is None:
                # Checked when first seen, i.e. right after the step that elected it (a Ready
                # that reports it may be processed much later with asynchronous writes).
                self.leader_of_term[core.term] = n.id
                self._check_leader_completeness(n)
            elif lt != n.id:
                raise self.fail(f"two leaders in term {core.term}: n{lt} and n{n.id}")
        c = core.log.committed
        if c < n.last_commit:
            raise self.fail(f"n{n.id}: commit index went back {n.last_commit} -> {c}")
        n.last_commit = c

    # ------------------------------------------------------------------ client / nemesis ops
    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.live():
            assert n.core is not None
            if n.core.role == Role.LEADER and (
                best is None or best.core is None or n.core.term > best.core.term
            ):
                best = n
        return best

    def stable_leader(self) -> SimNode | None:
        """A leader whose term no live voter of its configuration exceeds."""
        ld = self.leader()
        if ld is None or ld.core is None:
            return None
        for v in ld.core.conf.voters:
            n = self.nodes.get(v)
            if n is not None and n.core is not None and n.core.term > ld.core.term:
                return None
        return ld

    def global_commit(self) -> int:
        m = self.max_committed
        for n in self.live():
            assert n.core is not None
            m = max(m, n.core.log.committed)
        return m

    def op_propose(self, target: SimNode | None = None) -> None:
        live = self.live()
        if not live:
            return
        n = target if target is not None else self.rng.choice(live)
        assert n.core is not None
        self.n_props += 1
        data = b"p%d" % self.n_props
        self.proposed[data] = 1
        n.core.propose(data)
        self._process(n)

    def op_read(self) -> None:
        live = self.live()
        if not live:
            return
        n = self.rng.choice(live)
        assert n.core is not None
        self.n_reads += 1
        ctx = b"r%d" % self.n_reads
        self.read_floor[ctx] = self.global_commit()
        n.core.read_index(ctx)
        self._process(n)

    def op_partition(self) -> None:
        ids = sorted(self.nodes)
        rng = self.rng
        kind = rng.randrange(3)
        self.blocked.clear()
        if kind == 0:  # isolate one member
            x = rng.choice(ids)
            for y in ids:
                if y != x:
                    self.blocked.add((x, y))
                    self.blocked.add((y, x))
        elif kind == 1:  # split in two groups
            rng.shuffle(ids)
            k = rng.randrange(1, len(ids))
            a, b = ids[:k], ids[k:]
            for x in a:
                for y in b:
                    self.blocked.add((x, y))
                    self.blocked.add((y, x))
        else:  # asymmetric: some one-way links cut
            for x in ids:
                for y in ids:
                    if x != y and rng.random() < 0.3:
                        self.blocked.add((x, y))
        self._trace(f"partition {sorted(self.blocked)}")

    def op_crash(self) -> None:
        live = self.live()
        if live:
            self._crash(self.rng.choice(live), "nemesis")

    def op_restart(self) -> None:
        down = [n for n in self.nodes.values() if n.core is None]
        if down:
            self._start(self.rng.choice(down))

    def op_compact(self) -> None:
        live = self.live()
        if not live:
            return
        n = self.rng.choice(live)
        core = n.core
        assert core is not None
        st = n.storage
        idx = n.applied
        if idx <= st.snapshot_meta().index or idx > st.last_index():
            return
        if core.log.applied != idx:
            return
        st.create_snapshot(idx, core.conf, _SM.pack(idx, n.sm_hash))
        st.compact(max(st.snapshot_meta().index - self.rng.randrange(4), st.first_index() - 1))
        self._trace(f"n{n.id} compacts to {st.first_index() - 1}")

    def op_transfer(self) -> None:
        ld = self.leader()
        if ld is None or ld.core is None:
            return
        voters = sorted(ld.core.conf.voters - {ld.id})
        if not voters:
            return
        target = self.rng.choice(voters)
        via = self.rng.choice(self.live())
        assert via.core is not None
        self._trace(f"transfer to n{target} via n{via.id}")
        via.core.transfer_leader(target)
        self._process(via)

    def op_conf_change(self) -> None:
        ld = self.leader()
        if ld is None or ld.core is None:
            return
        rng = self.rng
        cs: ConfState = ld.core.conf
        members = cs.voters | cs.learners
        choice = rng.randrange(3)
        cc: ConfChange | None = None
        if choice == 0 and len(members) < self.cfg.members + 2:
            nid = self.next_id
            self.next_id += 1
            node = SimNode(
                nid, MemoryStorage(Snapshot(SnapshotMeta(0, 0, ConfState()))), HardState()
            )
            self.nodes[nid] = node
            self._start(node)
            kind = ConfChangeType.ADD_LEARNER if rng.random() < 0.6 else ConfChangeType.ADD_VOTER
            cc = ConfChange(kind, nid)
        elif choice == 1 and cs.learners:
            cc = ConfChange(ConfChangeType.ADD_VOTER, rng.choice(sorted(cs.learners)))
        elif choice == 2 and len(cs.voters) > 2:
            cc = ConfChange(ConfChangeType.REMOVE, rng.choice(sorted(members)))
        elif choice == 2 and cs.learners:
            cc = ConfChange(ConfChangeType.REMOVE, rng.choice(sorted(cs.learners)))
        if cc is None:
            return
        self._trace(f"conf change {cc.type.name} n{cc.node_id} via leader n{ld.id}")
        ld.core.propose_conf_change(cc)
        self._process(ld)

    # ------------------------------------------------------------------ the run
    def tick_all(self) -> None:
        for n in list(self.nodes.values()):
            if n.core is None:
                continue
            if not self.healed and self.p_skip_tick and self.rng.random() < self.p_skip_tick:
                continue
            n.core.tick()
            self._process(n)
            self._check_node(n)

    def chaos(self) -> None:
        rng = self.rng
        p_fault = rng.choice([0.02, 0.05, 0.1])
        for t in range(self.cfg.chaos_ticks):
            self.now = t
            self.tick_all()
            self.deliver_due()
            self.complete_writes()
            r = rng.random()
            if r < 0.5:
                self.op_propose()
            elif r < 0.65:
                self.op_read()
            if rng.random() < p_fault:
                f = rng.randrange(10)
                if f == 8:
                    ld = self.leader()
                    if ld is not None:
                        self._crash(ld, "nemesis kills the leader")
                elif f == 0:
                    self.op_partition()
                elif f == 1:
                    self.blocked.clear()
                elif f == 2:
                    self.op_crash()
                elif f == 3:
                    self.op_restart()
                elif f in (4, 9):
                    self.op_conf_change()
                elif f == 5:
                    self.op_transfer()
                else:
                    self.op_compact()
            if rng.random() < 0.05:
                self.op_restart()
            if rng.random() < 0.02:
                self.op_compact()

    def heal(self) -> None:
        self.healed = True
        self.p_async = 0.0
        self.complete_writes(all_of_them=True)
        self.blocked.clear()
        self.p_drop = self.p_dup = 0.0
        self.max_delay = 0
        for n in list(self.nodes.values()):
            if n.core is None:
                self._start(n)
        self._trace("heal")

    def step_reliably(self) -> None:
        self.now += 1
        self.tick_all()
        self.deliver_until_quiet()

    def liveness(self) -> None:
        et = self.cfg.election_tick
        self.deliver_until_quiet()
        ticks = 0
        while self.stable_leader() is None:
            if ticks >= 2 * et:
                raise self.fail(f"no leader within {2 * et} ticks after the last fault healed")
            self.step_reliably()
            ticks += 1
        # Every proposal still pending commits (clients retry at the leader on a timeout).
        budget = 20 * et
        pending = [d for d in self.proposed if d not in self.committed_data]
        while pending:
            if budget <= 0:
                raise self.fail(f"{len(pending)} proposals never committed, e.g. {pending[0]!r}")
            if budget % et == 0:
                ld = self.stable_leader()
                if ld is not None and ld.core is not None:
                    ld.core.propose_batch(pending)
                    self._process(ld)
            self.step_reliably()
            budget -= 1
            pending = [d for d in pending if d not in self.committed_data]
        # Every member of the final configuration catches up with the leader.
        budget = 20 * et
        while True:
            ld = self.stable_leader()
            if ld is not None and ld.core is not None:
                target = ld.core.log.committed
                members = ld.core.conf.voters | ld.core.conf.learners
                lagging = [v for v in members if self.nodes[v].applied < target]
                if not lagging:
                    break
            else:
                lagging = []
            if budget <= 0:
                raise self.fail(f"members {lagging} never caught up with the leader")
            self.step_reliably()
            budget -= 1

    def run(self) -> None:
        self.chaos()
        self.heal()
        self.liveness()


def run_seed(seed: int, members: int = 3, trace: bool = False) -> Simulation:
    sim = Simulation(SimConfig(seed=seed, members=members, trace=trace))
    sim.run()
    return sim

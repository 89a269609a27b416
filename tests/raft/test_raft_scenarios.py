"""Data-driven scenario tests for the Raft core: readable scripts in ``scenarios/*.txt``.

Script format: one command per line; ``#`` starts a comment. A command followed by a line
``----`` has its output checked: the expected output is every line after ``----`` up to the next
blank line. Commands without ``----`` have their output ignored. Set ``RAFT_SCENARIO_REWRITE=1``
to rewrite the expected outputs from the actual ones (then review the diff!).

Commands (node ids are integers; messages are only delivered by ``deliver``):
  cluster N [prevote=1] [checkquorum=1] [election=10] [heartbeat=1] [maxmsg=BYTES] [inflight=N]
            [lease=0] [forwarding=1]       bootstrap members 1..N (log: one conf entry per member)
  add-node X                               start an empty, non-member node X
  campaign X | tick X|all [N]              start an election | advance logical clocks
  run N                                    N times: tick every node, deliver until quiet
  propose X DATA                           prints the outcome
  conf X add|learner|remove Y              propose a membership change on X
  read X CTX... | transfer X Y             ReadIndex requests | leadership transfer request
  deliver [ROUNDS]                         deliver pending messages (default: until quiet)
  drop [from=X] [to=Y] [type=T]            drop matching pending messages (prints how many)
  partition 1 2 | 3 4 5 | isolate X | block X Y (X->Y only) | heal
  crash X | restart X                      crash loses nothing persisted; restart from disk
  compact X INDEX                          snapshot X's state at INDEX and drop the log before
  status [X ...] | log X | msgs | events   inspect nodes, a log, pending messages, events
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from raftkv.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftCore,
    Role,
)

SCENARIOS = Path(__file__).parent / "scenarios"


def fmt_entry(e: Entry) -> str:
    if e.entry_type == EntryType.CONF_CHANGE:
        cc = ConfChange.decode(e.data)
        return f"{e.index}/{e.term}:{cc.type.name.lower()}({cc.node_id})"
    return f"{e.index}/{e.term}:{e.data.decode() if e.data else '-'}"


def fmt_msg(m: Message) -> str:
    t = m.type
    s = f"{m.frm}->{m.to} {t.name} term={m.term}"
    if t in (MessageType.APP,):
        s += f" prev={m.index}/{m.log_term} commit={m.commit}"
        s += " [" + " ".join(fmt_entry(e) for e in m.entries) + "]"
    elif t == MessageType.APP_RESP:
        s += f" index={m.index}"
        if m.reject:
            s += f" REJECT hint={m.reject_hint}/{m.log_term}"
    elif t in (MessageType.VOTE, MessageType.PRE_VOTE):
        s += f" last={m.index}/{m.log_term}"
    elif t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        s += " REJECT" if m.reject else " GRANT"
    elif t == MessageType.HEARTBEAT:
        s += f" commit={m.commit}" + (f" round={m.index}" if m.index else "")
    elif t == MessageType.HEARTBEAT_RESP and m.index:
        s += f" round={m.index}"
    elif t == MessageType.TRANSFER_LEADER:
        s += f" to={m.index}"
    elif t == MessageType.SNAP and m.snapshot is not None:
        s += f" snapshot={m.snapshot.meta.index}/{m.snapshot.meta.term}"
    elif t in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP):
        s += f" index={m.index} ctx={m.context.decode()}"
    return s


class Node:
    def __init__(self, nid: int, storage: MemoryStorage, hs: HardState) -> None:
        self.id = nid
        self.storage = storage
        self.hs = hs
        self.core: RaftCore | None = None
        self.applied: list[Entry] = []


class Cluster:
    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.pending: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.events: list[str] = []
        self.opts: dict[str, int] = {}
        self.leaders: set[int] = set()

    # --- plumbing ---------------------------------------------------------------------
    def config(self, nid: int) -> Config:
        o = self.opts
        return Config(
            nid,
            election_tick=o.get("election", 10),
            heartbeat_tick=o.get("heartbeat", 1),
            pre_vote=bool(o.get("prevote", 1)),
            check_quorum=bool(o.get("checkquorum", 1)),
            max_size_per_msg=o.get("maxmsg", 1 << 20),
            max_inflight_msgs=o.get("inflight", 256),
            read_only_lease_based=bool(o.get("lease", 0)),
            disable_proposal_forwarding=not o.get("forwarding", 1),
        )

    def start(self, n: Node) -> None:
        n.core = RaftCore(self.config(n.id), n.storage, random.Random(n.id), n.hs)
        self.process(n)

    def core(self, nid: int) -> RaftCore:
        c = self.nodes[nid].core
        assert c is not None, f"node {nid} is down"
        return c

    def process(self, n: Node) -> None:
        while n.core is not None and n.core.has_ready():
            rd = n.core.ready()
            if rd.snapshot is not None:
                n.storage.apply_snapshot(rd.snapshot)
                self.events.append(f"n{n.id} installed snapshot {rd.snapshot.meta.index}")
            n.storage.append(rd.entries)
            if rd.hard_state is not None:
                n.hs = rd.hard_state
            self.pending.extend(rd.messages)
            n.applied.extend(rd.committed_entries)
            for rs in rd.read_states:
                self.events.append(f"n{n.id} read {rs.ctx.decode()} at index {rs.index}")
            for dp in rd.dropped_proposals:
                what = (
                    fmt_entry(Entry(0, 0, dp.entry_type, dp.data)).split(":", 1)[1]
                    if dp.entry_type == EntryType.CONF_CHANGE
                    else dp.data.decode()
                )
                self.events.append(
                    f"n{n.id} dropped proposal {what}: {dp.reason.name} "
                    f"(leader hint {dp.leader_hint})"
                )
            for dr in rd.dropped_reads:
                self.events.append(f"n{n.id} dropped read {dr.ctx.decode()}: {dr.reason.name}")
            if rd.soft_state is not None:
                if rd.soft_state.role == Role.LEADER:
                    self.events.append(f"n{n.id} became leader at term {n.core.term}")
                elif n.id in self.leaders:
                    self.events.append(f"n{n.id} stepped down at term {n.core.term}")
                if rd.soft_state.role == Role.LEADER:
                    self.leaders.add(n.id)
                else:
                    self.leaders.discard(n.id)
            n.core.advance()

    def deliver_round(self) -> int:
        batch, self.pending = self.pending, []
        for m in batch:
            if (m.frm, m.to) in self.blocked:
                continue
            n = self.nodes.get(m.to)
            if n is None or n.core is None:
                continue
            n.core.step(m)
            self.process(n)
        return len(batch)

    # --- commands -----------------------------------------------------------------------
    def run(self, cmd: str, args: list[str]) -> str:
        kw = {k: v for k, _, v in (a.partition("=") for a in args if "=" in a)}
        pos = [a for a in args if "=" not in a]
        if cmd == "cluster":  # (re)start from scratch
            self.__init__()  # type: ignore[misc]
            self.opts = {k: int(v) for k, v in kw.items()}
            size = int(pos[0])
            ids = list(range(1, size + 1))
            for nid in ids:
                st = MemoryStorage()
                st.append(
                    [
                        Entry(
                            i,
                            1,
                            EntryType.CONF_CHANGE,
                            ConfChange(ConfChangeType.ADD_VOTER, x).encode(),
                        )
                        for i, x in enumerate(ids, 1)
                    ]
                )
                self.nodes[nid] = Node(nid, st, HardState(1, NONE, size))
            for nid in ids:
                self.start(self.nodes[nid])
            return ""
        if cmd == "add-node":
            nid = int(pos[0])
            self.nodes[nid] = Node(nid, MemoryStorage(), HardState())
            self.start(self.nodes[nid])
            return ""
        if cmd == "campaign":
            c = self.core(int(pos[0]))
            c.campaign()
            self.process(self.nodes[int(pos[0])])
            return ""
        if cmd == "tick":
            ids = sorted(self.nodes) if pos[0] == "all" else [int(pos[0])]
            for _ in range(int(pos[1]) if len(pos) > 1 else 1):
                for nid in ids:
                    n = self.nodes[nid]
                    if n.core is not None:
                        n.core.tick()
                        self.process(n)
            return ""
        if cmd == "run":  # N x (tick every node, then deliver until quiet)
            for _ in range(int(pos[0])):
                for n in list(self.nodes.values()):
                    if n.core is not None:
                        n.core.tick()
                        self.process(n)
                for _ in range(1000):
                    if not self.deliver_round():
                        break
            return ""
        if cmd == "propose":
            nid = int(pos[0])
            res = self.core(nid).propose(pos[1].encode())
            self.process(self.nodes[nid])
            return res.name
        if cmd == "conf":
            nid = int(pos[0])
            kind = {
                "add": ConfChangeType.ADD_VOTER,
                "learner": ConfChangeType.ADD_LEARNER,
                "remove": ConfChangeType.REMOVE,
            }[pos[1]]
            res = self.core(nid).propose_conf_change(ConfChange(kind, int(pos[2])))
            self.process(self.nodes[nid])
            return res.name
        if cmd == "read":  # several contexts: several reads in the same turn
            nid = int(pos[0])
            for ctx in pos[1:]:
                self.core(nid).read_index(ctx.encode())
            self.process(self.nodes[nid])
            return ""
        if cmd == "transfer":
            nid = int(pos[0])
            self.core(nid).transfer_leader(int(pos[1]))
            self.process(self.nodes[nid])
            return ""
        if cmd == "deliver":
            rounds = int(pos[0]) if pos else 1000
            for _ in range(rounds):
                if not self.deliver_round():
                    break
            return ""
        if cmd == "drop":
            keep: list[Message] = []
            dropped = 0
            for m in self.pending:
                if (
                    ("from" in kw and m.frm != int(kw["from"]))
                    or ("to" in kw and m.to != int(kw["to"]))
                    or ("type" in kw and m.type.name != kw["type"].upper())
                ):
                    keep.append(m)
                else:
                    dropped += 1
            self.pending = keep
            return f"dropped {dropped}"
        if cmd == "partition":
            groups: list[list[int]] = [[]]
            for a in pos:
                if a == "|":
                    groups.append([])
                else:
                    groups[-1].append(int(a))
            self.blocked.clear()
            for g in groups:
                for h in groups:
                    if g is not h:
                        self.blocked.update((x, y) for x in g for y in h)
            return ""
        if cmd == "isolate":
            x = int(pos[0])
            self.blocked.update(
                (a, b) for a in self.nodes for b in self.nodes if a != b and x in (a, b)
            )
            return ""
        if cmd == "block":
            self.blocked.add((int(pos[0]), int(pos[1])))
            return ""
        if cmd == "heal":
            self.blocked.clear()
            return ""
        if cmd == "crash":
            self.nodes[int(pos[0])].core = None
            self.leaders.discard(int(pos[0]))
            return ""
        if cmd == "restart":
            n = self.nodes[int(pos[0])]
            n.applied = []
            self.start(n)
            return ""
        if cmd == "compact":
            n = self.nodes[int(pos[0])]
            idx = int(pos[1])
            n.storage.create_snapshot(idx, self.core(n.id).conf, b"")
            n.storage.compact(idx)
            return ""
        if cmd == "status":
            ids = [int(p) for p in pos] or sorted(self.nodes)
            lines = []
            for nid in ids:
                n = self.nodes[nid]
                if n.core is None:
                    lines.append(
                        f"n{nid}: down (persisted term={n.hs.term} vote={n.hs.vote} "
                        f"commit={n.hs.commit} last={n.storage.last_index()})"
                    )
                    continue
                c = n.core
                lines.append(
                    f"n{nid}: {c.role.name.lower()} term={c.term} lead={c.lead} "
                    f"vote={c.vote} last={c.log.last_index()} "
                    f"commit={c.log.committed} applied={c.log.applied}"
                )
            return "\n".join(lines)
        if cmd == "log":
            n = self.nodes[int(pos[0])]
            ents = n.storage.all_entries()
            first = n.storage.first_index() - 1
            head = f"snapshot={first} " if first else ""
            return f"n{n.id}: {head}" + " ".join(fmt_entry(e) for e in ents)
        if cmd == "msgs":
            return "\n".join(fmt_msg(m) for m in self.pending) or "(none)"
        if cmd == "events":
            out = "\n".join(self.events) or "(none)"
            self.events = []
            return out
        raise ValueError(f"unknown command {cmd!r}")


def run_script(path: Path, rewrite: bool) -> None:
    lines = path.read_text().splitlines()
    out_lines: list[str] = []
    cluster = Cluster()
    i = 0
    mismatches: list[str] = []
    while i < len(lines):
        line = lines[i]
        out_lines.append(line)
        i += 1
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        cmd, *args = stripped.split()
        actual = cluster.run(cmd, args)
        if i < len(lines) and lines[i] == "----":
            i += 1
            expected: list[str] = []
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
            out_lines.append("----")
            out_lines.extend(actual.splitlines() if actual else ["ok"])
            exp = "\n".join(expected)
            if exp != (actual or "ok"):
                mismatches.append(
                    f"{path.name}:{i}: {line}\n--- expected\n{exp}\n--- actual\n{actual or 'ok'}"
                )
    if rewrite:
        path.write_text("\n".join(out_lines) + "\n")
    elif mismatches:
        pytest.fail("\n\n".join(mismatches), pytrace=False)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    run_script(path, rewrite=os.environ.get("RAFT_SCENARIO_REWRITE") == "1")

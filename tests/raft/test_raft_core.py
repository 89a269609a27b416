"""Unit tests of the Raft core's pieces: storage, log, progress, quorum, conf changes, core."""

from __future__ import annotations

import random

import pytest

from raftkv.raft import (
    NONE,
    CompactedError,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    DropReason,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposeOutcome,
    RaftCore,
    RaftLog,
    Role,
    Snapshot,
    SnapshotMeta,
    UnavailableError,
)
from raftkv.raft import confchange as cc_mod
from raftkv.raft.progress import Inflights, Progress, ProgressState
from raftkv.raft.quorum import VoteResult, committed_index, vote_result
from raftkv.raft.read_only import ReadOnly

MT = MessageType


def ents(*spec: tuple[int, int]) -> list[Entry]:
    return [Entry(i, t, EntryType.NORMAL, b"%d/%d" % (i, t)) for i, t in spec]


# ---------------------------------------------------------------------------- storage
def test_memory_storage_append_truncates_conflicting_suffix() -> None:
    st = MemoryStorage()
    st.append(ents((1, 1), (2, 1), (3, 1)))
    st.append(ents((2, 2), (3, 2), (4, 2)))
    assert [(e.index, e.term) for e in st.all_entries()] == [(1, 1), (2, 2), (3, 2), (4, 2)]
    assert st.first_index() == 1 and st.last_index() == 4
    with pytest.raises(UnavailableError):
        st.term(5)
    with pytest.raises(ValueError):
        st.append(ents((7, 2)))


def test_memory_storage_entries_respect_byte_limit() -> None:
    st = MemoryStorage()
    st.append([Entry(i, 1, EntryType.NORMAL, b"x" * 100) for i in range(1, 11)])
    assert len(st.entries(1, 11, 1 << 20)) == 10
    assert len(st.entries(1, 11, 250)) == 2  # 116 bytes each
    assert len(st.entries(1, 11, 1)) == 1  # always at least one


def test_memory_storage_snapshot_and_compaction() -> None:
    st = MemoryStorage()
    st.append(ents(*[(i, 1) for i in range(1, 11)]))
    snap = st.create_snapshot(6, ConfState(frozenset({1})), b"state")
    assert snap.meta == SnapshotMeta(6, 1, ConfState(frozenset({1})))
    st.compact(4)
    assert st.first_index() == 5 and st.term(4) == 1
    with pytest.raises(CompactedError):
        st.term(3)
    with pytest.raises(CompactedError):
        st.entries(4, 6, 1000)
    st.compact(6)
    assert st.first_index() == 7
    # Appending entries that overlap the snapshot skips the covered part.
    st.append(ents((5, 1), (6, 1), (7, 1), (8, 3)))
    assert st.last_index() == 8 and st.term(8) == 3
    st.apply_snapshot(Snapshot(SnapshotMeta(20, 4, ConfState(frozenset({1, 2}))), b"s"))
    assert st.first_index() == 21 and st.last_index() == 20 and st.term(20) == 4


# ---------------------------------------------------------------------------- log
def make_log(*spec: tuple[int, int]) -> RaftLog:
    st = MemoryStorage()
    st.append(ents(*spec))
    return RaftLog(st)


def test_log_maybe_append_and_conflicts() -> None:
    log = make_log((1, 1), (2, 1), (3, 2))
    assert log.maybe_append(3, 3, 3, ents((4, 3))) == -1  # prev term mismatch
    assert log.maybe_append(3, 2, 2, ents((4, 3), (5, 3))) == 5
    assert log.committed == 2 and log.last_index() == 5
    # Conflict inside the stable part: unstable replaces from index 3.
    assert log.maybe_append(2, 1, 10, ents((3, 4))) == 3
    assert log.committed == 3 and log.last_index() == 3 and log.term(3) == 4
    assert log.offset == 3
    with pytest.raises(AssertionError):
        log.append(ents((2, 9)))  # below commit


def test_log_find_conflict_by_term() -> None:
    log = make_log((1, 1), (2, 1), (3, 2), (4, 2), (5, 4), (6, 4))
    assert log.find_conflict_by_term(6, 3) == (4, 2)
    assert log.find_conflict_by_term(6, 4) == (6, 4)
    assert log.find_conflict_by_term(6, 1) == (2, 1)
    assert log.find_conflict_by_term(6, 0) == (0, 0)


def test_log_slice_spans_stable_and_unstable() -> None:
    log = make_log((1, 1), (2, 1))
    log.append(ents((3, 2), (4, 2)))
    assert [e.index for e in log.slice(1, 5, 1 << 20)] == [1, 2, 3, 4]
    assert [e.index for e in log.slice(2, 4, 1 << 20)] == [2, 3]
    assert len(log.slice(1, 5, 1)) == 1
    log.stable_to(4)
    assert log.unstable == [] and log.offset == 5


def test_log_is_up_to_date() -> None:
    log = make_log((1, 1), (2, 3))
    assert log.is_up_to_date(2, 3) and log.is_up_to_date(1, 4)
    assert not log.is_up_to_date(5, 2) and not log.is_up_to_date(1, 3)


# ---------------------------------------------------------------------------- small pieces
def test_quorum_math() -> None:
    m = {1: 5, 2: 3, 3: 9}
    assert committed_index({1, 2, 3}, m.__getitem__) == 5
    assert committed_index({1}, m.__getitem__) == 5
    assert committed_index(set(), m.__getitem__) == 0
    assert committed_index({1, 2, 3, 4}, {1: 5, 2: 3, 3: 9, 4: 1}.__getitem__) == 3
    assert vote_result({1, 2, 3}, {1: True, 2: True}) == VoteResult.WON
    assert vote_result({1, 2, 3}, {1: True, 2: False}) == VoteResult.PENDING
    assert vote_result({1, 2, 3}, {1: True, 2: False, 3: False}) == VoteResult.LOST
    assert vote_result({1, 2, 3, 4}, {1: True, 2: True}) == VoteResult.PENDING


def test_progress_backtracking_and_pipelining() -> None:
    pr = Progress(10, max_inflight=2, max_inflight_bytes=0)
    assert pr.state == ProgressState.PROBE
    assert not pr.maybe_decr_to(5, 3)  # stale: we did not probe 5
    assert pr.maybe_decr_to(9, 3) and pr.next == 4
    pr.sent(4, 0, 1)
    assert pr.is_paused()
    assert pr.maybe_update(4) and not pr.is_paused()
    pr.become_replicate()
    pr.sent(6, 10, 2)
    pr.sent(8, 10, 2)
    assert pr.next == 9 and pr.is_paused()  # window of 2 messages full
    pr.inflights.free_le(6)
    assert not pr.is_paused()
    assert not pr.maybe_decr_to(4, 0)  # at or below match: stale
    assert pr.maybe_decr_to(8, 0) and pr.next == 5


def test_inflights_byte_limit() -> None:
    inf = Inflights(10, 100)
    inf.add(1, 60)
    assert not inf.full()
    inf.add(2, 60)
    assert inf.full()
    inf.free_first()
    assert not inf.full() and inf.bytes == 60


def test_read_only_confirms_by_quorum_of_rounds() -> None:
    ro = ReadOnly()
    ro.add(5, b"a", 1)
    ro.add(5, b"b", 1)
    assert ro.needs_broadcast()
    ro.ack(2, 1)
    assert [r.ctx for r in ro.confirm({1, 2, 3}, 1)] == [b"a"]
    ro.ack(3, 2)
    assert [r.ctx for r in ro.confirm({1, 2, 3}, 1)] == [b"b"]


def test_confchange_encoding_and_rules() -> None:
    c = ConfChange(ConfChangeType.ADD_LEARNER, 7, b"ctx")
    assert ConfChange.decode(c.encode()) == c
    cs = ConfState(frozenset({1, 2}))
    cs = cc_mod.apply(cs, c)
    assert cs == ConfState(frozenset({1, 2}), frozenset({7}))
    cs = cc_mod.apply(cs, ConfChange(ConfChangeType.ADD_VOTER, 7))
    assert cs == ConfState(frozenset({1, 2, 7}), frozenset())
    with pytest.raises(cc_mod.ConfChangeError):
        cc_mod.validate(cs, ConfChange(ConfChangeType.ADD_LEARNER, 7))
    with pytest.raises(cc_mod.ConfChangeError):
        cc_mod.validate(ConfState(frozenset({1})), ConfChange(ConfChangeType.REMOVE, 1))
    assert cc_mod.apply(cs, ConfChange(ConfChangeType.REMOVE, 9)) == cs


# ---------------------------------------------------------------------------- core
def bootstrap(ids: list[int]) -> tuple[MemoryStorage, HardState]:
    st = MemoryStorage()
    st.append(
        [
            Entry(i, 1, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_VOTER, x).encode())
            for i, x in enumerate(ids, 1)
        ]
    )
    return st, HardState(1, NONE, len(ids))


class Net:
    """Minimal synchronous cluster: ready/persist/advance after every input."""

    def __init__(self, n: int, **cfg: object) -> None:
        ids = list(range(1, n + 1))
        self.st: dict[int, MemoryStorage] = {}
        self.cores: dict[int, RaftCore] = {}
        self.msgs: list[Message] = []
        self.applied: dict[int, list[Entry]] = {i: [] for i in ids}
        for i in ids:
            st, hs = bootstrap(ids)
            self.st[i] = st
            self.cores[i] = RaftCore(Config(i, **cfg), st, random.Random(i), hs)  # type: ignore[arg-type]
        for i in ids:
            self.process(i)

    def process(self, i: int) -> None:
        c = self.cores[i]
        while c.has_ready():
            rd = c.ready()
            if rd.snapshot is not None:
                self.st[i].apply_snapshot(rd.snapshot)
            self.st[i].append(rd.entries)
            self.msgs.extend(rd.messages)
            self.applied[i].extend(rd.committed_entries)
            c.advance()

    def deliver(self) -> None:
        for _ in range(1000):
            if not self.msgs:
                return
            batch, self.msgs = self.msgs, []
            for m in batch:
                self.cores[m.to].step(m)
                self.process(m.to)

    def elect(self, i: int) -> None:
        self.cores[i].campaign()
        self.process(i)
        self.deliver()
        assert self.cores[i].role == Role.LEADER


def test_single_member_commits_alone() -> None:
    net = Net(1)
    net.elect(1)
    c = net.cores[1]
    assert c.propose(b"x") == ProposeOutcome.APPENDED
    net.process(1)
    assert c.log.committed == 3 and net.applied[1][-1].data == b"x"


def test_batched_proposals_go_out_in_one_message_per_follower() -> None:
    net = Net(3)
    net.elect(1)
    c = net.cores[1]
    for i in range(64):
        c.propose(b"v%d" % i)
    rd = c.ready()
    apps = [m for m in rd.messages if m.type == MT.APP]
    assert len(apps) == 2 and all(len(m.entries) == 64 for m in apps)
    assert len(rd.entries) == 64
    net.st[1].append(rd.entries)
    net.msgs.extend(rd.messages)
    c.advance()
    net.deliver()
    assert all(x.log.committed == 68 for x in net.cores.values())


def test_max_size_per_msg_splits_appends() -> None:
    net = Net(3, max_size_per_msg=300)
    net.elect(1)
    c = net.cores[1]
    c.propose_batch([b"x" * 100] * 10)
    rd = c.ready()
    apps = [m for m in rd.messages if m.type == MT.APP and m.to == 2]
    assert [len(m.entries) for m in apps] == [2, 2, 2, 2, 2]
    c.advance()


def test_heartbeat_commit_is_capped_by_match() -> None:
    net = Net(3)
    net.elect(1)
    c = net.cores[1]
    c.prs[3].match = 2  # pretend n3 is behind
    c.tick()
    rd = c.ready()
    hb = {m.to: m.commit for m in rd.messages if m.type == MT.HEARTBEAT}
    assert hb == {2: c.log.committed, 3: 2}
    c.advance()


def test_ready_must_be_advanced() -> None:
    net = Net(3)
    c = net.cores[1]
    c.campaign()
    c.ready()
    with pytest.raises(RuntimeError):
        c.ready()
    c.advance()
    with pytest.raises(RuntimeError):
        c.advance()


def test_timeouts_are_randomized_from_the_given_rng() -> None:
    def first_campaign_tick(seed: int) -> int:
        st, hs = bootstrap([1, 2, 3])
        c = RaftCore(Config(1), st, random.Random(seed), hs)
        while c.has_ready():  # apply the bootstrap membership
            c.ready()
            c.advance()
        for t in range(1, 100):
            c.tick()
            if c.role != Role.FOLLOWER:
                return t
        raise AssertionError("never campaigned")

    ticks = {first_campaign_tick(s) for s in range(30)}
    assert min(ticks) >= 10 and max(ticks) < 20 and len(ticks) > 3
    assert first_campaign_tick(5) == first_campaign_tick(5)


def test_follower_refuses_proposal_without_forwarding() -> None:
    net = Net(3, disable_proposal_forwarding=True)
    net.elect(1)
    f = net.cores[2]
    assert f.propose(b"x") == ProposeOutcome.DROPPED
    rd = f.ready()
    assert [(d.data, d.reason, d.leader_hint) for d in rd.dropped_proposals] == [
        (b"x", DropReason.NOT_LEADER, 1)
    ]
    f.advance()


def test_stale_term_messages_are_answered_so_old_leaders_step_down() -> None:
    net = Net(3)
    net.elect(1)
    f = net.cores[2]
    f.step(Message(MT.APP, 2, 3, term=1, index=3, log_term=1))
    rd = f.ready()
    assert [(m.type, m.to, m.term) for m in rd.messages] == [(MT.APP_RESP, 3, 2)]
    f.advance()


def test_leader_sends_snapshot_when_log_is_compacted() -> None:
    net = Net(3)
    net.elect(1)
    c = net.cores[1]
    c.propose_batch([b"a", b"b", b"c"])
    net.process(1)
    net.deliver()
    net.st[1].create_snapshot(7, c.conf, b"snap")
    net.st[1].compact(7)
    c.prs[3].become_probe()
    c.prs[3].next = 3
    c.prs[3].match = 2
    assert c._maybe_send_append(3, True)
    rd = c.ready()
    snaps = [m for m in rd.messages if m.type == MT.SNAP]
    assert len(snaps) == 1 and snaps[0].snapshot is not None
    assert snaps[0].snapshot.meta.index == 7
    assert c.prs[3].state == ProgressState.SNAPSHOT
    c.advance()


def test_bench_lockstep_cluster_commits_everything() -> None:
    from raftkv.raft import bench

    assert bench.run(batches=20, batch=8, size=32) > 0

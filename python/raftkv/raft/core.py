"""The Raft state machine: pure and deterministic, in the style of etcd-io/raft.

Inputs: ``tick()``, ``step(message)``, ``propose(data)`` / ``propose_batch``,
``propose_conf_change``, ``read_index(ctx)``, ``transfer_leader(id)``, ``report_snapshot``.
Output: ``ready()`` returns a ``Ready`` (see ``messages.Ready`` for the processing contract), then
``advance()`` acknowledges it. At most one Ready is outstanding; inputs may still be stepped while
it is being processed. No clock, no I/O, no global randomness: the same inputs (and the same
seeded ``random.Random``) give the same outputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import IntEnum
from operator import attrgetter

from . import confchange
from .confchange import ConfChange, ConfChangeError
from .log import CompactedError, LogStorage, RaftLog
from .messages import (
    NONE,
    ConfState,
    DroppedProposal,
    DroppedRead,
    DropReason,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    SoftState,
    entry_size,
)
from .progress import Progress, ProgressState
from .quorum import VoteResult, committed_index, has_quorum, vote_result
from .read_only import ReadOnly

MT = MessageType
# Enum members bound to module names: attribute access on an Enum class is slow in 3.11.
M_APP = MT.APP
M_APP_RESP = MT.APP_RESP
M_HEARTBEAT = MT.HEARTBEAT
M_HEARTBEAT_RESP = MT.HEARTBEAT_RESP
M_PRE_VOTE = MT.PRE_VOTE
M_PRE_VOTE_RESP = MT.PRE_VOTE_RESP
M_PROP = MT.PROP
M_READ_INDEX = MT.READ_INDEX
M_READ_INDEX_RESP = MT.READ_INDEX_RESP
M_SNAP = MT.SNAP
M_TIMEOUT_NOW = MT.TIMEOUT_NOW
M_TRANSFER_LEADER = MT.TRANSFER_LEADER
M_VOTE = MT.VOTE
M_VOTE_RESP = MT.VOTE_RESP
R_CANDIDATE = Role.CANDIDATE
R_FOLLOWER = Role.FOLLOWER
R_LEADER = Role.LEADER
R_PRE_CANDIDATE = Role.PRE_CANDIDATE
PS_PROBE = ProgressState.PROBE
PS_REPLICATE = ProgressState.REPLICATE
PS_SNAPSHOT = ProgressState.SNAPSHOT
ET_CONF_CHANGE = EntryType.CONF_CHANGE
ET_NORMAL = EntryType.NORMAL
_etype = attrgetter("entry_type")
# Messages whose term field is not simply the sender's current term.
_OWN_TERM = frozenset(
    {
        M_VOTE,
        M_PRE_VOTE,
        M_VOTE_RESP,
        M_PRE_VOTE_RESP,
        M_PROP,
        M_READ_INDEX,
        M_READ_INDEX_RESP,
        M_TRANSFER_LEADER,
    }
)
TRANSFER_CTX = b"transfer"


class ProposeOutcome(IntEnum):
    APPENDED = 1  # appended to the leader's log (commit is still not guaranteed)
    FORWARDED = 2  # sent to the leader (may be lost in transit like any message)
    DROPPED = 3  # refused; reported in Ready.dropped_proposals with reason and leader hint


@dataclass(slots=True)
class Config:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20  # bytes of entries per APP message (at least one entry)
    max_inflight_msgs: int = 256  # APP messages in flight per follower in REPLICATE state
    max_inflight_bytes: int = 0  # 0: unlimited
    max_committed_size_per_ready: int = 1 << 62
    # Serve reads from the leader's lease instead of a heartbeat round (needs check_quorum).
    # Like etcd's, this trusts bounded clock drift and is not safe across follower restarts
    # (a restarted follower forgets it heard from the leader) or forced transfers; the
    # simulation therefore checks ReadIndex, not lease reads.
    read_only_lease_based: bool = False
    disable_proposal_forwarding: bool = False
    applied: int = 0  # restart: the state machine already applied up to here

    def validate(self) -> None:
        if self.id <= 0:
            raise ValueError("id must be positive")
        if self.heartbeat_tick <= 0 or self.election_tick <= self.heartbeat_tick:
            raise ValueError("need 0 < heartbeat_tick < election_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")
        if self.read_only_lease_based and not self.check_quorum:
            raise ValueError("lease-based reads need check_quorum")


class RaftCore:
    def __init__(
        self,
        config: Config,
        storage: LogStorage,
        rng: random.Random,
        hard_state: HardState | None = None,
    ) -> None:
        config.validate()
        self.cfg = config
        self.id = config.id
        self.rng = rng
        self.log = RaftLog(storage)
        self.conf: ConfState = storage.snapshot_meta().conf_state
        hs = hard_state if hard_state is not None else HardState()
        self.term = hs.term
        self.vote = hs.vote
        if hs.commit:
            self.log.commit_to(hs.commit)
        if config.applied > self.log.applied:
            self.log.applied = min(config.applied, self.log.committed)
        self.lead = NONE
        self.role = R_FOLLOWER
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.dropped_proposals: list[DroppedProposal] = []
        self.dropped_reads: list[DroppedRead] = []
        self.read_only = ReadOnly()
        self.pending_reads: list[tuple[bytes, int]] = []  # waiting for a commit in this term
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_tick
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self._bcast_entries = False
        self._bcast_commit = False
        self._prev_hs = hs
        self._prev_ss = SoftState(NONE, R_FOLLOWER)
        self._ready: Ready | None = None
        self.become_follower(self.term, NONE)

    # ------------------------------------------------------------------ small helpers
    def __repr__(self) -> str:
        return (
            f"RaftCore(id={self.id}, {self.role.name}, term={self.term}, lead={self.lead}, "
            f"last={self.log.last_index()}, commit={self.log.committed}, "
            f"applied={self.log.applied})"
        )

    @property
    def promotable(self) -> bool:
        return self.id in self.conf.voters

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _send(self, m: Message) -> None:
        if m.type not in _OWN_TERM:
            m.term = self.term
        self.msgs.append(m)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        e = self.cfg.election_tick
        self.randomized_timeout = e + self.rng.randrange(e)
        self.lead_transferee = NONE
        self.votes = {}
        self.prs = {}
        self.pending_conf_index = 0
        for r in self.read_only.drain():
            if r.frm == self.id:
                self.dropped_reads.append(DroppedRead(r.ctx, DropReason.NOT_LEADER, NONE))
        for ctx, frm in self.pending_reads:
            if frm == self.id:
                self.dropped_reads.append(DroppedRead(ctx, DropReason.NOT_LEADER, NONE))
        self.pending_reads = []
        self.read_only = ReadOnly()
        self._bcast_entries = self._bcast_commit = False

    # ------------------------------------------------------------------ role changes
    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = R_FOLLOWER

    def _become_pre_candidate(self) -> None:
        # Neither term nor vote change: a pre-vote must not disturb anyone.
        self.role = R_PRE_CANDIDATE
        self.votes = {}
        self.lead = NONE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = R_CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.lead = self.id
        self.role = R_LEADER
        last = self.log.last_index()
        cfg = self.cfg
        for v in self.conf.voters | self.conf.learners:
            pr = Progress(
                last + 1, cfg.max_inflight_msgs, cfg.max_inflight_bytes, v in self.conf.learners
            )
            self.prs[v] = pr
        me = self.prs[self.id]
        me.match = self._stable_last()
        me.become_replicate()
        me.recent_active = True
        # A no-op entry of this term: commits everything before it (Raft §5.4.2) and gates
        # membership changes and reads until it commits.
        self.log.append([Entry(last + 1, self.term)])
        self.pending_conf_index = last + 1
        self._bcast_entries = True

    def _stable_last(self) -> int:
        log = self.log
        if log.unstable_snapshot is not None:
            return 0
        return log.offset - 1 if log.unstable else log.last_index()

    # ------------------------------------------------------------------ ticks and elections
    def tick(self) -> None:
        if self.role == R_LEADER:
            self._tick_heartbeat()
        else:
            self.election_elapsed += 1
            if self.promotable and self.election_elapsed >= self.randomized_timeout:
                self.election_elapsed = 0
                self.campaign()

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                prs = self.prs
                me = self.id
                if not has_quorum(
                    self.conf.voters, lambda v: v == me or (v in prs and prs[v].recent_active)
                ):
                    self.become_follower(self.term, NONE)
                    return
                for v, pr in prs.items():
                    if v != me:
                        pr.recent_active = False
            self.lead_transferee = NONE  # a transfer that did not finish in time is abandoned
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat()

    def campaign(self, transfer: bool = False) -> None:
        """Start an election: a pre-vote first when enabled, unless this is a leadership
        transfer (which also bypasses the voters' leader leases)."""
        if self.role == R_LEADER or not self.promotable:
            return
        if self._has_unapplied_conf_change():
            return
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre_vote=True, transfer=False)
        else:
            self._campaign(pre_vote=False, transfer=transfer)

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            vtype = M_PRE_VOTE
            term = self.term + 1
        else:
            self._become_candidate()
            vtype = M_VOTE
            term = self.term
        self.votes[self.id] = True
        res = vote_result(self.conf.voters, self.votes)
        if res == VoteResult.WON:
            if pre_vote:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
            return
        last = self.log.last_index()
        last_term = self.log.last_term()
        ctx = TRANSFER_CTX if transfer else b""
        for v in sorted(self.conf.voters):
            if v != self.id:
                self._send(
                    Message(
                        vtype, v, self.id, term=term, index=last, log_term=last_term, context=ctx
                    )
                )

    def _has_unapplied_conf_change(self) -> bool:
        log = self.log
        if log.committed <= log.applied:
            return False
        try:
            ents = log.slice(max(log.applied + 1, log.first_index()), log.committed + 1, 1 << 62)
        except CompactedError:
            return False
        return any(e.entry_type == ET_CONF_CHANGE for e in ents)

    # ------------------------------------------------------------------ step
    def step(self, m: Message) -> None:
        if m.term > self.term:
            t = m.type
            if t in (M_VOTE, M_PRE_VOTE):
                force = m.context == TRANSFER_CTX
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.cfg.election_tick
                )
                if in_lease and not force:
                    return  # leader stickiness: we hear from a live leader
            if t == M_PRE_VOTE or (t == M_PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote (or a granted one) says nothing about the real term
            elif t in (M_APP, M_HEARTBEAT, M_SNAP):
                self.become_follower(m.term, m.frm)
            elif t == M_PRE_VOTE_RESP and self.role == R_PRE_CANDIDATE:
                # Our pre-vote lost to a newer term (e.g. a member that campaigned in vain
                # while cut off). Adopt it and retry at once in that term rather than waiting
                # a whole election timeout: the others may still grant us.
                self.become_follower(m.term, NONE)
                self.campaign()
                return
            else:
                self.become_follower(m.term, NONE)
        elif 0 < m.term < self.term:
            t = m.type
            if (self.cfg.check_quorum or self.cfg.pre_vote) and t in (M_HEARTBEAT, M_APP):
                # Tell a stale leader about the newer term so it steps down.
                self._send(Message(M_APP_RESP, m.frm, self.id))
            elif t == M_PRE_VOTE:
                self._send(Message(M_PRE_VOTE_RESP, m.frm, self.id, term=self.term, reject=True))
            return

        t = m.type
        if t in (M_VOTE, M_PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role == R_LEADER:
            self._step_leader(m)
        elif self.role == R_FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        resp = M_VOTE_RESP if m.type == M_VOTE else M_PRE_VOTE_RESP
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == M_PRE_VOTE and m.term > self.term)
        )
        if (
            can_vote
            and m.type == M_PRE_VOTE
            and self.role == R_PRE_CANDIDATE
            and m.term == self.term + 1
            and m.frm < self.id
            and m.index == self.log.last_index()
            and m.log_term == self.log.last_term()
        ):
            # Two pre-candidates for the same term with equal logs at once: only the higher id
            # gets both grants, so simultaneous timeouts do not end in a split vote. (Refusing
            # a pre-vote never affects safety.)
            can_vote = False
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp, m.frm, self.id, term=m.term))
            if m.type == M_VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(resp, m.frm, self.id, term=self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t == M_APP:
            self.become_follower(m.term, m.frm)
            self._handle_append(m)
        elif t == M_HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t == M_SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif (t == M_PRE_VOTE_RESP and self.role == R_PRE_CANDIDATE) or (
            t == M_VOTE_RESP and self.role == R_CANDIDATE
        ):
            self.votes.setdefault(m.frm, not m.reject)
            res = vote_result(self.conf.voters, self.votes)
            if res == VoteResult.WON:
                if self.role == R_PRE_CANDIDATE:
                    self._campaign(pre_vote=False, transfer=False)
                else:
                    self._become_leader()
            elif res == VoteResult.LOST:
                self.become_follower(self.term, NONE)
        elif t == M_READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        # PROP / READ_INDEX / TRANSFER_LEADER / TIMEOUT_NOW: no leader to hand them to.

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == M_APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t == M_HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif t == M_SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t == M_TIMEOUT_NOW:
            self.campaign(transfer=True)
        elif t == M_READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        elif (
            t in (M_PROP, M_READ_INDEX, M_TRANSFER_LEADER)
            and self.lead != NONE
            and self.lead != m.frm
            and not (t == M_PROP and self.cfg.disable_proposal_forwarding)
        ):
            m2 = Message(t, self.lead, m.frm, index=m.index, entries=m.entries, context=m.context)
            self._send(m2)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == M_APP_RESP:
            self._handle_append_response(m)
        elif t == M_HEARTBEAT_RESP:
            self._handle_heartbeat_response(m)
        elif t == M_PROP:
            if m.entries:
                self._leader_append([e.data for e in m.entries], m.entries[0].entry_type)
        elif t == M_READ_INDEX:
            self._leader_read(m.context, m.frm)
        elif t == M_TRANSFER_LEADER:
            self._leader_transfer(m.index)

    # ------------------------------------------------------------------ follower side
    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(Message(M_APP_RESP, m.frm, self.id, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new >= 0:
            self._send(Message(M_APP_RESP, m.frm, self.id, index=last_new))
            return
        hint = min(m.index, log.last_index())
        hint, hint_term = log.find_conflict_by_term(hint, m.log_term)
        self._send(
            Message(
                M_APP_RESP,
                m.frm,
                self.id,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(Message(M_HEARTBEAT_RESP, m.frm, self.id, index=m.index))

    def _handle_snapshot(self, m: Message) -> None:
        s = m.snapshot
        log = self.log
        if s is None:
            return
        meta = s.meta
        if meta.index <= log.committed:
            self._send(Message(M_APP_RESP, m.frm, self.id, index=log.committed))
            return
        if log.match_term(meta.index, meta.term):
            # We already have the entries: just fast-forward the commit index.
            log.commit_to(meta.index)
        else:
            log.restore(s)
            self.conf = meta.conf_state
        self._send(Message(M_APP_RESP, m.frm, self.id, index=log.last_index()))

    # ------------------------------------------------------------------ leader side
    def _handle_append_response(self, m: Message) -> None:
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        pr.recent_active = True
        frm = m.frm
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == PS_REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(frm, True)
            return
        old_paused = pr.is_paused()
        if not (pr.maybe_update(m.index) or (pr.match == m.index and pr.state == PS_PROBE)):
            return
        if pr.state == PS_PROBE:
            pr.become_replicate()
        elif pr.state == PS_SNAPSHOT:
            if pr.match < pr.pending_snapshot:
                return
            pr.become_probe()
            pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_commit = True
        elif old_paused:
            self._maybe_send_append(frm, True)
        while self._maybe_send_append(frm, False):
            pass
        if frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(Message(M_TIMEOUT_NOW, frm, self.id))

    def _handle_heartbeat_response(self, m: Message) -> None:
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        pr.recent_active = True
        pr.paused = False
        if pr.state == PS_SNAPSHOT:
            pr.snapshot_wait += 1
            if pr.snapshot_wait >= self.cfg.election_tick:
                pr.become_probe()  # the snapshot (or its reply) was probably lost: retry
        elif pr.state == PS_REPLICATE and pr.inflights.full():
            pr.inflights.free_first()
        if pr.match < self.log.last_index() or pr.state == PS_PROBE:
            self._maybe_send_append(m.frm, True)
        if m.index and not self.cfg.read_only_lease_based:
            ro = self.read_only
            ro.ack(m.frm, m.index)
            for r in ro.confirm(self.conf.voters, self.id):
                self._release_read(r.index, r.ctx, r.frm)

    def _maybe_commit(self) -> bool:
        prs = self.prs
        mci = committed_index(self.conf.voters, lambda v: prs[v].match if v in prs else 0)
        if self.log.maybe_commit(mci, self.term):
            if self.pending_reads:
                pending = self.pending_reads
                self.pending_reads = []
                for ctx, frm in pending:
                    self._leader_read(ctx, frm)
            return True
        return False

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        log = self.log
        nxt = pr.next
        try:
            prev_term = log.term(nxt - 1)
            last = log.last_index()
            ents = log.slice(nxt, last + 1, self.cfg.max_size_per_msg) if nxt <= last else []
        except CompactedError:
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self._send(
            Message(
                M_APP,
                to,
                self.id,
                index=nxt - 1,
                log_term=prev_term,
                entries=ents,
                commit=log.committed,
            )
        )
        if ents:
            size = sum(map(entry_size, ents)) if self.cfg.max_inflight_bytes else 0
            pr.sent(ents[-1].index, size, len(ents))
        else:
            pr.sent(nxt - 1, 0, 0)
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        snap = self.log.storage.snapshot()
        pr.become_snapshot(snap.meta.index)
        self._send(Message(M_SNAP, to, self.id, snapshot=snap))
        return True

    def _bcast_heartbeat(self) -> None:
        ro = self.read_only
        ro.broadcast_round = ro.last_round
        committed = self.log.committed
        for v, pr in self.prs.items():
            if v != self.id:
                self._send(
                    Message(
                        M_HEARTBEAT,
                        v,
                        self.id,
                        commit=min(pr.match, committed),
                        index=ro.last_round,
                    )
                )

    def _flush(self) -> None:
        """Batch the sends accumulated during this turn: one append per follower, one heartbeat
        round for all pending reads."""
        if self.role != R_LEADER:
            return
        if self._bcast_entries or self._bcast_commit:
            commit = self._bcast_commit
            self._bcast_entries = self._bcast_commit = False
            for v in self.prs:
                if v != self.id:
                    sent = self._maybe_send_append(v, commit)
                    while sent:
                        sent = self._maybe_send_append(v, False)
        if self.read_only.needs_broadcast():
            self._bcast_heartbeat()

    def _leader_append(self, datas: list[bytes], etype: EntryType) -> ProposeOutcome:
        if self.lead_transferee != NONE:
            return self._drop(datas, etype, DropReason.TRANSFERRING)
        if etype == ET_CONF_CHANGE:
            if len(datas) != 1:
                return self._drop(datas, etype, DropReason.INVALID_CONF_CHANGE)
            if self.pending_conf_index > self.log.applied:
                return self._drop(datas, etype, DropReason.CONF_CHANGE_PENDING)
            try:
                confchange.validate(self.conf, ConfChange.decode(datas[0]))
            except (ConfChangeError, ValueError):
                return self._drop(datas, etype, DropReason.INVALID_CONF_CHANGE)
        log = self.log
        idx = log.last_index()
        term = self.term
        ents = [Entry(idx + i, term, etype, d) for i, d in enumerate(datas, 1)]
        log.append(ents)
        if etype == ET_CONF_CHANGE:
            self.pending_conf_index = idx + 1
        self._bcast_entries = True
        return ProposeOutcome.APPENDED

    def _drop(self, datas: list[bytes], etype: EntryType, reason: DropReason) -> ProposeOutcome:
        lead = self.lead
        self.dropped_proposals.extend(DroppedProposal(d, etype, reason, lead) for d in datas)
        return ProposeOutcome.DROPPED

    def _leader_read(self, ctx: bytes, frm: int) -> None:
        if self.log.term_or_zero(self.log.committed) != self.term:
            self.pending_reads.append((ctx, frm))  # wait for our no-op to commit
            return
        idx = self.log.committed
        if self.conf.voters == {self.id} or self.cfg.read_only_lease_based:
            self._release_read(idx, ctx, frm)
        else:
            self.read_only.add(idx, ctx, frm)

    def _release_read(self, index: int, ctx: bytes, frm: int) -> None:
        if frm == self.id:
            self.read_states.append(ReadState(index, ctx))
        else:
            self._send(Message(M_READ_INDEX_RESP, frm, self.id, index=index, context=ctx))

    def _leader_transfer(self, target: int) -> None:
        pr = self.prs.get(target)
        if pr is None or pr.is_learner or target == self.id:
            return
        if self.lead_transferee == target:
            return
        self.lead_transferee = target
        self.election_elapsed = 0  # the transfer must finish within an election timeout
        if pr.match == self.log.last_index():
            self._send(Message(M_TIMEOUT_NOW, target, self.id))
        else:
            self._maybe_send_append(target, True)

    # ------------------------------------------------------------------ public inputs
    def propose(self, data: bytes) -> ProposeOutcome:
        return self.propose_batch([data])

    def propose_batch(self, datas: list[bytes], etype: EntryType = ET_NORMAL) -> ProposeOutcome:
        """Propose entries; they are appended as one batch on a leader."""
        if not datas:
            return ProposeOutcome.APPENDED
        if self.role == R_LEADER:
            return self._leader_append(datas, etype)
        if self.lead == NONE or self.cfg.disable_proposal_forwarding:
            return self._drop(datas, etype, DropReason.NOT_LEADER)
        ents = [Entry(0, 0, etype, d) for d in datas]
        self._send(Message(M_PROP, self.lead, self.id, entries=ents))
        return ProposeOutcome.FORWARDED

    def propose_conf_change(self, cc: ConfChange) -> ProposeOutcome:
        return self.propose_batch([cc.encode()], ET_CONF_CHANGE)

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read index; answered by a ReadState with the same ``ctx``
        (which the caller must make unique), or a DroppedRead."""
        if self.role == R_LEADER:
            self._leader_read(ctx, self.id)
        elif self.lead != NONE:
            self._send(Message(M_READ_INDEX, self.lead, self.id, context=ctx))
        else:
            self.dropped_reads.append(DroppedRead(ctx, DropReason.NOT_LEADER, NONE))

    def transfer_leader(self, target: int) -> None:
        if self.role == R_LEADER:
            self._leader_transfer(target)
        elif self.lead != NONE:
            self._send(Message(M_TRANSFER_LEADER, self.lead, self.id, index=target))

    def report_snapshot(self, to: int, ok: bool) -> None:
        """The transport tells whether a snapshot sent to ``to`` was delivered."""
        pr = self.prs.get(to) if self.role == R_LEADER else None
        if pr is None or pr.state != PS_SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.paused = True  # wait for a heartbeat reply before probing again

    def report_unreachable(self, to: int) -> None:
        pr = self.prs.get(to) if self.role == R_LEADER else None
        if pr is not None and pr.state == PS_REPLICATE:
            pr.become_probe()

    # ------------------------------------------------------------------ membership
    def _apply_conf_change(self, cc: ConfChange) -> None:
        new = confchange.apply(self.conf, cc)
        if new == self.conf:
            return
        self.conf = new
        if self.role != R_LEADER:
            if self.role != R_FOLLOWER and self.id not in new.voters:
                self.become_follower(self.term, NONE)  # no longer a voter: stop campaigning
            return
        members = new.voters | new.learners
        cfg = self.cfg
        last = self.log.last_index()
        for v in members:
            pr = self.prs.get(v)
            if pr is None:
                pr = Progress(last + 1, cfg.max_inflight_msgs, cfg.max_inflight_bytes)
                pr.recent_active = True
                pr.is_learner = v in new.learners
                self.prs[v] = pr
                self._maybe_send_append(v, True)  # start probing the new member now
            pr.is_learner = v in new.learners
        for v in [v for v in self.prs if v not in members]:
            del self.prs[v]
        if self.id not in new.voters:
            # A removed leader steps down. It first tells everyone the commit index and hands
            # leadership to the most caught-up voter (TimeoutNow), so nobody waits for an
            # election timeout.
            for v in self.prs:
                if v != self.id:
                    self._maybe_send_append(v, True)
            best = max(
                ((pr.match, v) for v, pr in self.prs.items() if v in new.voters), default=(0, NONE)
            )
            if best[1] != NONE and best[0] == self.log.last_index():
                self._send(Message(M_TIMEOUT_NOW, best[1], self.id))
            self.become_follower(self.term, NONE)
            return
        if self.lead_transferee not in new.voters:
            self.lead_transferee = NONE
        if self._maybe_commit():
            self._bcast_commit = True
        for r in self.read_only.confirm(new.voters, self.id):
            self._release_read(r.index, r.ctx, r.frm)

    # ------------------------------------------------------------------ Ready / advance
    def has_ready(self) -> bool:
        self._flush()
        log = self.log
        return bool(
            self.msgs
            or log.unstable
            or log.unstable_snapshot is not None
            or (log.committed > log.applied and self._ready is None)
            or self.read_states
            or self.dropped_proposals
            or self.dropped_reads
            or self.term != self._prev_hs.term
            or self.vote != self._prev_hs.vote
            or log.committed != self._prev_hs.commit
            or self.lead != self._prev_ss.lead
            or self.role != self._prev_ss.role
        )

    def ready(self) -> Ready:
        if self._ready is not None:
            raise RuntimeError("advance() the previous Ready first")
        self._flush()
        log = self.log
        rd = Ready()
        if self.lead != self._prev_ss.lead or self.role != self._prev_ss.role:
            self._prev_ss = rd.soft_state = SoftState(self.lead, self.role)
        phs = self._prev_hs
        if self.term != phs.term or self.vote != phs.vote or log.committed != phs.commit:
            rd.hard_state = HardState(self.term, self.vote, log.committed)
            rd.must_sync = self.term != phs.term or self.vote != phs.vote
        if log.unstable:
            rd.entries = list(log.unstable)
            rd.must_sync = True
        rd.snapshot = log.unstable_snapshot
        if rd.snapshot is None:
            rd.committed_entries = log.next_committed(self.cfg.max_committed_size_per_ready)
        else:
            rd.must_sync = True
        rd.messages, self.msgs = self.msgs, []
        if self.read_states:
            rd.read_states, self.read_states = self.read_states, []
        if self.dropped_proposals:
            rd.dropped_proposals, self.dropped_proposals = self.dropped_proposals, []
        if self.dropped_reads:
            rd.dropped_reads, self.dropped_reads = self.dropped_reads, []
        self._ready = rd
        return rd

    def advance(self) -> None:
        rd = self._ready
        if rd is None:
            raise RuntimeError("no Ready to advance")
        self._ready = None
        log = self.log
        if rd.hard_state is not None:
            self._prev_hs = rd.hard_state
        if rd.snapshot is not None:
            idx = rd.snapshot.meta.index
            log.stable_snap_to(idx)
            if idx > log.applied:
                log.applied = idx
        if rd.entries:
            last = rd.entries[-1]
            if log.match_term(last.index, last.term):
                log.stable_to(last.index)
        ce = rd.committed_entries
        if ce:
            log.applied = max(log.applied, ce[-1].index)
            if ET_CONF_CHANGE not in map(_etype, ce):
                ce = []
            # A snapshot restored while this Ready was being processed already carries the
            # membership of everything up to its index.
            snap = log.unstable_snapshot
            covered = snap.meta.index if snap is not None else 0
            for e in ce:
                if e.entry_type == ET_CONF_CHANGE and e.index > covered:
                    try:
                        cc = ConfChange.decode(e.data)
                    except ValueError:
                        continue
                    self._apply_conf_change(cc)
        if self.role == R_LEADER:
            me = self.prs.get(self.id)
            if me is not None and me.maybe_update(self._stable_last()) and self._maybe_commit():
                self._bcast_commit = True

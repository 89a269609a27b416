"""One member: the node loop around the pure Raft core.

Inputs (ticks, peer messages, client proposals and reads) are collected during a loop turn
and fed to the core at once; each ``Ready`` is then processed in order: persist through the
WAL (a leader sends first, in parallel with its own fsync; others wait for the sync), send,
apply committed entries to the state machine in one batch, release reads, ``advance()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, Protocol

from raftkv._native import PeerTransport
from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    DroppedProposal,
    DroppedRead,
    Entry,
    EntryType,
    HardState,
    Message,
    RaftCore,
    Ready,
    Role,
)
from raftkv.server.config import ConfigError, MemberConfig, cluster_id, host_port
from raftkv.server.raftlog import DurableLog
from raftkv.server.wire import WireError, decode_message, encode_message
from raftkv.status import GrpcError, StatusCode
from raftkv.transport import AsyncPeerTransport
from raftkv.wal import AsyncWal

log = logging.getLogger(__name__)

# proposer member id, request id, request kind; then the request's protobuf bytes
_PROPOSAL = struct.Struct("<QQB")

MEMORY_WINDOW = 10_000
"""Log entries kept in memory behind the applied index; older ones are read from the WAL."""

KIND_PUBLISH = 200
"""A member publishes its name and client URLs (JSON), as etcd does after it starts."""

ERR_NO_LEADER = GrpcError(StatusCode.UNAVAILABLE, "etcdserver: no leader")
ERR_TIMEOUT = GrpcError(StatusCode.UNAVAILABLE, "etcdserver: request timed out")
ERR_STOPPED = GrpcError(StatusCode.UNAVAILABLE, "etcdserver: server stopped")
ERR_LEADER_CHANGED = GrpcError(StatusCode.UNAVAILABLE, "etcdserver: leader changed")


class StateMachine(Protocol):
    """What committed entries are applied to (MVCC storage)."""

    @property
    def applied_index(self) -> int: ...

    def apply(
        self, raft_index: int, requests: Sequence[tuple[int, bytes]]
    ) -> Sequence[bytes | GrpcError]:
        """Apply requests in one atomic batch recording ``raft_index``; one result each:
        response bytes or a GrpcError."""
        ...


@dataclass(slots=True)
class MemberInfo:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    is_learner: bool = False


class Member:
    """A running member. Create with :meth:`start` on a running event loop."""

    def __init__(
        self,
        config: MemberConfig,
        state_machine: StateMachine,
        request_timeout: float | None = None,
        memory_window: int = MEMORY_WINDOW,
    ) -> None:
        config.validate()
        self.config = config
        self.memory_window = memory_window
        self.sm = state_machine
        ids = config.member_ids()
        self.id = ids[config.name]
        self.cluster_id = cluster_id(list(ids.values()))
        self.members: dict[int, MemberInfo] = {
            mid: MemberInfo(mid, name, list(config.initial_cluster[name]), [])
            for name, mid in ids.items()
        }
        self.members[self.id].client_urls = list(config.advertise_client_urls)
        self.request_timeout = request_timeout or (5.0 + 2 * config.election_timeout_ms / 1000)
        self._loop = asyncio.get_running_loop()
        self._ids = count(1)
        self._waiters: dict[int, tuple[asyncio.Future[object], bytes]] = {}
        self._deadlines: deque[tuple[float, int, asyncio.Future[Any]]] = deque()
        self._inbox: list[Message] = []
        self._proposals: list[bytes] = []
        self._reads: list[asyncio.Future[None]] = []
        self._read_rounds: dict[bytes, list[asyncio.Future[None]]] = {}
        self._released_reads: list[tuple[int, list[asyncio.Future[None]]]] = []
        self._scheduled = False
        self._in_ready = False
        self._stopped = False
        self._soft_state_waiters: list[asyncio.Future[None]] = []
        self.on_apply: list[Callable[[int], None]] = []

        self._check_identity(config.data_dir / "member")
        self.raftlog = DurableLog(config.data_dir / "member", memory_window)
        self.wal = AsyncWal(self.raftlog.wal, self._loop)
        if self.raftlog.is_empty:
            self._bootstrap(sorted(ids.values()))
        hs = self.raftlog.hard_state()
        cfg = Config(
            id=self.id,
            election_tick=max(config.election_ticks, 2),
            heartbeat_tick=1,
            pre_vote=True,
            check_quorum=True,
            # replay after a restart in bounded steps, not one Ready with the whole log
            max_committed_size_per_ready=8 << 20,
        )
        self.core = RaftCore(cfg, self.raftlog, random.Random(self.id ^ hs.term), hs)
        peers = {
            mid: host_port(info.peer_urls[0])
            for mid, info in self.members.items()
            if mid != self.id
        }
        self.transport = AsyncPeerTransport(
            PeerTransport(
                self.id,
                self.cluster_id,
                host_port(config.listen_peer_urls[0]),
                peers,
                # Sends to a peer in backoff are dropped (Raft retries appends, but a
                # forwarded proposal would be lost): keep the windows short.
                backoff_initial=0.02,
                backoff_max=0.2,
                cert_file=config.peer_cert_file,
                key_file=config.peer_key_file,
                trusted_ca_file=config.peer_trusted_ca_file,
                client_cert_auth=config.peer_client_cert_auth,
            ),
            on_receive=self._on_peer_messages,
            on_unreachable=self._on_unreachable,
        )
        self._tick_handle = self._loop.call_later(self._tick_seconds, self._tick)

    # --- bootstrap ---------------------------------------------------------------------

    def _check_identity(self, directory: Path) -> None:
        """A data directory belongs to one member of one cluster: refuse another's."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "identity.json"
        mine = {"name": self.config.name, "member_id": self.id, "cluster_id": self.cluster_id}
        if path.exists():
            theirs = json.loads(path.read_text())
            if (theirs.get("member_id"), theirs.get("cluster_id")) != (self.id, self.cluster_id):
                raise ConfigError(
                    f"{self.config.data_dir} belongs to member {theirs.get('member_id', 0):x} "
                    f"of cluster {theirs.get('cluster_id', 0):x}, but --name, --initial-cluster "
                    f"and --initial-cluster-token make this member {self.id:x} of cluster "
                    f"{self.cluster_id:x}; use a fresh --data-dir"
                )
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(mine))
        os.replace(tmp, path)

    def _bootstrap(self, ids: list[int]) -> None:
        """A new cluster's log: one committed ADD_VOTER entry per initial member."""
        entries = [
            Entry(i, 1, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_VOTER, mid).encode())
            for i, mid in enumerate(ids, 1)
        ]
        seq = self.raftlog.persist(entries, HardState(1, 0, len(ids)))
        self.raftlog.wal.wait(seq)

    # --- properties --------------------------------------------------------------------

    @property
    def _tick_seconds(self) -> float:
        return self.config.heartbeat_interval_ms / 1000

    @property
    def leader(self) -> int:
        return self.core.lead

    @property
    def is_leader(self) -> bool:
        return self.core.role == Role.LEADER

    @property
    def term(self) -> int:
        return self.core.term

    @property
    def commit_index(self) -> int:
        return self.core.log.committed

    @property
    def applied_index(self) -> int:
        return self.sm.applied_index

    # --- inputs ------------------------------------------------------------------------

    def _tick(self) -> None:
        if self._stopped:
            return
        self._tick_handle = self._loop.call_later(self._tick_seconds, self._tick)
        self._expire_requests()
        self.core.tick()
        self._kick()

    def _on_peer_messages(self, batch: list[tuple[int, bytes]]) -> None:
        codec = self.raftlog.codec
        for frm, data in batch:
            try:
                self._inbox.append(decode_message(data, codec))
            except WireError as exc:
                log.warning("dropping a bad message from %x: %s", frm, exc)
        # Step them now rather than a loop turn later: acks and appends are what a waiting
        # client's latency is made of.
        if not self._scheduled:
            self._run()

    def _on_unreachable(self, peers: list[int]) -> None:
        for peer in peers:
            self.core.report_unreachable(peer)

    def propose(self, kind: int, payload: bytes, suffix: bytes = b"") -> asyncio.Future[object]:
        """Replicate a request; the future gets the state machine's result once applied
        (response bytes get ``suffix`` appended: the caller's response header)."""
        fut: asyncio.Future[object] = self._loop.create_future()
        if self._stopped:
            fut.set_exception(ERR_STOPPED)
            return fut
        req_id = next(self._ids)
        self._waiters[req_id] = (fut, suffix)
        self._proposals.append(_PROPOSAL.pack(self.id, req_id, kind) + payload)
        self._deadlines.append((self._loop.time() + self.request_timeout, req_id, fut))
        self._kick()
        return fut

    def read_barrier(self) -> asyncio.Future[None]:
        """Resolves once this member has applied everything committed before the call
        (ReadIndex): a linearizable read may then be served locally."""
        fut: asyncio.Future[None] = self._loop.create_future()
        if self._stopped:
            fut.set_exception(ERR_STOPPED)
            return fut
        self._reads.append(fut)
        self._deadlines.append((self._loop.time() + self.request_timeout, 0, fut))
        self._kick()
        return fut

    def _expire_requests(self) -> None:
        """Fail requests past their deadline (checked every tick; deadlines are in order)."""
        now = self._loop.time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, req_id, fut = deadlines.popleft()
            if req_id:
                self._waiters.pop(req_id, None)
            if not fut.done():
                fut.set_exception(ERR_TIMEOUT)

    # --- the loop ----------------------------------------------------------------------

    def _kick(self) -> None:
        if not self._scheduled and not self._in_ready and not self._stopped:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        if self._in_ready or self._stopped:
            return
        core = self.core
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for m in inbox:
                core.step(m)
        if self._proposals:
            props, self._proposals = self._proposals, []
            core.propose_batch(props)
        if self._reads:
            reads, self._reads = self._reads, []
            ctx = next(self._ids).to_bytes(8, "little")
            self._read_rounds[ctx] = reads
            core.read_index(ctx)
        # Readies that need no fsync finish here and now; one that does resumes from the
        # WAL's completion callback. A few per turn at most, so inputs keep flowing.
        for _ in range(4):
            if self._in_ready or self._stopped or not core.has_ready():
                break
            self._in_ready = True
            try:
                self._handle_ready(core.ready())
            except Exception:
                self._fail("processing a Ready failed")

    def _fail(self, what: str) -> None:
        log.exception("%s; stopping this member", what)
        self._loop.create_task(self.stop())

    def _handle_ready(self, rd: Ready) -> None:
        core = self.core
        if rd.soft_state is not None:
            self._on_soft_state()
        leader = core.role == Role.LEADER
        # A follower's answers (append acks, votes) may only leave once what they promise is
        # durable: the WAL's writer thread sends them right after the fdatasync, sparing the
        # round trip through this loop.
        then_send = None
        if not leader and rd.must_sync and rd.messages:
            then_send = (self.transport.native, self._encode(rd.messages))
        seq = self.raftlog.persist(rd.entries, rd.hard_state, rd.must_sync, then_send)
        if leader:
            # The leader replicates while its own fsync runs.
            self._send(rd.messages)
            self.transport.flush()
        # Committed entries below this Ready's new ones are durable on a quorum already:
        # apply them while the fsync runs; the rest wait for it.
        committed = rd.committed_entries
        later: list[Entry] = []
        if committed and rd.entries:
            first_new = rd.entries[0].index
            cut = len(committed)
            while cut and committed[cut - 1].index >= first_new:
                cut -= 1
            committed, later = committed[:cut], committed[cut:]
        if committed:
            self._apply(committed)
        sent = then_send is not None and seq > 0
        if seq and rd.must_sync:
            self.wal.on_durable(seq, lambda exc: self._durable(exc, rd, leader or sent, later))
        else:
            self._finish_ready(rd, leader or sent, later)

    def _durable(
        self, exc: BaseException | None, rd: Ready, sent: bool, later: list[Entry]
    ) -> None:
        if exc is not None:
            if not self._stopped:
                log.error("the write-ahead log failed (%s); stopping this member", exc)
                self._loop.create_task(self.stop())
            return
        try:
            self._finish_ready(rd, sent, later)
        except Exception:
            self._fail("processing a Ready failed")

    def _finish_ready(self, rd: Ready, sent: bool, later: list[Entry]) -> None:
        """The rest of a Ready, once its writes are durable."""
        if self._stopped:
            return
        core = self.core
        if not sent:
            self._send(rd.messages)
        if later:
            self._apply(later)
        for rs in rd.read_states:
            futs = self._read_rounds.pop(rs.ctx, None)
            if futs:
                self._released_reads.append((rs.index, futs))
        self._release_reads()
        for dp in rd.dropped_proposals:
            self._fail_dropped(dp)
        for dr in rd.dropped_reads:
            self._fail_dropped_read(dr)
        core.advance()
        self._in_ready = False
        self._kick()

    def _encode(self, messages: list[Message]) -> list[tuple[int, bytes]]:
        codec = self.raftlog.codec
        return [(m.to, encode_message(m, codec)) for m in messages]

    def _send(self, messages: list[Message]) -> None:
        if messages:
            self.transport.send_many(self._encode(messages))

    def _on_soft_state(self) -> None:
        changes, self._soft_state_waiters = self._soft_state_waiters, []
        for w in changes:
            if not w.done():
                w.set_result(None)

    async def move_leader(self, target: int, timeout: float) -> None:
        """Hand leadership to ``target`` (etcd's MoveLeader); must run on the leader."""
        if not self.is_leader:
            raise GrpcError(StatusCode.FAILED_PRECONDITION, "etcdserver: not leader")
        if target not in self.members or self.members[target].is_learner:
            raise GrpcError(StatusCode.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
        if target == self.id:
            return
        deadline = self._loop.time() + timeout
        self.core.transfer_leader(target)
        self._kick()
        while self.core.lead != target:
            left = deadline - self._loop.time()
            if left <= 0:
                raise GrpcError(
                    StatusCode.UNAVAILABLE,
                    "etcdserver: request timed out, leader transfer took too long",
                )
            fut: asyncio.Future[None] = self._loop.create_future()
            self._soft_state_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, left)
            except TimeoutError:
                continue

    def _apply(self, entries: list[Entry]) -> None:
        applied = self.sm.applied_index
        requests: list[tuple[int, bytes]] = []
        owners: list[int] = []
        last = 0
        unpack = _PROPOSAL.unpack_from
        size = _PROPOSAL.size
        my_id = self.id
        waiters = self._waiters
        for e in entries:
            if e.index <= applied:
                continue
            last = e.index
            if e.entry_type == EntryType.CONF_CHANGE:
                self._apply_conf_change(e)
                continue
            if not e.data:
                continue  # a new leader's empty entry
            proposer, req_id, kind = unpack(e.data)
            if kind == KIND_PUBLISH:
                self._apply_publish(e.data[size:])
                w = waiters.pop(req_id, None) if proposer == my_id else None
                if w is not None and not w[0].done():
                    w[0].set_result(b"")
                continue
            requests.append((kind, e.data[size:]))
            owners.append(req_id if proposer == my_id else 0)
        if not last:
            return
        results = self.sm.apply(last, requests)
        if self.raftlog.memory_entries() > 2 * self.memory_window and last > self.memory_window:
            self.raftlog.trim_memory(last - self.memory_window)
        for req_id, result in zip(owners, results, strict=True):
            if req_id:
                w = waiters.pop(req_id, None)
                if w is not None and not w[0].done():
                    if isinstance(result, GrpcError):
                        w[0].set_exception(result)
                    else:
                        w[0].set_result(result + w[1] if w[1] else result)
        for cb in self.on_apply:
            cb(last)

    def _apply_publish(self, data: bytes) -> None:
        try:
            doc = json.loads(data)
            info = self.members.get(int(doc["id"]))
            if info is not None:
                info.name = str(doc["name"])
                info.client_urls = [str(u) for u in doc["client_urls"]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed member attribute update")

    async def publish(self) -> None:
        """Tell the cluster our name and client URLs (retried until it commits)."""
        doc = {
            "id": self.id,
            "name": self.config.name,
            "client_urls": list(self.config.advertise_client_urls),
        }
        data = json.dumps(doc).encode()
        while not self._stopped:
            try:
                await self.propose(KIND_PUBLISH, data)
                return
            except GrpcError:
                await asyncio.sleep(self.config.election_timeout_ms / 1000)

    def _apply_conf_change(self, e: Entry) -> None:
        try:
            cc = ConfChange.decode(e.data)
        except ValueError:
            return
        if cc.type == ConfChangeType.REMOVE and cc.node_id in self.members:
            if cc.node_id != self.id:
                self.transport.native.remove_peer(cc.node_id)
            del self.members[cc.node_id]

    def _release_reads(self) -> None:
        if not self._released_reads:
            return
        applied = self.sm.applied_index
        keep = []
        for index, futs in self._released_reads:
            if index <= applied:
                for f in futs:
                    if not f.done():
                        f.set_result(None)
            else:
                keep.append((index, futs))
        self._released_reads = keep

    def _fail_dropped(self, dp: DroppedProposal) -> None:
        try:
            _proposer, req_id, _kind = _PROPOSAL.unpack_from(dp.data)
        except struct.error:
            return
        w = self._waiters.pop(req_id, None)
        if w is not None and not w[0].done():
            w[0].set_exception(ERR_NO_LEADER)

    def _fail_dropped_read(self, dr: DroppedRead) -> None:
        for f in self._read_rounds.pop(dr.ctx, []):
            if not f.done():
                f.set_exception(ERR_NO_LEADER)

    # --- shutdown ----------------------------------------------------------------------

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._tick_handle.cancel()
        for fut, _suffix in list(self._waiters.values()):
            if not fut.done():
                fut.set_exception(ERR_STOPPED)
        self._waiters.clear()
        for futs in [*self._read_rounds.values(), *(f for _, f in self._released_reads)]:
            for f in futs:
                if not f.done():
                    f.set_exception(ERR_STOPPED)
        await self.transport.close()
        await self.wal.close()

"""etcd's v3 services of a member, as handlers for the native front.

Writes are validated, proposed through Raft and answered with the state machine's response;
linearizable reads wait for a ReadIndex barrier, serializable reads are served at once from
local state. Every response gets etcd's header (cluster id, member id, revision, raft term).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from raftkv import __version__
from raftkv.api import kv as kvapi
from raftkv.front import UnaryHandler
from raftkv.pb.etcd.api.etcdserverpb import rpc_pb2
from raftkv.status import GrpcError, StatusCode
from raftkv.storage import mvcc

if TYPE_CHECKING:
    from raftkv.server.member import Member

ETCD_API_VERSION = "3.5.0"
"""The etcd version we report: the API level raftkv implements."""

Metadata = dict[str, str] | None


class Services:
    def __init__(self, member: Member, store: mvcc.MvccStore) -> None:
        self.member = member
        self.store = store
        self.limits = kvapi.Limits(
            max_txn_ops=member.config.max_txn_ops,
            max_request_bytes=member.config.max_request_bytes,
            member_id=member.id,  # etcd sizes the whole raft request, which carries it
        )
        self._header_term = -1
        self._header = b""

    def unary_handlers(self) -> dict[str, UnaryHandler]:
        return {
            "/etcdserverpb.KV/Range": self.range,
            "/etcdserverpb.KV/Put": self.put,
            "/etcdserverpb.KV/DeleteRange": self.delete_range,
            "/etcdserverpb.KV/Txn": self.txn,
            "/etcdserverpb.KV/Compact": self.compact,
            "/etcdserverpb.Maintenance/Status": self.status,
            "/etcdserverpb.Maintenance/Hash": self.hash,
            "/etcdserverpb.Maintenance/HashKV": self.hash_kv,
            "/etcdserverpb.Cluster/MemberList": self.member_list,
            "/etcdserverpb.Maintenance/MoveLeader": self.move_leader,
            "/etcdserverpb.Maintenance/Alarm": self.alarm,
        }

    # --- headers -----------------------------------------------------------------------

    def header(self) -> bytes:
        """Serialized header fields (field 1 of every response) for cluster, member and term.

        Appended to a serialized response, protobuf merges it into the header the state
        machine wrote (which carries the revision)."""
        term = self.member.term
        if term != self._header_term:
            self._header = kvapi.header_suffix(self.member.cluster_id, self.member.id, term)
            self._header_term = term
        return self._header

    def _full_header(self) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(
            cluster_id=self.member.cluster_id,
            member_id=self.member.id,
            raft_term=self.member.term,
            revision=self.store.revision,
        )

    # --- KV ----------------------------------------------------------------------------

    def range(self, payload: bytes, meta: Metadata) -> bytes | Awaitable[bytes]:
        req = kvapi.parse_and_validate("Range", payload, self.limits)
        assert isinstance(req, rpc_pb2.RangeRequest)
        if req.serializable:
            return self.store.range_serialized(req) + self.header()
        return self._linearizable(req)

    async def _linearizable(self, req: rpc_pb2.RangeRequest) -> bytes:
        await self.member.read_barrier()
        return self.store.range_serialized(req) + self.header()

    def _propose(self, kind: int, payload: bytes) -> Awaitable[bytes]:
        # The member's future resolves to the response with our header appended: no task
        # per request.
        fut = self.member.propose(kind, payload, self.header())
        return fut  # type: ignore[return-value]

    def put(self, payload: bytes, meta: Metadata) -> Awaitable[bytes]:
        return self._propose(*kvapi.put_proposal(payload, self.limits))

    def delete_range(self, payload: bytes, meta: Metadata) -> Awaitable[bytes]:
        return self._propose(*kvapi.proposal("DeleteRange", payload, self.limits))

    def txn(self, payload: bytes, meta: Metadata) -> Awaitable[bytes]:
        req = kvapi.parse_and_validate("Txn", payload, self.limits)
        assert isinstance(req, rpc_pb2.TxnRequest)
        if kvapi.is_txn_readonly(req):
            return self._readonly_txn(req)
        return self._propose(mvcc.TXN, payload)

    async def _readonly_txn(self, req: rpc_pb2.TxnRequest) -> bytes:
        await self.member.read_barrier()
        out: bytes = self.store.txn_read(req).SerializeToString()
        return out + self.header()

    def compact(self, payload: bytes, meta: Metadata) -> Awaitable[bytes]:
        return self._propose(*kvapi.proposal("Compact", payload, self.limits))

    # --- Maintenance and Cluster -------------------------------------------------------

    def status(self, payload: bytes, meta: Metadata) -> bytes:
        m = self.member
        size = self.store.db_size()
        resp = rpc_pb2.StatusResponse(
            header=self._full_header(),
            version=ETCD_API_VERSION,
            dbSize=size,
            dbSizeInUse=size,
            leader=m.leader,
            raftIndex=m.commit_index,
            raftTerm=m.term,
            raftAppliedIndex=m.applied_index,
            isLearner=False,
        )
        if m.leader == 0:
            resp.errors.append("etcdserver: no leader")
        out: bytes = resp.SerializeToString()
        return out

    def hash(self, payload: bytes, meta: Metadata) -> bytes:
        resp = rpc_pb2.HashResponse(header=self._full_header(), hash=self.store.hash())
        out: bytes = resp.SerializeToString()
        return out

    def hash_kv(self, payload: bytes, meta: Metadata) -> bytes:
        req = rpc_pb2.HashKVRequest.FromString(payload)
        h = self.store.hash_kv(req.revision)
        resp = rpc_pb2.HashKVResponse(
            header=self._full_header(),
            hash=h.hash,
            compact_revision=h.compact_revision,
            hash_revision=h.hash_revision,
        )
        out: bytes = resp.SerializeToString()
        return out

    async def move_leader(self, payload: bytes, meta: Metadata) -> bytes:
        req = rpc_pb2.MoveLeaderRequest.FromString(payload)
        timeout = 2 * self.member.config.election_timeout_ms / 1000 + 1.0
        await self.member.move_leader(req.targetID, timeout)
        out: bytes = rpc_pb2.MoveLeaderResponse(header=self._full_header()).SerializeToString()
        return out

    def alarm(self, payload: bytes, meta: Metadata) -> bytes:
        """Alarms: raftkv raises none yet (no backend quota), so GET lists none; activating
        or deactivating one is refused rather than pretended."""
        req = rpc_pb2.AlarmRequest.FromString(payload)
        if req.action != rpc_pb2.AlarmRequest.GET:
            raise GrpcError(StatusCode.UNIMPLEMENTED, "raftkv: alarms cannot be set yet")
        out: bytes = rpc_pb2.AlarmResponse(header=self._full_header()).SerializeToString()
        return out

    def member_list(self, payload: bytes, meta: Metadata) -> bytes:
        # etcd's Cluster service header carries no revision (v3rpc/member.go).
        header = rpc_pb2.ResponseHeader(
            cluster_id=self.member.cluster_id,
            member_id=self.member.id,
            raft_term=self.member.term,
        )
        resp = rpc_pb2.MemberListResponse(header=header)
        for info in sorted(self.member.members.values(), key=lambda i: i.id):
            resp.members.add(
                ID=info.id,
                name=info.name,
                peerURLs=info.peer_urls,
                clientURLs=info.client_urls,
                isLearner=info.is_learner,
            )
        out: bytes = resp.SerializeToString()
        return out


__all__ = ["ETCD_API_VERSION", "Services", "__version__"]

"""Message, entry and state types of the Raft core.

Everything here is a plain ``__slots__`` dataclass or an ``IntEnum``: the core never encodes
messages itself (the transport does), and never decodes entry payloads (``Entry.data`` is opaque
bytes), except the conf-change entries it encodes itself (see ``confchange.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0
"""The id meaning "no node" (member ids are positive integers)."""


class MessageType(IntEnum):
    """Message types exchanged between members (all of them travel over the network)."""

    APP = 1  # AppendEntries: index/log_term of the entry before ``entries``; commit
    APP_RESP = 2  # reply: index = last matching index (accept) or rejected index (reject)
    VOTE = 3  # RequestVote: index/log_term = candidate's last entry
    VOTE_RESP = 4
    PRE_VOTE = 5  # like VOTE for term+1, but nobody changes term or vote
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7  # commit = min(follower match, leader commit); index = read-only round id
    HEARTBEAT_RESP = 8  # index = read-only round id echoed back
    SNAP = 9  # InstallSnapshot: snapshot carries metadata and opaque data
    TIMEOUT_NOW = 10  # leadership transfer: campaign now, bypassing pre-vote and leases
    PROP = 11  # a proposal forwarded by a follower to the leader (entries)
    READ_INDEX = 12  # a follower asks the leader for a read index; context = request ctx
    READ_INDEX_RESP = 13  # index = read index, context = request ctx
    TRANSFER_LEADER = 14  # a transfer request forwarded to the leader; index = transferee


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@dataclass(slots=True)
class Entry:
    """One log entry: the fields of the native codec's ``(index, term, entry_type, data)``.
    ``data`` is opaque to the core for NORMAL entries."""

    index: int
    term: int
    entry_type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(slots=True, frozen=True)
class ConfState:
    """The membership: voters and learners (disjoint sets of member ids)."""

    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()


@dataclass(slots=True, frozen=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = ConfState()


@dataclass(slots=True, frozen=True)
class Snapshot:
    meta: SnapshotMeta = SnapshotMeta()
    data: bytes = b""


@dataclass(slots=True, frozen=True)
class HardState:
    """What must be durable before messages of the same Ready are sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(slots=True, frozen=True)
class SoftState:
    """Volatile state the application may want to observe (not persisted)."""

    lead: int
    role: Role


@dataclass(slots=True)
class Message:
    type: MessageType
    to: int
    frm: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


@dataclass(slots=True, frozen=True)
class ReadState:
    """A linearizable read may be served once the state machine has applied ``index``."""

    index: int
    ctx: bytes


class DropReason(IntEnum):
    NOT_LEADER = 1  # no leader known, or forwarding disabled; see ``leader_hint``
    TRANSFERRING = 2  # the leader is handing leadership over
    CONF_CHANGE_PENDING = 3  # an earlier membership change is not applied yet
    INVALID_CONF_CHANGE = 4  # the change makes no sense for the current membership
    NOT_MEMBER = 5  # this node is not a voter and cannot serve reads / lead


@dataclass(slots=True, frozen=True)
class DroppedProposal:
    """A proposal the core did not accept. The caller should retry, ideally at ``leader_hint``."""

    data: bytes
    entry_type: EntryType
    reason: DropReason
    leader_hint: int


@dataclass(slots=True, frozen=True)
class DroppedRead:
    ctx: bytes
    reason: DropReason
    leader_hint: int


@dataclass(slots=True)
class Ready:
    """Output of the core. Process in this order, then call ``advance()``:

    1. if ``snapshot``: install it in storage (``apply_snapshot``) and in the state machine;
    2. append ``entries`` to storage (truncating a conflicting suffix);
    3. persist ``hard_state`` if not None; fsync if ``must_sync``;
    4. send ``messages`` (a leader may send its APP messages before step 3 completes);
    5. apply ``committed_entries`` in order; release each ``read_states`` item once the state
       machine has applied its index; fail ``dropped_proposals`` / ``dropped_reads`` back to
       their callers;
    6. ``advance()``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    dropped_proposals: list[DroppedProposal] = field(default_factory=list)
    dropped_reads: list[DroppedRead] = field(default_factory=list)
    must_sync: bool = False


def entry_size(e: Entry) -> int:
    """Size accounted for an entry in byte limits (payload plus a fixed header estimate)."""
    return len(e.data) + 16

"""raftkv's Raft consensus core: a pure, deterministic state machine (see core.py)."""

from .confchange import ConfChange, ConfChangeType
from .core import Config, ProposeOutcome, RaftCore
from .log import CompactedError, LogStorage, MemoryStorage, RaftLog, UnavailableError
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
    Snapshot,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "NONE",
    "CompactedError",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "DropReason",
    "DroppedProposal",
    "DroppedRead",
    "Entry",
    "EntryType",
    "HardState",
    "LogStorage",
    "MemoryStorage",
    "Message",
    "MessageType",
    "ProposeOutcome",
    "RaftCore",
    "RaftLog",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "UnavailableError",
]

"""raftkv's Raft consensus core: a pure, deterministic state machine.

Modules, one job each: ``core`` (the state machine and its per-role step functions),
``messages`` (message, entry, state and Ready types), ``log`` (the ``LogStorage`` protocol, an
in-memory storage, and the core's committed/applied/unstable view), ``progress`` (per-follower
match/next, probe/replicate/snapshot, in-flight window), ``quorum`` (majority math only),
``confchange`` (membership changes), ``read_only`` (ReadIndex bookkeeping), ``sim`` (the
deterministic cluster simulation), ``soak`` (runs the simulation over many seeds) and ``bench``
(throughput of the core alone).

Driving a member (the node loop)::

    core = RaftCore(Config(id=1), storage, random.Random(seed), hard_state)
    loop:
        core.tick()                      # every tick interval
        core.step(message)               # for each message from a peer
        core.propose_batch(datas)        # client writes (or propose_conf_change)
        core.read_index(ctx)             # linearizable reads
        if core.has_ready():
            rd = core.ready()
            ... persist rd.snapshot / rd.entries / rd.hard_state, send rd.messages,
            ... apply rd.committed_entries, release rd.read_states once applied,
            ... fail rd.dropped_proposals / rd.dropped_reads
            core.advance()

Entry payloads are opaque bytes; only ``CONF_CHANGE`` entries (``ConfChange.encode()``) are
decoded by the core. Membership is bootstrapped like etcd does: each initial member's log starts
with one committed ``ADD_VOTER`` entry per member (see ``sim.bootstrap_storage``).
"""

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

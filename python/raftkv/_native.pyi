"""Typed surface of raftkv's native core (Rust, PyO3).

Records
-------
Every record is framed as ``len u32 | crc32c u32 | kind u8 | entry_type u8 | term u64 |
index u64 | payload`` (little endian). An entry is encoded once; the same bytes go to the
write-ahead log and to followers. Decoding verifies the checksum and raises
:class:`CodecError` on damaged or truncated input, never crashing.

Write-ahead log
---------------
:class:`Wal` appends batches of encoded entries, hard states and markers. Every call
returns a sequence number at once; a writer thread (outside the GIL) writes whatever is
queued and makes it durable with one ``fdatasync`` (group commit). ``synced_seq`` is the
highest durable sequence number; ``notify_fd`` is an eventfd that becomes readable each
time it advances, for event loops (see :mod:`raftkv.wal`).
"""

from collections.abc import Iterable
from os import PathLike
from types import TracebackType
from typing import TypedDict

__version__: str

ENTRY_OVERHEAD: int
"""Bytes an entry record adds to its payload."""

DEFAULT_SEGMENT_SIZE: int
"""Default preallocated size of a WAL segment file (64 MiB)."""

Entry = tuple[int, int, int, bytes]
"""(index, term, entry_type, data)."""

class CodecError(ValueError):
    """Bytes that are not valid records (bad checksum, truncated, wrong kind)."""

class WalError(Exception):
    """A write-ahead log operation failed (I/O error and the like)."""

class WalCorruptError(WalError):
    """Damage that recovery must not repair by itself (not a torn tail)."""

class WalFailedError(WalError):
    """The writer hit an I/O error earlier; the log accepts nothing more."""

class WalClosedError(WalError):
    """The log is closed."""

def encode_entry(index: int, term: int, entry_type: int, data: bytes) -> bytes:
    """One entry record."""

def encode_entries(entries: Iterable[Entry]) -> bytes:
    """Entry records back to back."""

def decode_entries(data: bytes) -> list[Entry]:
    """Every entry record of ``data``; raises CodecError on any damage."""

def entry_batch_info(data: bytes) -> tuple[int, int, int, int]:
    """(count, first_index, last_index, last_term) of consecutive entries; CodecError if
    the records are damaged, not entries, or not consecutive."""

def encode_hard_state(term: int, vote: int, commit: int) -> bytes:
    """A hard-state record."""

def decode_hard_state(data: bytes) -> tuple[int, int, int]:
    """(term, vote, commit) of exactly one hard-state record."""

class RecoveryReport(TypedDict):
    segments: int
    records: int
    entries: int
    torn_bytes: int
    torn_at: tuple[int, int] | None
    torn_reason: str | None
    removed_temp_files: int

class WalStats(TypedDict):
    records: int
    entries: int
    bytes: int
    syncs: int
    batches: int
    batches_per_sync: float
    max_batches_per_sync: int
    sync_seconds: float
    segments: int
    segments_created: int
    segments_released: int
    queued_seq: int
    synced_seq: int

class Wal:
    """A segmented write-ahead log in a directory, recovered on open.

    Opening scans every segment, verifies every record's checksum, cuts a torn tail (a
    partly written last record, reported by :meth:`recovery`) and raises
    :class:`WalCorruptError` for a damaged record that valid records follow.
    """

    def __init__(self, path: str | PathLike[str], segment_size: int = ...) -> None: ...
    def append(self, entries: bytes, hard_state: tuple[int, int, int] | None = None) -> int:
        """Queue encoded consecutive entries, and optionally a hard state (term, vote,
        commit) made durable in the same sync. An index already in the log replaces that
        entry and all after it; a gap raises ValueError. Returns a sequence number."""
    def save_hard_state(self, term: int, vote: int, commit: int) -> int: ...
    def truncate_suffix(self, index: int) -> int:
        """Discard entries at ``index`` and after (a Raft conflict)."""
    def release_before(self, index: int) -> int:
        """Release entries before ``index`` (covered by a snapshot); segments wholly before
        it are deleted once this is durable. Past the last index the log restarts there."""
    def wait(self, seq: int) -> None:
        """Block (without the GIL) until ``seq`` is durable."""
    @property
    def synced_seq(self) -> int:
        """Highest durable sequence number; raises WalFailedError after a write error."""
    @property
    def notify_fd(self) -> int:
        """eventfd that becomes readable whenever ``synced_seq`` advances."""
    def drain_notifications(self) -> int:
        """Reset ``notify_fd`` and return ``synced_seq``."""
    def read(self, lo: int, hi: int, max_bytes: int = ...) -> bytes:
        """Encoded entries [lo, hi), at most ``max_bytes`` but at least one; waits until
        everything queued so far is durable."""
    def term(self, index: int) -> int: ...
    @property
    def first_index(self) -> int: ...
    @property
    def last_index(self) -> int:
        """Last index, counting queued appends (``first_index - 1`` when empty)."""
    @property
    def hard_state(self) -> tuple[int, int, int]: ...
    @property
    def path(self) -> str: ...
    def recovery(self) -> RecoveryReport: ...
    def stats(self) -> WalStats: ...
    def suspend_writer(self) -> None:
        """Hold the writer after its current group; appends keep queueing."""
    def resume_writer(self) -> None: ...
    def close(self) -> None:
        """Write out everything queued and stop the writer. Idempotent."""
    def __enter__(self) -> Wal: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

# --- client front ---------------------------------------------------------------------

FRONT_METHODS: list[tuple[str, str]]
"""(gRPC path, kind) for every method the front serves; kind is "unary",
"server_stream" or "bidi". The index is the method id in events."""

EV_UNARY: int
EV_STREAM_OPEN: int
EV_STREAM_MESSAGE: int
EV_STREAM_HALF_CLOSE: int
EV_STREAM_GONE: int
EV_STREAM_WRITABLE: int

FrontEvent = tuple[int, int, int, bytes | None, dict[str, str] | None]
"""(kind, call or stream id, method id, payload, metadata)."""

class FrontStats(TypedDict):
    unary_calls: int
    streams_opened: int
    stream_messages_in: int
    stream_messages_out: int
    batches_taken: int
    congestion_events: int
    pending_unary: int
    open_streams: int

class Front:
    """etcd's v3 gRPC services on tonic, serving on its own threads.

    Calls and stream messages are queued as events; ``notify_fd`` (an eventfd) becomes
    readable when the queue goes from empty to non-empty. See :mod:`raftkv.front`.
    """

    def __init__(
        self,
        listen: list[str],
        *,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        client_ca_pem: bytes | None = None,
        max_recv_bytes: int | None = None,
        max_concurrent_streams: int | None = None,
    ) -> None: ...
    @property
    def addresses(self) -> list[str]: ...
    @property
    def notify_fd(self) -> int: ...
    def take_events(self) -> list[FrontEvent]: ...
    def respond(self, batch: list[tuple[int, int, bytes | str]]) -> None:
        """(call id, 0, response bytes) or (call id, gRPC code, message)."""
    def stream_send(self, batch: list[tuple[int, bytes]]) -> list[int]:
        """Queue stream messages; returns the ids of streams now congested."""
    def stream_close(self, id: int, code: int = 0, message: str = "") -> None: ...
    def stats(self) -> FrontStats: ...
    def close(self) -> None:
        """Stop listening; pending calls and open streams get UNAVAILABLE."""

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

# ---------------------------------------------------------------------------------------
# Load generator (native/src/bench, `raftkv bench`)
# ---------------------------------------------------------------------------------------

from collections.abc import Callable as _Callable  # noqa: E402
from typing import NotRequired as _NotRequired  # noqa: E402

class BenchOptions(TypedDict):
    """The options a run used, normalized (endpoints as ``http://host:port``)."""

    endpoints: list[str]
    conns: int
    clients: int
    total: int | None
    duration_s: float | None
    key_size: int
    value_size: int
    key_space: int
    key_prefix: str
    sequential_keys: bool
    seed: int
    workload: str
    """The mix as ``name:weight,...``, e.g. ``range:90,put:10``."""
    consistency: str
    """``l`` (linearizable) or ``s`` (serializable) ranges."""
    rate: float | None
    warmup_s: float
    timeout_s: float
    threads: int
    transport: str
    server_pids: list[int]

class BenchOpCount(TypedDict):
    ok: int
    errors: int

class BenchTxnCount(TypedDict):
    succeeded: int
    failed: int

class BenchLatency(TypedDict):
    """Latency of successful calls, in milliseconds (about 3% resolution)."""

    count: int
    mean: float
    min: float
    p50: float
    p90: float
    p99: float
    p99_9: float
    max: float

class BenchHistogramRow(TypedDict):
    le_ms: float
    """Upper bound of the row; calls above the previous row's bound and up to this one."""
    count: int

class BenchCpu(TypedDict):
    """CPU time of the whole generating process (getrusage) over the measured phase."""

    user_s: float
    sys_s: float
    total_s: float
    us_per_op: float
    cores: float
    """``total_s / elapsed_s``."""

class BenchServerCpu(TypedDict):
    """CPU time of one ``server_pids`` process over the measured phase (None: it exited)."""

    pid: int
    cpu_s: float | None
    us_per_op: float | None
    cores: float | None

class BenchReport(TypedDict):
    options: BenchOptions
    ops: int
    """Measured calls completed: ``ok + errors``."""
    ok: int
    errors: int
    elapsed_s: float
    ops_per_s: float
    """Successful calls per second."""
    errors_by_code: dict[str, int]
    """Failed calls by canonical gRPC code name (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``...)."""
    error_messages: dict[str, str]
    """The first message seen for each code in ``errors_by_code``."""
    per_op: dict[str, BenchOpCount]
    txn: _NotRequired[BenchTxnCount]
    """Present when the workload has txn calls."""
    latency_ms: BenchLatency
    histogram: list[BenchHistogramRow]
    cpu: BenchCpu
    servers: list[BenchServerCpu]
    warmup_ops: int
    interrupted: bool

def run_bench(
    endpoints: list[str],
    *,
    conns: int = 1,
    clients: int = 1,
    total: int | None = None,
    duration: float | None = None,
    key_size: int = 8,
    value_size: int = 256,
    key_space: int = 100_000,
    key_prefix: str = "",
    sequential: bool = False,
    seed: int = 1,
    workload: str = "put",
    consistency: str = "l",
    rate: float | None = None,
    warmup: float = 0.0,
    timeout: float = 10.0,
    connect_timeout: float = 3.0,
    threads: int = 1,
    transport: str = "h2",
    server_pids: list[int] = ...,
    progress: _Callable[[int, int, float, bool], object] | None = None,
) -> BenchReport:
    """Drive an etcd v3 gRPC endpoint with load and report what happened.

    ``conns`` HTTP/2 connections go round-robin over ``endpoints`` (``host:port`` or
    ``http://host:port``); ``clients`` tasks each keep one call in flight. The run ends after
    ``total`` measured calls or ``duration`` seconds, whichever comes first (at least one is
    required). Keys are ``key_prefix`` plus the zero-padded decimal key number, ``key_size``
    bytes in all, numbers uniform over ``key_space`` (seeded by ``seed``) or sequential.
    ``workload`` is ``put``, ``range``, ``txn`` or a weighted mix like ``range:90,put:10``;
    a txn compares ``mod_revision(key) < 2**62`` and puts the key. ``rate`` caps calls/s
    over all clients; ``warmup`` seconds of load come first and count in no figure.

    Each connection is probed with one serializable range first: an endpoint that refuses,
    does not answer within ``connect_timeout``, or answers with an error raises
    ``ConnectionError`` at once. Bad options raise ``ValueError``. The GIL is released while
    the run goes; ``progress(done, errors, elapsed_s, measuring)`` is called about ten times a
    second. KeyboardInterrupt (or an exception from ``progress``) stops the run and is
    re-raised. ``threads`` sizes the generator's own tokio runtime; ``transport`` is ``h2``
    (hand-framed gRPC on the h2 crate, the cheaper one) or ``tonic``. ``server_pids``: local
    server processes whose CPU time over the measured phase goes into ``servers``.
    """

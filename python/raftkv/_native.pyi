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

from collections.abc import Iterable, Mapping
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
    def append(
        self,
        entries: bytes,
        hard_state: tuple[int, int, int] | None = None,
        sync: bool = True,
        then_send: tuple[PeerTransport, list[tuple[int, bytes]]] | None = None,
    ) -> int:
        """Queue encoded consecutive entries, and optionally a hard state (term, vote,
        commit) made durable in the same sync. An index already in the log replaces that
        entry and all after it; a gap raises ValueError. Returns a sequence number.
        ``sync=False``: a group of only such appends is written without an fdatasync (for
        state that need not be durable at once, like a moved commit index).
        ``then_send=(transport, [(peer_id, bytes), ...])``: the writer thread sends these
        messages the moment the append is durable (never if the log fails); the append is
        then always synced."""
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

# --- Peer transport -------------------------------------------------------------------
#
# Framed, persistent TCP (optionally TLS) links between members. Each member listens on its
# peer address and dials every peer it sends to; a link carries frames one way, dialer to
# listener. Frames are ``len u32 | crc32c u32 | kind u8 | body`` (little endian); the first
# frame on a link is a hello naming the cluster id and the dialer's member id, and a wrong
# cluster id is refused with a reason. Messages are opaque bytes (the Raft layer's encoding).
# Batches cross the boundary once per event-loop turn: ``send_batch`` in, ``take_received``
# out, with ``notify_fd`` (an eventfd) readable while anything waits to be taken.

PEER_FRAME_HEADER_LEN: int
"""Bytes a frame adds to its message."""

DEFAULT_PEER_MAX_FRAME: int
"""Default largest message on a peer link (16 MiB)."""

class PeerTransportError(Exception):
    """A peer transport operation failed (listening, TLS material and the like)."""

class PeerTransportClosedError(PeerTransportError):
    """The peer transport is closed."""

class PeerLinkStats(TypedDict):
    addr: str | None
    """Dial address; None for a member we only receive from."""
    state: str | None
    """``connecting``, ``connected`` or ``backoff`` (sends dropped); None if not a peer."""
    frames_sent: int
    bytes_sent: int
    """Message bytes written (frame headers not counted); likewise for the others."""
    writes: int
    """Coalesced writes: each carries every frame queued when it started."""
    connects: int
    reconnects: int
    connect_failures: int
    disconnects: int
    dropped_frames: int
    dropped_bytes: int
    queued_frames: int
    queued_bytes: int
    frames_received: int
    bytes_received: int
    inbound_connections: int

class PeerTransportStats(TypedDict):
    accepted: int
    rejected: int
    """Inbound connections refused at the handshake (bad hello, wrong cluster, TLS)."""
    frame_errors: int
    """Inbound connections closed for a garbage, corrupted or oversized frame."""
    unknown_peer_drops: int
    events_dropped: int
    inbox_frames: int
    inbox_bytes: int
    peers: dict[int, PeerLinkStats]

class PeerLink:
    """An inbound link read on the caller's event loop: watch ``fd`` for readability and
    call ``read``. A newer link from the same member supersedes it."""

    @property
    def fd(self) -> int:
        """The non-blocking socket (-1 once closed)."""
    @property
    def member_id(self) -> int: ...
    @property
    def ended(self) -> bool:
        """The link is over; the last ``read`` delivered what came before its end."""
    def read(self, budget: int = ...) -> list[tuple[int, bytes]] | None:
        """Whole messages readable now (about ``budget`` bytes read at most), in order;
        None once the link is over (closed, broken, superseded): stop watching ``fd``,
        then ``close()``."""
    def close(self) -> None: ...

class PeerTransport:
    """Links to the other members of one cluster, started at once.

    Outgoing messages to one peer keep their order on a link and are never written twice;
    when the peer is unreachable (dialing failed, waiting to retry) or its queue is full
    they are dropped and the peer is reported by :meth:`take_unreachable`. Incoming frames
    are delivered whole and checked (length limit, checksum); a bad frame closes only that
    connection.
    """

    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        listen: str,
        peers: Mapping[int, str] | Iterable[tuple[int, str]] | None = None,
        *,
        cert_file: str | PathLike[str] | None = None,
        key_file: str | PathLike[str] | None = None,
        trusted_ca_file: str | PathLike[str] | None = None,
        client_cert_auth: bool = False,
        max_frame_size: int = ...,
        max_queue_bytes: int = ...,
        max_queue_frames: int = ...,
        max_inbox_bytes: int = ...,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        connect_timeout: float = 3.0,
        handshake_timeout: float = 5.0,
        write_timeout: float = 10.0,
        seed: int = 0,
        inbound_handoff: bool = False,
    ) -> None:
        """Listen on ``listen`` (``host:port``, port 0 for a free one) and dial ``peers``
        (``(member_id, "host:port")``). TLS needs cert, key and trusted CA together; the
        certificate serves and is presented as client certificate when dialing.

        Queues: ``max_queue_frames``/``max_queue_bytes`` per peer (beyond them sends are
        dropped), ``max_inbox_bytes`` received but not taken (beyond it readers pause, which
        pushes back on the senders). Links: retries back off from ``backoff_initial`` to
        ``backoff_max`` seconds with seeded jitter; a write not done within
        ``write_timeout`` seconds closes the link (the peer stopped reading).
        ``inbound_handoff``: plaintext inbound links are handed over after their handshake
        (``take_inbound``) to be read on the caller's event loop, not delivered through
        ``take_received``."""
    @property
    def member_id(self) -> int: ...
    @property
    def cluster_id(self) -> int: ...
    @property
    def listen_addr(self) -> str:
        """The bound address, ``host:port``."""
    @property
    def notify_fd(self) -> int:
        """eventfd readable while received frames, unreachable peers or events wait."""
    @property
    def max_frame_size(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def add_peer(self, peer_id: int, addr: str) -> None: ...
    def update_peer(self, peer_id: int, addr: str) -> None:
        """Change a peer's address; its link reconnects there, keeping what is queued."""
    def remove_peer(self, peer_id: int) -> None:
        """Close the link to a peer and drop what it had queued."""
    def peer_ids(self) -> list[int]: ...
    def send_batch(self, items: Iterable[tuple[int, bytes]]) -> tuple[int, int]:
        """Queue messages; returns (queued, dropped). All frames for one peer go into one
        write. ValueError (and nothing queued) if a message exceeds ``max_frame_size``."""
    def take_received(self) -> list[tuple[int, bytes]]:
        """Messages received since the last call, as (from_id, bytes), in order per sender."""
    def take_inbound(self) -> list[PeerLink]:
        """Inbound links handed over since the last call (``inbound_handoff=True``)."""
    def take_unreachable(self) -> list[int]:
        """Peers that dropped messages or lost their link since the last call."""
    def take_events(self) -> list[tuple[str, int, str]]:
        """(kind, peer_id, detail) since the last call. Kinds: ``connected``,
        ``disconnected``, ``connect_failed``, ``inbound_connected``, ``inbound_closed``,
        ``rejected``, ``accept_failed``; peer_id is 0 when unknown (a refused handshake)."""
    def stats(self) -> PeerTransportStats: ...
    def close(self) -> None:
        """Close the listener and every link and wait for their tasks. Idempotent."""
    def __enter__(self) -> PeerTransport: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...

def encode_peer_frame(body: bytes, kind: int = 4) -> bytes:
    """One frame as it goes on the wire (for tests and tools). Kinds: 1 hello, 2 hello
    answer, 3 refusal, 4 message."""

def encode_peer_hello(cluster_id: int, member_id: int, to: int = 0) -> bytes:
    """The hello frame a dialer sends first (for tests and tools)."""

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
    cacert: str | None
    cert: str | None
    insecure_skip_tls_verify: bool

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
    stddev: float
    """Population standard deviation (exact)."""
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
    cacert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    insecure_skip_tls_verify: bool = False,
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
    re-raised. ``https://`` endpoints use TLS (h2 transport only): ``cacert`` verifies the
    server (or ``insecure_skip_tls_verify``), ``cert``/``key`` are a client certificate.
    ``threads`` sizes the generator's own tokio runtime; ``transport`` is ``h2``
    (hand-framed gRPC on the h2 crate, the cheaper one) or ``tonic``. ``server_pids``: local
    server processes whose CPU time over the measured phase goes into ``servers``.
    """

# --- Log window -------------------------------------------------------------------------

class LogCompactedError(LookupError):
    """The index is before the log window."""

class LogUnavailableError(LookupError):
    """The index is after the last entry."""

class LogWindow:
    """The newest Raft log entries in memory, kept as encoded records (the codec's bytes).

    Holds entries ``first_index ..= last_index`` and the term of ``first_index - 1``; term
    lookups and byte-limited slices never decode payloads. Older entries live in the WAL.
    """

    def __init__(self, first: int = 1, prev_term: int = 0) -> None: ...
    @property
    def first_index(self) -> int: ...
    @property
    def last_index(self) -> int:
        """``first_index - 1`` when empty."""
    @property
    def byte_size(self) -> int: ...
    def __len__(self) -> int: ...
    def term(self, index: int) -> int:
        """Term of ``index`` (``first_index - 1`` included); LogCompactedError before the
        window, LogUnavailableError after the last entry."""
    def append(self, records: bytes) -> None:
        """Append consecutive encoded entries; an index already present replaces it and
        everything after it; entries before the window are skipped; a gap raises ValueError
        and damaged records CodecError (nothing changes then)."""
    def truncate_from(self, index: int) -> None: ...
    def compact_to(self, index: int) -> None:
        """Drop entries before ``index``."""
    def reset(self, first: int, prev_term: int) -> None:
        """Empty the window; the next entry is ``first``."""
    def slice(self, lo: int, hi: int, max_bytes: int = ...) -> bytes:
        """Records ``[lo, hi)``, at most ``max_bytes`` of them but at least one."""

//! Peer transport: framed, persistent TCP (optionally TLS) links between cluster members.
//!
//! Each member listens on its peer address and dials every peer it sends to, so a link
//! carries messages one way: from the dialer to the listener (like etcd's message streams).
//! A dialer sends a hello naming its cluster and member id; the listener refuses a wrong
//! cluster id with a reason and closes.
//!
//! Outgoing: the caller hands a batch of `(peer, bytes)`; every frame for one peer is
//! encoded straight into that peer's pending buffer under one lock, and the peer's writer
//! task takes the whole buffer and writes it at once (one write per batch or better).
//! Queues are bounded in frames and bytes; when a peer is unreachable (connecting failed,
//! backing off) or its queue is full, messages are dropped and the peer is reported
//! unreachable, so the Raft layer can probe it. A chunk whose write fails is dropped, never
//! written again, so a frame is never duplicated; frames queued behind it go out in order on
//! the next connection.
//!
//! Incoming: every connection's reader decodes whole frames (length limit and checksum
//! checked; a bad frame closes that connection with a logged reason) and appends them to one
//! inbox. A newer connection from the same member supersedes an older one, whose later frames
//! are discarded, so frames from one member are never reordered. The inbox, the unreachable
//! set and the event log are taken in batches; an eventfd is readable while any is non-empty.

pub mod frame;
mod inbound;
mod link;
pub mod tls;

use std::collections::{BTreeSet, HashMap, VecDeque};

use inbound::SUPERSEDED;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

use crate::runtime::runtime;
use tls::Tls;
pub use tls::TlsFiles;

pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 32 << 20;
pub const DEFAULT_MAX_QUEUE_FRAMES: usize = 16 * 1024;
pub const DEFAULT_MAX_INBOX_BYTES: usize = 64 << 20;
/// Events kept for the caller; older ones are dropped (and counted) past this.
const MAX_EVENTS: usize = 1024;

#[derive(Clone, Debug)]
pub struct PeerOptions {
    pub member_id: u64,
    pub cluster_id: u64,
    /// `host:port` to listen on (port 0 picks a free port).
    pub listen: String,
    pub tls: Option<TlsFiles>,
    /// Largest message accepted or sent, in bytes.
    pub max_frame: usize,
    /// Per-peer bound on encoded bytes waiting to be written.
    pub max_queue_bytes: usize,
    /// Per-peer bound on frames waiting to be written.
    pub max_queue_frames: usize,
    /// Received bytes waiting for the caller beyond which readers stop reading.
    pub max_inbox_bytes: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A chunk not written within this long means the peer stopped reading: the link is
    /// closed and the chunk dropped.
    pub write_timeout: Duration,
    /// Seed of the backoff jitter.
    pub seed: u64,
    /// Plaintext inbound links are handed to the caller after the handshake
    /// (`take_inbound`), to be read on its own thread (`InboundLink::read`) when its event
    /// loop sees the socket readable: one thread hop less for every message received.
    pub inbound_handoff: bool,
}

impl PeerOptions {
    pub fn new(member_id: u64, cluster_id: u64, listen: impl Into<String>) -> Self {
        PeerOptions {
            member_id,
            cluster_id,
            listen: listen.into(),
            tls: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            max_queue_frames: DEFAULT_MAX_QUEUE_FRAMES,
            max_inbox_bytes: DEFAULT_MAX_INBOX_BYTES,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            seed: 0,
            inbound_handoff: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum PeerError {
    Invalid(String),
    Io(String),
    Closed,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Invalid(m) | PeerError::Io(m) => f.write_str(m),
            PeerError::Closed => f.write_str("peer transport is closed"),
        }
    }
}

impl std::error::Error for PeerError {}

/// Something worth logging: `kind` is one of `connected`, `disconnected`,
/// `connect_failed`, `inbound_connected`, `inbound_closed`, `rejected`, `accept_failed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: &'static str,
    /// The member concerned (0 when unknown, e.g. a refused handshake).
    pub peer: u64,
    pub detail: String,
}

/// A byte stream a link runs over: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    /// Waiting before the next attempt: sends are dropped at once.
    Backoff,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Backoff => "backoff",
        }
    }
}

/// Larger writes go through the link task: on loopback a write also runs the receiver's
/// TCP processing, which would otherwise land on the caller's (busy) thread.
const DIRECT_WRITE_MAX: usize = 16 * 1024;

pub(crate) struct Queue {
    buf: BytesMut,
    frames: usize,
    state: LinkState,
    /// A second handle on a connected plaintext link's socket: when nothing is queued or
    /// being written, `send_batch` writes on it from the caller's thread, which saves waking
    /// the writer task (a thread hop on every message, the bulk of a lone write's latency).
    direct: Option<std::net::TcpStream>,
    /// The writer task has taken a chunk and not finished writing it: no direct writes.
    writing: bool,
}

#[derive(Default)]
pub(crate) struct PeerCounters {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    writes: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    dropped_frames: AtomicU64,
    dropped_bytes: AtomicU64,
}

pub(crate) struct Peer {
    id: u64,
    addr: Mutex<String>,
    /// Bumped on every address change: the writer reconnects.
    addr_gen: AtomicU64,
    queue: Mutex<Queue>,
    /// Frames queued, or the address changed.
    wake: Notify,
    counters: PeerCounters,
    task: Mutex<Option<AbortHandle>>,
}

impl Peer {
    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write everything queued straight to the socket if the link is idle (see
    /// `Queue::direct`); false when the writer task must do (the rest of) it.
    fn write_direct(&self) -> bool {
        use std::io::Write;
        let mut q = self.lock_queue();
        if q.writing || q.frames == 0 {
            return q.frames == 0;
        }
        if q.buf.len() > DIRECT_WRITE_MAX {
            return false;
        }
        let Some(sock) = q.direct.as_ref() else {
            return false;
        };
        // The socket is non-blocking (tokio set it up): a full buffer gives WouldBlock.
        let written = match (&*sock).write(&q.buf) {
            Ok(n) => n,
            Err(_) => return false, // the writer task meets the error and reconnects
        };
        if written < q.buf.len() {
            // A frame may be cut: the writer task sends the rest, in order.
            let _ = q.buf.split_to(written);
            return false;
        }
        let frames = std::mem::take(&mut q.frames);
        let payload = written - frames * frame::HEADER_LEN;
        q.buf.clear();
        drop(q);
        let c = &self.counters;
        c.frames_sent.fetch_add(frames as u64, Ordering::Relaxed);
        c.bytes_sent.fetch_add(payload as u64, Ordering::Relaxed);
        c.writes.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn addr(&self) -> String {
        self.addr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn count_dropped(&self, frames: usize, bytes: usize) {
        self.counters
            .dropped_frames
            .fetch_add(frames as u64, Ordering::Relaxed);
        self.counters
            .dropped_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct RecvCounters {
    pub frames: u64,
    pub bytes: u64,
    pub connections: u64,
}

#[derive(Default)]
pub(crate) struct Inbox {
    received: Vec<(u64, Bytes)>,
    received_bytes: usize,
    unreachable: BTreeSet<u64>,
    events: VecDeque<Event>,
    events_dropped: u64,
    /// Whether the eventfd has been written since the caller last emptied everything.
    signaled: bool,
    /// The current inbound connection of each member (generation, and a signal that stops
    /// its reader); an older one is superseded and stopped.
    inbound_gen: HashMap<u64, (u64, Arc<Notify>)>,
    next_gen: u64,
    recv: HashMap<u64, RecvCounters>,
    /// Inbound links waiting for the caller to take them (`PeerOptions::inbound_handoff`).
    handoffs: Vec<InboundLink>,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.received.is_empty()
            && self.unreachable.is_empty()
            && self.events.is_empty()
            && self.handoffs.is_empty()
    }
}

#[derive(Default)]
pub(crate) struct GlobalCounters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    frame_errors: AtomicU64,
    unknown_peer_drops: AtomicU64,
}

pub(crate) struct Shared {
    opts: PeerOptions,
    tls: Option<Tls>,
    local_addr: SocketAddr,
    inbox: Mutex<Inbox>,
    /// The inbox was emptied: readers waiting for room go on.
    space: Notify,
    /// The eventfd; -1 once closed. Written and closed only with the inbox locked.
    notify_fd: AtomicI32,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    /// Every task this transport spawned; `None` once closed.
    tasks: Mutex<Option<Vec<JoinHandle<()>>>>,
    closed: AtomicBool,
    counters: GlobalCounters,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close_notify_fd();
    }
}

impl Shared {
    fn lock_inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_peers(&self) -> MutexGuard<'_, HashMap<u64, Arc<Peer>>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Make the eventfd readable unless it already is. Call with the inbox locked.
    fn signal(&self, inbox: &mut Inbox) {
        let fd = self.notify_fd.load(Ordering::Acquire);
        if !inbox.signaled && fd >= 0 {
            inbox.signaled = true;
            let one: u64 = 1;
            // EAGAIN means the counter is saturated: the reader wakes anyway.
            unsafe {
                libc::write(fd, &one as *const u64 as *const libc::c_void, 8);
            }
        }
    }

    fn close_notify_fd(&self) {
        let _inbox = self.lock_inbox();
        let fd = self.notify_fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            unsafe {
                libc::close(fd);
            }
        }
    }

    /// Reset the eventfd once the caller has emptied everything. Call with the inbox locked.
    fn unsignal_if_empty(&self, inbox: &mut Inbox) {
        let fd = self.notify_fd.load(Ordering::Acquire);
        if inbox.signaled && inbox.is_empty() && fd >= 0 {
            inbox.signaled = false;
            let mut buf: u64 = 0;
            unsafe {
                libc::read(fd, &mut buf as *mut u64 as *mut libc::c_void, 8);
            }
        }
    }

    fn event(&self, kind: &'static str, peer: u64, detail: String) {
        let mut inbox = self.lock_inbox();
        if inbox.events.len() >= MAX_EVENTS {
            inbox.events.pop_front();
            inbox.events_dropped += 1;
        }
        inbox.events.push_back(Event { kind, peer, detail });
        self.signal(&mut inbox);
    }

    fn mark_unreachable(&self, peer: u64) {
        let mut inbox = self.lock_inbox();
        inbox.unreachable.insert(peer);
        self.signal(&mut inbox);
    }

    /// Spawn a task owned by this transport (aborted on close). Does nothing once closed.
    fn spawn<F>(&self, fut: F) -> Option<AbortHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let list = tasks.as_mut()?;
        list.retain(|h| !h.is_finished());
        let handle = runtime().spawn(fut);
        let abort = handle.abort_handle();
        list.push(handle);
        Some(abort)
    }
}

/// Per-peer figures for [`PeerTransport::stats`].
#[derive(Clone, Debug, Default)]
pub struct PeerStats {
    pub id: u64,
    /// `None` for a member we only receive from.
    pub addr: Option<String>,
    pub state: Option<&'static str>,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub writes: u64,
    pub connects: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub disconnects: u64,
    pub dropped_frames: u64,
    pub dropped_bytes: u64,
    pub queued_frames: u64,
    pub queued_bytes: u64,
    pub frames_received: u64,
    pub bytes_received: u64,
    pub inbound_connections: u64,
}

#[derive(Clone, Debug, Default)]
pub struct TransportStats {
    pub accepted: u64,
    pub rejected: u64,
    pub frame_errors: u64,
    pub unknown_peer_drops: u64,
    pub events_dropped: u64,
    pub inbox_frames: u64,
    pub inbox_bytes: u64,
    pub peers: Vec<PeerStats>,
}

/// What [`PeerTransport::send_batch`] did with a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    pub queued: usize,
    pub dropped: usize,
}

pub struct PeerTransport {
    shared: Arc<Shared>,
}

impl PeerTransport {
    /// Bind the listener, load TLS material and start dialing `peers`.
    pub fn start(opts: PeerOptions, peers: &[(u64, String)]) -> Result<PeerTransport, PeerError> {
        if opts.member_id == 0 {
            return Err(PeerError::Invalid("member id must not be 0".into()));
        }
        if opts.max_frame == 0 || opts.max_frame > u32::MAX as usize {
            return Err(PeerError::Invalid(format!(
                "max frame size {} out of range",
                opts.max_frame
            )));
        }
        let day = Duration::from_secs(86_400);
        for (name, d) in [
            ("backoff_initial", opts.backoff_initial),
            ("backoff_max", opts.backoff_max),
            ("connect_timeout", opts.connect_timeout),
            ("handshake_timeout", opts.handshake_timeout),
            ("write_timeout", opts.write_timeout),
        ] {
            if d > day || d.is_zero() {
                return Err(PeerError::Invalid(format!(
                    "{name} must be more than 0 and at most a day, not {d:?}"
                )));
            }
        }
        let tls = match &opts.tls {
            Some(files) => Some(Tls::load(files).map_err(PeerError::Invalid)?),
            None => None,
        };
        let listener = runtime()
            .block_on(TcpListener::bind(opts.listen.as_str()))
            .map_err(|e| PeerError::Io(format!("listen on {}: {e}", opts.listen)))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| PeerError::Io(format!("listener address: {e}")))?;
        let notify_fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if notify_fd < 0 {
            return Err(PeerError::Io(format!(
                "create eventfd: {}",
                io::Error::last_os_error()
            )));
        }
        let shared = Arc::new(Shared {
            opts,
            tls,
            local_addr,
            inbox: Mutex::new(Inbox::default()),
            space: Notify::new(),
            notify_fd: AtomicI32::new(notify_fd),
            peers: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Some(Vec::new())),
            closed: AtomicBool::new(false),
            counters: GlobalCounters::default(),
        });
        shared.spawn(inbound::accept_loop(shared.clone(), listener));
        let t = PeerTransport { shared };
        for (id, addr) in peers {
            t.add_peer(*id, addr.clone())?;
        }
        Ok(t)
    }

    pub fn member_id(&self) -> u64 {
        self.shared.opts.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.opts.cluster_id
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The eventfd to watch; -1 once closed.
    pub fn notify_fd(&self) -> RawFd {
        self.shared.notify_fd.load(Ordering::Acquire)
    }

    pub fn max_frame(&self) -> usize {
        self.shared.opts.max_frame
    }

    fn check_open(&self) -> Result<(), PeerError> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(PeerError::Closed)
        } else {
            Ok(())
        }
    }

    pub fn add_peer(&self, id: u64, addr: String) -> Result<(), PeerError> {
        self.check_open()?;
        if id == 0 || id == self.shared.opts.member_id {
            return Err(PeerError::Invalid(format!(
                "cannot add member {id:#x} as a peer of member {:#x}",
                self.shared.opts.member_id
            )));
        }
        let mut peers = self.shared.lock_peers();
        if peers.contains_key(&id) {
            return Err(PeerError::Invalid(format!("peer {id:#x} already exists")));
        }
        let peer = Arc::new(Peer {
            id,
            addr: Mutex::new(addr),
            addr_gen: AtomicU64::new(0),
            queue: Mutex::new(Queue {
                buf: BytesMut::new(),
                frames: 0,
                state: LinkState::Connecting,
                direct: None,
                writing: false,
            }),
            wake: Notify::new(),
            counters: PeerCounters::default(),
            task: Mutex::new(None),
        });
        let abort = self
            .shared
            .spawn(link::run(self.shared.clone(), peer.clone()))
            .ok_or(PeerError::Closed)?;
        *peer.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(abort);
        peers.insert(id, peer);
        Ok(())
    }

    pub fn update_peer(&self, id: u64, addr: String) -> Result<(), PeerError> {
        self.check_open()?;
        let peers = self.shared.lock_peers();
        let peer = peers
            .get(&id)
            .ok_or_else(|| PeerError::Invalid(format!("no peer {id:#x}")))?;
        *peer.addr.lock().unwrap_or_else(|p| p.into_inner()) = addr;
        peer.addr_gen.fetch_add(1, Ordering::AcqRel);
        peer.wake.notify_one();
        Ok(())
    }

    /// Forget a peer: its link closes and whatever it had queued is dropped.
    pub fn remove_peer(&self, id: u64) -> Result<(), PeerError> {
        self.check_open()?;
        let peer = self
            .shared
            .lock_peers()
            .remove(&id)
            .ok_or_else(|| PeerError::Invalid(format!("no peer {id:#x}")))?;
        if let Some(task) = peer.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        Ok(())
    }

    pub fn peer_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.shared.lock_peers().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Queue a batch of messages. Frames for one peer are encoded into its pending buffer
    /// under one lock and its writer woken once. Every message must fit `max_frame`
    /// (checked for the whole batch before anything is queued).
    /// A send-only handle on this transport, for other threads (the WAL's writer).
    pub fn sender(&self) -> PeerSender {
        PeerSender {
            shared: self.shared.clone(),
        }
    }

    pub fn send_batch(&self, items: &[(u64, &[u8])]) -> Result<SendOutcome, PeerError> {
        send_batch(&self.shared, items)
    }

    /// Everything received since the last call, in arrival order (per member: send order).
    pub fn take_received(&self) -> Vec<(u64, Bytes)> {
        let (out, was_full) = {
            let mut inbox = self.shared.lock_inbox();
            let was_full = inbox.received_bytes > self.shared.opts.max_inbox_bytes;
            let out = std::mem::take(&mut inbox.received);
            inbox.received_bytes = 0;
            self.shared.unsignal_if_empty(&mut inbox);
            (out, was_full)
        };
        if was_full {
            self.shared.space.notify_waiters();
        }
        out
    }

    /// Peers that dropped messages or lost their link since the last call.
    pub fn take_unreachable(&self) -> Vec<u64> {
        let mut inbox = self.shared.lock_inbox();
        let out = std::mem::take(&mut inbox.unreachable).into_iter().collect();
        self.shared.unsignal_if_empty(&mut inbox);
        out
    }

    /// Inbound links handed over since the last call (see `PeerOptions::inbound_handoff`).
    pub fn take_inbound(&self) -> Vec<InboundLink> {
        let mut inbox = self.shared.lock_inbox();
        let out = std::mem::take(&mut inbox.handoffs);
        self.shared.unsignal_if_empty(&mut inbox);
        out
    }

    pub fn take_events(&self) -> Vec<Event> {
        let mut inbox = self.shared.lock_inbox();
        let out = std::mem::take(&mut inbox.events).into_iter().collect();
        self.shared.unsignal_if_empty(&mut inbox);
        out
    }

    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let peers: Vec<Arc<Peer>> = self.shared.lock_peers().values().cloned().collect();
        let (recv, events_dropped, inbox_frames, inbox_bytes) = {
            let inbox = self.shared.lock_inbox();
            (
                inbox.recv.clone(),
                inbox.events_dropped,
                inbox.received.len() as u64,
                inbox.received_bytes as u64,
            )
        };
        let mut out: HashMap<u64, PeerStats> = HashMap::new();
        for p in peers {
            let pc = &p.counters;
            let (state, queued_frames, queued_bytes) = {
                let q = p.lock_queue();
                (q.state, q.frames as u64, q.buf.len() as u64)
            };
            let connects = ld(&pc.connects);
            out.insert(
                p.id,
                PeerStats {
                    id: p.id,
                    addr: Some(p.addr()),
                    state: Some(state.as_str()),
                    frames_sent: ld(&pc.frames_sent),
                    bytes_sent: ld(&pc.bytes_sent),
                    writes: ld(&pc.writes),
                    connects,
                    reconnects: connects.saturating_sub(1),
                    connect_failures: ld(&pc.connect_failures),
                    disconnects: ld(&pc.disconnects),
                    dropped_frames: ld(&pc.dropped_frames),
                    dropped_bytes: ld(&pc.dropped_bytes),
                    queued_frames,
                    queued_bytes,
                    ..Default::default()
                },
            );
        }
        for (id, r) in recv {
            let s = out.entry(id).or_insert_with(|| PeerStats {
                id,
                ..Default::default()
            });
            s.frames_received = r.frames;
            s.bytes_received = r.bytes;
            s.inbound_connections = r.connections;
        }
        let mut peers: Vec<PeerStats> = out.into_values().collect();
        peers.sort_by_key(|p| p.id);
        TransportStats {
            accepted: ld(&c.accepted),
            rejected: ld(&c.rejected),
            frame_errors: ld(&c.frame_errors),
            unknown_peer_drops: ld(&c.unknown_peer_drops),
            events_dropped,
            inbox_frames,
            inbox_bytes,
            peers,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Stop every task, close every socket, the listener and the eventfd, and wait until
    /// they are gone. Idempotent. Must not be called from a runtime thread.
    pub fn close(&self) {
        let handles = self.shutdown();
        if !handles.is_empty() {
            runtime().block_on(async {
                for h in handles {
                    let _ = h.await;
                }
            });
        }
        self.shared.close_notify_fd();
    }

    fn shutdown(&self) -> Vec<JoinHandle<()>> {
        self.shared.closed.store(true, Ordering::Release);
        let handles = self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        for h in &handles {
            h.abort();
        }
        self.shared.lock_peers().clear();
        handles
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        // Aborted tasks release their sockets as soon as a runtime thread polls them.
        self.shutdown();
    }
}

/// An inbound plaintext link after its handshake, read by the caller: `read` whenever the
/// socket is readable (it is non-blocking).
pub struct InboundLink {
    shared: Arc<Shared>,
    from: u64,
    generation: u64,
    sock: Option<std::net::TcpStream>,
    buf: BytesMut,
    /// Why the link is over, once it is (reported by `close`).
    ended: Option<String>,
}

impl InboundLink {
    pub(crate) fn new(
        shared: Arc<Shared>,
        from: u64,
        generation: u64,
        sock: std::net::TcpStream,
        buf: BytesMut,
    ) -> Self {
        InboundLink {
            shared,
            from,
            generation,
            sock: Some(sock),
            buf,
            ended: None,
        }
    }

    pub fn from(&self) -> u64 {
        self.from
    }

    /// Whether the link is over (the last `read` delivered what came before the end).
    pub fn ended(&self) -> bool {
        self.ended.is_some()
    }

    pub fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_ref().map_or(-1, |s| s.as_raw_fd())
    }

    /// Whole messages readable now, in order (at most about `budget` bytes read per call);
    /// `Err(reason)` once the link is over (closed, broken, superseded): stop watching the
    /// socket, then `close` it.
    pub fn read(&mut self, budget: usize) -> Result<Vec<Bytes>, String> {
        use std::io::Read;
        if let Some(reason) = &self.ended {
            return Err(reason.clone());
        }
        let Some(sock) = self.sock.as_mut() else {
            return Err("link closed".into());
        };
        let max = self.shared.opts.max_frame;
        let mut out = Vec::new();
        let mut read = 0;
        let mut end = None;
        loop {
            if let Err(e) = frame::decode_messages(&mut self.buf, max, |body| out.push(body)) {
                end = Some(e);
                self.shared
                    .counters
                    .frame_errors
                    .fetch_add(1, Ordering::Relaxed);
                break;
            }
            if read >= budget {
                break;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            let spare = self.buf.spare_capacity_mut();
            // SAFETY: `read` only writes into the slice; we only advance over what it wrote.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(spare.as_mut_ptr() as *mut u8, spare.len())
            };
            match sock.read(dst) {
                Ok(0) => {
                    end = Some(if self.buf.is_empty() {
                        "closed by peer".into()
                    } else {
                        "closed by peer in the middle of a frame".into()
                    });
                    break;
                }
                Ok(n) => {
                    unsafe { self.buf.set_len(self.buf.len() + n) };
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    end = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        {
            let mut inbox = self.shared.lock_inbox();
            if inbox.inbound_gen.get(&self.from).map(|(g, _)| *g) != Some(self.generation) {
                end = Some(SUPERSEDED.into());
                out.clear(); // never delivered after a newer connection's messages
            } else if !out.is_empty() {
                let r = inbox.recv.entry(self.from).or_default();
                r.frames += out.len() as u64;
                r.bytes += out.iter().map(|b| b.len() as u64).sum::<u64>();
            }
        }
        match end {
            Some(reason) if out.is_empty() => {
                self.ended = Some(reason.clone());
                Err(reason)
            }
            // Deliver what came before the end; the next call reports it.
            Some(reason) => {
                self.ended = Some(reason);
                Ok(out)
            }
            None => Ok(out),
        }
    }

    /// Close the socket (idempotent); `reason` unless the link had ended already.
    pub fn close(&mut self, reason: &str) {
        if self.sock.take().is_none() {
            return;
        }
        let reason = self.ended.take().unwrap_or_else(|| reason.to_string());
        let mut inbox = self.shared.lock_inbox();
        if inbox.inbound_gen.get(&self.from).map(|(g, _)| *g) == Some(self.generation) {
            inbox.inbound_gen.remove(&self.from);
        }
        drop(inbox);
        self.shared.event("inbound_closed", self.from, reason);
    }
}

impl Drop for InboundLink {
    fn drop(&mut self) {
        self.close("dropped");
    }
}

/// A handle that only sends; unlike the transport, dropping it shuts nothing down.
#[derive(Clone)]
pub struct PeerSender {
    shared: Arc<Shared>,
}

impl PeerSender {
    pub fn send_batch(&self, items: &[(u64, &[u8])]) -> Result<SendOutcome, PeerError> {
        send_batch(&self.shared, items)
    }
}

/// Queue messages for their peers (grouped by peer, each in order), or write them at once
/// on idle links.
fn send_batch(shared: &Shared, items: &[(u64, &[u8])]) -> Result<SendOutcome, PeerError> {
    if shared.closed.load(Ordering::Acquire) {
        return Err(PeerError::Closed);
    }
    let max = shared.opts.max_frame;
    if let Some((peer, data)) = items.iter().find(|(_, d)| d.len() > max) {
        return Err(PeerError::Invalid(format!(
            "message of {} bytes to peer {peer:#x} exceeds the frame limit of {max} bytes",
            data.len()
        )));
    }
    // Group by peer, keeping each peer's order.
    let mut groups: Vec<(u64, Vec<&[u8]>)> = Vec::new();
    for &(peer, data) in items {
        match groups.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, v)) => v.push(data),
            None => groups.push((peer, vec![data])),
        }
    }
    let targets: Vec<(u64, Option<Arc<Peer>>)> = {
        let peers = shared.lock_peers();
        groups
            .iter()
            .map(|(id, _)| (*id, peers.get(id).cloned()))
            .collect()
    };
    let mut outcome = SendOutcome::default();
    for ((id, msgs), (_, peer)) in groups.iter().zip(targets) {
        let Some(peer) = peer else {
            shared
                .counters
                .unknown_peer_drops
                .fetch_add(msgs.len() as u64, Ordering::Relaxed);
            outcome.dropped += msgs.len();
            shared.mark_unreachable(*id);
            continue;
        };
        let (queued, dropped, dropped_bytes) = {
            let mut q = peer.lock_queue();
            if q.state == LinkState::Backoff {
                let bytes = msgs.iter().map(|m| m.len()).sum();
                (0, msgs.len(), bytes)
            } else {
                let mut queued = 0;
                for m in msgs {
                    let need = frame::encoded_len(m.len());
                    if q.frames >= shared.opts.max_queue_frames
                        || q.buf.len() + need > shared.opts.max_queue_bytes
                    {
                        break;
                    }
                    frame::encode(&mut q.buf, frame::Kind::Msg, m);
                    q.frames += 1;
                    queued += 1;
                }
                let bytes = msgs[queued..].iter().map(|m| m.len()).sum();
                (queued, msgs.len() - queued, bytes)
            }
        };
        if queued > 0 && !peer.write_direct() {
            peer.wake.notify_one();
        }
        if dropped > 0 {
            peer.count_dropped(dropped, dropped_bytes);
            shared.mark_unreachable(*id);
        }
        outcome.queued += queued;
        outcome.dropped += dropped;
    }
    Ok(outcome)
}

/// TCP keepalive, so a link to a member that vanished (power loss, partition) is noticed
/// within about half a minute even when nothing is written on it.
pub(crate) fn set_keepalive(tcp: &tokio::net::TcpStream) {
    use std::os::unix::io::AsRawFd;
    let fd = tcp.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 10);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 5);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

/// splitmix64: a small seeded generator for backoff jitter.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A delay in [d/2, d]: "equal jitter".
    pub(crate) fn spread(&mut self, d: Duration) -> Duration {
        let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
        let half = nanos / 2;
        Duration::from_nanos(half + self.next() % (nanos - half + 1))
    }
}

#[cfg(test)]
mod tests;

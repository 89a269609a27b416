//! Client front: etcd's v3 gRPC services on tonic, handing calls to Python in batches.
//!
//! Every incoming call or stream message becomes an [`Event`] in one queue; the first
//! event into an empty queue makes an eventfd readable, and Python takes the whole queue
//! at once. Python answers in batches too: unary responses resolve a oneshot per call,
//! stream messages go into a bounded channel per stream. A full channel parks messages in
//! an overflow queue and reports the stream as congested until it drains (back-pressure).

mod authority;
mod client_io;
pub mod methods;
mod service;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Code, Status};

/// Messages a stream may hold before Python is told it is congested.
pub const STREAM_CHANNEL: usize = 256;

/// Request metadata passed to Python: a few known keys, only when present.
pub type Metadata = Vec<(&'static str, String)>;

/// Keys of request metadata that Python cares about.
pub const METADATA_KEYS: [&str; 4] = ["token", "authorization", "hasleader", "grpc-timeout"];

#[derive(Debug)]
pub enum Event {
    Unary {
        id: u64,
        method: u16,
        payload: Bytes,
        meta: Option<Metadata>,
    },
    /// A stream opened; server-streaming calls carry their one request.
    StreamOpen {
        id: u64,
        method: u16,
        payload: Option<Bytes>,
        meta: Option<Metadata>,
    },
    StreamMessage {
        id: u64,
        payload: Bytes,
    },
    /// The client finished sending; it still reads.
    StreamHalfClose {
        id: u64,
    },
    /// The client is gone (cancelled, disconnected, or broke the stream).
    StreamGone {
        id: u64,
    },
    /// A congested stream drained its overflow.
    StreamWritable {
        id: u64,
    },
}

pub(crate) enum Out {
    Msg(Bytes),
    Close(Option<Status>),
}

/// What travels down a stream's channel: a message, an error status that ends the
/// stream, or `None` to end it with OK (other senders may still exist, so dropping the
/// sender is not enough).
pub(crate) type StreamItem = Option<Result<Bytes, Status>>;
pub(crate) type StreamSender = mpsc::Sender<StreamItem>;

impl Out {
    fn into_item(self) -> StreamItem {
        match self {
            Out::Msg(b) => Some(Ok(b)),
            Out::Close(None) => None,
            Out::Close(Some(status)) => Some(Err(status)),
        }
    }

    fn from_item(item: StreamItem) -> Out {
        match item {
            Some(Ok(b)) => Out::Msg(b),
            None => Out::Close(None),
            Some(Err(status)) => Out::Close(Some(status)),
        }
    }
}

pub(crate) struct StreamState {
    tx: Option<StreamSender>,
    overflow: VecDeque<Out>,
}

#[derive(Default)]
pub struct FrontStats {
    pub unary_calls: AtomicU64,
    pub streams_opened: AtomicU64,
    pub stream_messages_in: AtomicU64,
    pub stream_messages_out: AtomicU64,
    pub batches_taken: AtomicU64,
    pub congestion_events: AtomicU64,
}

pub(crate) struct Shared {
    events: Mutex<Vec<Event>>,
    notify_fd: RawFd,
    next_id: AtomicU64,
    unary: Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, Status>>>>,
    streams: Mutex<HashMap<u64, StreamState>>,
    pub(crate) max_recv_bytes: usize,
    pub(crate) stats: FrontStats,
    closing: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn push(&self, event: Event) {
        let mut q = lock(&self.events);
        let was_empty = q.is_empty();
        q.push(event);
        drop(q);
        if was_empty {
            let one: u64 = 1;
            unsafe {
                libc::write(self.notify_fd, &one as *const u64 as *const libc::c_void, 8);
            }
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Register a unary call and queue it for Python.
    pub(crate) fn start_unary(
        &self,
        method: u16,
        payload: Bytes,
        meta: Option<Metadata>,
    ) -> oneshot::Receiver<Result<Bytes, Status>> {
        let (tx, rx) = oneshot::channel();
        if self.is_closing() {
            let _ = tx.send(Err(shutting_down()));
            return rx;
        }
        let id = self.next_id();
        lock(&self.unary).insert(id, tx);
        self.stats.unary_calls.fetch_add(1, Ordering::Relaxed);
        self.push(Event::Unary {
            id,
            method,
            payload,
            meta,
        });
        rx
    }

    /// Register a stream; returns its id and the receiver of outgoing messages.
    pub(crate) fn open_stream(
        &self,
        method: u16,
        payload: Option<Bytes>,
        meta: Option<Metadata>,
    ) -> Result<(u64, mpsc::Receiver<StreamItem>), Status> {
        if self.is_closing() {
            return Err(shutting_down());
        }
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL);
        let id = self.next_id();
        lock(&self.streams).insert(
            id,
            StreamState {
                tx: Some(tx),
                overflow: VecDeque::new(),
            },
        );
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.push(Event::StreamOpen {
            id,
            method,
            payload,
            meta,
        });
        Ok((id, rx))
    }

    pub(crate) fn stream_message(&self, id: u64, payload: Bytes) {
        self.stats
            .stream_messages_in
            .fetch_add(1, Ordering::Relaxed);
        self.push(Event::StreamMessage { id, payload });
    }

    pub(crate) fn stream_half_close(&self, id: u64) {
        self.push(Event::StreamHalfClose { id });
    }

    /// The client side of a stream ended for good; forget it and tell Python once.
    pub(crate) fn stream_gone(&self, id: u64) {
        if lock(&self.streams).remove(&id).is_some() {
            self.push(Event::StreamGone { id });
        }
    }

    pub(crate) fn stream_sender(&self, id: u64) -> Option<StreamSender> {
        lock(&self.streams).get(&id).and_then(|s| s.tx.clone())
    }
}

fn shutting_down() -> Status {
    Status::unavailable("etcdserver: server stopped")
}

/// TLS material for the client port, PEM encoded.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct FrontConfig {
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsSettings>,
    pub max_recv_bytes: usize,
    pub max_concurrent_streams: u32,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            listen: Vec::new(),
            tls: None,
            // etcd: --max-request-bytes (1.5 MiB) plus 512 KiB of gRPC overhead.
            max_recv_bytes: (3 << 19) + (512 << 10),
            max_concurrent_streams: u32::MAX,
        }
    }
}

/// Answers to unary calls, handed over in batches.
type Answers = Vec<(u64, Result<Bytes, Status>)>;

/// Complete unary calls (calls already gone are skipped).
fn deliver(shared: &Shared, results: Answers) {
    let mut senders = Vec::with_capacity(results.len());
    {
        let mut map = lock(&shared.unary);
        for (id, result) in results {
            if let Some(tx) = map.remove(&id) {
                senders.push((tx, result));
            }
        }
    }
    for (tx, result) in senders {
        let _ = tx.send(result);
    }
}

pub struct Front {
    shared: Arc<Shared>,
    /// To the task that completes unary calls: waking each call's task from the caller's
    /// thread costs a wake-up syscall per answer; from a runtime task, waking is cheap.
    answers: tokio::sync::mpsc::UnboundedSender<Answers>,
    addresses: Vec<SocketAddr>,
    servers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Front {
    /// Bind every listen address and start serving on the shared runtime.
    pub fn start(config: FrontConfig) -> io::Result<Front> {
        let notify_fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if notify_fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let (closing, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            events: Mutex::new(Vec::with_capacity(1024)),
            notify_fd,
            next_id: AtomicU64::new(1),
            unary: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            max_recv_bytes: config.max_recv_bytes,
            stats: FrontStats::default(),
            closing,
        });
        let rt = crate::runtime::runtime();
        let (answers, mut answers_rx) = tokio::sync::mpsc::unbounded_channel::<Answers>();
        let deliver_to = shared.clone();
        rt.spawn(async move {
            while let Some(batch) = answers_rx.recv().await {
                deliver(&deliver_to, batch);
            }
        });
        let mut listeners = Vec::new();
        let mut addresses = Vec::new();
        for addr in &config.listen {
            let std_listener = std::net::TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
            std_listener.set_nonblocking(true)?;
            addresses.push(std_listener.local_addr()?);
            listeners.push(std_listener);
        }
        let mut servers = Vec::new();
        for std_listener in listeners {
            let _guard = rt.enter();
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            let server = service::build_server(&config, shared.clone())?;
            let mut closing = shared.closing.subscribe();
            let filter_authority = config.tls.is_none();
            servers.push(rt.spawn(async move {
                let incoming =
                    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
                        conn.map(|tcp| {
                            let _ = tcp.set_nodelay(true);
                            client_io::ClientIo::new(tcp, filter_authority)
                        })
                    });
                let stop = async move {
                    let _ = closing.wait_for(|c| *c).await;
                };
                if let Err(e) = server.serve_with_incoming_shutdown(incoming, stop).await {
                    eprintln!("raftkv: client front stopped: {e}");
                }
            }));
        }
        Ok(Front {
            shared,
            answers,
            addresses,
            servers: Mutex::new(servers),
        })
    }

    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    pub fn notify_fd(&self) -> RawFd {
        self.shared.notify_fd
    }

    /// Everything queued since the last call (resets the eventfd first, so an event
    /// pushed after the swap always makes it readable again).
    pub fn take_events(&self) -> Vec<Event> {
        let mut buf: u64 = 0;
        unsafe {
            libc::read(
                self.shared.notify_fd,
                &mut buf as *mut u64 as *mut libc::c_void,
                8,
            );
        }
        let mut q = lock(&self.shared.events);
        if q.is_empty() {
            return Vec::new();
        }
        self.shared
            .stats
            .batches_taken
            .fetch_add(1, Ordering::Relaxed);
        let capacity = q.capacity();
        std::mem::replace(&mut *q, Vec::with_capacity(capacity))
    }

    /// Answer unary calls under one lock; an unknown id (the client gave up) is ignored.
    pub fn respond_many(&self, results: Answers) {
        if let Err(unsent) = self.answers.send(results) {
            deliver(&self.shared, unsent.0); // the runtime is shutting down
        }
    }

    /// Queue a message on a stream. Returns false if the stream is congested (the
    /// message is kept and sent in order; a StreamWritable event follows once drained).
    pub fn stream_send(&self, id: u64, payload: Bytes) -> bool {
        self.stream_out(id, Out::Msg(payload))
    }

    /// End a stream: OK (None) or with a status. Queued messages go out first.
    pub fn stream_close(&self, id: u64, status: Option<Status>) {
        self.stream_out(id, Out::Close(status));
    }

    fn stream_out(&self, id: u64, out: Out) -> bool {
        let mut streams = lock(&self.shared.streams);
        let Some(state) = streams.get_mut(&id) else {
            return true; // gone: the client will never read it
        };
        if !state.overflow.is_empty() {
            let is_msg = matches!(out, Out::Msg(_));
            state.overflow.push_back(out);
            return !is_msg;
        }
        let Some(tx) = state.tx.clone() else {
            return true;
        };
        let closing = matches!(out, Out::Close(_));
        match tx.try_send(out.into_item()) {
            Ok(()) => {
                if closing {
                    streams.remove(&id);
                } else {
                    self.shared
                        .stats
                        .stream_messages_out
                        .fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(item)) => {
                state.overflow.push_back(Out::from_item(item));
                self.shared
                    .stats
                    .congestion_events
                    .fetch_add(1, Ordering::Relaxed);
                drop(streams);
                self.spawn_drain(id, tx);
                closing
            }
            Err(mpsc::error::TrySendError::Closed(_)) => true, // the client is gone
        }
    }

    /// Move a congested stream's overflow into its channel as space frees up.
    fn spawn_drain(&self, id: u64, tx: StreamSender) {
        let shared = self.shared.clone();
        crate::runtime::runtime().spawn(async move {
            loop {
                let Ok(permit) = tx.reserve().await else {
                    shared.stream_gone(id);
                    return;
                };
                let mut streams = lock(&shared.streams);
                let Some(state) = streams.get_mut(&id) else {
                    return;
                };
                if let Some(out) = state.overflow.pop_front() {
                    let closing = matches!(out, Out::Close(_));
                    permit.send(out.into_item());
                    if closing {
                        streams.remove(&id);
                        return;
                    }
                    shared
                        .stats
                        .stream_messages_out
                        .fetch_add(1, Ordering::Relaxed);
                }
                if state.overflow.is_empty() {
                    drop(streams);
                    shared.push(Event::StreamWritable { id });
                    return;
                }
            }
        });
    }

    pub fn stats(&self) -> &FrontStats {
        &self.shared.stats
    }

    pub fn pending_unary(&self) -> usize {
        lock(&self.shared.unary).len()
    }

    pub fn open_streams(&self) -> usize {
        lock(&self.shared.streams).len()
    }

    /// Stop accepting, answer every pending call `Unavailable`, end every stream.
    pub fn close(&self) {
        let _ = self.shared.closing.send(true);
        let pending: Vec<_> = lock(&self.shared.unary).drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(shutting_down()));
        }
        let streams: Vec<_> = lock(&self.shared.streams).drain().collect();
        for (_, state) in streams {
            if let Some(tx) = state.tx {
                let _ = tx.try_send(Some(Err(shutting_down())));
            }
        }
        let servers: Vec<_> = lock(&self.servers).drain(..).collect();
        let rt = crate::runtime::runtime();
        for handle in servers {
            // Graceful shutdown waits for open connections; do not wait forever.
            let _ = rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(2), handle).await
            });
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.close();
        unsafe {
            libc::close(self.shared.notify_fd);
        }
    }
}

/// gRPC status from a code number and message (unknown numbers become Unknown).
pub fn status(code: i32, message: String) -> Status {
    Status::new(Code::from_i32(code), message)
}

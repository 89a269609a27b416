//! The listener side: accept, (TLS,) check the hello, then read frames into the inbox.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::frame::{self, Kind, HANDSHAKE_MAX_FRAME};
use super::link::read_frame;
use super::{InboundLink, Io, Shared};

const READ_CHUNK: usize = 64 * 1024;
pub(crate) const SUPERSEDED: &str = "superseded by a newer connection from the same member";

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, remote)) => {
                shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                shared.spawn(serve(shared.clone(), tcp, remote));
            }
            Err(e) => {
                // Out of descriptors and the like: say so, wait a little, keep serving.
                shared.event("accept_failed", 0, e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why an inbound connection ended, and whether it was refused at the door.
enum End {
    Rejected(u64, String),
    Closed(u64, String),
    /// Given to the caller (`PeerOptions::inbound_handoff`).
    HandedOver,
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, remote: SocketAddr) {
    match serve_inner(&shared, tcp).await {
        End::Rejected(peer, reason) => {
            shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
            shared.event("rejected", peer, format!("from {remote}: {reason}"));
        }
        End::Closed(peer, reason) => {
            shared.event("inbound_closed", peer, format!("from {remote}: {reason}"));
        }
        End::HandedOver => {}
    }
}

async fn serve_inner(shared: &Arc<Shared>, tcp: TcpStream) -> End {
    let opts = &shared.opts;
    let _ = tcp.set_nodelay(true);
    super::set_keepalive(&tcp);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let rejected = |r: Result<Result<u64, (u64, String)>, _>| match r {
        Ok(Ok(from)) => Ok(from),
        Ok(Err((peer, reason))) => Err(End::Rejected(peer, reason)),
        Err(_) => Err(End::Rejected(0, "handshake timed out".into())),
    };
    let (io, from): (Box<dyn Io>, u64) = match &shared.tls {
        Some(t) => {
            let acceptor = TlsAcceptor::from(t.server.clone());
            let handshake = async {
                let mut io = acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| (0, format!("TLS handshake: {e}")))?;
                let from = hello(shared, &mut io, &mut buf).await?;
                Ok((io, from))
            };
            match timeout(opts.handshake_timeout, handshake).await {
                Ok(Ok((io, from))) => (Box::new(io), from),
                Ok(Err((peer, reason))) => return End::Rejected(peer, reason),
                Err(_) => return End::Rejected(0, "handshake timed out".into()),
            }
        }
        None => {
            let mut tcp = tcp;
            let from = match rejected(
                timeout(opts.handshake_timeout, hello(shared, &mut tcp, &mut buf)).await,
            ) {
                Ok(from) => from,
                Err(end) => return end,
            };
            if opts.inbound_handoff {
                return hand_over(shared, tcp, buf, from);
            }
            (Box::new(tcp), from)
        }
    };
    let stop = Arc::new(Notify::new());
    let generation = register(shared, from, stop.clone());
    shared.event("inbound_connected", from, String::new());
    let reason = tokio::select! {
        reason = read_loop(shared, io, buf, from, generation) => reason,
        _ = stop.notified() => SUPERSEDED.to_string(),
    };
    {
        let mut inbox = shared.lock_inbox();
        if inbox.inbound_gen.get(&from).map(|(g, _)| *g) == Some(generation) {
            inbox.inbound_gen.remove(&from);
        }
    }
    End::Closed(from, reason)
}

/// A new inbound connection from `from` becomes the current one; an older one is stopped.
fn register(shared: &Shared, from: u64, stop: Arc<Notify>) -> u64 {
    let mut inbox = shared.lock_inbox();
    inbox.next_gen += 1;
    let g = inbox.next_gen;
    if let Some((_, older)) = inbox.inbound_gen.insert(from, (g, stop)) {
        // Its unread frames are lost (Raft copes), never delivered after ours.
        older.notify_one();
    }
    inbox.recv.entry(from).or_default().connections += 1;
    g
}

/// Give a plaintext link to the caller, with whatever was read past the hello.
fn hand_over(shared: &Arc<Shared>, tcp: TcpStream, buf: BytesMut, from: u64) -> End {
    let sock = match tcp.into_std() {
        Ok(s) => s, // still non-blocking
        Err(e) => return End::Closed(from, format!("hand over: {e}")),
    };
    let generation = register(shared, from, Arc::new(Notify::new()));
    shared.event("inbound_connected", from, String::new());
    let link = InboundLink::new(shared.clone(), from, generation, sock, buf);
    let mut inbox = shared.lock_inbox();
    inbox.handoffs.push(link);
    shared.signal(&mut inbox);
    End::HandedOver
}

/// Read the dialer's hello, check it, answer; the dialer's member id.
async fn hello<I: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    shared: &Shared,
    io: &mut I,
    buf: &mut BytesMut,
) -> Result<u64, (u64, String)> {
    let opts = &shared.opts;
    let first = read_frame(io, buf, HANDSHAKE_MAX_FRAME)
        .await
        .map_err(|e| (0, format!("handshake: {e}")))?;
    let hello = frame::parse_hello(&first).map_err(|e| (0, e.to_string()))?;
    let refusal = if hello.cluster_id != opts.cluster_id {
        Some(format!(
            "cluster id mismatch: member {:#x} belongs to cluster {:#x}, this member \
             ({:#x}) to cluster {:#x}",
            hello.from, hello.cluster_id, opts.member_id, opts.cluster_id
        ))
    } else if hello.from == opts.member_id || hello.from == 0 {
        Some(format!(
            "dialer claims member id {:#x}, which is invalid here",
            hello.from
        ))
    } else if hello.to != 0 && hello.to != opts.member_id {
        Some(format!(
            "dialer expected member {:#x}, this is member {:#x}",
            hello.to, opts.member_id
        ))
    } else {
        None
    };
    let mut out = BytesMut::new();
    match &refusal {
        Some(reason) => frame::encode(&mut out, Kind::Reject, reason.as_bytes()),
        None => frame::encode_hello_ok(&mut out, opts.cluster_id, opts.member_id),
    }
    let sent = async {
        io.write_all(&out).await?;
        io.flush().await
    };
    let sent = sent.await;
    if let Some(reason) = refusal {
        let _ = io.shutdown().await;
        return Err((hello.from, reason));
    }
    sent.map_err(|e| (hello.from, format!("answer hello: {e}")))?;
    Ok(hello.from)
}

async fn read_loop(
    shared: &Shared,
    mut io: Box<dyn Io>,
    mut buf: BytesMut,
    from: u64,
    generation: u64,
) -> String {
    let max = shared.opts.max_frame;
    let mut batch: Vec<(u64, Bytes)> = Vec::new();
    loop {
        let error = frame::decode_messages(&mut buf, max, |body| batch.push((from, body))).err();
        if !batch.is_empty() {
            // Space notifications are only armed before looking at the inbox.
            let space = shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let full = {
                let mut inbox = shared.lock_inbox();
                if inbox.inbound_gen.get(&from).map(|(g, _)| *g) != Some(generation) {
                    return SUPERSEDED.into();
                }
                let bytes: usize = batch.iter().map(|(_, b)| b.len()).sum();
                let r = inbox.recv.entry(from).or_default();
                r.frames += batch.len() as u64;
                r.bytes += bytes as u64;
                inbox.received_bytes += bytes;
                inbox.received.append(&mut batch);
                shared.signal(&mut inbox);
                inbox.received_bytes > shared.opts.max_inbox_bytes
            };
            if full {
                // Back-pressure: stop reading until the caller takes the inbox.
                space.await;
            }
        }
        if let Some(e) = error {
            shared.counters.frame_errors.fetch_add(1, Ordering::Relaxed);
            return format!("closing: {e}");
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_CHUNK);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => return "closed by peer".into(),
            Ok(0) => {
                return format!(
                    "closed by peer in the middle of a frame ({} bytes discarded)",
                    buf.len()
                )
            }
            Ok(_) => {}
            Err(e) => return format!("read: {e}"),
        }
    }
}

//! The outgoing link to one peer: dial, hello, write queued chunks, reconnect with backoff.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};
use tokio_rustls::TlsConnector;

use super::frame::{self, Frame, Hello, HANDSHAKE_MAX_FRAME};
use super::{tls, Io, Jitter, LinkState, Peer, Shared};

/// A link that lived at least this long earns an immediate reconnect; a shorter one waits
/// out the backoff, so a peer that accepts and drops at once cannot make us spin.
const STABLE: Duration = Duration::from_secs(1);

pub(crate) async fn run(shared: Arc<Shared>, peer: Arc<Peer>) {
    let opts = &shared.opts;
    let mut jitter = Jitter::new(
        opts.seed ^ opts.member_id.rotate_left(17) ^ peer.id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let mut backoff = opts.backoff_initial;
    loop {
        peer.lock_queue().state = LinkState::Connecting;
        let addr = peer.addr();
        let addr_gen = peer.addr_gen.load(Ordering::Acquire);
        let failure = match connect(&shared, &peer, &addr).await {
            Ok((conn, direct)) => {
                peer.counters.connects.fetch_add(1, Ordering::Relaxed);
                {
                    let mut q = peer.lock_queue();
                    q.state = LinkState::Connected;
                    q.direct = direct;
                    q.writing = false;
                }
                shared.event("connected", peer.id, addr.clone());
                let began = Instant::now();
                let reason = pump(&peer, conn, addr_gen, opts.write_timeout).await;
                peer.lock_queue().direct = None;
                peer.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.event("disconnected", peer.id, format!("{addr}: {reason}"));
                if peer.addr_gen.load(Ordering::Acquire) != addr_gen {
                    // A new address: try it now, keeping what is queued.
                    backoff = opts.backoff_initial;
                    continue;
                }
                shared.mark_unreachable(peer.id);
                if began.elapsed() >= STABLE {
                    backoff = opts.backoff_initial;
                    continue;
                }
                None
            }
            Err(reason) => {
                peer.counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                Some(reason)
            }
        };
        // Back off: drop what is queued and whatever is sent until the next attempt.
        let (frames, bytes) = {
            let mut q = peer.lock_queue();
            q.state = LinkState::Backoff;
            let dropped = (q.frames, q.buf.len());
            q.buf = BytesMut::new();
            q.frames = 0;
            dropped
        };
        if frames > 0 {
            peer.count_dropped(frames, bytes.saturating_sub(frames * frame::HEADER_LEN));
        }
        if let Some(reason) = failure {
            shared.event("connect_failed", peer.id, format!("{addr}: {reason}"));
            shared.mark_unreachable(peer.id);
        } else if frames > 0 {
            shared.mark_unreachable(peer.id);
        }
        let deadline = tokio::time::Instant::now() + jitter.spread(backoff);
        backoff = backoff.saturating_mul(2).min(opts.backoff_max);
        loop {
            tokio::select! {
                _ = sleep_until(deadline) => break,
                _ = peer.wake.notified() => {
                    if peer.addr_gen.load(Ordering::Acquire) != addr_gen {
                        backoff = opts.backoff_initial;
                        break;
                    }
                }
            }
        }
    }
}

/// Dial, (TLS,) hello, and check the answer names our cluster and the member we meant.
/// A connected link, and for plaintext a second handle on its socket for direct writes.
type Connection = (Box<dyn Io>, Option<std::net::TcpStream>);

async fn connect(shared: &Shared, peer: &Peer, addr: &str) -> Result<Connection, String> {
    let opts = &shared.opts;
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        super::set_keepalive(&tcp);
        let mut direct = None;
        let mut io: Box<dyn Io> = match &shared.tls {
            Some(t) => {
                let name = tls::server_name(addr)?;
                let stream = TlsConnector::from(t.client.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                Box::new(stream)
            }
            None => {
                direct = tcp
                    .as_fd()
                    .try_clone_to_owned()
                    .ok()
                    .map(std::net::TcpStream::from);
                Box::new(tcp)
            }
        };
        let mut out = BytesMut::new();
        frame::encode_hello(
            &mut out,
            Hello {
                cluster_id: opts.cluster_id,
                from: opts.member_id,
                to: peer.id,
            },
        );
        io.write_all(&out)
            .await
            .map_err(|e| format!("send hello: {e}"))?;
        io.flush().await.map_err(|e| format!("send hello: {e}"))?;
        let mut buf = BytesMut::with_capacity(256);
        let answer = read_frame(&mut io, &mut buf, HANDSHAKE_MAX_FRAME).await?;
        let (cluster, member) = frame::parse_hello_ok(&answer).map_err(|e| e.to_string())?;
        if cluster != opts.cluster_id {
            return Err(format!(
                "peer belongs to cluster {cluster:#x}, this member to {:#x}",
                opts.cluster_id
            ));
        }
        if member != peer.id {
            return Err(format!(
                "address answered as member {member:#x}, expected {:#x}",
                peer.id
            ));
        }
        Ok((io, direct))
    };
    timeout(opts.connect_timeout + opts.handshake_timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Read one whole frame, buffering what follows it in `buf`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Frame, String> {
    loop {
        if let Some(f) = frame::decode(buf, max).map_err(|e| e.to_string())? {
            return Ok(f);
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let n = r.read_buf(buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "connection closed".into()
            } else {
                "connection closed in the middle of a frame".into()
            });
        }
    }
}

/// Write whatever is queued, one chunk per write, until the link fails, the peer closes it,
/// or the address changes. Returns why it ended.
async fn pump(peer: &Peer, conn: Box<dyn Io>, addr_gen: u64, write_timeout: Duration) -> String {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let mut probe = [0u8; 64];
    loop {
        let chunk = {
            let mut q = peer.lock_queue();
            q.writing = false;
            if q.frames == 0 {
                None
            } else {
                q.writing = true;
                let frames = std::mem::take(&mut q.frames);
                Some((q.buf.split().freeze(), frames))
            }
        };
        if let Some((chunk, frames)) = chunk {
            let written = async {
                wr.write_all(&chunk).await?;
                wr.flush().await
            };
            let failure = match timeout(write_timeout, written).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("write: {e}")),
                Err(_) => Some(format!(
                    "write of {} bytes not done after {:?}: peer not reading",
                    chunk.len(),
                    write_timeout
                )),
            };
            if let Some(reason) = failure {
                // Some of it may have arrived: never send it again.
                peer.count_dropped(frames, chunk.len() - frames * frame::HEADER_LEN);
                return reason;
            }
            let c = &peer.counters;
            c.frames_sent.fetch_add(frames as u64, Ordering::Relaxed);
            c.bytes_sent.fetch_add(
                (chunk.len() - frames * frame::HEADER_LEN) as u64,
                Ordering::Relaxed,
            );
            c.writes.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tokio::select! {
            _ = peer.wake.notified() => {
                if peer.addr_gen.load(Ordering::Acquire) != addr_gen {
                    let _ = wr.shutdown().await;
                    return "address changed".into();
                }
            }
            r = rd.read(&mut probe) => {
                return match r {
                    Ok(0) => "closed by peer".into(),
                    Ok(_) => "peer sent data on a one-way link".into(),
                    Err(e) => format!("read: {e}"),
                };
            }
        }
    }
}

//! The two HTTP/2 clients the generator can use to send etcd KV calls.
//!
//! Both send exactly the same protobuf bytes; they differ in how much machinery sits
//! between a call and the socket:
//! - `Tonic`: `tonic::client::Grpc` over a `tonic::transport::Channel` (a tower buffer in
//!   front of a hyper HTTP/2 connection) with the prost codec;
//! - `H2`: one `h2` client connection per HTTP/2 connection; each call opens a stream,
//!   writes the 5-byte gRPC frame header and the encoded request into a per-client buffer
//!   as one DATA frame, and reads the reply and the `grpc-status` trailer itself. A dead
//!   connection is replaced by the first call that finds it dead.
//!
//! Measured against a 3-member etcd on this 2-core machine (256 clients, 3 connections,
//! 256-byte values) the generating process spends about 9-10 µs of CPU per put with `H2`
//! and 16-17 µs with `Tonic`, so `H2` is the default. Both hand h2 a socket that claims no
//! vectored writes (see `Io`): without it, every request above 256 bytes cost
//! its own `writev` (14 and 25 µs per put before).

use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::etcdpb::{self, compare, request_op, PutRequest, RangeRequest, TxnRequest};

use super::options::{OpKind, Transport};

/// gRPC status codes, by number (the canonical upper-case names).
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
pub const UNKNOWN: u32 = 2;
pub const DEADLINE_EXCEEDED: u32 = 4;
pub const INTERNAL: u32 = 13;
pub const UNAVAILABLE: u32 = 14;

/// A failed call: gRPC code (client-side failures are mapped onto codes too) and message.
#[derive(Debug, Clone)]
pub struct CallError {
    pub code: u32,
    pub message: String,
}

impl CallError {
    fn new(code: u32, message: impl Into<String>) -> Self {
        CallError {
            code,
            message: message.into(),
        }
    }
}

/// What a successful call returned that the report cares about.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOk {
    /// For txn: whether the compare held.
    pub succeeded: bool,
}

/// The always-true guard of the txn workload: `mod_revision(key) < 2^62`.
pub const TXN_GUARD_REVISION: i64 = 1 << 62;

/// Encode the request for `kind` into `buf` (protobuf only, no gRPC framing).
pub fn encode_request(
    kind: OpKind,
    key: &Bytes,
    value: &Bytes,
    serializable: bool,
    buf: &mut BytesMut,
) {
    match kind {
        OpKind::Put => {
            let r = PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            };
            r.encode(buf).expect("BytesMut grows");
        }
        OpKind::Range => range_request(key, serializable)
            .encode(buf)
            .expect("BytesMut grows"),
        OpKind::Txn => txn_request(key, value).encode(buf).expect("BytesMut grows"),
    }
}

fn range_request(key: &Bytes, serializable: bool) -> RangeRequest {
    RangeRequest {
        key: key.clone(),
        serializable,
        ..Default::default()
    }
}

fn txn_request(key: &Bytes, value: &Bytes) -> TxnRequest {
    TxnRequest {
        compare: vec![etcdpb::Compare {
            result: compare::RESULT_LESS,
            target: compare::TARGET_MOD,
            key: key.clone(),
            target_union: Some(compare::TargetUnion::ModRevision(TXN_GUARD_REVISION)),
            range_end: Bytes::new(),
        }],
        success: vec![etcdpb::RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            })),
        }],
        failure: Vec::new(),
    }
}

fn path_of(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Put => etcdpb::path::PUT,
        OpKind::Range => etcdpb::path::RANGE,
        OpKind::Txn => etcdpb::path::TXN,
    }
}

/// The chain of `source()` messages, joined, so "transport error" comes with its cause.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// One HTTP/2 connection, shared by the clients assigned to it.
#[derive(Clone)]
pub enum Conn {
    Tonic(Channel),
    H2(Arc<H2Conn>),
}

/// An `h2` client connection that is replaced by a new one when it dies.
pub struct H2Conn {
    endpoint: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    uris: [Uri; 3],
    /// (generation, handle): the generation grows with each reconnect.
    current: Mutex<(u64, h2::client::SendRequest<Bytes>)>,
    /// Held while reconnecting; remembers the last failed attempt (when, why).
    renewing: tokio::sync::Mutex<Option<(Instant, String)>>,
}

/// After a failed reconnect, calls fail at once for this long instead of retrying.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// The socket under an HTTP/2 connection: plain TCP or TLS over TCP. It tells h2 it has
/// no vectored writes: h2 then copies DATA payloads below 1 KiB into its write buffer
/// (instead of below 256 bytes), so the requests of many clients leave in one `write`.
/// With 256-byte values a vectored stream made h2 flush once per request (one syscall
/// per call): measured about 25% more CPU per call (40% with tonic).
pub enum Io {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

type PollIo<T> = std::task::Poll<std::io::Result<T>>;

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> PollIo<()> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> PollIo<usize> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> PollIo<()> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> PollIo<()> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connect TCP (no Nagle) to `host:port` and, for `https://` endpoints, do the TLS
/// handshake with `tls`.
async fn connect_io(endpoint: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Io, String> {
    let (https, authority) = match endpoint.strip_prefix("https://") {
        Some(a) => (true, a),
        None => (false, endpoint.strip_prefix("http://").unwrap_or(endpoint)),
    };
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| error_chain(&e))?;
    tcp.set_nodelay(true).map_err(|e| error_chain(&e))?;
    if !https {
        return Ok(Io::Plain(tcp));
    }
    let tls = tls.ok_or("https endpoint without a TLS configuration")?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let name = super::tls::server_name(host)?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {}", error_chain(&e)))?;
    Ok(Io::Tls(Box::new(stream)))
}

/// tonic connector that hands hyper our `Io` (plain TCP only), for the same batching.
#[derive(Clone, Copy)]
struct CopyingConnector;

impl tonic::codegen::Service<Uri> for CopyingConnector {
    type Response = hyper_util::rt::TokioIo<Io>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1").to_string();
            let port = uri.port_u16().unwrap_or(80);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(hyper_util::rt::TokioIo::new(Io::Plain(tcp)))
        })
    }
}

async fn h2_connect(
    endpoint: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<h2::client::SendRequest<Bytes>, String> {
    let io = connect_io(endpoint, tls).await?;
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| error_chain(&e))?;
    // Drives the connection; ends (and with it every call on it) on error.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

impl H2Conn {
    fn handle(&self) -> (u64, h2::client::SendRequest<Bytes>) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The handle newer than `gen`, connecting a new one if `gen` is still the current
    /// (dead) one. One reconnect at a time; a failure is remembered for a short while.
    async fn renew(&self, gen: u64) -> Result<(u64, h2::client::SendRequest<Bytes>), CallError> {
        let mut last_failure = self.renewing.lock().await;
        let cur = self.handle();
        if cur.0 != gen {
            return Ok(cur);
        }
        if let Some((at, why)) = &*last_failure {
            if at.elapsed() < RECONNECT_BACKOFF {
                return Err(CallError::new(
                    UNAVAILABLE,
                    format!("reconnect failed: {why}"),
                ));
            }
        }
        let attempt = tokio::time::timeout(
            self.connect_timeout,
            h2_connect(&self.endpoint, self.tls.as_ref()),
        );
        let why = match attempt.await {
            Ok(Ok(send)) => {
                *last_failure = None;
                let mut c = self.current.lock().unwrap_or_else(|e| e.into_inner());
                c.0 += 1;
                c.1 = send;
                return Ok(c.clone());
            }
            Ok(Err(why)) => why,
            Err(_) => format!("no connection within {:?}", self.connect_timeout),
        };
        *last_failure = Some((Instant::now(), why.clone()));
        Err(CallError::new(
            UNAVAILABLE,
            format!("reconnect failed: {why}"),
        ))
    }
}

impl Conn {
    pub async fn connect(
        transport: Transport,
        endpoint: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Result<Conn, String> {
        let fut = async {
            match transport {
                Transport::Tonic if endpoint.starts_with("https://") => {
                    Err("https endpoints need the h2 transport".to_string())
                }
                Transport::Tonic => {
                    let ep = Endpoint::from_shared(endpoint.to_string())
                        .map_err(|e| error_chain(&e))?
                        .connect_timeout(connect_timeout)
                        .initial_stream_window_size(1 << 20)
                        .initial_connection_window_size(16 << 20);
                    let ch = ep
                        .connect_with_connector(CopyingConnector)
                        .await
                        .map_err(|e| error_chain(&e))?;
                    Ok(Conn::Tonic(ch))
                }
                Transport::H2 => {
                    let send = h2_connect(endpoint, tls).await?;
                    let uri = |p: &str| -> Result<Uri, String> {
                        format!("{endpoint}{p}")
                            .parse::<Uri>()
                            .map_err(|e| error_chain(&e))
                    };
                    Ok(Conn::H2(Arc::new(H2Conn {
                        endpoint: endpoint.to_string(),
                        tls: tls.cloned(),
                        connect_timeout,
                        uris: [
                            uri(path_of(OpKind::Put))?,
                            uri(path_of(OpKind::Range))?,
                            uri(path_of(OpKind::Txn))?,
                        ],
                        current: Mutex::new((0, send)),
                        renewing: tokio::sync::Mutex::new(None),
                    })))
                }
            }
        };
        match tokio::time::timeout(connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection within {connect_timeout:?}")),
        }
    }
}

/// A client's handle on its connection plus the buffers it reuses across calls.
pub struct Caller {
    inner: CallerInner,
    buf: BytesMut,
    recv: BytesMut,
}

enum CallerInner {
    Tonic(tonic::client::Grpc<Channel>),
    H2 {
        conn: Arc<H2Conn>,
        gen: u64,
        send: h2::client::SendRequest<Bytes>,
    },
}

fn kind_slot(kind: OpKind) -> usize {
    match kind {
        OpKind::Put => 0,
        OpKind::Range => 1,
        OpKind::Txn => 2,
    }
}

impl Caller {
    pub fn new(conn: &Conn) -> Caller {
        let inner = match conn {
            Conn::Tonic(ch) => CallerInner::Tonic(
                tonic::client::Grpc::new(ch.clone()).max_decoding_message_size(usize::MAX),
            ),
            Conn::H2(c) => {
                let (gen, send) = c.handle();
                CallerInner::H2 {
                    conn: c.clone(),
                    gen,
                    send,
                }
            }
        };
        Caller {
            inner,
            buf: BytesMut::new(),
            recv: BytesMut::new(),
        }
    }

    /// Send one call and wait for its answer (no deadline here; the caller adds one).
    /// On the h2 transport a dead connection is replaced (once per call at most).
    pub async fn call(
        &mut self,
        kind: OpKind,
        key: &Bytes,
        value: &Bytes,
        serializable: bool,
    ) -> Result<CallOk, CallError> {
        match &mut self.inner {
            CallerInner::Tonic(grpc) => tonic_call(grpc, kind, key, value, serializable).await,
            CallerInner::H2 { conn, gen, send } => {
                if poll_fn(|cx| send.poll_ready(cx)).await.is_err() {
                    let (g, s) = conn.renew(*gen).await?;
                    (*gen, *send) = (g, s);
                    poll_fn(|cx| send.poll_ready(cx)).await.map_err(h2_error)?;
                }
                let buf = &mut self.buf;
                buf.reserve(5 + key.len() + value.len() + 64);
                buf.put_slice(&[0; 5]);
                encode_request(kind, key, value, serializable, buf);
                let len = (buf.len() - 5) as u32;
                buf[1..5].copy_from_slice(&len.to_be_bytes());
                let frame = buf.split().freeze();
                h2_call(
                    send,
                    conn.uris[kind_slot(kind)].clone(),
                    frame,
                    &mut self.recv,
                    kind,
                )
                .await
            }
        }
    }
}

fn status_error(s: tonic::Status) -> CallError {
    // tonic turns a broken connection into UNKNOWN "transport error"; add the cause.
    let mut message = s.message().to_string();
    if let Some(src) = std::error::Error::source(&s) {
        let cause = error_chain(src);
        if cause.starts_with(&message) {
            message = cause;
        } else if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
    }
    CallError::new(s.code() as u32, message)
}

async fn tonic_call(
    grpc: &mut tonic::client::Grpc<Channel>,
    kind: OpKind,
    key: &Bytes,
    value: &Bytes,
    serializable: bool,
) -> Result<CallOk, CallError> {
    grpc.ready()
        .await
        .map_err(|e| CallError::new(UNAVAILABLE, error_chain(&e)))?;
    let path = PathAndQuery::from_static(path_of(kind));
    match kind {
        OpKind::Put => {
            let req = PutRequest {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            };
            let codec = tonic_prost::ProstCodec::<PutRequest, etcdpb::PutResponse>::default();
            grpc.unary(tonic::Request::new(req), path, codec)
                .await
                .map_err(status_error)?;
            Ok(CallOk::default())
        }
        OpKind::Range => {
            let codec = tonic_prost::ProstCodec::<RangeRequest, etcdpb::RangeResponse>::default();
            grpc.unary(
                tonic::Request::new(range_request(key, serializable)),
                path,
                codec,
            )
            .await
            .map_err(status_error)?;
            Ok(CallOk::default())
        }
        OpKind::Txn => {
            let codec = tonic_prost::ProstCodec::<TxnRequest, etcdpb::TxnResponse>::default();
            let resp = grpc
                .unary(tonic::Request::new(txn_request(key, value)), path, codec)
                .await
                .map_err(status_error)?;
            Ok(CallOk {
                succeeded: resp.into_inner().succeeded,
            })
        }
    }
}

static GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
static TRAILERS: HeaderValue = HeaderValue::from_static("trailers");

fn h2_error(e: h2::Error) -> CallError {
    // A stream reset by the server carries a reason; everything else is the connection.
    let code = match e.reason() {
        Some(h2::Reason::CANCEL) => 1,
        Some(h2::Reason::REFUSED_STREAM) => UNAVAILABLE,
        _ if e.is_io() || e.is_go_away() => UNAVAILABLE,
        Some(_) => INTERNAL,
        None => UNAVAILABLE,
    };
    CallError::new(code, error_chain(&e))
}

/// `grpc-status` (and `grpc-message`) from a header block; None when absent.
fn grpc_status(h: &HeaderMap) -> Option<Result<(), CallError>> {
    let v = h.get("grpc-status")?;
    let code: u32 = match std::str::from_utf8(v.as_bytes())
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(c) => c,
        None => return Some(Err(CallError::new(UNKNOWN, "malformed grpc-status"))),
    };
    if code == 0 {
        return Some(Ok(()));
    }
    let msg = h
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some(Err(CallError::new(code.min(16), msg)))
}

fn percent_decode(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn h2_call(
    send: &mut h2::client::SendRequest<Bytes>,
    uri: Uri,
    frame: Bytes,
    recv: &mut BytesMut,
    kind: OpKind,
) -> Result<CallOk, CallError> {
    let mut req = Request::new(());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.insert(CONTENT_TYPE, GRPC.clone());
    h.insert(TE, TRAILERS.clone());
    let (resp, mut stream) = send.send_request(req, false).map_err(h2_error)?;
    stream.send_data(frame, true).map_err(h2_error)?;
    let resp = resp.await.map_err(h2_error)?;
    if resp.status() != http::StatusCode::OK {
        return Err(CallError::new(
            UNKNOWN,
            format!("HTTP status {}", resp.status()),
        ));
    }
    let (parts, mut body) = resp.into_parts();
    if let Some(r) = grpc_status(&parts.headers) {
        // Trailers-only response (errors usually come this way).
        r?;
    }
    recv.clear();
    let mut single: Option<Bytes> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(h2_error)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        match single.take() {
            None if recv.is_empty() => single = Some(chunk),
            None => recv.extend_from_slice(&chunk),
            Some(first) => {
                recv.extend_from_slice(&first);
                recv.extend_from_slice(&chunk);
            }
        }
    }
    let trailers = body.trailers().await.map_err(h2_error)?;
    match trailers.as_ref().and_then(grpc_status) {
        Some(r) => r?,
        None => {
            return Err(CallError::new(
                INTERNAL,
                "response ended without grpc-status",
            ))
        }
    }
    let data: &[u8] = match &single {
        Some(b) => b,
        None => recv,
    };
    if data.len() < 5 || data[0] != 0 {
        return Err(CallError::new(
            INTERNAL,
            "response message missing or compressed",
        ));
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let msg = data
        .get(5..5 + len)
        .ok_or_else(|| CallError::new(INTERNAL, "truncated response"))?;
    let decode_err = |e: prost::DecodeError| CallError::new(INTERNAL, format!("bad response: {e}"));
    match kind {
        OpKind::Put => {
            etcdpb::PutResponse::decode(msg).map_err(decode_err)?;
            Ok(CallOk::default())
        }
        OpKind::Range => {
            etcdpb::RangeResponse::decode(msg).map_err(decode_err)?;
            Ok(CallOk::default())
        }
        OpKind::Txn => {
            let r = etcdpb::TxnResponse::decode(msg).map_err(decode_err)?;
            Ok(CallOk {
                succeeded: r.succeeded,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_parsing() {
        let mut h = HeaderMap::new();
        assert!(grpc_status(&h).is_none());
        h.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(grpc_status(&h), Some(Ok(()))));
        h.insert("grpc-status", HeaderValue::from_static("9"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver:%20no%20leader%"),
        );
        let e = grpc_status(&h).unwrap().unwrap_err();
        assert_eq!(e.code, 9);
        assert_eq!(e.message, "etcdserver: no leader%");
    }

    #[test]
    fn txn_request_encodes_guard_and_put() {
        let mut buf = BytesMut::new();
        let key = Bytes::from_static(b"k1");
        let value = Bytes::from_static(b"v");
        encode_request(OpKind::Txn, &key, &value, false, &mut buf);
        let t = TxnRequest::decode(&buf[..]).unwrap();
        assert_eq!(t.compare.len(), 1);
        assert_eq!(t.compare[0].key, key);
        assert_eq!(t.success.len(), 1);
    }
}

//! tonic glue: one service per etcd service name, all routed to the same dispatcher.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, ServerStreamingService, StreamingService, UnaryService};
use tonic::transport::server::Router;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::methods::{lookup, CallKind};
use super::{FrontConfig, Metadata, Shared, StreamItem, METADATA_KEYS};

/// Outgoing messages of a stream, ending at the first `None` (OK) or error.
type OutStream = Pin<Box<dyn futures::Stream<Item = Result<Bytes, Status>> + Send + 'static>>;

fn out_stream(rx: tokio::sync::mpsc::Receiver<StreamItem>) -> OutStream {
    let mut ended = false;
    Box::pin(
        ReceiverStream::new(rx)
            .take_while(|item| futures::future::ready(item.is_some()))
            .map(move |item| {
                let item = item.expect("take_while stops at None");
                if ended {
                    return Err(Status::internal("message after end of stream"));
                }
                if item.is_err() {
                    ended = true;
                }
                item
            }),
    )
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Passes message bytes through untouched: Python parses and builds the protobufs.
/// Messages over `max` bytes get grpc-go's RESOURCE_EXHAUSTED, as etcd answers.
#[derive(Clone, Copy)]
struct RawCodec {
    max: usize,
}

struct RawEncoder;
struct RawDecoder {
    max: usize,
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        if len > self.max {
            return Err(Status::resource_exhausted(format!(
                "grpc: received message larger than max ({len} vs. {})",
                self.max
            )));
        }
        Ok(Some(src.copy_to_bytes(len)))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder { max: self.max }
    }
}

fn metadata(meta: &tonic::metadata::MetadataMap) -> Option<Metadata> {
    let mut out: Option<Metadata> = None;
    for key in METADATA_KEYS {
        if let Some(v) = meta.get(key).and_then(|v| v.to_str().ok()) {
            out.get_or_insert_with(Vec::new).push((key, v.to_string()));
        }
    }
    out
}

struct UnaryCall {
    shared: Arc<Shared>,
    method: u16,
}

impl UnaryService<Bytes> for UnaryCall {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let meta = metadata(request.metadata());
        let rx = self
            .shared
            .start_unary(self.method, request.into_inner(), meta);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(bytes)) => Ok(Response::new(bytes)),
                Ok(Err(status)) => Err(status),
                Err(_) => Err(Status::unavailable("etcdserver: server stopped")),
            }
        })
    }
}

struct ServerStreamCall {
    shared: Arc<Shared>,
    method: u16,
}

impl ServerStreamingService<Bytes> for ServerStreamCall {
    type Response = Bytes;
    type ResponseStream = OutStream;
    type Future = BoxFuture<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let meta = metadata(request.metadata());
        let opened = self
            .shared
            .open_stream(self.method, Some(request.into_inner()), meta);
        let shared = self.shared.clone();
        Box::pin(async move {
            let (id, rx) = opened?;
            let tx = shared.stream_sender(id);
            tokio::spawn(async move {
                if let Some(tx) = tx {
                    tx.closed().await;
                }
                shared.stream_gone(id);
            });
            Ok(Response::new(out_stream(rx)))
        })
    }
}

struct BidiCall {
    shared: Arc<Shared>,
    method: u16,
}

impl StreamingService<Bytes> for BidiCall {
    type Response = Bytes;
    type ResponseStream = OutStream;
    type Future = BoxFuture<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let meta = metadata(request.metadata());
        let mut inbound = request.into_inner();
        let opened = self.shared.open_stream(self.method, None, meta);
        let shared = self.shared.clone();
        Box::pin(async move {
            let (id, rx) = opened?;
            let tx = shared.stream_sender(id);
            tokio::spawn(async move {
                let gone = loop {
                    tokio::select! {
                        msg = inbound.next() => match msg {
                            Some(Ok(payload)) => shared.stream_message(id, payload),
                            Some(Err(_)) => break true,
                            None => break false,
                        },
                        _ = async { if let Some(tx) = &tx { tx.closed().await } } => {
                            break true;
                        }
                    }
                };
                if !gone {
                    // Half-closed: the client still reads until it goes away.
                    shared.stream_half_close(id);
                    if let Some(tx) = &tx {
                        tx.closed().await;
                    }
                }
                shared.stream_gone(id);
            });
            Ok(Response::new(out_stream(rx)))
        })
    }
}

async fn dispatch(shared: Arc<Shared>, req: http::Request<Body>) -> http::Response<Body> {
    let max = shared.max_recv_bytes;
    // tonic's own limit only bounds memory; the etcd-style check is in RawDecoder.
    let hard_limit = max.saturating_mul(4).max(16 << 20);
    let grpc = || Grpc::new(RawCodec { max }).max_decoding_message_size(hard_limit);
    match lookup(req.uri().path()) {
        Some((method, CallKind::Unary)) => grpc().unary(UnaryCall { shared, method }, req).await,
        Some((method, CallKind::ServerStream)) => {
            grpc()
                .server_streaming(ServerStreamCall { shared, method }, req)
                .await
        }
        Some((method, CallKind::Bidi)) => grpc().streaming(BidiCall { shared, method }, req).await,
        None => Status::unimplemented(format!("unknown method {}", req.uri().path())).into_http(),
    }
}

macro_rules! etcd_service {
    ($ty:ident, $name:literal) => {
        #[derive(Clone)]
        struct $ty(Arc<Shared>);

        impl NamedService for $ty {
            const NAME: &'static str = $name;
        }

        impl tower_service::Service<http::Request<Body>> for $ty {
            type Response = http::Response<Body>;
            type Error = Infallible;
            type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

            fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: http::Request<Body>) -> Self::Future {
                let shared = self.0.clone();
                Box::pin(async move { Ok(dispatch(shared, req).await) })
            }
        }
    };
}

etcd_service!(KvService, "etcdserverpb.KV");
etcd_service!(WatchService, "etcdserverpb.Watch");
etcd_service!(LeaseService, "etcdserverpb.Lease");
etcd_service!(ClusterService, "etcdserverpb.Cluster");
etcd_service!(MaintenanceService, "etcdserverpb.Maintenance");
etcd_service!(AuthService, "etcdserverpb.Auth");
etcd_service!(ElectionService, "v3electionpb.Election");
etcd_service!(LockService, "v3lockpb.Lock");

pub(crate) fn build_server(config: &FrontConfig, shared: Arc<Shared>) -> io::Result<Router> {
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = &config.tls {
        let mut tls_config =
            ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            tls_config = tls_config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(tls_config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {e}")))?;
    }
    Ok(builder
        .add_service(KvService(shared.clone()))
        .add_service(WatchService(shared.clone()))
        .add_service(LeaseService(shared.clone()))
        .add_service(ClusterService(shared.clone()))
        .add_service(MaintenanceService(shared.clone()))
        .add_service(AuthService(shared.clone()))
        .add_service(ElectionService(shared.clone()))
        .add_service(LockService(shared)))
}

//! The accepted client socket.
//!
//! It tells hyper/h2 it has no vectored writes: with them h2 sends every DATA frame of 256
//! bytes or more with its own `writev` (one syscall per response for 256-byte values);
//! without, it copies payloads below 1 KiB into its write buffer and the responses of many
//! calls leave in one write. On plaintext connections, reads go through the
//! [`AuthorityFilter`] (etcdctl's scheme-qualified `:authority`).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::authority::AuthorityFilter;

pub struct ClientIo {
    tcp: TcpStream,
    /// None under TLS: tonic decrypts above this layer, so there is nothing to filter here.
    filter: Option<Box<Filtered>>,
}

struct Filtered {
    filter: AuthorityFilter,
    out: BytesMut,
    scratch: Vec<u8>,
    eof: bool,
}

impl ClientIo {
    pub fn new(tcp: TcpStream, filter_authority: bool) -> Self {
        let filter = filter_authority.then(|| {
            Box::new(Filtered {
                filter: AuthorityFilter::default(),
                out: BytesMut::new(),
                scratch: vec![0; 32 * 1024],
                eof: false,
            })
        });
        ClientIo { tcp, filter }
    }
}

impl Connected for ClientIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(f) = this.filter.as_mut() else {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        };
        loop {
            if !f.out.is_empty() {
                let n = buf.remaining().min(f.out.len());
                buf.put_slice(&f.out.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if f.eof {
                return Poll::Ready(Ok(()));
            }
            let mut raw = ReadBuf::new(&mut f.scratch);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut raw))?;
            let n = raw.filled().len();
            if n == 0 {
                f.eof = true;
                continue;
            }
            f.filter
                .feed(&f.scratch[..n], &mut f.out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

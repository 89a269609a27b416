//! Peer transport bindings. Batches cross the boundary once per event-loop turn.

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::peer::frame::{self, Hello, Kind};
use crate::peer::{
    PeerError, PeerOptions, PeerTransport, TlsFiles, DEFAULT_MAX_FRAME, DEFAULT_MAX_INBOX_BYTES,
    DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_FRAMES,
};

create_exception!(
    raftkv._native,
    PeerTransportError,
    PyException,
    "A peer transport operation failed (listening, TLS material and the like)."
);
create_exception!(
    raftkv._native,
    PeerTransportClosedError,
    PeerTransportError,
    "The peer transport is closed."
);

fn peer_err(e: PeerError) -> PyErr {
    match e {
        PeerError::Invalid(m) => PyValueError::new_err(m),
        PeerError::Io(m) => PeerTransportError::new_err(m),
        PeerError::Closed => PeerTransportClosedError::new_err(e.to_string()),
    }
}

fn seconds(name: &str, s: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| PyValueError::new_err(format!("bad {name}: {s}")))
}

pub(crate) fn batch_item<'py>(item: Bound<'py, PyAny>) -> PyResult<(u64, Bound<'py, PyBytes>)> {
    let bad = || PyTypeError::new_err("send_batch wants (peer_id, bytes) tuples");
    let t = item.downcast_into::<PyTuple>().map_err(|_| bad())?;
    if t.len() != 2 {
        return Err(bad());
    }
    let peer: u64 = t.get_item(0)?.extract()?;
    let data = t
        .get_item(1)?
        .downcast_into::<PyBytes>()
        .map_err(|_| PyTypeError::new_err("message must be bytes"))?;
    Ok((peer, data))
}

#[pyclass(name = "PeerTransport", module = "raftkv._native", frozen)]
pub struct PyPeerTransport {
    pub(crate) inner: PeerTransport,
}

#[pymethods]
impl PyPeerTransport {
    #[new]
    #[pyo3(signature = (
        member_id, cluster_id, listen, peers = None, *,
        cert_file = None, key_file = None, trusted_ca_file = None, client_cert_auth = false,
        max_frame_size = DEFAULT_MAX_FRAME, max_queue_bytes = DEFAULT_MAX_QUEUE_BYTES,
        max_queue_frames = DEFAULT_MAX_QUEUE_FRAMES, max_inbox_bytes = DEFAULT_MAX_INBOX_BYTES,
        backoff_initial = 0.05, backoff_max = 2.0, connect_timeout = 3.0,
        handshake_timeout = 5.0, write_timeout = 10.0, seed = 0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        member_id: u64,
        cluster_id: u64,
        listen: String,
        peers: Option<&Bound<'_, PyAny>>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        trusted_ca_file: Option<PathBuf>,
        client_cert_auth: bool,
        max_frame_size: usize,
        max_queue_bytes: usize,
        max_queue_frames: usize,
        max_inbox_bytes: usize,
        backoff_initial: f64,
        backoff_max: f64,
        connect_timeout: f64,
        handshake_timeout: f64,
        write_timeout: f64,
        seed: u64,
    ) -> PyResult<Self> {
        let tls = match (cert_file, key_file, trusted_ca_file) {
            (None, None, None) if !client_cert_auth => None,
            (Some(cert_file), Some(key_file), Some(trusted_ca_file)) => Some(TlsFiles {
                cert_file,
                key_file,
                trusted_ca_file,
                client_cert_auth,
            }),
            _ => {
                return Err(PyValueError::new_err(
                    "peer TLS needs cert_file, key_file and trusted_ca_file together",
                ))
            }
        };
        let mut opts = PeerOptions::new(member_id, cluster_id, listen);
        opts.tls = tls;
        opts.max_frame = max_frame_size;
        opts.max_queue_bytes = max_queue_bytes;
        opts.max_queue_frames = max_queue_frames;
        opts.max_inbox_bytes = max_inbox_bytes;
        opts.backoff_initial = seconds("backoff_initial", backoff_initial)?;
        opts.backoff_max = seconds("backoff_max", backoff_max)?.max(opts.backoff_initial);
        opts.connect_timeout = seconds("connect_timeout", connect_timeout)?;
        opts.handshake_timeout = seconds("handshake_timeout", handshake_timeout)?;
        opts.write_timeout = seconds("write_timeout", write_timeout)?;
        opts.seed = seed;
        let mut initial: Vec<(u64, String)> = Vec::new();
        if let Some(peers) = peers {
            let items = match peers.downcast::<PyDict>() {
                Ok(d) => d.items().into_any(),
                Err(_) => peers.clone(),
            };
            for item in items.try_iter()? {
                initial.push(item?.extract()?);
            }
        }
        let peers = initial;
        let inner = py
            .allow_threads(|| PeerTransport::start(opts, &peers))
            .map_err(peer_err)?;
        Ok(PyPeerTransport { inner })
    }

    #[getter]
    fn member_id(&self) -> u64 {
        self.inner.member_id()
    }

    #[getter]
    fn cluster_id(&self) -> u64 {
        self.inner.cluster_id()
    }

    /// The address actually bound, as `host:port`.
    #[getter]
    fn listen_addr(&self) -> String {
        self.inner.local_addr().to_string()
    }

    #[getter]
    fn notify_fd(&self) -> i32 {
        self.inner.notify_fd()
    }

    #[getter]
    fn max_frame_size(&self) -> usize {
        self.inner.max_frame()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn add_peer(&self, peer_id: u64, addr: String) -> PyResult<()> {
        self.inner.add_peer(peer_id, addr).map_err(peer_err)
    }

    fn update_peer(&self, peer_id: u64, addr: String) -> PyResult<()> {
        self.inner.update_peer(peer_id, addr).map_err(peer_err)
    }

    fn remove_peer(&self, peer_id: u64) -> PyResult<()> {
        self.inner.remove_peer(peer_id).map_err(peer_err)
    }

    fn peer_ids(&self) -> Vec<u64> {
        self.inner.peer_ids()
    }

    /// Queue `[(peer_id, bytes), ...]`; returns (queued, dropped).
    fn send_batch<'py>(&self, items: &Bound<'py, PyAny>) -> PyResult<(usize, usize)> {
        let mut owned: Vec<(u64, Bound<'py, PyBytes>)> = Vec::new();
        if let Ok(list) = items.downcast::<PyList>() {
            for item in list.iter() {
                owned.push(batch_item(item)?);
            }
        } else {
            for item in items.try_iter()? {
                owned.push(batch_item(item?)?);
            }
        }
        let batch: Vec<(u64, &[u8])> = owned.iter().map(|(p, b)| (*p, b.as_bytes())).collect();
        let out = self.inner.send_batch(&batch).map_err(peer_err)?;
        Ok((out.queued, out.dropped))
    }

    /// Every frame received since the last call, as `[(from_id, bytes), ...]`.
    fn take_received<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let got = self.inner.take_received();
        let items = got
            .iter()
            .map(|(from, body)| (*from, PyBytes::new(py, body)).into_pyobject(py))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    fn take_unreachable(&self) -> Vec<u64> {
        self.inner.take_unreachable()
    }

    /// `[(kind, peer_id, detail), ...]` since the last call.
    fn take_events(&self) -> Vec<(&'static str, u64, String)> {
        self.inner
            .take_events()
            .into_iter()
            .map(|e| (e.kind, e.peer, e.detail))
            .collect()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("accepted", s.accepted)?;
        d.set_item("rejected", s.rejected)?;
        d.set_item("frame_errors", s.frame_errors)?;
        d.set_item("unknown_peer_drops", s.unknown_peer_drops)?;
        d.set_item("events_dropped", s.events_dropped)?;
        d.set_item("inbox_frames", s.inbox_frames)?;
        d.set_item("inbox_bytes", s.inbox_bytes)?;
        let peers = PyDict::new(py);
        for p in s.peers {
            let e = PyDict::new(py);
            e.set_item("addr", p.addr)?;
            e.set_item("state", p.state)?;
            e.set_item("frames_sent", p.frames_sent)?;
            e.set_item("bytes_sent", p.bytes_sent)?;
            e.set_item("writes", p.writes)?;
            e.set_item("connects", p.connects)?;
            e.set_item("reconnects", p.reconnects)?;
            e.set_item("connect_failures", p.connect_failures)?;
            e.set_item("disconnects", p.disconnects)?;
            e.set_item("dropped_frames", p.dropped_frames)?;
            e.set_item("dropped_bytes", p.dropped_bytes)?;
            e.set_item("queued_frames", p.queued_frames)?;
            e.set_item("queued_bytes", p.queued_bytes)?;
            e.set_item("frames_received", p.frames_received)?;
            e.set_item("bytes_received", p.bytes_received)?;
            e.set_item("inbound_connections", p.inbound_connections)?;
            peers.set_item(p.id, e)?;
        }
        d.set_item("peers", peers)?;
        Ok(d)
    }

    /// Close the listener and every link, and wait for their tasks. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.inner.close());
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(&self, py: Python<'_>, _exc_type: PyObject, _exc: PyObject, _tb: PyObject) -> bool {
        self.close(py);
        false
    }
}

/// One frame as it goes on the wire, a message by default (for tests and tools).
#[pyfunction]
#[pyo3(signature = (body, kind = Kind::Msg as u8))]
fn encode_peer_frame<'py>(py: Python<'py>, body: &[u8], kind: u8) -> PyResult<Bound<'py, PyBytes>> {
    let kind = match kind {
        1 => Kind::Hello,
        2 => Kind::HelloOk,
        3 => Kind::Reject,
        4 => Kind::Msg,
        k => return Err(PyValueError::new_err(format!("unknown frame kind {k}"))),
    };
    let mut out = BytesMut::new();
    frame::encode(&mut out, kind, body);
    Ok(PyBytes::new(py, &out))
}

/// The hello a dialer sends first (for tests and tools).
#[pyfunction]
#[pyo3(signature = (cluster_id, member_id, to = 0))]
fn encode_peer_hello<'py>(
    py: Python<'py>,
    cluster_id: u64,
    member_id: u64,
    to: u64,
) -> Bound<'py, PyBytes> {
    let mut out = BytesMut::new();
    frame::encode_hello(
        &mut out,
        Hello {
            cluster_id,
            from: member_id,
            to,
        },
    );
    PyBytes::new(py, &out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyPeerTransport>()?;
    m.add("PeerTransportError", py.get_type::<PeerTransportError>())?;
    m.add(
        "PeerTransportClosedError",
        py.get_type::<PeerTransportClosedError>(),
    )?;
    m.add_function(wrap_pyfunction!(encode_peer_frame, m)?)?;
    m.add_function(wrap_pyfunction!(encode_peer_hello, m)?)?;
    m.add("PEER_FRAME_HEADER_LEN", frame::HEADER_LEN)?;
    m.add("DEFAULT_PEER_MAX_FRAME", DEFAULT_MAX_FRAME)?;
    Ok(())
}

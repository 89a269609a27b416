//! Bindings for the client front.

use std::net::SocketAddr;

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::front::methods::METHODS;
use crate::front::{self, Event, Front, FrontConfig, TlsSettings};

pub const EV_UNARY: u8 = 0;
pub const EV_STREAM_OPEN: u8 = 1;
pub const EV_STREAM_MESSAGE: u8 = 2;
pub const EV_STREAM_HALF_CLOSE: u8 = 3;
pub const EV_STREAM_GONE: u8 = 4;
pub const EV_STREAM_WRITABLE: u8 = 5;

#[pyclass(name = "Front", module = "raftkv._native", frozen)]
pub struct PyFront {
    inner: Front,
}

fn meta_dict<'py>(py: Python<'py>, meta: Option<front::Metadata>) -> PyResult<PyObject> {
    match meta {
        None => Ok(py.None()),
        Some(items) => {
            let d = PyDict::new(py);
            for (k, v) in items {
                d.set_item(k, v)?;
            }
            Ok(d.into_any().unbind())
        }
    }
}

#[pymethods]
impl PyFront {
    #[new]
    #[pyo3(signature = (listen, *, cert_pem = None, key_pem = None, client_ca_pem = None,
                        max_recv_bytes = None, max_concurrent_streams = None))]
    fn new(
        py: Python<'_>,
        listen: Vec<String>,
        cert_pem: Option<Vec<u8>>,
        key_pem: Option<Vec<u8>>,
        client_ca_pem: Option<Vec<u8>>,
        max_recv_bytes: Option<usize>,
        max_concurrent_streams: Option<u32>,
    ) -> PyResult<Self> {
        let mut config = FrontConfig::default();
        for addr in &listen {
            let parsed: SocketAddr = addr
                .parse()
                .map_err(|_| PyValueError::new_err(format!("invalid listen address {addr:?}")))?;
            config.listen.push(parsed);
        }
        if config.listen.is_empty() {
            return Err(PyValueError::new_err(
                "at least one listen address is needed",
            ));
        }
        config.tls = match (cert_pem, key_pem) {
            (Some(cert_pem), Some(key_pem)) => Some(TlsSettings {
                cert_pem,
                key_pem,
                client_ca_pem,
            }),
            (None, None) if client_ca_pem.is_none() => None,
            _ => {
                return Err(PyValueError::new_err(
                    "TLS needs both a certificate and a key (and a client CA only with them)",
                ))
            }
        };
        if let Some(n) = max_recv_bytes {
            config.max_recv_bytes = n;
        }
        if let Some(n) = max_concurrent_streams {
            config.max_concurrent_streams = n;
        }
        let inner = py
            .allow_threads(|| Front::start(config))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(PyFront { inner })
    }

    /// Bound addresses, as "host:port".
    #[getter]
    fn addresses(&self) -> Vec<String> {
        self.inner
            .addresses()
            .iter()
            .map(|a| a.to_string())
            .collect()
    }

    #[getter]
    fn notify_fd(&self) -> i32 {
        self.inner.notify_fd()
    }

    /// Every queued event as (kind, id, method, payload | None, metadata | None).
    fn take_events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = self.inner.take_events();
        let none = py.None();
        let mut items: Vec<Bound<'py, PyTuple>> = Vec::with_capacity(events.len());
        for ev in events {
            let t = match ev {
                Event::Unary {
                    id,
                    method,
                    payload,
                    meta,
                } => (
                    EV_UNARY,
                    id,
                    method,
                    PyBytes::new(py, &payload).into_any().unbind(),
                    meta_dict(py, meta)?,
                )
                    .into_pyobject(py)?,
                Event::StreamOpen {
                    id,
                    method,
                    payload,
                    meta,
                } => (
                    EV_STREAM_OPEN,
                    id,
                    method,
                    match payload {
                        Some(p) => PyBytes::new(py, &p).into_any().unbind(),
                        None => none.clone_ref(py),
                    },
                    meta_dict(py, meta)?,
                )
                    .into_pyobject(py)?,
                Event::StreamMessage { id, payload } => (
                    EV_STREAM_MESSAGE,
                    id,
                    0u16,
                    PyBytes::new(py, &payload).into_any().unbind(),
                    none.clone_ref(py),
                )
                    .into_pyobject(py)?,
                Event::StreamHalfClose { id } => (
                    EV_STREAM_HALF_CLOSE,
                    id,
                    0u16,
                    none.clone_ref(py),
                    none.clone_ref(py),
                )
                    .into_pyobject(py)?,
                Event::StreamGone { id } => (
                    EV_STREAM_GONE,
                    id,
                    0u16,
                    none.clone_ref(py),
                    none.clone_ref(py),
                )
                    .into_pyobject(py)?,
                Event::StreamWritable { id } => (
                    EV_STREAM_WRITABLE,
                    id,
                    0u16,
                    none.clone_ref(py),
                    none.clone_ref(py),
                )
                    .into_pyobject(py)?,
            };
            items.push(t);
        }
        PyList::new(py, items)
    }

    /// Answer unary calls: (id, 0, response bytes) or (id, grpc code, message).
    fn respond(&self, batch: &Bound<'_, PyList>) -> PyResult<()> {
        let mut results = Vec::with_capacity(batch.len());
        for item in batch.iter() {
            let t = item.downcast::<PyTuple>()?;
            let id: u64 = t.get_item(0)?.extract()?;
            let code: i32 = t.get_item(1)?.extract()?;
            let body = t.get_item(2)?;
            let result = if code == 0 {
                Ok(Bytes::copy_from_slice(
                    body.downcast::<PyBytes>()?.as_bytes(),
                ))
            } else {
                Err(front::status(
                    code,
                    body.downcast::<PyString>()?.to_str()?.to_owned(),
                ))
            };
            results.push((id, result));
        }
        self.inner.respond_many(results);
        Ok(())
    }

    /// Send stream messages [(id, bytes)]; returns the ids that are now congested.
    fn stream_send(&self, batch: &Bound<'_, PyList>) -> PyResult<Vec<u64>> {
        let mut congested = Vec::new();
        for item in batch.iter() {
            let t = item.downcast::<PyTuple>()?;
            let id: u64 = t.get_item(0)?.extract()?;
            let data = t.get_item(1)?;
            let payload = Bytes::copy_from_slice(data.downcast::<PyBytes>()?.as_bytes());
            if !self.inner.stream_send(id, payload) && congested.last() != Some(&id) {
                congested.push(id);
            }
        }
        Ok(congested)
    }

    /// End a stream with OK (code 0) or an error status.
    #[pyo3(signature = (id, code = 0, message = String::new()))]
    fn stream_close(&self, id: u64, code: i32, message: String) {
        let status = if code == 0 {
            None
        } else {
            Some(front::status(code, message))
        };
        self.inner.stream_close(id, status);
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("unary_calls", s.unary_calls.load(Relaxed))?;
        d.set_item("streams_opened", s.streams_opened.load(Relaxed))?;
        d.set_item("stream_messages_in", s.stream_messages_in.load(Relaxed))?;
        d.set_item("stream_messages_out", s.stream_messages_out.load(Relaxed))?;
        d.set_item("batches_taken", s.batches_taken.load(Relaxed))?;
        d.set_item("congestion_events", s.congestion_events.load(Relaxed))?;
        d.set_item("pending_unary", self.inner.pending_unary())?;
        d.set_item("open_streams", self.inner.open_streams())?;
        Ok(d)
    }

    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.inner.close());
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFront>()?;
    let methods: Vec<(&str, &str)> = METHODS.iter().map(|(p, k)| (*p, k.name())).collect();
    m.add("FRONT_METHODS", methods)?;
    m.add("EV_UNARY", EV_UNARY)?;
    m.add("EV_STREAM_OPEN", EV_STREAM_OPEN)?;
    m.add("EV_STREAM_MESSAGE", EV_STREAM_MESSAGE)?;
    m.add("EV_STREAM_HALF_CLOSE", EV_STREAM_HALF_CLOSE)?;
    m.add("EV_STREAM_GONE", EV_STREAM_GONE)?;
    m.add("EV_STREAM_WRITABLE", EV_STREAM_WRITABLE)?;
    Ok(())
}

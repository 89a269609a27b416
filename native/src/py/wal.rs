//! Write-ahead log bindings. Blocking calls release the GIL.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::errors::wal_err;
use super::peer::{batch_item, PyPeerTransport};
use crate::codec::HardState;
use crate::wal::{AfterDurable, Wal, WalOptions, DEFAULT_SEGMENT_SIZE};

#[pyclass(name = "Wal", module = "raftkv._native", frozen)]
pub struct PyWal {
    inner: Wal,
}

fn hs((term, vote, commit): (u64, u64, u64)) -> HardState {
    HardState { term, vote, commit }
}

#[pymethods]
impl PyWal {
    #[new]
    #[pyo3(signature = (path, segment_size = DEFAULT_SEGMENT_SIZE))]
    fn new(py: Python<'_>, path: PathBuf, segment_size: u64) -> PyResult<Self> {
        let inner = py
            .allow_threads(|| Wal::open(&path, WalOptions { segment_size }))
            .map_err(wal_err)?;
        Ok(PyWal { inner })
    }

    /// `then_send=(transport, [(peer_id, bytes), ...])`: the writer thread hands these
    /// messages to the transport as soon as the append is durable (the append is synced).
    #[pyo3(signature = (entries, hard_state = None, sync = true, then_send = None))]
    fn append(
        &self,
        entries: &[u8],
        hard_state: Option<(u64, u64, u64)>,
        sync: bool,
        then_send: Option<(PyRef<'_, PyPeerTransport>, Bound<'_, PyList>)>,
    ) -> PyResult<u64> {
        let after = match then_send {
            None => None,
            Some((transport, items)) => {
                let mut msgs: Vec<(u64, Vec<u8>)> = Vec::with_capacity(items.len());
                for item in items.iter() {
                    let (peer, data) = batch_item(item)?;
                    msgs.push((peer, data.as_bytes().to_vec()));
                }
                let transport = transport.inner.sender();
                let hook: AfterDurable = Box::new(move || {
                    let batch: Vec<(u64, &[u8])> =
                        msgs.iter().map(|(p, d)| (*p, d.as_slice())).collect();
                    // A closed transport or an unknown peer: Raft retries, as for any loss.
                    let _ = transport.send_batch(&batch);
                });
                Some(hook)
            }
        };
        self.inner
            .append_then(entries.to_vec(), hard_state.map(hs), sync, after)
            .map_err(wal_err)
    }

    fn save_hard_state(&self, term: u64, vote: u64, commit: u64) -> PyResult<u64> {
        self.inner
            .save_hard_state(HardState { term, vote, commit })
            .map_err(wal_err)
    }

    fn truncate_suffix(&self, index: u64) -> PyResult<u64> {
        self.inner.truncate_suffix(index).map_err(wal_err)
    }

    fn release_before(&self, index: u64) -> PyResult<u64> {
        self.inner.release_before(index).map_err(wal_err)
    }

    fn wait(&self, py: Python<'_>, seq: u64) -> PyResult<()> {
        py.allow_threads(|| self.inner.wait(seq)).map_err(wal_err)
    }

    #[getter]
    fn synced_seq(&self) -> PyResult<u64> {
        self.inner.synced_seq().map_err(wal_err)
    }

    #[getter]
    fn notify_fd(&self) -> i32 {
        self.inner.notify_fd()
    }

    fn drain_notifications(&self) -> PyResult<u64> {
        self.inner.drain_notifications().map_err(wal_err)
    }

    #[pyo3(signature = (lo, hi, max_bytes = u64::MAX))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        lo: u64,
        hi: u64,
        max_bytes: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = py
            .allow_threads(|| self.inner.read(lo, hi, max_bytes))
            .map_err(wal_err)?;
        Ok(PyBytes::new(py, &data))
    }

    fn term(&self, py: Python<'_>, index: u64) -> PyResult<u64> {
        py.allow_threads(|| self.inner.term(index)).map_err(wal_err)
    }

    #[getter]
    fn first_index(&self) -> u64 {
        self.inner.bounds().first
    }

    #[getter]
    fn last_index(&self) -> u64 {
        self.inner.bounds().last
    }

    #[getter]
    fn hard_state(&self) -> (u64, u64, u64) {
        let h = self.inner.hard_state();
        (h.term, h.vote, h.commit)
    }

    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir().to_path_buf()
    }

    fn recovery<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.inner.recovery();
        let d = PyDict::new(py);
        d.set_item("segments", r.segments)?;
        d.set_item("records", r.records)?;
        d.set_item("entries", r.entries)?;
        d.set_item("torn_bytes", r.torn_bytes)?;
        d.set_item("torn_at", r.torn_at)?;
        d.set_item("torn_reason", r.torn_reason.clone())?;
        d.set_item("removed_temp_files", r.removed_temp_files)?;
        Ok(d)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("records", s.records)?;
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("syncs", s.syncs)?;
        d.set_item("batches", s.batches)?;
        let per_sync = if s.syncs == 0 {
            0.0
        } else {
            s.batches as f64 / s.syncs as f64
        };
        d.set_item("batches_per_sync", per_sync)?;
        d.set_item("max_batches_per_sync", s.max_batches_per_sync)?;
        d.set_item("sync_seconds", s.sync_seconds)?;
        d.set_item("segments", s.segments)?;
        d.set_item("segments_created", s.segments_created)?;
        d.set_item("segments_released", s.segments_released)?;
        d.set_item("queued_seq", s.queued_seq)?;
        d.set_item("synced_seq", s.synced_seq)?;
        Ok(d)
    }

    fn suspend_writer(&self) {
        self.inner.suspend_writer();
    }

    fn resume_writer(&self) {
        self.inner.resume_writer();
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.inner.close()).map_err(wal_err)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: PyObject,
        _exc: PyObject,
        _tb: PyObject,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWal>()?;
    m.add("DEFAULT_SEGMENT_SIZE", DEFAULT_SEGMENT_SIZE)?;
    Ok(())
}

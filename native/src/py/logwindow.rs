//! Bindings for the in-memory log window.

use std::sync::Mutex;

use pyo3::exceptions::{PyIndexError, PyLookupError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::codec_err;
use crate::logwindow::{LogWindow, WindowError};

pyo3::create_exception!(
    raftkv._native,
    LogCompactedError,
    PyLookupError,
    "The index is before the log window."
);
pyo3::create_exception!(
    raftkv._native,
    LogUnavailableError,
    PyLookupError,
    "The index is after the last entry."
);

fn window_err(e: WindowError) -> PyErr {
    match e {
        WindowError::Codec(c) => codec_err(c),
        WindowError::Compacted(_) => LogCompactedError::new_err(e.to_string()),
        WindowError::Unavailable(_) => LogUnavailableError::new_err(e.to_string()),
        WindowError::Gap { .. } => PyValueError::new_err(e.to_string()),
    }
}

#[pyclass(name = "LogWindow", module = "raftkv._native", frozen)]
pub struct PyLogWindow {
    inner: Mutex<LogWindow>,
}

impl PyLogWindow {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogWindow> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl PyLogWindow {
    #[new]
    #[pyo3(signature = (first = 1, prev_term = 0))]
    fn new(first: u64, prev_term: u64) -> Self {
        PyLogWindow {
            inner: Mutex::new(LogWindow::new(first, prev_term)),
        }
    }

    #[getter]
    fn first_index(&self) -> u64 {
        self.lock().first_index()
    }

    #[getter]
    fn last_index(&self) -> u64 {
        self.lock().last_index()
    }

    #[getter]
    fn byte_size(&self) -> usize {
        self.lock().byte_size()
    }

    fn __len__(&self) -> usize {
        self.lock().len()
    }

    fn term(&self, index: u64) -> PyResult<u64> {
        self.lock().term(index).map_err(window_err)
    }

    fn append(&self, records: &[u8]) -> PyResult<()> {
        self.lock().append(records).map_err(window_err)
    }

    fn truncate_from(&self, index: u64) {
        self.lock().truncate_from(index);
    }

    fn compact_to(&self, index: u64) {
        self.lock().compact_to(index);
    }

    fn reset(&self, first: u64, prev_term: u64) {
        self.lock().reset(first, prev_term);
    }

    #[pyo3(signature = (lo, hi, max_bytes = usize::MAX))]
    fn slice<'py>(
        &self,
        py: Python<'py>,
        lo: u64,
        hi: u64,
        max_bytes: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if hi < lo {
            return Err(PyIndexError::new_err(format!("empty range [{lo}, {hi})")));
        }
        let data = self.lock().slice(lo, hi, max_bytes).map_err(window_err)?;
        Ok(PyBytes::new(py, &data))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyLogWindow>()?;
    m.add("LogCompactedError", py.get_type::<LogCompactedError>())?;
    m.add("LogUnavailableError", py.get_type::<LogUnavailableError>())?;
    Ok(())
}

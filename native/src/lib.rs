//! raftkv's native core, exposed to Python as `raftkv._native`.
//!
//! Rust owns bytes, files and threads; the Python layer sees a small typed
//! API (see `python/raftkv/_native.pyi`).

pub mod bench;
pub mod codec;
pub mod etcdpb;
pub mod front;
pub mod logwindow;
pub mod peer;
pub mod runtime;
pub mod wal;

mod py;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}

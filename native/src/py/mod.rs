//! Thin PyO3 bindings. Each submodule wraps one Rust module.

mod bench;
mod codec;
mod errors;
mod front;
mod logwindow;
mod peer;
mod wal;

use pyo3::prelude::*;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    codec::register(m)?;
    wal::register(m)?;
    front::register(m)?;
    logwindow::register(m)?;
    peer::register(m)?;
    bench::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

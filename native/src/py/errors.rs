//! Python exception types and the mapping from Rust errors.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

use crate::codec::CodecError as RustCodecError;
use crate::wal::WalError as RustWalError;

create_exception!(
    raftkv._native,
    CodecError,
    PyValueError,
    "Bytes that are not valid records."
);
create_exception!(
    raftkv._native,
    WalError,
    PyException,
    "A write-ahead log operation failed."
);
create_exception!(
    raftkv._native,
    WalCorruptError,
    WalError,
    "The log holds damage that recovery must not repair by itself."
);
create_exception!(
    raftkv._native,
    WalFailedError,
    WalError,
    "The writer hit an I/O error earlier; the log accepts nothing more."
);
create_exception!(
    raftkv._native,
    WalClosedError,
    WalError,
    "The log is closed."
);

pub fn codec_err(e: RustCodecError) -> PyErr {
    CodecError::new_err(e.to_string())
}

pub fn wal_err(e: RustWalError) -> PyErr {
    match e {
        RustWalError::Io { .. } => WalError::new_err(e.to_string()),
        RustWalError::Corrupt(_) => WalCorruptError::new_err(e.to_string()),
        RustWalError::Invalid(m) => PyValueError::new_err(m),
        RustWalError::Failed(_) => WalFailedError::new_err(e.to_string()),
        RustWalError::Closed => WalClosedError::new_err(e.to_string()),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CodecError", py.get_type::<CodecError>())?;
    m.add("WalError", py.get_type::<WalError>())?;
    m.add("WalCorruptError", py.get_type::<WalCorruptError>())?;
    m.add("WalFailedError", py.get_type::<WalFailedError>())?;
    m.add("WalClosedError", py.get_type::<WalClosedError>())?;
    Ok(())
}

//! Entry codec bindings.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::errors::codec_err;
use crate::codec::{self, CodecError, HardState, Kind, Records};

/// Entry tuple as Python sees it: (index, term, entry_type, data).
type EntryTuple<'py> = (u64, u64, u8, Bound<'py, PyBytes>);

#[pyfunction]
fn encode_entry<'py>(
    py: Python<'py>,
    index: u64,
    term: u64,
    entry_type: u8,
    data: &[u8],
) -> Bound<'py, PyBytes> {
    let len = codec::encoded_len(data.len());
    PyBytes::new_with(py, len, |out| {
        let mut buf = Vec::with_capacity(len);
        codec::encode_entry(&mut buf, index, term, entry_type, data);
        out.copy_from_slice(&buf);
        Ok(())
    })
    .expect("encoding cannot fail")
}

#[pyfunction]
fn encode_entries<'py>(
    py: Python<'py>,
    entries: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut buf = Vec::new();
    for item in entries.try_iter()? {
        let item = item?;
        let tuple = item.downcast::<PyTuple>()?;
        let (index, term, etype, data): (u64, u64, u8, Bound<'py, PyBytes>) = tuple.extract()?;
        codec::encode_entry(&mut buf, index, term, etype, data.as_bytes());
    }
    Ok(PyBytes::new(py, &buf))
}

#[pyfunction]
fn decode_entries<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for item in Records::new(data) {
        let (at, rec) = item.map_err(codec_err)?;
        if rec.kind != Kind::Entry {
            return Err(codec_err(CodecError::Unexpected {
                offset: at,
                what: format!("record of kind {:?} where an entry was expected", rec.kind),
            }));
        }
        let entry: EntryTuple<'py> = (
            rec.index,
            rec.term,
            rec.etype,
            PyBytes::new(py, rec.payload),
        );
        list.append(entry)?;
    }
    Ok(list)
}

/// (count, first_index, last_index, last_term) of a batch of consecutive entries.
#[pyfunction]
fn entry_batch_info(data: &[u8]) -> PyResult<(usize, u64, u64, u64)> {
    let info = codec::check_entry_batch(data).map_err(codec_err)?;
    Ok((
        info.count,
        info.first_index,
        info.last_index,
        info.last_term,
    ))
}

#[pyfunction]
fn encode_hard_state(py: Python<'_>, term: u64, vote: u64, commit: u64) -> Bound<'_, PyBytes> {
    let mut buf = Vec::with_capacity(codec::encoded_len(24));
    codec::encode_hard_state(&mut buf, HardState { term, vote, commit });
    PyBytes::new(py, &buf)
}

#[pyfunction]
fn decode_hard_state(data: &[u8]) -> PyResult<(u64, u64, u64)> {
    let rec = codec::decode_record(data, 0).map_err(codec_err)?;
    if rec.kind != Kind::HardState || rec.encoded_len != data.len() {
        return Err(codec_err(CodecError::Unexpected {
            offset: 0,
            what: "not exactly one hard-state record".into(),
        }));
    }
    let hs = codec::hard_state_from_payload(rec.payload, 0).map_err(codec_err)?;
    Ok((hs.term, hs.vote, hs.commit))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_entry, m)?)?;
    m.add_function(wrap_pyfunction!(encode_entries, m)?)?;
    m.add_function(wrap_pyfunction!(decode_entries, m)?)?;
    m.add_function(wrap_pyfunction!(entry_batch_info, m)?)?;
    m.add_function(wrap_pyfunction!(encode_hard_state, m)?)?;
    m.add_function(wrap_pyfunction!(decode_hard_state, m)?)?;
    m.add("ENTRY_OVERHEAD", codec::encoded_len(0))?;
    Ok(())
}

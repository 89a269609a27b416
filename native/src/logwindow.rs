//! In-memory window over the newest Raft log entries, kept encoded.
//!
//! Entries stay in the codec's record form (the bytes the WAL stores and peers send): the
//! window answers term lookups and byte-limited slices without decoding payloads, and a
//! slice is just the concatenation of stored records. Older entries are the WAL's business.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::codec::{self, CodecError, Kind, Records};

#[derive(Clone, Debug)]
struct Slot {
    term: u64,
    record: Bytes,
}

/// Entries `first ..= last` (empty when `last + 1 == first`), plus the term of `first - 1`
/// (the entry just before the window, needed for Raft's log matching checks).
#[derive(Debug)]
pub struct LogWindow {
    first: u64,
    prev_term: u64,
    slots: VecDeque<Slot>,
    bytes: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WindowError {
    Codec(CodecError),
    /// Index before the window.
    Compacted(u64),
    /// Index after the last entry.
    Unavailable(u64),
    /// Appending would leave a gap.
    Gap {
        index: u64,
        last: u64,
    },
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowError::Codec(e) => write!(f, "{e}"),
            WindowError::Compacted(i) => write!(f, "index {i} is before the log window"),
            WindowError::Unavailable(i) => write!(f, "index {i} is after the last entry"),
            WindowError::Gap { index, last } => {
                write!(f, "entry {index} leaves a gap after the last index {last}")
            }
        }
    }
}

impl LogWindow {
    /// An empty window whose next entry is `first`; `prev_term` is the term of `first - 1`.
    pub fn new(first: u64, prev_term: u64) -> Self {
        LogWindow {
            first: first.max(1),
            prev_term,
            slots: VecDeque::new(),
            bytes: 0,
        }
    }

    pub fn first_index(&self) -> u64 {
        self.first
    }

    pub fn last_index(&self) -> u64 {
        self.first + self.slots.len() as u64 - 1
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of records held.
    pub fn byte_size(&self) -> usize {
        self.bytes
    }

    pub fn term(&self, index: u64) -> Result<u64, WindowError> {
        if index + 1 == self.first {
            return Ok(self.prev_term);
        }
        if index < self.first {
            return Err(WindowError::Compacted(index));
        }
        self.slots
            .get((index - self.first) as usize)
            .map(|s| s.term)
            .ok_or(WindowError::Unavailable(index))
    }

    /// Append encoded entries; an index already present replaces it and everything after
    /// it (Raft's conflicting suffix). Entries before the window are skipped (committed).
    pub fn append(&mut self, data: &[u8]) -> Result<(), WindowError> {
        // Validate the whole batch first, so a bad batch changes nothing.
        let info = codec::check_entry_batch(data).map_err(WindowError::Codec)?;
        if info.count == 0 {
            return Ok(());
        }
        let buf = Bytes::copy_from_slice(data);
        for item in Records::new(data) {
            let (at, rec) = item.map_err(WindowError::Codec)?;
            debug_assert_eq!(rec.kind, Kind::Entry);
            let index = rec.index;
            if index < self.first {
                continue;
            }
            let last = self.last_index();
            if index > last + 1 {
                return Err(WindowError::Gap { index, last });
            }
            if index <= last {
                self.truncate_from(index);
            }
            self.bytes += rec.encoded_len;
            self.slots.push_back(Slot {
                term: rec.term,
                record: buf.slice(at..at + rec.encoded_len),
            });
        }
        Ok(())
    }

    /// Drop entries at `index` and after.
    pub fn truncate_from(&mut self, index: u64) {
        if index < self.first {
            self.slots.clear();
            self.bytes = 0;
            return;
        }
        let keep = (index - self.first) as usize;
        while self.slots.len() > keep {
            let s = self.slots.pop_back().expect("non-empty");
            self.bytes -= s.record.len();
        }
    }

    /// Drop entries before `index` from the window (they are in the WAL or a snapshot).
    pub fn compact_to(&mut self, index: u64) {
        while self.first < index {
            match self.slots.pop_front() {
                Some(s) => {
                    self.bytes -= s.record.len();
                    self.prev_term = s.term;
                    self.first += 1;
                }
                None => break,
            }
        }
    }

    /// Restart the window empty at `first` (after a snapshot was installed).
    pub fn reset(&mut self, first: u64, prev_term: u64) {
        *self = LogWindow::new(first, prev_term);
    }

    /// Records `[lo, hi)`, at most `max_bytes` of them but at least one.
    pub fn slice(&self, lo: u64, hi: u64, max_bytes: usize) -> Result<Vec<u8>, WindowError> {
        if lo < self.first {
            return Err(WindowError::Compacted(lo));
        }
        if hi > self.last_index() + 1 {
            return Err(WindowError::Unavailable(hi - 1));
        }
        let mut out = Vec::new();
        for s in self
            .slots
            .range((lo - self.first) as usize..(hi.max(lo) - self.first) as usize)
        {
            if !out.is_empty() && out.len() + s.record.len() > max_bytes {
                break;
            }
            out.extend_from_slice(&s.record);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_entry;

    fn batch(lo: u64, hi: u64, term: u64) -> Vec<u8> {
        let mut b = Vec::new();
        for i in lo..hi {
            encode_entry(&mut b, i, term, 0, format!("v{i}").as_bytes());
        }
        b
    }

    #[test]
    fn append_conflict_slice_compact() {
        let mut w = LogWindow::new(1, 0);
        w.append(&batch(1, 11, 1)).unwrap();
        assert_eq!((w.first_index(), w.last_index()), (1, 10));
        w.append(&batch(6, 8, 2)).unwrap();
        assert_eq!(w.last_index(), 7);
        assert_eq!(w.term(6).unwrap(), 2);
        assert_eq!(w.term(5).unwrap(), 1);
        assert_eq!(
            w.append(&batch(9, 10, 2)),
            Err(WindowError::Gap { index: 9, last: 7 })
        );
        let s = w.slice(2, 5, usize::MAX).unwrap();
        assert_eq!(s, batch(2, 5, 1));
        let one = w.slice(2, 5, 1).unwrap();
        assert_eq!(one, batch(2, 3, 1));
        w.compact_to(4);
        assert_eq!(w.first_index(), 4);
        assert_eq!(w.term(3).unwrap(), 1, "term of the entry before the window");
        assert_eq!(w.term(2), Err(WindowError::Compacted(2)));
        assert_eq!(w.slice(3, 5, 100), Err(WindowError::Compacted(3)));
        w.append(&batch(1, 5, 1)).unwrap(); // entries before the window are skipped
        assert_eq!(w.last_index(), 4);
    }

    #[test]
    fn byte_size_tracks_records() {
        let mut w = LogWindow::new(1, 0);
        let b = batch(1, 4, 1);
        w.append(&b).unwrap();
        assert_eq!(w.byte_size(), b.len());
        w.truncate_from(2);
        assert_eq!(w.byte_size(), batch(1, 2, 1).len());
        w.compact_to(2);
        assert_eq!((w.byte_size(), w.len()), (0, 0));
    }

    #[test]
    fn bad_batch_changes_nothing() {
        let mut w = LogWindow::new(1, 0);
        w.append(&batch(1, 3, 1)).unwrap();
        let mut bad = batch(3, 5, 1);
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(w.append(&bad), Err(WindowError::Codec(_))));
        assert_eq!(w.last_index(), 2);
    }
}

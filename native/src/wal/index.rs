//! Where each live entry sits on disk, and the logical bounds of the log.

use std::collections::VecDeque;

/// Location of one encoded entry record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub seg: u64,
    pub offset: u64,
    pub len: u32,
    pub term: u64,
}

/// Bounds of the log: entries `first..=last`; empty when `last + 1 == first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub first: u64,
    pub last: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { first: 1, last: 0 }
    }
}

impl Bounds {
    /// Check that a batch `lo..=hi` may be appended; it may overwrite a suffix.
    pub fn check_append(&self, lo: u64, hi: u64) -> Result<(), String> {
        if lo < self.first {
            return Err(format!(
                "entry index {lo} is below the first index {} (released)",
                self.first
            ));
        }
        if lo > self.last + 1 {
            return Err(format!(
                "entry index {lo} leaves a gap after the last index {}",
                self.last
            ));
        }
        debug_assert!(hi >= lo);
        Ok(())
    }

    pub fn append(&mut self, _lo: u64, hi: u64) {
        self.last = hi;
    }

    pub fn check_truncate(&self, index: u64) -> Result<(), String> {
        if index < self.first || index > self.last + 1 {
            return Err(format!(
                "truncate index {index} outside the log [{}, {}]",
                self.first,
                self.last + 1
            ));
        }
        Ok(())
    }

    pub fn truncate(&mut self, index: u64) {
        self.last = self.last.min(index.saturating_sub(1)).max(self.first - 1);
    }

    pub fn release(&mut self, index: u64) {
        if index <= self.first {
            return;
        }
        if index > self.last + 1 {
            self.last = index - 1;
        }
        self.first = index;
    }
}

/// Live entries, by index, with their locations.
#[derive(Debug, Default)]
pub struct LogIndex {
    pub bounds: Bounds,
    locs: VecDeque<Loc>,
}

impl LogIndex {
    pub fn len(&self) -> usize {
        self.locs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locs.is_empty()
    }

    pub fn get(&self, index: u64) -> Option<&Loc> {
        if index < self.bounds.first {
            return None;
        }
        self.locs.get((index - self.bounds.first) as usize)
    }

    /// Record an entry; an index inside the log overwrites it and its suffix.
    pub fn put(&mut self, index: u64, loc: Loc) -> Result<(), String> {
        self.bounds.check_append(index, index)?;
        if index <= self.bounds.last {
            self.truncate(index);
        }
        self.locs.push_back(loc);
        self.bounds.last = index;
        Ok(())
    }

    /// Recovery's version of `put`: a gap or an index below the first one
    /// restarts the log at `index` (the entries before it lived in deleted
    /// segments). Returns the restart index so recovery can check it against
    /// the release point.
    pub fn put_restarting(&mut self, index: u64, loc: Loc) -> Option<u64> {
        if index >= self.bounds.first && index <= self.bounds.last + 1 {
            self.put(index, loc).expect("in range");
            return None;
        }
        self.locs.clear();
        self.locs.push_back(loc);
        self.bounds = Bounds {
            first: index,
            last: index,
        };
        Some(index)
    }

    pub fn truncate(&mut self, index: u64) {
        if index <= self.bounds.first {
            self.locs.clear();
        } else {
            self.locs.truncate((index - self.bounds.first) as usize);
        }
        self.bounds.truncate(index);
    }

    pub fn release(&mut self, index: u64) {
        if index <= self.bounds.first {
            return;
        }
        let drop = ((index - self.bounds.first) as usize).min(self.locs.len());
        self.locs.drain(..drop);
        self.bounds.release(index);
    }

    /// Oldest segment that still holds a live entry.
    pub fn oldest_segment(&self) -> Option<u64> {
        self.locs.iter().map(|l| l.seg).min()
    }

    pub fn iter_from(&self, index: u64) -> impl Iterator<Item = &Loc> {
        let skip = index.saturating_sub(self.bounds.first) as usize;
        self.locs.iter().skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(seg: u64, offset: u64) -> Loc {
        Loc {
            seg,
            offset,
            len: 10,
            term: 1,
        }
    }

    #[test]
    fn put_overwrites_suffix() {
        let mut ix = LogIndex::default();
        for i in 1..=5 {
            ix.put(i, loc(1, i * 10)).unwrap();
        }
        ix.put(3, loc(2, 0)).unwrap();
        assert_eq!(ix.bounds, Bounds { first: 1, last: 3 });
        assert_eq!(ix.get(3).unwrap().seg, 2);
        assert!(ix.get(4).is_none());
        assert!(ix.put(5, loc(2, 10)).is_err());
    }

    #[test]
    fn release_past_the_end_empties_the_log() {
        let mut ix = LogIndex::default();
        for i in 1..=5 {
            ix.put(i, loc(1, i * 10)).unwrap();
        }
        ix.release(3);
        assert_eq!(ix.bounds, Bounds { first: 3, last: 5 });
        assert_eq!(ix.get(3).unwrap().offset, 30);
        ix.release(10);
        assert_eq!(ix.bounds, Bounds { first: 10, last: 9 });
        assert_eq!(ix.len(), 0);
        assert!(ix.put(9, loc(1, 0)).is_err());
        ix.put(10, loc(3, 0)).unwrap();
        assert_eq!(ix.oldest_segment(), Some(3));
    }

    #[test]
    fn truncate_to_first_clears() {
        let mut ix = LogIndex::default();
        for i in 1..=3 {
            ix.put(i, loc(1, i)).unwrap();
        }
        ix.truncate(1);
        assert_eq!(ix.bounds, Bounds { first: 1, last: 0 });
        assert_eq!(ix.len(), 0);
    }
}

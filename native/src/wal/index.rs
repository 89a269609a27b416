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

/// Entries from `first` on sit in segment `seg`, at offsets counted from `base`.
#[derive(Clone, Copy, Debug)]
struct SegRun {
    first: u64,
    seg: u64,
    base: u64,
}

/// Entries from `first` on have term `term`.
#[derive(Clone, Copy, Debug)]
struct TermRun {
    first: u64,
    term: u64,
}

/// Live entries, by index, with their locations.
///
/// Every entry of the log is here until a snapshot releases it, so the
/// representation is compact: per entry only its offset (relative to its
/// segment run) and length, 8 bytes; segments and terms change rarely and are
/// kept as runs. (A `Loc` per entry took 32 bytes: 32 MB per million entries.)
#[derive(Debug, Default)]
pub struct LogIndex {
    pub bounds: Bounds,
    /// [offset - run base, record length] per entry, `bounds.first` first.
    slots: VecDeque<[u32; 2]>,
    segs: VecDeque<SegRun>,
    terms: VecDeque<TermRun>,
}

impl LogIndex {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, index: u64) -> Option<Loc> {
        if index < self.bounds.first {
            return None;
        }
        let [off, len] = *self.slots.get((index - self.bounds.first) as usize)?;
        // The last run starting at or before `index` covers it.
        let s = self.segs[self.segs.partition_point(|r| r.first <= index) - 1];
        let t = self.terms[self.terms.partition_point(|r| r.first <= index) - 1];
        Some(Loc {
            seg: s.seg,
            offset: s.base + off as u64,
            len,
            term: t.term,
        })
    }

    /// Record an entry; an index inside the log overwrites it and its suffix.
    pub fn put(&mut self, index: u64, loc: Loc) -> Result<(), String> {
        self.bounds.check_append(index, index)?;
        if index <= self.bounds.last {
            self.truncate(index);
        }
        let rel = match self.segs.back() {
            Some(r) if r.seg == loc.seg && loc.offset >= r.base => {
                u32::try_from(loc.offset - r.base).ok()
            }
            _ => None,
        };
        let rel = rel.unwrap_or_else(|| {
            self.segs.push_back(SegRun {
                first: index,
                seg: loc.seg,
                base: loc.offset,
            });
            0
        });
        if self.terms.back().map(|t| t.term) != Some(loc.term) {
            self.terms.push_back(TermRun {
                first: index,
                term: loc.term,
            });
        }
        self.slots.push_back([rel, loc.len]);
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
        self.clear_entries();
        self.bounds = Bounds {
            first: index,
            last: index.saturating_sub(1),
        };
        self.put(index, loc).expect("empty log at index");
        Some(index)
    }

    fn clear_entries(&mut self) {
        self.slots.clear();
        self.segs.clear();
        self.terms.clear();
    }

    pub fn truncate(&mut self, index: u64) {
        if index <= self.bounds.first {
            self.clear_entries();
        } else {
            self.slots.truncate((index - self.bounds.first) as usize);
            while self.segs.back().is_some_and(|r| r.first >= index) {
                self.segs.pop_back();
            }
            while self.terms.back().is_some_and(|r| r.first >= index) {
                self.terms.pop_back();
            }
        }
        self.bounds.truncate(index);
    }

    pub fn release(&mut self, index: u64) {
        if index <= self.bounds.first {
            return;
        }
        let drop = ((index - self.bounds.first) as usize).min(self.slots.len());
        self.slots.drain(..drop);
        if self.slots.is_empty() {
            self.clear_entries();
        } else {
            // Keep the run that covers `index` (the new first entry) and later ones.
            while self.segs.len() > 1 && self.segs[1].first <= index {
                self.segs.pop_front();
            }
            while self.terms.len() > 1 && self.terms[1].first <= index {
                self.terms.pop_front();
            }
        }
        self.bounds.release(index);
    }

    /// Oldest segment that still holds a live entry.
    pub fn oldest_segment(&self) -> Option<u64> {
        self.segs.iter().map(|r| r.seg).min()
    }

    pub fn iter_from(&self, index: u64) -> impl Iterator<Item = Loc> + '_ {
        let from = index.max(self.bounds.first);
        (from..=self.bounds.last).map_while(move |i| self.get(i))
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

    fn at(seg: u64, offset: u64, len: u32, term: u64) -> Loc {
        Loc {
            seg,
            offset,
            len,
            term,
        }
    }

    /// Runs of segments and terms, cut by truncation and release, give back
    /// exactly the locations that were put.
    #[test]
    fn runs_round_trip() {
        let mut ix = LogIndex::default();
        let mut want = Vec::new();
        for i in 1..=30u64 {
            // three segments, terms changing inside them, one offset jump past u32
            let seg = 1 + (i - 1) / 10;
            let far = if i >= 25 { 5u64 << 32 } else { 0 };
            let l = at(seg, far + i * 100, 7 + i as u32, 1 + i / 7);
            ix.put(i, l).unwrap();
            want.push(l);
        }
        for i in 1..=30u64 {
            assert_eq!(ix.get(i), Some(want[i as usize - 1]), "entry {i}");
        }
        assert_eq!(ix.oldest_segment(), Some(1));
        let all: Vec<Loc> = ix.iter_from(0).collect();
        assert_eq!(all, want);
        // Overwrite a suffix that starts inside a segment run and a term run.
        ix.put(15, at(9, 0, 5, 9)).unwrap();
        want.truncate(14);
        want.push(at(9, 0, 5, 9));
        assert_eq!(ix.iter_from(1).collect::<Vec<_>>(), want);
        // Release into the middle of the second run.
        ix.release(12);
        assert_eq!(ix.get(11), None);
        assert_eq!(ix.iter_from(12).collect::<Vec<_>>(), want[11..].to_vec());
        assert_eq!(ix.oldest_segment(), Some(2));
        ix.put(16, at(9, 10, 6, 10)).unwrap();
        assert_eq!(ix.get(16), Some(at(9, 10, 6, 10)));
        assert_eq!(ix.get(15), Some(at(9, 0, 5, 9)));
        ix.truncate(13);
        assert_eq!(
            ix.bounds,
            Bounds {
                first: 12,
                last: 12
            }
        );
        assert_eq!(ix.get(12), Some(want[11]));
        assert_eq!(ix.oldest_segment(), Some(2));
        ix.release(13);
        assert!(ix.is_empty());
        assert_eq!(ix.oldest_segment(), None);
        ix.put(13, at(4, 0, 1, 3)).unwrap();
        assert_eq!(ix.get(13), Some(at(4, 0, 1, 3)));
    }

    #[test]
    fn restart_keeps_runs_consistent() {
        let mut ix = LogIndex::default();
        ix.put(1, at(1, 10, 1, 1)).unwrap();
        assert_eq!(ix.put_restarting(5, at(2, 20, 2, 2)), Some(5));
        assert_eq!(ix.bounds, Bounds { first: 5, last: 5 });
        assert_eq!(ix.get(5), Some(at(2, 20, 2, 2)));
        assert_eq!(ix.put_restarting(6, at(2, 30, 3, 2)), None);
        assert_eq!(ix.get(6), Some(at(2, 30, 3, 2)));
        assert_eq!(ix.oldest_segment(), Some(2));
    }
}

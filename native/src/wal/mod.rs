//! Segmented write-ahead log with group commit.
//!
//! Callers append batches of encoded entries (see `codec`), hard states and
//! markers; each call returns a sequence number at once. One writer thread
//! takes everything queued, writes it, runs a single `fdatasync`, then marks
//! all of it durable: every batch queued while a sync was running goes into
//! the next one. Completion is published as the highest synced sequence
//! number, through a condition variable (blocking waiters) and an eventfd (an
//! event loop's reader callback).
//!
//! Truncation and release are records in the log too, applied in order on
//! recovery; segments wholly behind a release are deleted once it is durable.

pub mod index;
pub mod segment;
mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::codec::{self, check_entry_batch, HardState, Kind};
use index::{Bounds, Loc, LogIndex};
use segment::{ScanEnd, SegmentFile, SegmentHeader};

pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

#[derive(Debug)]
pub enum WalError {
    Io {
        context: String,
        source: io::Error,
    },
    /// Damage that recovery must not repair by itself.
    Corrupt(String),
    /// A request that breaks the log's rules (gap, bad range, bad bytes).
    Invalid(String),
    /// The writer hit an I/O error earlier; the log accepts nothing more.
    Failed(String),
    Closed,
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { context, source } => write!(f, "{context}: {source}"),
            WalError::Corrupt(m) => write!(f, "corrupt write-ahead log: {m}"),
            WalError::Invalid(m) => write!(f, "{m}"),
            WalError::Failed(m) => write!(f, "write-ahead log failed earlier: {m}"),
            WalError::Closed => write!(f, "write-ahead log is closed"),
        }
    }
}

impl std::error::Error for WalError {}

pub type Result<T> = std::result::Result<T, WalError>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
    let context = context.into();
    move |source| WalError::Io { context, source }
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub entries: u64,
    /// Bytes of a torn tail that were cut, and where (segment, offset).
    pub torn_bytes: u64,
    pub torn_at: Option<(u64, u64)>,
    pub torn_reason: Option<String>,
    pub removed_temp_files: usize,
}

/// Counters since open.
#[derive(Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
    pub syncs: AtomicU64,
    pub batches: AtomicU64,
    pub max_batches_per_sync: AtomicU64,
    pub sync_nanos: AtomicU64,
    pub segments_created: AtomicU64,
    pub segments_released: AtomicU64,
}

/// Work to do the moment an append is durable, without a round trip through the caller
/// (a follower's acknowledgement leaves from the writer thread right after the fdatasync).
pub type AfterDurable = Box<dyn FnOnce() + Send>;

pub(crate) enum Op {
    /// `sync: false` (Raft's must_sync unset, e.g. only the commit index moved): written,
    /// but a group made only of such ops skips the fdatasync; the next synced group covers it.
    Append {
        data: Vec<u8>,
        hard_state: Option<HardState>,
        sync: bool,
        /// Run on the writer thread once this op is durable (never if the log fails).
        after: Option<AfterDurable>,
    },
    HardState(HardState),
    Truncate(u64),
    Release(u64),
}

pub(crate) struct State {
    queue: Vec<Op>,
    /// Sequence number of the last op queued.
    queued_seq: u64,
    /// Sequence number of the last op made durable.
    synced_seq: u64,
    /// Log bounds including queued ops (what appends are checked against).
    logical: Bounds,
    logical_hard_state: HardState,
    /// Durable view: locations of synced entries.
    index: LogIndex,
    durable_hard_state: HardState,
    segments: BTreeMap<u64, Arc<SegmentFile>>,
    failed: Option<String>,
    closing: bool,
    writer_idle: bool,
    suspended: bool,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Signals the writer: work queued, resumed, or closing.
    work: Condvar,
    /// Signals waiters: `synced_seq` advanced or the log failed.
    done: Condvar,
    notify_fd: RawFd,
    counters: Counters,
    dir: PathBuf,
    segment_size: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; the
        // state is still consistent enough to report errors, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify_event_loop(&self) {
        let one: u64 = 1;
        // EAGAIN means the counter is saturated: the reader will wake anyway.
        unsafe {
            libc::write(self.notify_fd, &one as *const u64 as *const libc::c_void, 8);
        }
    }
}

pub struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    recovery: RecoveryReport,
}

/// Statistics snapshot.
#[derive(Clone, Debug)]
pub struct Stats {
    pub records: u64,
    pub entries: u64,
    pub bytes: u64,
    pub syncs: u64,
    pub batches: u64,
    pub max_batches_per_sync: u64,
    pub sync_seconds: f64,
    pub segments: u64,
    pub segments_created: u64,
    pub segments_released: u64,
    pub queued_seq: u64,
    pub synced_seq: u64,
}

impl Wal {
    /// Open (creating if needed) the log in `dir` and recover its contents.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal> {
        if options.segment_size < 4096 {
            return Err(WalError::Invalid(
                "segment size must be at least 4096 bytes".into(),
            ));
        }
        fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        let mut report = RecoveryReport::default();
        let mut seqs = Vec::new();
        for dent in fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))? {
            let dent = dent.map_err(io_err("read directory entry"))?;
            let name = dent.file_name().to_string_lossy().into_owned();
            if name.ends_with(segment::TMP_SUFFIX) {
                // A segment that never got its header synced: nothing in it.
                fs::remove_file(dent.path()).map_err(io_err(format!("remove {name}")))?;
                report.removed_temp_files += 1;
            } else if let Some(seq) = segment::parse_segment_name(&name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();

        let mut index = LogIndex::default();
        let mut hard_state = HardState::default();
        let mut segments = BTreeMap::new();

        if seqs.is_empty() {
            let header = SegmentHeader {
                seq: 1,
                next_index: 1,
                first_index: 1,
                hard_state,
            };
            let seg = segment::create_segment(dir, &header, options.segment_size)
                .map_err(io_err("create first segment"))?;
            segments.insert(1, Arc::new(seg));
            report.segments = 1;
        }
        // Pass 1: scan and check every segment.
        let mut scanned = Vec::with_capacity(seqs.len());
        for (n, &seq) in seqs.iter().enumerate() {
            let last = n + 1 == seqs.len();
            let path = segment::segment_path(dir, seq);
            let name = path.display().to_string();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("open {name}")))?;
            let buf = fs::read(&path).map_err(io_err(format!("read {name}")))?;
            let scan = segment::scan(&buf);
            drop(buf);
            match &scan.outcome {
                ScanEnd::Clean => {}
                ScanEnd::Corrupt {
                    offset,
                    valid_at,
                    reason,
                } => {
                    return Err(WalError::Corrupt(format!(
                        "{name}: damaged record at offset {offset} ({reason}) is followed by \
                         a valid record at offset {valid_at}"
                    )));
                }
                ScanEnd::TornTail {
                    offset,
                    last_nonzero,
                    reason,
                } => {
                    if !last {
                        return Err(WalError::Corrupt(format!(
                            "{name}: damaged record at offset {offset} ({reason}) in a segment \
                             that later segments follow"
                        )));
                    }
                    segment::zero_range(&file, *offset, *last_nonzero)
                        .map_err(io_err(format!("cut torn tail of {name}")))?;
                    report.torn_bytes = last_nonzero + 1 - offset;
                    report.torn_at = Some((seq, *offset));
                    report.torn_reason = Some(reason.clone());
                }
            }
            let header = scan
                .header
                .ok_or_else(|| WalError::Corrupt(format!("{name}: no segment header")))?;
            if header.seq != seq {
                return Err(WalError::Corrupt(format!(
                    "{name}: header names segment {} instead",
                    header.seq
                )));
            }
            scanned.push((header, scan, SegmentFile { seq, path, file }));
        }

        // Everything before this index was released by a snapshot.
        let release_point = scanned
            .iter()
            .flat_map(|(h, scan, _)| {
                std::iter::once(h.first_index).chain(
                    scan.records
                        .iter()
                        .filter(|r| r.kind == Kind::Release)
                        .map(|r| r.index),
                )
            })
            .max()
            .unwrap_or(1);

        // Pass 2: replay records in order.
        let mut tail_end = segment::header_len();
        let n_segments = scanned.len();
        for (n, (header, scan, seg)) in scanned.into_iter().enumerate() {
            let name = seg.path.display().to_string();
            if n == 0 {
                index.release(header.first_index);
                hard_state = header.hard_state;
            }
            for rec in &scan.records {
                report.records += 1;
                match rec.kind {
                    Kind::Entry => {
                        let loc = Loc {
                            seg: seg.seq,
                            offset: rec.offset,
                            len: rec.len,
                            term: rec.term,
                        };
                        if let Some(restart) = index.put_restarting(rec.index, loc) {
                            if restart > release_point {
                                return Err(WalError::Corrupt(format!(
                                    "{name} at offset {}: entry {} does not follow the log \
                                     (entries from {} on are missing)",
                                    rec.offset, rec.index, release_point
                                )));
                            }
                        }
                        report.entries += 1;
                    }
                    Kind::HardState => hard_state = rec.hard_state.expect("scanned"),
                    Kind::Truncate => index.truncate(rec.index.max(index.bounds.first)),
                    Kind::Release => index.release(rec.index),
                    Kind::SegmentHeader => {
                        return Err(WalError::Corrupt(format!(
                            "{name}: segment header inside the segment at offset {}",
                            rec.offset
                        )));
                    }
                }
            }
            if n + 1 == n_segments {
                tail_end = scan.end;
            }
            segments.insert(seg.seq, Arc::new(seg));
            report.segments += 1;
        }
        index.release(release_point);
        if index.bounds.first != release_point && !index.is_empty() {
            return Err(WalError::Corrupt(format!(
                "log starts at {} but entries from {release_point} on should be kept",
                index.bounds.first
            )));
        }

        let notify_fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if notify_fd < 0 {
            return Err(WalError::Io {
                context: "create eventfd".into(),
                source: io::Error::last_os_error(),
            });
        }
        let current = segments
            .values()
            .next_back()
            .cloned()
            .expect("at least one segment");
        let state = State {
            queue: Vec::new(),
            queued_seq: 0,
            synced_seq: 0,
            logical: index.bounds,
            logical_hard_state: hard_state,
            index,
            durable_hard_state: hard_state,
            segments,
            failed: None,
            closing: false,
            writer_idle: false,
            suspended: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            done: Condvar::new(),
            notify_fd,
            counters: Counters::default(),
            dir: dir.to_path_buf(),
            segment_size: options.segment_size,
        });
        let handle = writer::spawn(shared.clone(), current, tail_end)
            .map_err(io_err("start the WAL writer thread"))?;
        Ok(Wal {
            shared,
            writer: Mutex::new(Some(handle)),
            recovery: report,
        })
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn notify_fd(&self) -> RawFd {
        self.shared.notify_fd
    }

    fn enqueue(&self, state: &mut State, op: Op) -> u64 {
        state.queue.push(op);
        state.queued_seq += 1;
        if state.writer_idle {
            self.shared.work.notify_one();
        }
        state.queued_seq
    }

    fn usable(state: &State) -> Result<()> {
        if let Some(msg) = &state.failed {
            return Err(WalError::Failed(msg.clone()));
        }
        if state.closing {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    /// Queue a batch of encoded entries (and optionally a hard state written
    /// after them in the same sync). An entry at an index already in the log
    /// replaces it and everything after it.
    pub fn append(&self, data: Vec<u8>, hard_state: Option<HardState>) -> Result<u64> {
        self.append_with(data, hard_state, true)
    }

    /// `append`, choosing whether this op needs an fdatasync of its own (see `Op::Append`).
    pub fn append_with(
        &self,
        data: Vec<u8>,
        hard_state: Option<HardState>,
        sync: bool,
    ) -> Result<u64> {
        self.append_then(data, hard_state, sync, None)
    }

    /// `append_with`, and run `after` on the writer thread once the op is durable (an op
    /// with `after` is always synced).
    pub fn append_then(
        &self,
        data: Vec<u8>,
        hard_state: Option<HardState>,
        sync: bool,
        after: Option<AfterDurable>,
    ) -> Result<u64> {
        let info = check_entry_batch(&data)
            .map_err(|e| WalError::Invalid(format!("invalid entry batch: {e}")))?;
        let mut st = self.shared.lock();
        Self::usable(&st)?;
        if info.count > 0 {
            st.logical
                .check_append(info.first_index, info.last_index)
                .map_err(WalError::Invalid)?;
            st.logical.append(info.first_index, info.last_index);
        } else if hard_state.is_none() {
            return Err(WalError::Invalid(
                "append of an empty batch without a hard state".into(),
            ));
        }
        if let Some(hs) = hard_state {
            st.logical_hard_state = hs;
        }
        Ok(self.enqueue(
            &mut st,
            Op::Append {
                data,
                hard_state,
                sync: sync || after.is_some(),
                after,
            },
        ))
    }

    pub fn save_hard_state(&self, hs: HardState) -> Result<u64> {
        let mut st = self.shared.lock();
        Self::usable(&st)?;
        st.logical_hard_state = hs;
        Ok(self.enqueue(&mut st, Op::HardState(hs)))
    }

    /// Discard entries at `index` and after.
    pub fn truncate_suffix(&self, index: u64) -> Result<u64> {
        let mut st = self.shared.lock();
        Self::usable(&st)?;
        st.logical
            .check_truncate(index)
            .map_err(WalError::Invalid)?;
        st.logical.truncate(index);
        Ok(self.enqueue(&mut st, Op::Truncate(index)))
    }

    /// Release entries before `index` (they are covered by a snapshot).
    /// Past the last index, the log becomes empty and continues at `index`.
    pub fn release_before(&self, index: u64) -> Result<u64> {
        if index == 0 {
            return Err(WalError::Invalid("release index must be at least 1".into()));
        }
        let mut st = self.shared.lock();
        Self::usable(&st)?;
        st.logical.release(index);
        Ok(self.enqueue(&mut st, Op::Release(index)))
    }

    /// Highest durable sequence number; fails if the writer failed.
    pub fn synced_seq(&self) -> Result<u64> {
        let st = self.shared.lock();
        if let Some(msg) = &st.failed {
            return Err(WalError::Failed(msg.clone()));
        }
        Ok(st.synced_seq)
    }

    /// Reset the eventfd and report the highest durable sequence number.
    pub fn drain_notifications(&self) -> Result<u64> {
        let mut buf: u64 = 0;
        unsafe {
            libc::read(
                self.shared.notify_fd,
                &mut buf as *mut u64 as *mut libc::c_void,
                8,
            );
        }
        self.synced_seq()
    }

    /// Block until `seq` is durable.
    pub fn wait(&self, seq: u64) -> Result<()> {
        let mut st = self.shared.lock();
        loop {
            if st.synced_seq >= seq {
                return Ok(());
            }
            if let Some(msg) = &st.failed {
                return Err(WalError::Failed(msg.clone()));
            }
            if seq > st.queued_seq {
                return Err(WalError::Invalid(format!(
                    "sequence number {seq} was never issued (last is {})",
                    st.queued_seq
                )));
            }
            if st.closing && st.queue.is_empty() && st.writer_idle {
                return Err(WalError::Closed);
            }
            st = self.shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wait until everything queued so far is durable, and return the lock.
    fn lock_synced(&self) -> Result<MutexGuard<'_, State>> {
        let target = self.shared.lock().queued_seq;
        self.wait(target)?;
        Ok(self.shared.lock())
    }

    /// First and last index, counting queued (not yet durable) operations.
    pub fn bounds(&self) -> Bounds {
        self.shared.lock().logical
    }

    /// Latest hard state, counting queued operations.
    pub fn hard_state(&self) -> HardState {
        self.shared.lock().logical_hard_state
    }

    /// Term of the entry at `index`, once everything queued is durable.
    pub fn term(&self, index: u64) -> Result<u64> {
        let st = self.lock_synced()?;
        st.index.get(index).map(|l| l.term).ok_or_else(|| {
            WalError::Invalid(format!(
                "index {index} outside the log [{}, {}]",
                st.index.bounds.first, st.index.bounds.last
            ))
        })
    }

    /// Encoded entries `[lo, hi)`, at most `max_bytes` of them but at least
    /// one; each record's checksum is verified on the way.
    pub fn read(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<u8>> {
        if hi <= lo {
            return Ok(Vec::new());
        }
        // Runs of records that sit next to each other in one segment.
        let mut runs: Vec<(Arc<SegmentFile>, u64, u64)> = Vec::new();
        {
            let st = self.lock_synced()?;
            let b = st.index.bounds;
            if lo < b.first || hi > b.last + 1 {
                return Err(WalError::Invalid(format!(
                    "entries [{lo}, {hi}) outside the log [{}, {}]",
                    b.first,
                    b.last + 1
                )));
            }
            let mut total = 0u64;
            for loc in st.index.iter_from(lo).take((hi - lo) as usize) {
                if total > 0 && total + loc.len as u64 > max_bytes {
                    break;
                }
                total += loc.len as u64;
                match runs.last_mut() {
                    Some((seg, start, len))
                        if seg.seq == loc.seg && *start + *len == loc.offset =>
                    {
                        *len += loc.len as u64;
                    }
                    _ => {
                        let seg = st.segments.get(&loc.seg).cloned().ok_or_else(|| {
                            WalError::Corrupt(format!(
                                "segment {} of a live entry is gone",
                                loc.seg
                            ))
                        })?;
                        runs.push((seg, loc.offset, loc.len as u64));
                    }
                }
            }
        }
        let total: u64 = runs.iter().map(|r| r.2).sum();
        let mut out = vec![0u8; total as usize];
        let mut at = 0usize;
        for (seg, start, len) in &runs {
            let dst = &mut out[at..at + *len as usize];
            seg.file
                .read_exact_at(dst, *start)
                .map_err(io_err(format!("read {}", seg.path.display())))?;
            for item in codec::Records::new(dst) {
                item.map_err(|e| {
                    WalError::Corrupt(format!("{} near offset {start}: {e}", seg.path.display()))
                })?;
            }
            at += *len as usize;
        }
        Ok(out)
    }

    /// Stop the writer after the current group; appends keep queueing.
    pub fn suspend_writer(&self) {
        self.shared.lock().suspended = true;
    }

    pub fn resume_writer(&self) {
        let mut st = self.shared.lock();
        st.suspended = false;
        self.shared.work.notify_one();
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let st = self.shared.lock();
        Stats {
            records: c.records.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            max_batches_per_sync: c.max_batches_per_sync.load(Ordering::Relaxed),
            sync_seconds: c.sync_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            segments: st.segments.len() as u64,
            segments_created: c.segments_created.load(Ordering::Relaxed),
            segments_released: c.segments_released.load(Ordering::Relaxed),
            queued_seq: st.queued_seq,
            synced_seq: st.synced_seq,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Write out everything queued, then stop the writer. Idempotent.
    pub fn close(&self) -> Result<()> {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            st.suspended = false;
            self.shared.work.notify_one();
        }
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        let st = self.shared.lock();
        match &st.failed {
            Some(msg) => Err(WalError::Failed(msg.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let _ = self.close();
        unsafe {
            libc::close(self.shared.notify_fd);
        }
    }
}

#[cfg(test)]
mod tests;

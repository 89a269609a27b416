//! The writer thread: takes every queued op, writes them, syncs once.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use super::index::{Bounds, Loc};
use super::segment::{self, SegmentFile, SegmentHeader};
use super::{AfterDurable, Op, Shared};
use crate::codec::{self, encode_hard_state, encode_record, HardState, Kind};

/// A change to the durable view, applied once the sync that covers it ends.
enum Effect {
    Entry(u64, Loc),
    Truncate(u64),
    Release(u64),
    HardState(HardState),
    NewSegment(Arc<SegmentFile>),
}

struct Writer {
    shared: Arc<Shared>,
    current: Arc<SegmentFile>,
    /// Where the next record goes in the current segment.
    pos: u64,
    /// The writer's own view of bounds and hard state, for segment headers.
    bounds: Bounds,
    hard_state: HardState,
    /// Bytes waiting to be written at `buf_start` of the current segment.
    buf: Vec<u8>,
    buf_start: u64,
    effects: Vec<Effect>,
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    current: Arc<SegmentFile>,
    tail_end: u64,
) -> io::Result<JoinHandle<()>> {
    let (bounds, hard_state) = {
        let st = shared.lock();
        (st.logical, st.logical_hard_state)
    };
    let mut writer = Writer {
        shared,
        current,
        pos: tail_end,
        bounds,
        hard_state,
        buf: Vec::with_capacity(1 << 20),
        buf_start: tail_end,
        effects: Vec::new(),
    };
    thread::Builder::new()
        .name("raftkv-wal".into())
        .spawn(move || writer.run())
}

impl Writer {
    fn run(&mut self) {
        loop {
            let (ops, last_seq) = {
                let mut st = self.shared.lock();
                loop {
                    if st.failed.is_some() {
                        return;
                    }
                    if !st.queue.is_empty() && !st.suspended {
                        break;
                    }
                    if st.closing && st.queue.is_empty() {
                        st.writer_idle = true;
                        self.shared.done.notify_all();
                        return;
                    }
                    st.writer_idle = true;
                    st = self.shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                    st.writer_idle = false;
                }
                (std::mem::take(&mut st.queue), st.queued_seq)
            };
            let n_ops = ops.len() as u64;
            let mut ops = ops;
            let hooks: Vec<AfterDurable> = ops
                .iter_mut()
                .filter_map(|op| match op {
                    Op::Append { after, .. } => after.take(),
                    _ => None,
                })
                .collect();
            let result = self.write_group(ops);
            let durable = result.is_ok();
            let mut st = self.shared.lock();
            match result {
                Ok(released) => {
                    for effect in self.effects.drain(..) {
                        match effect {
                            Effect::Entry(index, loc) => {
                                // Checked at enqueue time; cannot fail here.
                                let _ = st.index.put(index, loc);
                            }
                            Effect::Truncate(i) => {
                                let i = i.max(st.index.bounds.first);
                                st.index.truncate(i)
                            }
                            Effect::Release(i) => st.index.release(i),
                            Effect::HardState(hs) => st.durable_hard_state = hs,
                            Effect::NewSegment(seg) => {
                                st.segments.insert(seg.seq, seg);
                            }
                        }
                    }
                    st.synced_seq = last_seq;
                    let c = &self.shared.counters;
                    c.batches.fetch_add(n_ops, Ordering::Relaxed);
                    c.max_batches_per_sync.fetch_max(n_ops, Ordering::Relaxed);
                    if released {
                        self.delete_released_segments(&mut st);
                    }
                }
                Err(e) => {
                    st.failed = Some(e.to_string());
                }
            }
            drop(st);
            if durable {
                for hook in hooks {
                    hook();
                }
            }
            self.shared.done.notify_all();
            self.shared.notify_event_loop();
        }
    }

    /// Write every op of a group and make it durable. Returns whether the
    /// group released log entries (so old segments may go).
    fn write_group(&mut self, ops: Vec<Op>) -> io::Result<bool> {
        let needs_sync = ops
            .iter()
            .any(|op| !matches!(op, Op::Append { sync: false, .. }));
        let mut released = false;
        let mut marker = Vec::with_capacity(64);
        let shared = self.shared.clone();
        let c = &shared.counters;
        for op in ops {
            marker.clear();
            let bytes: &[u8] = match &op {
                Op::Append {
                    data, hard_state, ..
                } => {
                    if let Some(hs) = hard_state {
                        encode_hard_state(&mut marker, *hs);
                    }
                    data
                }
                Op::HardState(hs) => {
                    encode_hard_state(&mut marker, *hs);
                    &[]
                }
                Op::Truncate(i) => {
                    encode_record(&mut marker, Kind::Truncate, 0, 0, *i, &[]);
                    &[]
                }
                Op::Release(i) => {
                    encode_record(&mut marker, Kind::Release, 0, 0, *i, &[]);
                    &[]
                }
            };
            let need = (bytes.len() + marker.len()) as u64;
            if self.pos + need > self.shared.segment_size && self.pos > segment::header_len() {
                self.rotate()?;
            }
            let base = self.pos;
            self.buf.extend_from_slice(bytes);
            self.buf.extend_from_slice(&marker);
            self.pos += need;
            match op {
                Op::Append {
                    data, hard_state, ..
                } => {
                    let mut off = 0usize;
                    let mut count = 0u64;
                    while off < data.len() {
                        let len = codec::FRAME_LEN + codec::read_u32(&data, off) as usize;
                        let term = codec::read_u64(&data, off + 10);
                        let index = codec::read_u64(&data, off + 18);
                        let loc = Loc {
                            seg: self.current.seq,
                            offset: base + off as u64,
                            len: len as u32,
                            term,
                        };
                        self.effects.push(Effect::Entry(index, loc));
                        if index <= self.bounds.last {
                            self.bounds.truncate(index);
                        }
                        self.bounds.append(index, index);
                        off += len;
                        count += 1;
                    }
                    c.entries.fetch_add(count, Ordering::Relaxed);
                    c.records.fetch_add(count, Ordering::Relaxed);
                    if let Some(hs) = hard_state {
                        self.hard_state = hs;
                        self.effects.push(Effect::HardState(hs));
                        c.records.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Op::HardState(hs) => {
                    self.hard_state = hs;
                    self.effects.push(Effect::HardState(hs));
                    c.records.fetch_add(1, Ordering::Relaxed);
                }
                Op::Truncate(i) => {
                    self.bounds.truncate(i);
                    self.effects.push(Effect::Truncate(i));
                    c.records.fetch_add(1, Ordering::Relaxed);
                }
                Op::Release(i) => {
                    self.bounds.release(i);
                    self.effects.push(Effect::Release(i));
                    c.records.fetch_add(1, Ordering::Relaxed);
                    released = true;
                }
            }
            c.bytes.fetch_add(need, Ordering::Relaxed);
        }
        self.flush()?;
        if needs_sync {
            self.sync_current()?;
        }
        Ok(released)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.current.file.write_all_at(&self.buf, self.buf_start)?;
            self.buf.clear();
        }
        self.buf_start = self.pos;
        Ok(())
    }

    fn sync_current(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.current.file.sync_data()?;
        let c = &self.shared.counters;
        c.syncs.fetch_add(1, Ordering::Relaxed);
        c.sync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Finish the current segment (written and synced, so a torn tail can
    /// only ever be in the newest segment) and start the next one.
    fn rotate(&mut self) -> io::Result<()> {
        self.flush()?;
        self.sync_current()?;
        let header = SegmentHeader {
            seq: self.current.seq + 1,
            next_index: self.bounds.last + 1,
            first_index: self.bounds.first,
            hard_state: self.hard_state,
        };
        let seg = Arc::new(segment::create_segment(
            &self.shared.dir,
            &header,
            self.shared.segment_size,
        )?);
        self.shared
            .counters
            .segments_created
            .fetch_add(1, Ordering::Relaxed);
        self.effects.push(Effect::NewSegment(seg.clone()));
        self.current = seg;
        self.pos = segment::header_len();
        self.buf_start = self.pos;
        Ok(())
    }

    /// Delete segments older than the oldest one holding a live entry. They
    /// hold nothing recovery needs: later segment headers carry the hard
    /// state and the release index.
    fn delete_released_segments(&self, st: &mut super::State) {
        let keep_from = st
            .index
            .oldest_segment()
            .unwrap_or(self.current.seq)
            .min(self.current.seq);
        let old: Vec<u64> = st.segments.range(..keep_from).map(|(&s, _)| s).collect();
        for seq in old {
            if let Some(seg) = st.segments.remove(&seq) {
                if std::fs::remove_file(&seg.path).is_ok() {
                    self.shared
                        .counters
                        .segments_released
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let _ = segment::fsync_dir(&self.shared.dir);
    }
}

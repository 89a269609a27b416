//! Segment files: naming, creation with preallocation, header record, and
//! the scan that recovery runs over each file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::codec::{self, decode_record, encode_record, read_u64, HardState, Kind, Record};

pub const SEGMENT_SUFFIX: &str = ".wal";
pub const TMP_SUFFIX: &str = ".wal.tmp";
const MAGIC: &[u8; 8] = b"RKVWAL\x00\x01";
const HEADER_PAYLOAD_LEN: usize = 56;

/// What a segment header records about the log when the segment was opened,
/// so that older segments can be deleted without losing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    /// Index the next entry was expected to take when the segment began.
    pub next_index: u64,
    /// Entries below this index had been released.
    pub first_index: u64,
    pub hard_state: HardState,
}

impl SegmentHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(HEADER_PAYLOAD_LEN);
        payload.extend_from_slice(MAGIC);
        for v in [
            self.seq,
            self.next_index,
            self.first_index,
            self.hard_state.term,
            self.hard_state.vote,
            self.hard_state.commit,
        ] {
            payload.extend_from_slice(&v.to_le_bytes());
        }
        let mut out = Vec::with_capacity(codec::encoded_len(payload.len()));
        encode_record(&mut out, Kind::SegmentHeader, 0, 0, self.seq, &payload);
        out
    }

    pub fn from_record(rec: &Record<'_>) -> Option<SegmentHeader> {
        let p = rec.payload;
        if rec.kind != Kind::SegmentHeader || p.len() != HEADER_PAYLOAD_LEN || &p[0..8] != MAGIC {
            return None;
        }
        Some(SegmentHeader {
            seq: read_u64(p, 8),
            next_index: read_u64(p, 16),
            first_index: read_u64(p, 24),
            hard_state: HardState {
                term: read_u64(p, 32),
                vote: read_u64(p, 40),
                commit: read_u64(p, 48),
            },
        })
    }
}

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}{SEGMENT_SUFFIX}"))
}

/// Sequence number encoded in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// An open segment file. Reads use `pread`, so a shared reference is enough.
#[derive(Debug)]
pub struct SegmentFile {
    pub seq: u64,
    pub path: PathBuf,
    pub file: File,
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn preallocate(file: &File, len: u64) -> io::Result<()> {
    // posix_fallocate reserves the blocks so appends never run out of space
    // mid-record and the file size stays fixed, keeping fdatasync cheap.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if rc == 0 {
        Ok(())
    } else if rc == libc::EOPNOTSUPP || rc == libc::EINVAL {
        file.set_len(len)
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Create a segment: write and sync it under a temporary name, then rename it
/// into place and sync the directory, so a named segment always has a header.
pub fn create_segment(
    dir: &Path,
    header: &SegmentHeader,
    capacity: u64,
) -> io::Result<SegmentFile> {
    let tmp = dir.join(format!("{:016x}{TMP_SUFFIX}", header.seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    preallocate(&file, capacity)?;
    file.write_all_at(&header.encode(), 0)?;
    file.sync_all()?;
    let path = segment_path(dir, header.seq);
    fs::rename(&tmp, &path)?;
    fsync_dir(dir)?;
    Ok(SegmentFile {
        seq: header.seq,
        path,
        file,
    })
}

pub fn header_len() -> u64 {
    codec::encoded_len(HEADER_PAYLOAD_LEN) as u64
}

/// One record found by a scan, with where it sits in the file.
#[derive(Clone, Debug)]
pub struct ScannedRecord {
    pub offset: u64,
    pub len: u32,
    pub kind: Kind,
    pub term: u64,
    pub index: u64,
    pub hard_state: Option<HardState>,
}

/// Where a scan stopped and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Clean end: only zero bytes (preallocated space) or end of file follow.
    Clean,
    /// A damaged record at `offset` with no valid record after it.
    TornTail {
        offset: u64,
        last_nonzero: u64,
        reason: String,
    },
    /// A damaged record at `offset` followed by a valid one at `valid_at`.
    Corrupt {
        offset: u64,
        valid_at: u64,
        reason: String,
    },
}

pub struct Scan {
    pub header: Option<SegmentHeader>,
    pub records: Vec<ScannedRecord>,
    /// End of the valid data.
    pub end: u64,
    pub outcome: ScanEnd,
}

/// True if a valid record starts anywhere in `buf[from..]`.
fn find_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at + codec::FRAME_LEN + codec::BODY_FIXED_LEN <= buf.len() {
        // A zero length can never start a record; skip zero runs fast.
        if buf[at] == 0 && buf[at + 1] == 0 && buf[at + 2] == 0 && buf[at + 3] == 0 {
            at += 1;
            continue;
        }
        if decode_record(&buf[at..], at).is_ok() {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// Parse every record in a segment's bytes.
pub fn scan(buf: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut header = None;
    let mut pos = 0usize;
    let outcome = loop {
        if pos >= buf.len() {
            break ScanEnd::Clean;
        }
        let rest = &buf[pos..];
        if rest.len() < 4 || codec::read_u32(rest, 0) == 0 {
            match rest.iter().rposition(|&b| b != 0) {
                None => break ScanEnd::Clean,
                Some(rel) => {
                    let last_nonzero = (pos + rel) as u64;
                    match find_valid_record(buf, pos + 1) {
                        Some(v) => {
                            break ScanEnd::Corrupt {
                                offset: pos as u64,
                                valid_at: v as u64,
                                reason: "zero length field".into(),
                            }
                        }
                        None => {
                            break ScanEnd::TornTail {
                                offset: pos as u64,
                                last_nonzero,
                                reason: "partial record".into(),
                            }
                        }
                    }
                }
            }
        }
        match decode_record(rest, pos) {
            Ok(rec) => {
                if pos == 0 {
                    header = SegmentHeader::from_record(&rec);
                    if header.is_none() {
                        break ScanEnd::Corrupt {
                            offset: 0,
                            valid_at: 0,
                            reason: "first record is not a segment header".into(),
                        };
                    }
                } else {
                    let hard_state = if rec.kind == Kind::HardState {
                        match codec::hard_state_from_payload(rec.payload, pos) {
                            Ok(hs) => Some(hs),
                            Err(e) => {
                                break ScanEnd::Corrupt {
                                    offset: pos as u64,
                                    valid_at: pos as u64,
                                    reason: e.to_string(),
                                }
                            }
                        }
                    } else {
                        None
                    };
                    records.push(ScannedRecord {
                        offset: pos as u64,
                        len: rec.encoded_len as u32,
                        kind: rec.kind,
                        term: rec.term,
                        index: rec.index,
                        hard_state,
                    });
                }
                pos += rec.encoded_len;
            }
            Err(e) => {
                let last_nonzero = (pos + rest.iter().rposition(|&b| b != 0).unwrap_or(0)) as u64;
                break match find_valid_record(buf, pos + 1) {
                    Some(v) => ScanEnd::Corrupt {
                        offset: pos as u64,
                        valid_at: v as u64,
                        reason: e.to_string(),
                    },
                    None => ScanEnd::TornTail {
                        offset: pos as u64,
                        last_nonzero,
                        reason: e.to_string(),
                    },
                };
            }
        }
    };
    Scan {
        header,
        records,
        end: pos as u64,
        outcome,
    }
}

/// Zero `[from, to]` of a file and sync it: cuts a torn tail.
pub fn zero_range(file: &File, from: u64, to_inclusive: u64) -> io::Result<()> {
    let len = (to_inclusive + 1 - from) as usize;
    let zeros = vec![0u8; len.min(1 << 20)];
    let mut at = from;
    let end = to_inclusive + 1;
    while at < end {
        let n = ((end - at) as usize).min(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

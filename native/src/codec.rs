//! Record codec shared by the write-ahead log and the peer transport.
//!
//! Every record is framed as
//!
//! ```text
//! +---------+---------+------+-------+--------+--------+---------+
//! | len u32 | crc u32 | kind | etype | term   | index  | payload |
//! |   LE    |   LE    |  u8  |  u8   | u64 LE | u64 LE |  bytes  |
//! +---------+---------+------+-------+--------+--------+---------+
//! ```
//!
//! `len` counts the body (kind .. payload); `crc` is CRC32C over the four
//! `len` bytes followed by the body, so a damaged length is caught as well as
//! a damaged body. An entry is encoded once: the same bytes are written to the
//! WAL and sent to followers, who verify and store them unchanged.

use std::fmt;

/// Bytes before the body: length and checksum.
pub const FRAME_LEN: usize = 8;
/// Fixed part of the body: kind, entry type, term, index.
pub const BODY_FIXED_LEN: usize = 18;
/// Largest body we accept; anything bigger is treated as damage, not data.
pub const MAX_BODY_LEN: usize = 256 << 20;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A Raft log entry (index, term, entry type, payload).
    Entry = 1,
    /// Raft hard state: payload is term, vote, commit (3 x u64 LE).
    HardState = 2,
    /// WAL marker: entries at `index` and after are discarded.
    Truncate = 3,
    /// WAL marker: entries before `index` are released (snapshot taken).
    Release = 4,
    /// WAL segment header (see `wal::segment`).
    SegmentHeader = 5,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Entry),
            2 => Some(Kind::HardState),
            3 => Some(Kind::Truncate),
            4 => Some(Kind::Release),
            5 => Some(Kind::SegmentHeader),
            _ => None,
        }
    }
}

/// Raft hard state: what must be durable before a vote or an ack is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// Why a buffer could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The buffer ends inside a record.
    Truncated {
        offset: usize,
        need: usize,
        have: usize,
    },
    /// The length field is impossible (too small or too large).
    BadLength { offset: usize, len: usize },
    /// The checksum does not match the contents.
    BadChecksum {
        offset: usize,
        stored: u32,
        computed: u32,
    },
    /// The kind byte is not one we know.
    UnknownKind { offset: usize, kind: u8 },
    /// A record of another kind where an entry was expected, or a malformed body.
    Unexpected { offset: usize, what: String },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated { offset, need, have } => write!(
                f,
                "truncated record at offset {offset}: needs {need} bytes, {have} available"
            ),
            CodecError::BadLength { offset, len } => {
                write!(f, "invalid record length {len} at offset {offset}")
            }
            CodecError::BadChecksum { offset, stored, computed } => write!(
                f,
                "checksum mismatch at offset {offset}: stored {stored:#010x}, computed {computed:#010x}"
            ),
            CodecError::UnknownKind { offset, kind } => {
                write!(f, "unknown record kind {kind} at offset {offset}")
            }
            CodecError::Unexpected { offset, what } => write!(f, "{what} at offset {offset}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// A decoded record borrowing its payload from the source buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub etype: u8,
    pub term: u64,
    pub index: u64,
    pub payload: &'a [u8],
    /// Total encoded size, frame included.
    pub encoded_len: usize,
}

/// Size of a record with `payload_len` bytes of payload.
#[inline]
pub fn encoded_len(payload_len: usize) -> usize {
    FRAME_LEN + BODY_FIXED_LEN + payload_len
}

/// Append one record to `out`.
pub fn encode_record(
    out: &mut Vec<u8>,
    kind: Kind,
    etype: u8,
    term: u64,
    index: u64,
    payload: &[u8],
) {
    let body_len = BODY_FIXED_LEN + payload.len();
    assert!(body_len <= MAX_BODY_LEN, "record body too large");
    let start = out.len();
    out.reserve(FRAME_LEN + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind as u8);
    out.push(etype);
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = checksum(&out[start..start + 4], &out[start + FRAME_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Append one log entry to `out`.
#[inline]
pub fn encode_entry(out: &mut Vec<u8>, index: u64, term: u64, etype: u8, payload: &[u8]) {
    encode_record(out, Kind::Entry, etype, term, index, payload);
}

/// Append a hard-state record to `out`.
pub fn encode_hard_state(out: &mut Vec<u8>, hs: HardState) {
    let mut payload = [0u8; 24];
    payload[0..8].copy_from_slice(&hs.term.to_le_bytes());
    payload[8..16].copy_from_slice(&hs.vote.to_le_bytes());
    payload[16..24].copy_from_slice(&hs.commit.to_le_bytes());
    encode_record(out, Kind::HardState, 0, 0, 0, &payload);
}

/// Read the hard state out of a `Kind::HardState` record's payload.
pub fn hard_state_from_payload(payload: &[u8], offset: usize) -> Result<HardState, CodecError> {
    if payload.len() != 24 {
        return Err(CodecError::Unexpected {
            offset,
            what: format!("hard state payload of {} bytes (want 24)", payload.len()),
        });
    }
    Ok(HardState {
        term: read_u64(payload, 0),
        vote: read_u64(payload, 8),
        commit: read_u64(payload, 16),
    })
}

#[inline]
fn checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

#[inline]
pub fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

#[inline]
pub fn read_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Decode the record that starts at `buf[offset..]`, verifying its checksum.
///
/// `offset` is only used to make error messages point at the right place in
/// a larger buffer; `buf` must start at the record.
pub fn decode_record(buf: &[u8], offset: usize) -> Result<Record<'_>, CodecError> {
    if buf.len() < FRAME_LEN {
        return Err(CodecError::Truncated {
            offset,
            need: FRAME_LEN,
            have: buf.len(),
        });
    }
    let body_len = read_u32(buf, 0) as usize;
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Err(CodecError::BadLength {
            offset,
            len: body_len,
        });
    }
    let total = FRAME_LEN + body_len;
    if buf.len() < total {
        return Err(CodecError::Truncated {
            offset,
            need: total,
            have: buf.len(),
        });
    }
    let body = &buf[FRAME_LEN..total];
    let stored = read_u32(buf, 4);
    let computed = checksum(&buf[0..4], body);
    if stored != computed {
        return Err(CodecError::BadChecksum {
            offset,
            stored,
            computed,
        });
    }
    let kind = Kind::from_u8(body[0]).ok_or(CodecError::UnknownKind {
        offset,
        kind: body[0],
    })?;
    Ok(Record {
        kind,
        etype: body[1],
        term: read_u64(body, 2),
        index: read_u64(body, 10),
        payload: &body[BODY_FIXED_LEN..],
        encoded_len: total,
    })
}

/// Iterator over the records of a buffer; stops at the first error.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Records {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(usize, Record<'a>), CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let at = self.pos;
        match decode_record(&self.buf[at..], at) {
            Ok(rec) => {
                self.pos += rec.encoded_len;
                Some(Ok((at, rec)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Summary of a buffer holding a contiguous batch of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    pub count: usize,
    pub first_index: u64,
    pub last_index: u64,
    pub last_term: u64,
}

/// Verify that `buf` holds only entries with consecutive indexes and
/// non-decreasing terms, and summarise it.
pub fn check_entry_batch(buf: &[u8]) -> Result<BatchInfo, CodecError> {
    let mut info = BatchInfo {
        count: 0,
        first_index: 0,
        last_index: 0,
        last_term: 0,
    };
    for item in Records::new(buf) {
        let (at, rec) = item?;
        if rec.kind != Kind::Entry {
            return Err(CodecError::Unexpected {
                offset: at,
                what: format!("record of kind {:?} where an entry was expected", rec.kind),
            });
        }
        if info.count == 0 {
            info.first_index = rec.index;
        } else if rec.index != info.last_index + 1 {
            return Err(CodecError::Unexpected {
                offset: at,
                what: format!(
                    "entry index {} does not follow {} in the batch",
                    rec.index, info.last_index
                ),
            });
        } else if rec.term < info.last_term {
            return Err(CodecError::Unexpected {
                offset: at,
                what: format!(
                    "entry term {} below previous term {}",
                    rec.term, info.last_term
                ),
            });
        }
        info.count += 1;
        info.last_index = rec.index;
        info.last_term = rec.term;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_round_trip() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 7, 3, 1, b"hello");
        let rec = decode_record(&buf, 0).unwrap();
        assert_eq!(rec.kind, Kind::Entry);
        assert_eq!(
            (rec.index, rec.term, rec.etype, rec.payload),
            (7, 3, 1, &b"hello"[..])
        );
        assert_eq!(rec.encoded_len, buf.len());
        assert_eq!(buf.len(), encoded_len(5));
    }

    #[test]
    fn hard_state_round_trip() {
        let mut buf = Vec::new();
        let hs = HardState {
            term: 9,
            vote: 2,
            commit: 40,
        };
        encode_hard_state(&mut buf, hs);
        let rec = decode_record(&buf, 0).unwrap();
        assert_eq!(rec.kind, Kind::HardState);
        assert_eq!(hard_state_from_payload(rec.payload, 0).unwrap(), hs);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 1, 1, 0, b"payload bytes");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_record(&bad, 0).is_err(),
                    "flip at {byte}:{bit} undetected"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 1, 1, 0, b"payload");
        for cut in 0..buf.len() {
            assert!(matches!(
                decode_record(&buf[..cut], 0),
                Err(CodecError::Truncated { .. }) | Err(CodecError::BadLength { .. })
            ));
        }
    }

    #[test]
    fn batch_must_be_consecutive() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 5, 1, 0, b"a");
        encode_entry(&mut buf, 7, 1, 0, b"b");
        assert!(check_entry_batch(&buf).is_err());
        let mut ok = Vec::new();
        encode_entry(&mut ok, 5, 1, 0, b"a");
        encode_entry(&mut ok, 6, 2, 0, b"b");
        let info = check_entry_batch(&ok).unwrap();
        assert_eq!(
            (
                info.count,
                info.first_index,
                info.last_index,
                info.last_term
            ),
            (2, 5, 6, 2)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            for item in Records::new(&data) {
                if item.is_err() { break; }
            }
            let _ = check_entry_batch(&data);
        }

        #[test]
        fn batches_round_trip(entries in proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 1..20)) {
            let mut buf = Vec::new();
            for (i, (etype, payload)) in entries.iter().enumerate() {
                encode_entry(&mut buf, 100 + i as u64, 4, *etype, payload);
            }
            let decoded: Vec<_> = Records::new(&buf).map(|r| r.unwrap().1).collect();
            prop_assert_eq!(decoded.len(), entries.len());
            for (i, (rec, (etype, payload))) in decoded.iter().zip(entries.iter()).enumerate() {
                prop_assert_eq!(rec.index, 100 + i as u64);
                prop_assert_eq!(rec.etype, *etype);
                prop_assert_eq!(rec.payload, &payload[..]);
            }
        }
    }
}

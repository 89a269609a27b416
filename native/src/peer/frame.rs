//! Peer frames on the wire.
//!
//! Every frame is `len u32 | crc32c u32 | kind u8 | body[len]`, little endian. `len` counts
//! the body only; the checksum covers the kind byte and the body. A decoder reads frames out
//! of a growing buffer and refuses, before buffering anything, a length above its limit, so
//! a peer cannot make us allocate more than `max_frame` plus one read.
//!
//! The first frame on a connection is a `Hello` from the dialer (cluster id, its member id,
//! the member id it expects to reach); the listener answers `HelloOk` (cluster id, its own
//! member id) or `Reject` (a UTF-8 reason) and closes. After that only `Msg` frames flow, and
//! only from the dialer to the listener: each member dials every peer it sends to.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const HEADER_LEN: usize = 9;
pub const HELLO_MAGIC: [u8; 4] = *b"RKVP";
pub const PROTOCOL_VERSION: u16 = 1;
/// Body of a hello: magic, version, cluster id, sender id, expected receiver id.
pub const HELLO_LEN: usize = 4 + 2 + 8 + 8 + 8;
/// The largest frame accepted before the handshake is done.
pub const HANDSHAKE_MAX_FRAME: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    HelloOk = 2,
    Reject = 3,
    Msg = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Hello),
            2 => Some(Kind::HelloOk),
            3 => Some(Kind::Reject),
            4 => Some(Kind::Msg),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub body: Bytes,
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    Oversized { len: usize, max: usize },
    Checksum { expected: u32, actual: u32 },
    UnknownKind(u8),
    BadHello(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversized { len, max } => {
                write!(f, "oversized frame: {len} bytes, limit {max}")
            }
            FrameError::Checksum { expected, actual } => write!(
                f,
                "frame checksum mismatch: header says {expected:#010x}, body has {actual:#010x}"
            ),
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::BadHello(m) => write!(f, "bad hello: {m}"),
        }
    }
}

impl std::error::Error for FrameError {}

fn checksum(kind: u8, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), body)
}

/// Append one frame to `out`.
pub fn encode(out: &mut BytesMut, kind: Kind, body: &[u8]) {
    out.reserve(HEADER_LEN + body.len());
    out.put_u32_le(body.len() as u32);
    out.put_u32_le(checksum(kind as u8, body));
    out.put_u8(kind as u8);
    out.put_slice(body);
}

/// Encoded size of a frame with a body of `len` bytes.
pub const fn encoded_len(len: usize) -> usize {
    HEADER_LEN + len
}

/// Take one complete frame off the front of `buf`, if there is one.
///
/// `Ok(None)` means more bytes are needed; the caller may use [`needed`] to size its next
/// read. An error leaves the connection unusable: the caller closes it.
pub fn decode(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max_frame {
        return Err(FrameError::Oversized {
            len,
            max: max_frame,
        });
    }
    let kind_byte = buf[8];
    let Some(kind) = Kind::from_u8(kind_byte) else {
        return Err(FrameError::UnknownKind(kind_byte));
    };
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    let expected = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let actual = checksum(kind_byte, &buf[HEADER_LEN..HEADER_LEN + len]);
    if expected != actual {
        return Err(FrameError::Checksum { expected, actual });
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(len).freeze();
    Ok(Some(Frame { kind, body }))
}

/// Decode every complete message frame at the front of `buf` (after the handshake only
/// `Msg` frames may come), passing each body to `each`. `Err` says why the link must close.
pub fn decode_messages(
    buf: &mut BytesMut,
    max_frame: usize,
    mut each: impl FnMut(Bytes),
) -> Result<(), String> {
    loop {
        match decode(buf, max_frame) {
            Ok(Some(f)) if f.kind == Kind::Msg => each(f.body),
            Ok(Some(f)) => {
                return Err(format!("unexpected {:?} frame after the handshake", f.kind))
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub cluster_id: u64,
    pub from: u64,
    /// The member the dialer means to reach; 0 when it does not know.
    pub to: u64,
}

pub fn encode_hello(out: &mut BytesMut, h: Hello) {
    let mut body = [0u8; HELLO_LEN];
    body[..4].copy_from_slice(&HELLO_MAGIC);
    body[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    body[6..14].copy_from_slice(&h.cluster_id.to_le_bytes());
    body[14..22].copy_from_slice(&h.from.to_le_bytes());
    body[22..30].copy_from_slice(&h.to.to_le_bytes());
    encode(out, Kind::Hello, &body);
}

pub fn parse_hello(f: &Frame) -> Result<Hello, FrameError> {
    if f.kind != Kind::Hello {
        return Err(FrameError::BadHello(format!(
            "expected a hello frame, got {:?}",
            f.kind
        )));
    }
    let b = &f.body[..];
    if b.len() != HELLO_LEN {
        return Err(FrameError::BadHello(format!(
            "hello body is {} bytes, expected {HELLO_LEN}",
            b.len()
        )));
    }
    if b[..4] != HELLO_MAGIC {
        return Err(FrameError::BadHello("wrong magic".into()));
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != PROTOCOL_VERSION {
        return Err(FrameError::BadHello(format!(
            "protocol version {version}, this member speaks {PROTOCOL_VERSION}"
        )));
    }
    Ok(Hello {
        cluster_id: read_u64(b, 6),
        from: read_u64(b, 14),
        to: read_u64(b, 22),
    })
}

/// The listener's answer: its cluster id and member id.
pub fn encode_hello_ok(out: &mut BytesMut, cluster_id: u64, member_id: u64) {
    let mut body = [0u8; 16];
    body[..8].copy_from_slice(&cluster_id.to_le_bytes());
    body[8..].copy_from_slice(&member_id.to_le_bytes());
    encode(out, Kind::HelloOk, &body);
}

pub fn parse_hello_ok(f: &Frame) -> Result<(u64, u64), FrameError> {
    match f.kind {
        Kind::HelloOk if f.body.len() == 16 => Ok((read_u64(&f.body, 0), read_u64(&f.body, 8))),
        Kind::HelloOk => Err(FrameError::BadHello(format!(
            "hello answer is {} bytes, expected 16",
            f.body.len()
        ))),
        Kind::Reject => Err(FrameError::BadHello(format!(
            "refused by peer: {}",
            String::from_utf8_lossy(&f.body)
        ))),
        k => Err(FrameError::BadHello(format!(
            "expected a hello answer, got {k:?}"
        ))),
    }
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bodies: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for b in bodies {
            encode(&mut out, Kind::Msg, b);
        }
        out
    }

    #[test]
    fn round_trip_many_frames_in_one_buffer() {
        let mut buf = frames(&[b"one", b"", b"three", &[7u8; 1000]]);
        let mut got = Vec::new();
        while let Some(f) = decode(&mut buf, 4096).unwrap() {
            assert_eq!(f.kind, Kind::Msg);
            got.push(f.body.to_vec());
        }
        assert!(buf.is_empty());
        assert_eq!(
            got,
            vec![b"one".to_vec(), vec![], b"three".to_vec(), vec![7u8; 1000]]
        );
    }

    #[test]
    fn byte_at_a_time_never_yields_a_partial_frame() {
        let whole = frames(&[b"alpha", b"beta", &[1u8; 300]]);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in whole.iter() {
            buf.put_u8(b);
            while let Some(f) = decode(&mut buf, 4096).unwrap() {
                got.push(f.body.to_vec());
            }
        }
        assert_eq!(
            got,
            vec![b"alpha".to_vec(), b"beta".to_vec(), vec![1u8; 300]]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(10_000);
        buf.put_u32_le(0);
        buf.put_u8(Kind::Msg as u8);
        assert_eq!(
            decode(&mut buf, 4096),
            Err(FrameError::Oversized {
                len: 10_000,
                max: 4096
            })
        );
    }

    #[test]
    fn exactly_max_is_accepted() {
        let mut buf = frames(&[&[9u8; 64]]);
        assert_eq!(decode(&mut buf, 64).unwrap().unwrap().body.len(), 64);
        let mut buf = frames(&[&[9u8; 65]]);
        assert!(matches!(
            decode(&mut buf, 64),
            Err(FrameError::Oversized { .. })
        ));
    }

    #[test]
    fn corrupted_body_fails_the_checksum() {
        let mut buf = frames(&[b"payload bytes"]);
        let last = buf.len() - 1;
        buf[last] ^= 0x40;
        assert!(matches!(
            decode(&mut buf, 4096),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn corrupted_kind_is_refused() {
        let mut buf = frames(&[b"x"]);
        buf[8] = 99;
        assert_eq!(decode(&mut buf, 4096), Err(FrameError::UnknownKind(99)));
        // A valid kind that differs from what was checksummed fails the checksum.
        let mut buf = frames(&[b"x"]);
        buf[8] = Kind::Hello as u8;
        assert!(matches!(
            decode(&mut buf, 4096),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[test]
    fn text_garbage_is_refused_at_handshake_limits() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        assert!(decode(&mut buf, HANDSHAKE_MAX_FRAME).is_err());
    }

    #[test]
    fn hello_round_trip_and_checks() {
        let h = Hello {
            cluster_id: 0xdead_beef,
            from: 7,
            to: 9,
        };
        let mut buf = BytesMut::new();
        encode_hello(&mut buf, h);
        let f = decode(&mut buf, HANDSHAKE_MAX_FRAME).unwrap().unwrap();
        assert_eq!(parse_hello(&f).unwrap(), h);

        let not_hello = Frame {
            kind: Kind::Msg,
            body: Bytes::from_static(b"x"),
        };
        assert!(parse_hello(&not_hello).is_err());
        let mut body = f.body.to_vec();
        body[0] = b'X';
        let bad_magic = Frame {
            kind: Kind::Hello,
            body: body.into(),
        };
        assert!(parse_hello(&bad_magic).is_err());
        let mut body = f.body.to_vec();
        body[4] = 2;
        let bad_version = Frame {
            kind: Kind::Hello,
            body: body.into(),
        };
        let err = parse_hello(&bad_version).unwrap_err().to_string();
        assert!(err.contains("protocol version 2"), "{err}");
    }

    #[test]
    fn hello_answers() {
        let mut buf = BytesMut::new();
        encode_hello_ok(&mut buf, 5, 6);
        encode(&mut buf, Kind::Reject, b"wrong cluster id");
        let ok = decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(parse_hello_ok(&ok).unwrap(), (5, 6));
        let rej = decode(&mut buf, 1024).unwrap().unwrap();
        let err = parse_hello_ok(&rej).unwrap_err().to_string();
        assert!(err.contains("wrong cluster id"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_split_of_a_stream_decodes_the_same(
            bodies in proptest::collection::vec(proptest::collection::vec(0u8.., 0..600), 1..12),
            cuts in proptest::collection::vec(0usize..8000, 0..6),
        ) {
            let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
            let whole = frames(&refs);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (whole.len() + 1)).collect();
            cuts.push(whole.len());
            cuts.sort_unstable();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            for cut in cuts {
                buf.extend_from_slice(&whole[at..cut]);
                at = cut;
                while let Some(f) = decode(&mut buf, 4096).unwrap() {
                    got.push(f.body.to_vec());
                }
            }
            proptest::prop_assert_eq!(got, bodies);
            proptest::prop_assert!(buf.is_empty());
        }

        #[test]
        fn a_flipped_byte_never_yields_a_wrong_frame(
            body in proptest::collection::vec(0u8.., 1..600),
            pos in 0usize..10_000,
            flip in 1u8..,
        ) {
            let whole = frames(&[&body]);
            let mut buf = whole.clone();
            let pos = pos % buf.len();
            buf[pos] ^= flip;
            // Whatever comes out is either an error, a wait for more bytes, or, never, a
            // frame different from what was sent.
            if let Ok(Some(f)) = decode(&mut buf, 4096) {
                proptest::prop_assert!(false, "corrupted byte {} gave a frame of {} bytes", pos, f.body.len());
            }
        }
    }

    #[test]
    fn encoded_len_matches() {
        let buf = frames(&[&[0u8; 300]]);
        assert_eq!(buf.len(), encoded_len(300));
    }
}

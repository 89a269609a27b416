//! Client→server HTTP/2 filter that repairs a scheme-qualified `:authority`.
//!
//! etcdctl 3.4 (grpc-go) sends `:authority: http://host:port` when endpoints are given as
//! URLs (and for `--cluster`). etcd accepts that; the h2 library under tonic refuses it as a
//! malformed authority and resets the stream. This filter sits between the socket and h2:
//! it passes every frame through unchanged except header blocks, which it decodes (tracking
//! the client's HPACK dynamic table), and re-encodes with its own encoder after cutting a
//! `scheme://` prefix off `:authority`. h2 then only ever sees blocks from this encoder, so
//! both HPACK tables stay consistent.
//!
//! A client names one authority for the whole connection, so the first header block
//! decides: if it needs no repair, that block and everything after it pass through
//! untouched (HPACK decoding on every request cost a sixth of a busy member's CPU).

use bytes::{Buf, BufMut, BytesMut};
use fluke_hpack::{Decoder, Encoder};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may use: safe for the frames we emit.
const OUT_FRAME_MAX: usize = 16_384;
/// Bound on a header block being collected (CONTINUATION flood guard).
const MAX_BLOCK: usize = 1 << 20;

pub struct AuthorityFilter {
    preface_left: usize,
    input: BytesMut,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    /// A header block waiting for its CONTINUATION frames: stream id, END_STREAM, bytes.
    pending: Option<(u32, bool, Vec<u8>)>,
    /// The frames of the first header block as received (until the mode is decided).
    first_raw: Vec<u8>,
    mode: Mode,
    pub rewritten: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the first header block is complete.
    Undecided,
    /// The first block needed no repair: copy bytes through.
    PassThrough,
    /// Decode and re-encode every header block.
    Rewrite,
}

impl Default for AuthorityFilter {
    fn default() -> Self {
        AuthorityFilter {
            preface_left: PREFACE.len(),
            input: BytesMut::new(),
            decoder: Decoder::new(),
            encoder: Encoder::new(),
            pending: None,
            first_raw: Vec::new(),
            mode: Mode::Undecided,
            rewritten: 0,
        }
    }
}

fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    let pos = value.windows(3).position(|w| w == b"://")?;
    let scheme = &value[..pos];
    if scheme.is_empty()
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return None;
    }
    let rest = &value[pos + 3..];
    Some(rest.strip_suffix(b"/").unwrap_or(rest))
}

impl AuthorityFilter {
    /// Take bytes read from the client; append what h2 should read to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut BytesMut) -> Result<(), String> {
        if self.mode == Mode::PassThrough {
            out.extend_from_slice(data);
            return Ok(());
        }
        self.input.extend_from_slice(data);
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.input.len());
            let done = PREFACE.len() - self.preface_left;
            if self.input[..n] != PREFACE[done..done + n] {
                return Err("not an HTTP/2 connection preface".into());
            }
            out.extend_from_slice(&self.input.split_to(n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        while self.input.len() >= FRAME_HEADER {
            let len = (usize::from(self.input[0]) << 16)
                | (usize::from(self.input[1]) << 8)
                | usize::from(self.input[2]);
            if self.input.len() < FRAME_HEADER + len {
                break;
            }
            let kind = self.input[3];
            let flags = self.input[4];
            let stream =
                u32::from_be_bytes(self.input[5..9].try_into().expect("4 bytes")) & 0x7fff_ffff;
            if kind != HEADERS && kind != CONTINUATION {
                if self.pending.is_some() {
                    return Err("frame inside a header block".into());
                }
                out.extend_from_slice(&self.input.split_to(FRAME_HEADER + len));
                continue;
            }
            let mut frame = self.input.split_to(FRAME_HEADER + len);
            if self.mode == Mode::Undecided {
                self.first_raw.extend_from_slice(&frame);
            }
            frame.advance(FRAME_HEADER);
            let fragment: &[u8] = if kind == HEADERS {
                if self.pending.is_some() {
                    return Err("HEADERS inside a header block".into());
                }
                let mut start = 0usize;
                let mut end = frame.len();
                if flags & PADDED != 0 {
                    let pad = usize::from(*frame.first().ok_or("empty padded HEADERS")?);
                    start = 1;
                    end = end
                        .checked_sub(pad)
                        .ok_or("padding longer than the frame")?;
                }
                if flags & PRIORITY != 0 {
                    start += 5;
                }
                if start > end {
                    return Err("HEADERS frame too short".into());
                }
                self.pending = Some((stream, flags & END_STREAM != 0, Vec::new()));
                &frame[start..end]
            } else {
                match &self.pending {
                    Some((s, _, _)) if *s == stream => {}
                    _ => return Err("CONTINUATION without its HEADERS".into()),
                }
                &frame[..]
            };
            let (_, _, block) = self.pending.as_mut().expect("set above");
            if block.len() + fragment.len() > MAX_BLOCK {
                return Err("header block too large".into());
            }
            block.extend_from_slice(fragment);
            if flags & END_HEADERS != 0 {
                let (stream, end_stream, block) = self.pending.take().expect("set above");
                self.emit(stream, end_stream, &block, out)?;
                if self.mode == Mode::PassThrough {
                    out.extend_from_slice(&self.input.split());
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn emit(
        &mut self,
        stream: u32,
        end_stream: bool,
        block: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), String> {
        let mut headers = self
            .decoder
            .decode(block)
            .map_err(|e| format!("bad header block: {e:?}"))?;
        if self.mode == Mode::Undecided {
            let needs_repair = headers
                .iter()
                .any(|(n, v)| n.as_slice() == b":authority" && strip_scheme(v).is_some());
            let raw = std::mem::take(&mut self.first_raw);
            if !needs_repair {
                self.mode = Mode::PassThrough;
                out.extend_from_slice(&raw);
                return Ok(());
            }
            self.mode = Mode::Rewrite;
        }
        for (name, value) in headers.iter_mut() {
            if name.as_slice() == b":authority" {
                if let Some(fixed) = strip_scheme(value) {
                    *value = fixed.to_vec();
                    self.rewritten += 1;
                }
            }
        }
        let encoded = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut chunks = encoded.chunks(OUT_FRAME_MAX).peekable();
        let mut first = true;
        if encoded.is_empty() {
            write_frame(
                out,
                HEADERS,
                END_HEADERS | if end_stream { END_STREAM } else { 0 },
                stream,
                &[],
            );
            return Ok(());
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let mut flags = if last { END_HEADERS } else { 0 };
            let kind = if first { HEADERS } else { CONTINUATION };
            if first && end_stream {
                flags |= END_STREAM;
            }
            write_frame(out, kind, flags, stream, chunk);
            first = false;
        }
        Ok(())
    }
}

fn write_frame(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.put_u8((len >> 16) as u8);
    out.put_u8((len >> 8) as u8);
    out.put_u8(len as u8);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(enc: &mut Encoder<'static>, stream: u32, hs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let block = enc.encode(hs.iter().copied());
        let mut out = BytesMut::new();
        write_frame(&mut out, HEADERS, END_HEADERS, stream, &block);
        out.to_vec()
    }

    fn decode_all(out: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut dec = Decoder::new();
        let mut rest = &out[PREFACE.len()..];
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            if rest[3] == HEADERS {
                blocks.push(dec.decode(&rest[9..9 + len]).unwrap());
            }
            rest = &rest[9 + len..];
        }
        blocks
    }

    #[test]
    fn rewrites_scheme_qualified_authority_and_keeps_tables_in_step() {
        let mut client = Encoder::new();
        let mut input = PREFACE.to_vec();
        for stream in [1u32, 3, 5] {
            input.extend(headers_frame(
                &mut client,
                stream,
                &[
                    (b":method", b"POST"),
                    (b":scheme", b"http"),
                    (b":path", b"/etcdserverpb.Maintenance/Status"),
                    (b":authority", b"http://127.0.0.1:2379"),
                    (b"content-type", b"application/grpc"),
                ],
            ));
        }
        let mut data = BytesMut::new();
        data.put_u8(0);
        data.put_u8(0);
        data.put_u8(5);
        data.put_u8(0); // DATA
        data.put_u8(1);
        data.put_u32(1);
        data.extend_from_slice(b"hello");
        input.extend_from_slice(&data);
        let mut f = AuthorityFilter::default();
        let mut out = BytesMut::new();
        // fed in awkward pieces, as a socket may deliver them
        for piece in input.chunks(7) {
            f.feed(piece, &mut out).unwrap();
        }
        assert_eq!(f.rewritten, 3);
        let blocks = decode_all(&out);
        assert_eq!(blocks.len(), 3);
        for b in blocks {
            let auth = b.iter().find(|(n, _)| n == b":authority").unwrap();
            assert_eq!(auth.1, b"127.0.0.1:2379");
        }
        assert!(out.ends_with(&data), "other frames pass through unchanged");
    }

    #[test]
    fn a_connection_with_a_plain_authority_passes_through_byte_for_byte() {
        let mut client = Encoder::new();
        let mut input = PREFACE.to_vec();
        for stream in [1u32, 3, 5, 7] {
            input.extend(headers_frame(
                &mut client,
                stream,
                &[
                    (b":method", b"POST"),
                    (b":path", b"/etcdserverpb.KV/Put"),
                    (b":authority", b"127.0.0.1:2379"),
                ],
            ));
        }
        let mut f = AuthorityFilter::default();
        let mut out = BytesMut::new();
        for piece in input.chunks(5) {
            f.feed(piece, &mut out).unwrap();
        }
        assert_eq!(&out[..], &input[..]);
        assert!(f.mode == Mode::PassThrough);
        assert_eq!(f.rewritten, 0);
    }

    #[test]
    fn plain_authority_is_untouched_and_garbage_is_refused() {
        assert_eq!(strip_scheme(b"127.0.0.1:2379"), None);
        assert_eq!(strip_scheme(b"https://h:1/"), Some(&b"h:1"[..]));
        let mut f = AuthorityFilter::default();
        let mut out = BytesMut::new();
        assert!(f.feed(b"GET / HTTP/1.1\r\n\r\n", &mut out).is_err());
    }
}

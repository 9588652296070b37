//! One direction of an HTTP/2 connection as the kernel captured it, cut into frames (RFC 9113
//! §4.1). The kernel sends each buffer's first bytes and the count it really carried, so bytes
//! that were not captured are known by number: inside a frame's payload (a large DATA frame,
//! normally) they are skipped and the frame is marked `truncated`; where a frame header would
//! be, the stream can no longer be followed ([`Lost`]).

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 §6).
pub mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PUSH_PROMISE: u8 = 5;
    pub const GOAWAY: u8 = 7;
    pub const CONTINUATION: u8 = 9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Most payload bytes kept of a frame carrying a header block fragment (larger: `truncated`).
const HEADER_BLOCK_KEEP: usize = 64 * 1024;
/// Most payload bytes kept of a DATA frame: the body's start, where `model` is looked for.
pub const DATA_KEEP: usize = 16 * 1024;
/// Most payload bytes kept of any other frame (`RST_STREAM`, `GOAWAY` need 8).
const OTHER_KEEP: usize = 64;

/// A frame, with its payload's kept prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
    /// Part of the payload was not kept (capture budget or the keep limits above).
    pub truncated: bool,
}

/// The direction can no longer be cut into frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// Bytes were not captured where a frame header was due.
    Gap,
    /// The preface or a frame header is not HTTP/2.
    Malformed,
    /// A header block, a frame being read or an HPACK table size update would take the tracker
    /// past the bytes it may hold over all connections.
    OverBudget,
}

#[derive(Debug)]
enum State {
    /// Bytes of the client preface still to come.
    Preface(usize),
    /// The next frame header, `have` bytes of it so far.
    Header { head: [u8; 9], have: usize },
    Payload {
        frame: Frame,
        /// Payload bytes still to come.
        left: usize,
        keep: usize,
    },
}

#[derive(Debug)]
pub struct FrameReader {
    state: State,
}

impl FrameReader {
    /// A reader of the client's side (starting with the preface) or of the server's.
    #[must_use]
    pub fn new(client: bool) -> Self {
        Self {
            state: if client {
                State::Preface(PREFACE.len())
            } else {
                State::Header {
                    head: [0; 9],
                    have: 0,
                }
            },
        }
    }

    /// Bytes taken by the frame being read (its payload's room, given when its header came).
    #[must_use]
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Payload { frame, .. } => frame.payload.capacity(),
            State::Preface(_) | State::Header { .. } => 0,
        }
    }

    /// Feeds the captured `data` of a buffer that carried `total` bytes; complete frames go to
    /// `out`.
    ///
    /// # Errors
    /// [`Lost`] when the bytes cannot be frames, or missing bytes covered a frame header.
    pub fn push(&mut self, mut data: &[u8], total: u64, out: &mut Vec<Frame>) -> Result<(), Lost> {
        let mut missing = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .saturating_sub(data.len());
        while !data.is_empty() {
            data = self.take(data, out)?;
        }
        while missing > 0 {
            match &mut self.state {
                State::Payload { frame, left, .. } => {
                    let skip = missing.min(*left);
                    *left -= skip;
                    missing -= skip;
                    frame.truncated = true;
                    self.complete(out);
                }
                State::Preface(_) | State::Header { .. } => return Err(Lost::Gap),
            }
        }
        Ok(())
    }

    /// Consumes the start of `data`; returns the rest.
    fn take<'a>(&mut self, data: &'a [u8], out: &mut Vec<Frame>) -> Result<&'a [u8], Lost> {
        match &mut self.state {
            State::Preface(left) => {
                let n = (*left).min(data.len());
                let at = PREFACE.len() - *left;
                if data[..n] != PREFACE[at..at + n] {
                    return Err(Lost::Malformed);
                }
                *left -= n;
                if *left == 0 {
                    self.state = State::Header {
                        head: [0; 9],
                        have: 0,
                    };
                }
                Ok(&data[n..])
            }
            State::Header { head, have } => {
                let n = (9 - *have).min(data.len());
                head[*have..*have + n].copy_from_slice(&data[..n]);
                *have += n;
                if *have == 9 {
                    let head = *head;
                    self.state = Self::payload(&head)?;
                    self.complete(out);
                }
                Ok(&data[n..])
            }
            State::Payload {
                frame, left, keep, ..
            } => {
                let n = (*left).min(data.len());
                let room = keep.saturating_sub(frame.payload.len()).min(n);
                frame.payload.extend_from_slice(&data[..room]);
                if room < n {
                    frame.truncated = true;
                }
                *left -= n;
                self.complete(out);
                Ok(&data[n..])
            }
        }
    }

    fn payload(head: &[u8; 9]) -> Result<State, Lost> {
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let kind = head[3];
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let keep = match kind {
            kind::HEADERS | kind::CONTINUATION | kind::PUSH_PROMISE => HEADER_BLOCK_KEEP,
            kind::DATA => DATA_KEEP,
            _ => OTHER_KEEP,
        };
        // Frames that belong to a stream never come on stream 0, and connection frames never
        // on another: a cheap check that these bytes are frames at all.
        let on_stream = matches!(
            kind,
            kind::DATA | kind::HEADERS | kind::RST_STREAM | kind::PUSH_PROMISE | kind::CONTINUATION
        );
        let on_connection = matches!(kind, kind::SETTINGS | kind::GOAWAY | 6);
        if (on_stream && stream == 0) || (on_connection && stream != 0) {
            return Err(Lost::Malformed);
        }
        Ok(State::Payload {
            frame: Frame {
                kind,
                flags: head[4],
                stream,
                payload: Vec::with_capacity(len.min(keep)),
                truncated: false,
            },
            left: len,
            keep,
        })
    }

    /// Moves a frame whose payload is all in (or skipped) to `out`.
    fn complete(&mut self, out: &mut Vec<Frame>) {
        if let State::Payload { left: 0, .. } = self.state {
            let done = std::mem::replace(
                &mut self.state,
                State::Header {
                    head: [0; 9],
                    have: 0,
                },
            );
            if let State::Payload { frame, .. } = done {
                out.push(frame);
            }
        }
    }
}

/// The header block fragment of a HEADERS or `PUSH_PROMISE` frame (padding and priority or
/// promised stream removed); `None` when the frame is malformed.
#[must_use]
pub fn header_fragment(frame: &Frame) -> Option<&[u8]> {
    let mut p = frame.payload.as_slice();
    let mut pad = 0;
    if frame.flags & flag::PADDED != 0 && frame.kind != kind::CONTINUATION {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    if frame.kind == kind::HEADERS && frame.flags & flag::PRIORITY != 0 {
        p = p.get(5..)?;
    }
    if frame.kind == kind::PUSH_PROMISE {
        p = p.get(4..)?;
    }
    p.get(..p.len().checked_sub(pad)?)
}

/// The data of a DATA frame (padding removed; a truncated frame's padding was not kept).
#[must_use]
pub fn data(frame: &Frame) -> &[u8] {
    let p = frame.payload.as_slice();
    if frame.flags & flag::PADDED == 0 || p.is_empty() {
        return p;
    }
    let pad = usize::from(p[0]);
    let body = &p[1..];
    if frame.truncated {
        return body;
    }
    &body[..body.len().saturating_sub(pad)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_split_anywhere_are_found() {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(kind::HEADERS, 0x5, 1, b"\x82\x84"));
        bytes.extend(frame(kind::DATA, 0x1, 1, br#"{"model":"m"}"#));
        for cut in 0..bytes.len() {
            let mut r = FrameReader::new(true);
            let mut out = Vec::new();
            r.push(&bytes[..cut], cut as u64, &mut out).unwrap();
            r.push(&bytes[cut..], (bytes.len() - cut) as u64, &mut out)
                .unwrap();
            let kinds: Vec<u8> = out.iter().map(|f| f.kind).collect();
            assert_eq!(
                kinds,
                [kind::SETTINGS, kind::HEADERS, kind::DATA],
                "cut {cut}"
            );
            assert_eq!(data(&out[2]), br#"{"model":"m"}"#);
        }
    }

    #[test]
    fn bytes_missing_inside_a_payload_are_skipped() {
        let mut bytes = frame(kind::DATA, 0, 1, &[7; 1000]);
        bytes.extend(frame(kind::HEADERS, 0x5, 3, b"\x82"));
        let mut r = FrameReader::new(false);
        let mut out = Vec::new();
        // The kernel captured 100 bytes of a 1009-byte buffer, then the next buffer whole.
        r.push(&bytes[..100], 1009, &mut out).unwrap();
        r.push(&bytes[1009..], (bytes.len() - 1009) as u64, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].truncated);
        assert_eq!(out[0].payload.len(), 91);
        assert_eq!((out[1].kind, out[1].stream), (kind::HEADERS, 3));
    }

    #[test]
    fn a_gap_over_a_frame_header_or_garbage_is_lost() {
        let bytes = frame(kind::DATA, 0, 1, &[7; 10]);
        let mut r = FrameReader::new(false);
        let mut out = Vec::new();
        assert_eq!(r.push(&bytes[..5], 100, &mut out), Err(Lost::Gap));
        let mut r = FrameReader::new(true);
        assert_eq!(
            r.push(b"GET / HTTP/1.1\r\n", 16, &mut out),
            Err(Lost::Malformed)
        );
        let mut r = FrameReader::new(false);
        assert_eq!(
            r.push(&frame(kind::HEADERS, 0, 0, b"x"), 10, &mut out),
            Err(Lost::Malformed)
        );
    }

    #[test]
    fn fragments_lose_padding_and_priority() {
        let f = Frame {
            kind: kind::HEADERS,
            flags: flag::PADDED | flag::PRIORITY,
            stream: 1,
            payload: b"\x02\0\0\0\x03\x10\x82\x84pp".to_vec(),
            truncated: false,
        };
        assert_eq!(header_fragment(&f), Some(&b"\x82\x84"[..]));
        let f = Frame {
            payload: b"\x09x".to_vec(),
            ..f
        };
        assert_eq!(header_fragment(&f), None);
    }
}

//! An HTTP/1.1 response as the capture saw it: the head (status, `Content-Type`,
//! `Content-Encoding`, `Transfer-Encoding`, `Content-Length`), the body unchunked and
//! decompressed (bounded), and whether the response is complete yet.

use std::io::Read;

/// What a response head says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// Lowercased media type, without parameters.
    pub content_type: String,
    pub gzip: bool,
    pub deflate: bool,
    pub chunked: bool,
    pub content_length: Option<u64>,
    /// Where the body starts.
    pub body_offset: usize,
}

impl ResponseHead {
    #[must_use]
    pub fn is_amazon_event_stream(&self) -> bool {
        self.content_type == "application/vnd.amazon.eventstream"
    }

    #[must_use]
    pub fn is_ndjson(&self) -> bool {
        matches!(
            self.content_type.as_str(),
            "application/x-ndjson" | "application/jsonl" | "application/json-lines"
        )
    }

    #[must_use]
    pub fn is_event_stream(&self) -> bool {
        self.content_type == "text/event-stream"
    }
}

/// The head of a response that starts `HTTP/1.x NNN`; `None` until the head is whole.
#[must_use]
pub fn parse_head(raw: &[u8]) -> Option<ResponseHead> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?;
    let status = rest.get(..3)?.parse().ok()?;
    let mut out = ResponseHead {
        status,
        body_offset: end + 4,
        ..ResponseHead::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => {
                value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .clone_into(&mut out.content_type);
            }
            "content-encoding" => {
                out.gzip = value.contains("gzip");
                out.deflate = value.contains("deflate");
            }
            "transfer-encoding" => out.chunked = value.contains("chunked"),
            "content-length" => out.content_length = value.parse().ok(),
            _ => {}
        }
    }
    Some(out)
}

/// Longest chunk-size line read (the size and its extensions): a longer one is no chunk framing.
/// Honest servers write a few hex digits; the bound keeps a line that never ends from being
/// waited for over the whole capture.
const SIZE_LINE_MAX: usize = 1024;

/// Tells when a response being captured is complete. [`Completion::check`] is given everything
/// captured so far on every read, and a response can arrive one byte per read, so it reads each
/// byte a bounded number of times: it keeps where the next chunk starts and how far the search
/// for the end it waits for (the head's, a chunk-size line's, the trailers') has read, and goes
/// on from there.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    head: Option<ResponseHead>,
    /// The head ended but is no HTTP/1.x response head: never complete.
    no_head: bool,
    /// Offset of the next chunk-size line (chunked bodies); past the bytes captured while a
    /// chunk's data is awaited.
    next_chunk: usize,
    /// Where the last chunk's size line ends (its `\r\n`): the end of its trailers is awaited.
    trailers_from: Option<usize>,
    /// Where the search for the end now awaited goes on: no match starts before it.
    resume: usize,
    done: bool,
}

impl Completion {
    /// Whether `raw` (everything captured of the response so far, the bytes given before
    /// unchanged) is the whole response. Without `Content-Length` or chunking the response ends
    /// with the connection, which the capture does not see: never complete here.
    pub fn check(&mut self, raw: &[u8]) -> bool {
        if self.done {
            return true;
        }
        if self.head.is_none() {
            if self.no_head {
                return false;
            }
            let Some(end) = self.find_resumed(raw, 0, b"\r\n\r\n") else {
                return false;
            };
            // Read once: the bytes of a head never change.
            self.head = parse_head(&raw[..end + 4]);
            self.no_head = self.head.is_none();
            self.next_chunk = self.head.as_ref().map_or(0, |h| h.body_offset);
        }
        let Some(head) = &self.head else {
            return false;
        };
        self.done = if matches!(head.status, 100..=199 | 204 | 304) {
            true
        } else if head.chunked {
            self.chunks(raw)
        } else if let Some(len) = head.content_length {
            (raw.len() - head.body_offset.min(raw.len())) as u64 >= len
        } else {
            false
        };
        self.done
    }

    /// The response's head, once it is whole.
    #[must_use]
    pub fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    /// Reads the chunks captured since the last call: true once the last chunk and its
    /// trailers are in, or the body turned out not to be chunk framing.
    fn chunks(&mut self, raw: &[u8]) -> bool {
        loop {
            if let Some(from) = self.trailers_from {
                // The last chunk ends with an empty line (after any trailers).
                return self.find_resumed(raw, from, b"\r\n\r\n").is_some();
            }
            let at = self.next_chunk;
            if raw.len() < at {
                // The data of the chunk before is still coming.
                return false;
            }
            let line_max = raw.len().min(at.saturating_add(SIZE_LINE_MAX + 2));
            let Some(eol) = self.find_resumed(&raw[..line_max], at, b"\r\n") else {
                // The line's end is still coming, unless the line is already longer than the
                // bound: then it is not chunk framing after all.
                return line_max - at == SIZE_LINE_MAX + 2;
            };
            let size_text = std::str::from_utf8(&raw[at..eol]).unwrap_or("");
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_text, 16) else {
                // Not chunk framing after all: nothing more can be read as chunks.
                return true;
            };
            if size == 0 {
                self.trailers_from = Some(eol);
                continue;
            }
            // A size no capture can hold (a hostile `ffffffffffffffec` would wrap the sum back
            // to `at`, and the same chunk would be read forever): not chunk framing.
            let Some(next) = (eol + 4).checked_add(size) else {
                return true;
            };
            self.next_chunk = next;
        }
    }

    /// Where `needle` first starts at or after `from` in `raw`, going on from where the last
    /// search for the same end stopped: over all calls each byte is read at most
    /// `needle.len()` times, however little was captured between them.
    fn find_resumed(&mut self, raw: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
        let start = from.max(self.resume).min(raw.len());
        let found = find(&raw[start..], needle).map(|i| start + i);
        self.resume = match found {
            // The next search is for another end, from where its caller says.
            Some(_) => 0,
            // A match may start in the last bytes read and end in bytes still to come.
            None => raw.len().saturating_sub(needle.len() - 1).max(start),
        };
        found
    }
}

/// The body of a captured response: unchunked and decompressed, at most `max` bytes. The flag
/// says the body was cut short (the capture, or `max`).
#[must_use]
pub fn body(raw: &[u8], head: &ResponseHead, max: usize) -> (Vec<u8>, bool) {
    let rest = raw.get(head.body_offset..).unwrap_or_default();
    let (encoded, mut partial) = if head.chunked {
        unchunk(rest)
    } else {
        let want = head.content_length.map_or(rest.len(), |l| l as usize);
        (rest[..want.min(rest.len())].to_vec(), rest.len() < want)
    };
    if !head.gzip && !head.deflate {
        let cut = encoded.len() > max;
        let mut encoded = encoded;
        encoded.truncate(max);
        return (encoded, partial || cut);
    }
    let mut out = Vec::new();
    let reader: Box<dyn Read> = if head.gzip {
        Box::new(flate2::read::GzDecoder::new(&encoded[..]))
    } else {
        Box::new(flate2::read::ZlibDecoder::new(&encoded[..]))
    };
    // A cut gzip stream fails at its end: what was inflated before stays.
    let mut limited = reader.take(max as u64 + 1);
    let mut buf = [0u8; 8192];
    loop {
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {
                partial = true;
                break;
            }
        }
    }
    if out.len() > max {
        out.truncate(max);
        partial = true;
    }
    (out, partial)
}

/// The data of a chunked body; the flag says the last chunk was not seen.
fn unchunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(rest.len());
    loop {
        // A size line longer than the bound is no chunk framing, as for `Completion`.
        let Some(eol) = find(&rest[..rest.len().min(SIZE_LINE_MAX + 2)], b"\r\n") else {
            return (out, true);
        };
        let size_text = std::str::from_utf8(&rest[..eol]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (out, true);
        };
        if size == 0 {
            return (out, false);
        }
        let data = &rest[eol + 2..];
        if data.len() < size {
            out.extend_from_slice(data);
            return (out, true);
        }
        out.extend_from_slice(&data[..size]);
        rest = data.get(size + 2..).unwrap_or_default();
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let found = haystack.windows(needle.len()).position(|w| w == needle);
    #[cfg(test)]
    tests::SEARCHED.with(|n| n.set(n.get() + found.map_or(haystack.len(), |i| i + needle.len())));
    found
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, io::Write};

    use super::*;

    thread_local! {
        /// Bytes [`find`] has read on this thread.
        pub(super) static SEARCHED: Cell<usize> = const { Cell::new(0) };
    }

    fn chunked(body: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in body.chunks(size) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn chunked_gzip_bodies_are_read_and_completion_is_seen_once() {
        let json = br#"{"id":"x","usage":{"prompt_tokens":3}}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        let gz = gz.finish().unwrap();
        let mut raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n\
            Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        raw.extend(chunked(&gz, 7));
        let head = parse_head(&raw).unwrap();
        assert_eq!(head.content_type, "application/json");
        assert!(head.gzip && head.chunked);
        assert_eq!(body(&raw, &head, 1 << 20), (json.to_vec(), false));
        let mut c = Completion::default();
        for end in 0..raw.len() {
            assert!(!c.check(&raw[..end]), "complete at {end} of {}", raw.len());
        }
        assert!(c.check(&raw));
        // Cut short: what was inflated is kept, and said to be partial.
        let cut = &raw[..raw.len() - 12];
        let (b, partial) = body(cut, &head, 1 << 20);
        assert!(partial);
        assert!(json.starts_with(&b));
    }

    #[test]
    fn content_length_bounds_and_limits() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        let head = parse_head(raw).unwrap();
        assert_eq!(body(raw, &head, 100), (b"hello".to_vec(), false));
        assert_eq!(body(raw, &head, 3), (b"hel".to_vec(), true));
        assert!(Completion::default().check(raw));
        assert!(!Completion::default().check(&raw[..40]));
        assert!(!Completion::default().check(b"HTTP/1.1 200 OK\r\nContent-Ty"));
        assert!(parse_head(b"HTTP/2 200\r\n\r\n").is_none());
    }

    #[test]
    fn chunk_sizes_that_wrap_end_the_framing_instead_of_looping() {
        // `at + line + 4 + size` wraps to `at` itself for this size: the same chunk read
        // forever on the ring reader's thread (a panic in debug builds).
        let wraps = usize::MAX - 19;
        for size in [wraps, usize::MAX, usize::MAX - 3] {
            let raw =
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size:x}\r\nabc\r\n");
            assert!(Completion::default().check(raw.as_bytes()), "{size:x}");
            let head = parse_head(raw.as_bytes()).unwrap();
            assert_eq!(
                body(raw.as_bytes(), &head, 100),
                (b"abc\r\n".to_vec(), true)
            );
        }
    }

    /// `raw` given to a fresh `Completion` as a capture would give it: its first `first` bytes
    /// in one read, then one byte per read. Returns the length at which it was first complete.
    /// After every read, the bytes searched so far must stay within a few times the bytes
    /// captured (each byte read a bounded number of times), not grow with their square.
    fn one_byte_per_read(raw: &[u8], first: usize) -> Option<usize> {
        let mut c = Completion::default();
        let before = SEARCHED.with(Cell::get);
        let mut complete = None;
        for end in first..=raw.len() {
            if c.check(&raw[..end]) && complete.is_none() {
                complete = Some(end);
            }
            let searched = SEARCHED.with(Cell::get) - before;
            assert!(
                searched <= 8 * end,
                "{searched} bytes searched for {end} captured"
            );
        }
        complete
    }

    const RESPONSE: usize = 256 << 10;

    #[test]
    fn a_head_that_never_ends_is_read_once() {
        let mut raw = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        raw.resize(RESPONSE, b'a');
        assert_eq!(one_byte_per_read(&raw, 1), None);
        // One that ends is read as before.
        raw.truncate(100);
        raw.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(one_byte_per_read(&raw, 1), Some(raw.len()));
    }

    #[test]
    fn a_chunk_size_line_that_never_ends_is_no_chunk_framing() {
        // The head in one read, the body one byte per read.
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut raw = head.to_vec();
        raw.extend_from_slice(b"5;ext=");
        raw.resize(RESPONSE, b'a');
        // Complete (nothing more is read as chunks) once the line is past the bound.
        assert_eq!(
            one_byte_per_read(&raw, head.len()),
            Some(head.len() + SIZE_LINE_MAX + 2)
        );
        // Lines within the bound are chunks, each waited for without reading it again.
        let mut raw = head.to_vec();
        let mut data = Vec::new();
        while raw.len() < RESPONSE {
            let mut line = b"80;ext=".to_vec();
            line.resize(SIZE_LINE_MAX, b'a');
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
            raw.extend_from_slice(&[b'x'; 0x80]);
            raw.extend_from_slice(b"\r\n");
            data.extend_from_slice(&[b'x'; 0x80]);
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(one_byte_per_read(&raw, head.len()), Some(raw.len()));
        let parsed = parse_head(&raw).unwrap();
        assert_eq!(body(&raw, &parsed, RESPONSE), (data, false));
    }

    #[test]
    fn trailers_that_never_end_are_read_once() {
        // The head in one read, the body one byte per read.
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut raw = head.to_vec();
        raw.extend_from_slice(b"2\r\nok\r\n0\r\nX-T: ");
        raw.resize(RESPONSE, b'a');
        assert_eq!(one_byte_per_read(&raw, head.len()), None);
        raw.truncate(100);
        raw.extend_from_slice(b"\r\nX-U: b\r\n\r\n");
        assert_eq!(one_byte_per_read(&raw, head.len()), Some(raw.len()));
    }

    #[test]
    fn read_in_pieces_or_at_once_a_response_completes_at_the_same_byte() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let responses = [
            format!(
                "{head}3\r\nabc\r\n10;name=value\r\n{}\r\n0\r\n\r\n",
                "x".repeat(16)
            ),
            format!("{head}1\r\n\r\r\n0\r\nA: b\r\nC: \r\n\r\r\n\r\n"),
            // A size line as long as the bound.
            format!(
                "{head}3;{}\r\nabc\r\n0\r\n\r\n",
                "e".repeat(SIZE_LINE_MAX - 2)
            ),
            // A size line one byte longer than the bound.
            format!(
                "{head}3;{}\r\nabc\r\n0\r\n\r\n",
                "e".repeat(SIZE_LINE_MAX - 1)
            ),
            format!("{head}zz\r\n"),
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc".into(),
            "HTTP/2 200\r\n\r\n\r\n\r\n".into(),
        ];
        for raw in responses.iter().map(String::as_bytes) {
            let mut pieces = Completion::default();
            for end in 0..=raw.len() {
                assert_eq!(
                    pieces.check(&raw[..end]),
                    Completion::default().check(&raw[..end]),
                    "{end} bytes of {:?}",
                    String::from_utf8_lossy(raw)
                );
            }
            // Each is complete (or no chunk framing) at its end, but the one that is no HTTP/1.
            assert_eq!(pieces.check(raw), !raw.starts_with(b"HTTP/2"));
        }
    }
}

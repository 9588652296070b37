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

/// Tells when a response being captured is complete, reading each byte once: keeps where the
/// next chunk header is.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    head: Option<ResponseHead>,
    /// Offset of the next chunk-size line (chunked bodies).
    next_chunk: usize,
    done: bool,
}

impl Completion {
    /// Whether `raw` (everything captured of the response so far) is the whole response.
    /// Without `Content-Length` or chunking the response ends with the connection, which the
    /// capture does not see: never complete here.
    pub fn check(&mut self, raw: &[u8]) -> bool {
        if self.done {
            return true;
        }
        if self.head.is_none() {
            self.head = parse_head(raw);
            self.next_chunk = self.head.as_ref().map_or(0, |h| h.body_offset);
        }
        let Some(head) = &self.head else {
            return false;
        };
        self.done = if matches!(head.status, 100..=199 | 204 | 304) {
            true
        } else if head.chunked {
            loop {
                match chunk_at(raw, self.next_chunk) {
                    Chunk::Data { next } => self.next_chunk = next,
                    Chunk::Last => break true,
                    Chunk::Incomplete => break false,
                }
            }
        } else if let Some(len) = head.content_length {
            (raw.len() - head.body_offset.min(raw.len())) as u64 >= len
        } else {
            false
        };
        self.done
    }
}

enum Chunk {
    Data { next: usize },
    Last,
    Incomplete,
}

/// The chunk whose size line starts at `at`.
fn chunk_at(raw: &[u8], at: usize) -> Chunk {
    let Some(rest) = raw.get(at..) else {
        return Chunk::Incomplete;
    };
    let Some(eol) = find(rest, b"\r\n") else {
        return Chunk::Incomplete;
    };
    let size_text = std::str::from_utf8(&rest[..eol]).unwrap_or("");
    let size_text = size_text.split(';').next().unwrap_or("").trim();
    let Ok(size) = usize::from_str_radix(size_text, 16) else {
        // Not chunk framing after all: nothing more can be read as chunks.
        return Chunk::Last;
    };
    if size == 0 {
        // The last chunk ends with an empty line (after any trailers).
        return if find(&rest[eol..], b"\r\n\r\n").is_some() {
            Chunk::Last
        } else {
            Chunk::Incomplete
        };
    }
    // A size no capture can hold (a hostile `ffffffffffffffec` would wrap the sum back to
    // `at`, and the caller would read the same chunk forever): not chunk framing.
    let Some(next) = (at + eol + 4).checked_add(size) else {
        return Chunk::Last;
    };
    if raw.len() < next {
        Chunk::Incomplete
    } else {
        Chunk::Data { next }
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
        let Some(eol) = find(rest, b"\r\n") else {
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
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

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
}

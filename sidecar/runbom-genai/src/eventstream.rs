//! `application/vnd.amazon.eventstream` bodies (Bedrock's `converse-stream`): binary messages,
//! each a prelude (total length, headers length: big-endian `u32`s; their CRC-32), headers
//! (name length `u8`, name, value type `u8`, value), the payload and the message's CRC-32.
//! Each message whose checksums hold is returned with its `:event-type` (or, for an exception,
//! its `:exception-type`); reading stops at the first that is cut short or does not check out
//! (the stream cannot be resynchronised after it).

/// One message of the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// `:event-type` (`messageStart`, `contentBlockDelta`, `metadata`, …).
    pub event_type: Option<&'a str>,
    /// `:exception-type` of an exception message (`throttlingException`, …).
    pub exception_type: Option<&'a str>,
    pub payload: &'a [u8],
}

/// Prelude (12 bytes) plus the message CRC (4).
const OVERHEAD: usize = 16;

/// The messages of `body`, in order.
pub fn messages(body: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let (message, next) = message(rest)?;
        rest = next;
        Some(message)
    })
}

fn message(b: &[u8]) -> Option<(Message<'_>, &[u8])> {
    let u32_at = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(bytes)).ok()
    };
    let (total, headers_len, prelude_crc) = (u32_at(0)?, u32_at(4)?, u32_at(8)?);
    if total < OVERHEAD + headers_len || total > b.len() {
        return None;
    }
    if usize::try_from(crc32fast::hash(&b[..8])).ok()? != prelude_crc
        || usize::try_from(crc32fast::hash(&b[..total - 4])).ok()? != u32_at(total - 4)?
    {
        return None;
    }
    let mut out = Message {
        event_type: None,
        exception_type: None,
        payload: &b[12 + headers_len..total - 4],
    };
    let mut h = &b[12..12 + headers_len];
    while let Some((&name_len, after)) = h.split_first() {
        let name = after.get(..usize::from(name_len))?;
        let after = &after[usize::from(name_len)..];
        let (&kind, after) = after.split_first()?;
        let (value, next) = header_value(kind, after)?;
        match (name, value) {
            (b":event-type", Some(v)) => out.event_type = std::str::from_utf8(v).ok(),
            (b":exception-type", Some(v)) => out.exception_type = std::str::from_utf8(v).ok(),
            _ => {}
        }
        h = next;
    }
    Some((out, &b[total..]))
}

/// A header's value (`Some` for strings and byte arrays) and what follows it; `None` for a
/// type this format does not define.
fn header_value(kind: u8, b: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let fixed = |n: usize| b.get(n..).map(|rest| (None, rest));
    match kind {
        0 | 1 => fixed(0), // true, false
        2 => fixed(1),     // byte
        3 => fixed(2),     // short
        4 => fixed(4),     // integer
        5 | 8 => fixed(8), // long, timestamp
        6 | 7 => {
            // byte array, string: a 2-byte length first
            let len = usize::from(u16::from_be_bytes(b.get(..2)?.try_into().ok()?));
            let value = b.get(2..2 + len)?;
            Some((Some(value), &b[2 + len..]))
        }
        9 => fixed(16), // uuid
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as the format frames it, with one string header.
    fn frame(event_type: &str, payload: &[u8]) -> Vec<u8> {
        let mut headers = vec![11];
        headers.extend(b":event-type");
        headers.push(7);
        headers.extend(u16::try_from(event_type.len()).unwrap().to_be_bytes());
        headers.extend(event_type.as_bytes());
        let total = OVERHEAD + headers.len() + payload.len();
        let mut m = Vec::new();
        m.extend(u32::try_from(total).unwrap().to_be_bytes());
        m.extend(u32::try_from(headers.len()).unwrap().to_be_bytes());
        m.extend(crc32fast::hash(&m).to_be_bytes());
        m.extend(headers);
        m.extend(payload);
        m.extend(crc32fast::hash(&m).to_be_bytes());
        m
    }

    #[test]
    fn messages_are_read_until_one_does_not_check_out() {
        let mut body = frame("messageStart", br#"{"role":"assistant"}"#);
        body.extend(frame("messageStop", br#"{"stopReason":"end_turn"}"#));
        let mut bad = frame("metadata", b"{}");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        body.extend(bad);
        body.extend(frame("metadata", b"{}"));
        let got: Vec<_> = messages(&body).map(|m| m.event_type).collect();
        assert_eq!(got, [Some("messageStart"), Some("messageStop")]);
        // Cut short: nothing past the last whole message.
        let whole = frame("messageStart", b"{}");
        assert_eq!(messages(&whole[..whole.len() - 1]).count(), 0);
    }
}

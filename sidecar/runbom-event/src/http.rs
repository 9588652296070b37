//! HTTP/1.x request heads as captured by the kernel side: parsing (method, target, `Host`,
//! `traceparent`, `User-Agent`, `Content-Length`), the `model` of an LLM API request body,
//! response status lines, and redaction (`docs/telemetry-contract.md` §5) before anything leaves
//! here.
//!
//! Nothing here keeps header values other than those named above: `Authorization`, `Cookie`
//! and the like are never copied out of the captured bytes, and the body is read only for
//! `model`.

use crate::{event::TraceParent, redact};

/// Methods the kernel side recognises (it checks the first four bytes; this checks the token).
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// Longest value kept of a header or of `model`.
const VALUE_MAX: usize = 512;

/// What a captured request head says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target with query values redacted.
    pub target: String,
    pub host: Option<String>,
    pub traceparent: Option<TraceParent>,
    pub user_agent: Option<String>,
    pub content_length: Option<u64>,
    /// `Content-Type` names JSON (where LLM APIs put `model`).
    pub json: bool,
    /// Where the body starts in the captured bytes (`None`: the head was cut short).
    pub body_offset: Option<usize>,
    /// `Mcp-Session-Id` (MCP's streamable HTTP: sent with every request after `initialize`), as
    /// its digest ([`redact::digest`]): the value itself could resume the session.
    pub mcp_session_id: Option<String>,
}

/// Parses a request head from the start of `data`. `None` unless the request line is a
/// well-formed HTTP/1.x one. A head cut short by the capture budget keeps the headers seen.
#[must_use]
pub fn parse_head(data: &[u8]) -> Option<Head> {
    let (line, mut rest) = split_line(data)?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !METHODS.contains(&method)
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
        || target.is_empty()
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return None;
    }
    let mut head = Head {
        method: method.to_owned(),
        target: redact_target(target),
        ..Head::default()
    };
    let start = data.len();
    // Without a line end the head was cut short: the rest was not captured.
    while let Some((line, next)) = split_line(rest) {
        if line.is_empty() {
            head.body_offset = Some(start - next.len());
            break;
        }
        rest = next;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii());
        let exported = || redact::text_cut(&value, VALUE_MAX);
        if name.eq_ignore_ascii_case(b"host") {
            head.host = Some(exported());
        } else if name.eq_ignore_ascii_case(b"traceparent") {
            head.traceparent = parse_traceparent(&value);
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            head.user_agent = Some(exported());
        } else if name.eq_ignore_ascii_case(b"content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case(b"content-type") {
            head.json = value.to_ascii_lowercase().contains("json");
        } else if name.eq_ignore_ascii_case(b"mcp-session-id") {
            head.mcp_session_id = Some(redact::digest(&value));
        }
    }
    Some(head)
}

/// The next line (without its `\r\n` or `\n`) and what follows it; `None` without a newline.
fn split_line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let nl = data.iter().position(|&b| b == b'\n')?;
    let line = &data[..nl];
    Some((line.strip_suffix(b"\r").unwrap_or(line), &data[nl + 1..]))
}

/// The target with every query value replaced by `[REDACTED]` and API-key-shaped path segments
/// redacted ([`redact::url`], which also does the URLs of command lines and free text).
#[must_use]
pub fn redact_target(target: &str) -> String {
    redact::url(target).into_owned()
}

/// A W3C `traceparent` value: `00-<32 hex>-<16 hex>-<2 hex>` (later versions may append
/// `-…`); all-zero ids and version `ff` are invalid.
#[must_use]
pub fn parse_traceparent(v: &str) -> Option<TraceParent> {
    let v = v.trim();
    let b = v.as_bytes();
    if b.len() < 55 || (b.len() > 55 && (b[0..2] == *b"00" || b[55] != b'-')) {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let lower_hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !lower_hex(&b[0..2]) || &b[0..2] == b"ff" {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex_into(&b[3..35], &mut trace_id)?;
    hex_into(&b[36..52], &mut span_id)?;
    let mut flags = [0u8; 1];
    hex_into(&b[53..55], &mut flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

fn hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (o, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

/// The top-level-looking `"model": "…"` of a JSON request body (the `OpenAI` and Anthropic APIs
/// and most others name the model so), redacted and bounded. A `"model"` inside a JSON string is
/// escaped (`\"model\"`) and does not match.
#[must_use]
pub fn model(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"model\"";
    let mut from = 0;
    while let Some(at) = find(&body[from..], KEY).map(|i| i + from) {
        from = at + KEY.len();
        if at > 0 && body[at - 1] == b'\\' {
            continue;
        }
        let rest = body[from..].trim_ascii_start();
        let Some(rest) = rest.strip_prefix(b":") else {
            continue;
        };
        let Some(rest) = rest.trim_ascii_start().strip_prefix(b"\"") else {
            continue;
        };
        let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
        if rest.get(end) != Some(&b'"') || end == 0 || end > VALUE_MAX {
            return None;
        }
        let name = std::str::from_utf8(&rest[..end]).ok()?;
        if !name.chars().all(|c| !c.is_control()) {
            return None;
        }
        return Some(redact::text(name).into_owned());
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status code of a response that starts `HTTP/1.x NNN`.
#[must_use]
pub fn status(data: &[u8]) -> Option<u16> {
    let rest = data
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| data.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ' && b != b'\r')
    {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn heads_parse_past_long_headers() {
        let filler = "x".repeat(5000);
        let req = format!(
            "POST /v1/chat/completions?api_key=abc&mode=x HTTP/1.1\r\nX-Filler: {filler}\r\n\
             Authorization: Bearer sk-{key}\r\ntraceparent: {TP}\r\nHost: api.example.com:8443\r\n\
             User-Agent: agent/1.0\r\nContent-Length: 42\r\n\r\n{{\"model\":\"gpt-4o-mini\"}}",
            key = "a".repeat(40)
        );
        let head = parse_head(req.as_bytes()).expect("a request");
        assert_eq!(head.method, "POST");
        assert_eq!(
            head.target,
            "/v1/chat/completions?api_key=[REDACTED]&mode=[REDACTED]"
        );
        assert_eq!(head.host.as_deref(), Some("api.example.com:8443"));
        assert_eq!(head.user_agent.as_deref(), Some("agent/1.0"));
        assert_eq!(head.content_length, Some(42));
        assert!(!head.json);
        let tp = head.traceparent.expect("traceparent");
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.span_id[7], 0xb7);
        assert!(tp.sampled);
        let body = &req.as_bytes()[head.body_offset.expect("complete head")..];
        assert_eq!(model(body).as_deref(), Some("gpt-4o-mini"));
        // Nothing of the Authorization header is kept anywhere.
        assert!(!format!("{head:?}").contains("sk-"));
    }

    /// A header value is redacted whole before it is cut: a key that straddles the cut is not
    /// exported in part. An MCP session id is exported as its digest.
    #[test]
    fn header_values_are_redacted_before_they_are_cut() {
        let key = format!("sk-{}", "k".repeat(40));
        let req = format!(
            "POST /mcp HTTP/1.1\r\nUser-Agent: {pad} {key}\r\nMcp-Session-Id: 1868a90c-4a9f-4cb8\r\n\r\n",
            pad = "a".repeat(VALUE_MAX - 10)
        );
        let head = parse_head(req.as_bytes()).expect("a request");
        let agent = head.user_agent.expect("user agent");
        assert_eq!(agent.chars().count(), VALUE_MAX);
        assert!(agent.ends_with(" [REDACTED"), "{agent}");
        assert!(!agent.contains("sk-"), "{agent}");
        let session = head.mcp_session_id.expect("session");
        assert_eq!(session, redact::digest("1868a90c-4a9f-4cb8"));
        assert_eq!(session.len(), 32);
        assert!(!session.contains("1868a90c"));
    }

    #[test]
    fn cut_heads_keep_what_was_seen() {
        let head = parse_head(b"GET /a HTTP/1.0\r\nHost: h\r\nUser-Ag").expect("a request");
        assert_eq!(head.host.as_deref(), Some("h"));
        assert_eq!(head.user_agent, None);
        assert_eq!(head.body_offset, None);
    }

    #[test]
    fn non_requests_are_refused() {
        for bad in [
            &b"GET /a HTTP/2\r\n\r\n"[..],
            b"GETS /a HTTP/1.1\r\n",
            b"GET  HTTP/1.1\r\n",
            b"POST /a b HTTP/1.1\r\n",
            b"GET /a HTTP/1.1", // no line end
            b"\x16\x03\x01\x02\x00",
        ] {
            assert_eq!(parse_head(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn traceparents() {
        assert!(parse_traceparent(TP).is_some());
        assert!(
            !parse_traceparent(&TP.replace("-01", "-00"))
                .unwrap()
                .sampled
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        // A later version may append fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
    }

    #[test]
    fn models() {
        assert_eq!(
            model(br#"{"messages":[{"role":"user","content":"say \"model\": \"x\""}], "model" : "claude-3-5-sonnet"}"#)
                .as_deref(),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(model(br#"{"model": 3}"#), None);
        assert_eq!(model(br#"{"modelx":"a"}"#), None);
        assert_eq!(model(br#"{"model":"gpt-4o"#), None, "cut short");
        let key = format!(r#"{{"model":"sk-{}"}}"#, "b".repeat(30));
        assert_eq!(model(key.as_bytes()).as_deref(), Some("[REDACTED]"));
    }

    #[test]
    fn statuses() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status(b"HTTP/1.0 404\r\n"), Some(404));
        assert_eq!(status(b"HTTP/2 200\r\n"), None);
        assert_eq!(status(b"HTTP/1.1 20"), None);
    }

    #[test]
    fn targets() {
        assert_eq!(redact_target("/a/b"), "/a/b");
        assert_eq!(redact_target("/a?x"), "/a?x");
        assert_eq!(
            redact_target("/a?token=sk-123&b=2"),
            "/a?token=[REDACTED]&b=[REDACTED]"
        );
        let key = format!("/bot/ghp_{}/x", "c".repeat(36));
        assert_eq!(redact_target(&key), "/bot/[REDACTED]/x");
    }
}

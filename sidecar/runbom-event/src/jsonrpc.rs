//! JSON-RPC 2.0 messages as MCP exchanges them: newline-delimited over stdio (captured at the
//! pipe or socket write), or the body of a streamable-HTTP request or response
//! (`application/json`, or `text/event-stream` whose `data:` lines hold the messages).
//!
//! The kernel copies a bounded prefix of each write, so a large message (a `tools/list` result,
//! a `write_file` call with a big `content`) arrives cut short. Such a prefix is closed at its
//! last complete value before it is parsed ([`close_prefix`]): what it names up to the cut
//! (`method`, `id` when written first, `params.name`) is kept. The TypeScript SDK writes `id`
//! last; the kernel then hands over the write's last bytes, from which [`id_in_tail`] reads it.
//!
//! Only what the telemetry contract exports is kept ([`Message`]), every string redacted and
//! bounded; tool arguments only as their redacted JSON text, for the caller to export or not.

use serde_json::{Map, Value};

use crate::{TraceParent, http::parse_traceparent, redact};

/// Longest string value kept (method, tool name, URI, version).
const VALUE_MAX: usize = 256;
/// Longest redacted arguments text kept.
const ARGUMENTS_MAX: usize = 1024;
/// Deepest nesting [`close_prefix`] follows (deeper prefixes are not repaired).
const DEPTH_MAX: usize = 64;
/// Most tool names kept of a `tools/list` result.
const TOOLS_MAX: usize = 128;

/// A JSON-RPC request id: a number or a string (redacted, bounded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    Number(i64),
    Str(String),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

/// What a message is: a request (method and id), a notification (method only) or a response
/// (id, and a result or an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// One JSON-RPC message, reduced to what runbom exports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub kind: Option<Kind>,
    pub id: Option<Id>,
    /// `method` (requests and notifications).
    pub method: Option<String>,
    /// `params.name`: the tool of `tools/call`, the prompt of `prompts/get`.
    pub name: Option<String>,
    /// `params.uri` (`resources/read`, `resources/subscribe`).
    pub uri: Option<String>,
    /// `params.protocolVersion` of `initialize`, or `result.protocolVersion` of its response.
    pub protocol_version: Option<String>,
    /// `params._meta.traceparent`: the caller's span, when the client propagated it.
    pub traceparent: Option<TraceParent>,
    /// `params.arguments` as redacted JSON text, bounded.
    pub arguments: Option<String>,
    /// `result.isError`: the tool ran and failed.
    pub tool_error: bool,
    /// `error.code` of a JSON-RPC error response.
    pub error_code: Option<i64>,
    /// `result.serverInfo.name` of an `initialize` response.
    pub server_name: Option<String>,
    /// `result.tools[].name` of a `tools/list` response.
    pub tools: Vec<String>,
    /// The message was cut short before it was parsed.
    pub truncated: bool,
}

/// The messages of one captured write (or HTTP body): each line that parses as a JSON-RPC 2.0
/// message (a JSON object with `"jsonrpc": "2.0"`, or a batch array of them). `complete` says
/// whether `data` is the whole write; when it is not, the last line is a prefix and `tail`
/// (the write's last bytes, possibly empty) may still name its `id`.
#[must_use]
pub fn parse_messages(data: &[u8], complete: bool, tail: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.into_iter().enumerate() {
        // Server-sent events carry each message on `data:` lines.
        let line = line.strip_prefix(b"data:").unwrap_or(line).trim_ascii();
        if line.first() != Some(&b'{') && line.first() != Some(&b'[') {
            continue;
        }
        let cut = i == last && !complete;
        let value = if cut {
            close_prefix(line).and_then(|l| serde_json::from_slice::<Value>(&l).ok())
        } else {
            serde_json::from_slice::<Value>(line).ok()
        };
        let Some(value) = value else { continue };
        let objects = match value {
            Value::Array(items) => items,
            v => vec![v],
        };
        for v in objects {
            let Value::Object(obj) = v else { continue };
            if let Some(mut m) = message(&obj, cut) {
                if cut && m.id.is_none() {
                    m.id = id_in_tail(tail);
                    if m.kind == Some(Kind::Notification) && m.id.is_some() {
                        m.kind = Some(Kind::Request);
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

/// A JSON-RPC 2.0 message out of a parsed object; `None` when it is not one. A cut message that
/// lost its `"jsonrpc"` key (the TypeScript SDK writes it last) is taken when it has a method or
/// a result.
fn message(obj: &Map<String, Value>, cut: bool) -> Option<Message> {
    let versioned = obj.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let answers_or_asks = ["method", "result", "error"]
        .iter()
        .any(|k| obj.contains_key(*k));
    if !(versioned || cut && answers_or_asks) {
        return None;
    }
    let mut m = Message {
        id: obj.get("id").and_then(id),
        method: obj.get("method").and_then(Value::as_str).map(bounded),
        truncated: cut,
        ..Message::default()
    };
    m.kind = Some(match (&m.method, &m.id) {
        (Some(_), Some(_)) => Kind::Request,
        (Some(_), None) => Kind::Notification,
        (None, _) if obj.contains_key("result") || obj.contains_key("error") => Kind::Response,
        // A cut response whose result was too large to close keeps only its kind unknown.
        (None, _) => return (cut && m.id.is_some()).then_some(m),
    });
    if let Some(Value::Object(params)) = obj.get("params") {
        m.name = params.get("name").and_then(Value::as_str).map(bounded);
        m.uri = params.get("uri").and_then(Value::as_str).map(bounded);
        m.protocol_version = params
            .get("protocolVersion")
            .and_then(Value::as_str)
            .map(bounded);
        m.traceparent = params
            .get("_meta")
            .and_then(|meta| meta.get("traceparent"))
            .and_then(Value::as_str)
            .and_then(parse_traceparent);
        m.arguments = params.get("arguments").map(arguments);
    }
    if let Some(Value::Object(result)) = obj.get("result") {
        m.tool_error = result.get("isError").and_then(Value::as_bool) == Some(true);
        m.protocol_version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .map(bounded);
        m.server_name = result
            .get("serverInfo")
            .and_then(|i| i.get("name"))
            .and_then(Value::as_str)
            .map(bounded);
        if let Some(Value::Array(tools)) = result.get("tools") {
            m.tools = tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .take(TOOLS_MAX)
                .map(bounded)
                .collect();
        }
    }
    if let Some(Value::Object(error)) = obj.get("error") {
        m.error_code = error.get("code").and_then(Value::as_i64);
    }
    Some(m)
}

fn id(v: &Value) -> Option<Id> {
    match v {
        Value::Number(n) => n.as_i64().map(Id::Number),
        Value::String(s) => Some(Id::Str(bounded(s))),
        _ => None,
    }
}

/// A string as exported: redacted, at most [`VALUE_MAX`] bytes (cut at a character boundary).
fn bounded(s: &str) -> String {
    let red = redact::text(s);
    cut_at(&red, VALUE_MAX).to_owned()
}

fn cut_at(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Tool arguments as redacted JSON text (secret-named keys' values replaced), bounded.
fn arguments(v: &Value) -> String {
    let text = serde_json::to_string(&redact_json(v)).unwrap_or_default();
    let red = redact::text(&text);
    cut_at(&red, ARGUMENTS_MAX).to_owned()
}

/// `v` with the values of secret-named keys (`password`, `api_key`, `token`, …) replaced.
fn redact_json(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = if redact::is_secret_name(k) {
                        Value::String(redact::REDACTED.into())
                    } else {
                        redact_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact_json).collect()),
        other => other.clone(),
    }
}

/// The `"id"` named in the last bytes of a write (`…,"jsonrpc":"2.0","id":7}`): the last
/// `"id":` followed by a number or a string.
#[must_use]
pub fn id_in_tail(tail: &[u8]) -> Option<Id> {
    const KEY: &[u8] = b"\"id\":";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = tail[at + KEY.len()..].trim_ascii_start();
    if let Some(s) = rest.strip_prefix(b"\"") {
        let end = s.iter().position(|&b| b == b'"' || b == b'\\')?;
        return (s[end] == b'"').then(|| Id::Str(bounded(&String::from_utf8_lossy(&s[..end]))));
    }
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end])
        .ok()?
        .parse()
        .ok()
        .map(Id::Number)
}

/// A prefix of a JSON document closed after its last complete value: cut at the last `,`
/// between members (or just after the last opening or closing bracket) outside strings, then
/// the containers still open there are closed. `None` when no such point exists or the nesting
/// is deeper than [`DEPTH_MAX`].
#[must_use]
pub fn close_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut stack: Vec<u8> = Vec::new();
    // (cut position, containers open there)
    let mut safe: Option<(usize, Vec<u8>)> = None;
    let mut in_string = false;
    let mut escaped = false;
    // In an object, a `,` that follows a complete member is safe; `expect_value` guards
    // against `{"a":` being cut after the colon (the cut happens at a comma, never there).
    for (i, &b) in prefix.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                if stack.len() >= DEPTH_MAX {
                    return None;
                }
                stack.push(b);
                safe = Some((i + 1, stack.clone()));
            }
            b'}' | b']' => {
                stack.pop();
                safe = Some((i + 1, stack.clone()));
            }
            b',' => safe = Some((i, stack.clone())),
            _ => {}
        }
    }
    let (at, open) = safe?;
    if open.is_empty() {
        // Complete already (nothing to close), or nothing was ever opened.
        return (at > 0).then(|| prefix[..at].to_vec());
    }
    let mut out = prefix[..at].to_vec();
    for &c in open.iter().rev() {
        out.push(if c == b'{' { b'}' } else { b']' });
    }
    Some(out)
}

#[cfg(test)]
#[path = "jsonrpc_tests.rs"]
mod tests;

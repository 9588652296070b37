//! OTLP/JSON of trace and log requests, written straight into a buffer: what the `file`
//! exporter writes per line. The bytes are those of `serde_json` on `opentelemetry-proto`'s
//! serde implementation (field names in camelCase in declaration order, every field written,
//! ids in lower-case hex, 64-bit times and `intValue` as decimal strings), without its
//! allocations: a `String` per timestamp, id and integer value, and a map serializer per
//! attribute value. `tests/encoders.rs` checks the bytes against `serde_json::to_vec` on the
//! test kit's requests and on random ones. Rare parts (span events and links, entity
//! references, `doubleValue` and `bytesValue`) and metrics requests go through serde.

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, EntityRef, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status},
};

use crate::convert::{LogHead, SpanHead};

/// A trace export request as OTLP/JSON, appended to `out`.
pub fn write_traces(r: &ExportTraceServiceRequest, out: &mut Vec<u8>) {
    write_traces_annotated(r, out, |_| &[]);
}

/// [`write_traces`], the span at position `i` (counting every span of the request in order)
/// with `extra(i)` after its own attributes: more `KeyValue` objects, comma-separated
/// ([`key_values`]).
pub(crate) fn write_traces_annotated<'x>(
    r: &ExportTraceServiceRequest,
    out: &mut Vec<u8>,
    extra: impl Fn(usize) -> &'x [u8],
) {
    let mut at = 0;
    let mut next = || {
        at += 1;
        extra(at - 1)
    };
    write_traces_with(out, |out| {
        array_with(out, &r.resource_spans, |out, r| {
            resource_spans(out, r, &mut next);
        });
    });
}

/// A trace export request object: `resource_spans` writes the array of `ResourceSpans`.
pub(crate) fn write_traces_with(out: &mut Vec<u8>, resource_spans: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"{\"resourceSpans\":");
    resource_spans(out);
    out.push(b'}');
}

/// `attributes` as `KeyValue` objects separated by commas, without the brackets: what
/// [`write_traces_with`] appends to a span's own.
pub(crate) fn key_values(attributes: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::new();
    array(&mut out, attributes, key_value);
    out.pop();
    out.remove(0);
    out
}

/// A log export request as OTLP/JSON, appended to `out`.
pub fn write_logs(r: &ExportLogsServiceRequest, out: &mut Vec<u8>) {
    write_logs_with(out, |out| array(out, &r.resource_logs, resource_logs));
}

/// A log export request object: `resource_logs` writes the array of `ResourceLogs`.
pub(crate) fn write_logs_with(out: &mut Vec<u8>, resource_logs: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"{\"resourceLogs\":");
    resource_logs(out);
    out.push(b'}');
}

fn resource_spans<'x>(out: &mut Vec<u8>, r: &ResourceSpans, extra: &mut impl FnMut() -> &'x [u8]) {
    resource_spans_with(
        out,
        |out| option(out, r.resource.as_ref(), resource),
        |out| array_with(out, &r.scope_spans, |out, s| scope_spans(out, s, extra)),
        &r.schema_url,
    );
}

/// A `ResourceSpans` object: `resource` writes the Resource (or `null`), `scope_spans` the
/// array of `ScopeSpans`.
pub(crate) fn resource_spans_with(
    out: &mut Vec<u8>,
    resource: impl FnOnce(&mut Vec<u8>),
    scope_spans: impl FnOnce(&mut Vec<u8>),
    schema_url: &str,
) {
    group(
        out,
        b"{\"resource\":",
        resource,
        b",\"scopeSpans\":",
        scope_spans,
        schema_url,
    );
}

fn scope_spans<'x>(out: &mut Vec<u8>, s: &ScopeSpans, extra: &mut impl FnMut() -> &'x [u8]) {
    scope_spans_with(
        out,
        s.scope.as_ref(),
        |out| array_with(out, &s.spans, |out, sp| span(out, sp, extra())),
        &s.schema_url,
    );
}

/// A `ScopeSpans` object: `spans` writes the array of spans.
pub(crate) fn scope_spans_with(
    out: &mut Vec<u8>,
    scope: Option<&InstrumentationScope>,
    spans: impl FnOnce(&mut Vec<u8>),
    schema_url: &str,
) {
    let scope = |out: &mut Vec<u8>| option(out, scope, self::scope);
    group(
        out,
        b"{\"scope\":",
        scope,
        b",\"spans\":",
        spans,
        schema_url,
    );
}

fn resource_logs(out: &mut Vec<u8>, r: &ResourceLogs) {
    resource_logs_with(
        out,
        |out| option(out, r.resource.as_ref(), resource),
        |out| array(out, &r.scope_logs, scope_logs),
        &r.schema_url,
    );
}

/// A `ResourceLogs` object: `resource` writes the Resource (or `null`), `scope_logs` the
/// array of `ScopeLogs`.
pub(crate) fn resource_logs_with(
    out: &mut Vec<u8>,
    resource: impl FnOnce(&mut Vec<u8>),
    scope_logs: impl FnOnce(&mut Vec<u8>),
    schema_url: &str,
) {
    group(
        out,
        b"{\"resource\":",
        resource,
        b",\"scopeLogs\":",
        scope_logs,
        schema_url,
    );
}

fn scope_logs(out: &mut Vec<u8>, s: &ScopeLogs) {
    scope_logs_with(
        out,
        s.scope.as_ref(),
        |out| array(out, &s.log_records, log_record),
        &s.schema_url,
    );
}

/// A `ScopeLogs` object: `log_records` writes the array of records.
pub(crate) fn scope_logs_with(
    out: &mut Vec<u8>,
    scope: Option<&InstrumentationScope>,
    log_records: impl FnOnce(&mut Vec<u8>),
    schema_url: &str,
) {
    let scope = |out: &mut Vec<u8>| option(out, scope, self::scope);
    group(
        out,
        b"{\"scope\":",
        scope,
        b",\"logRecords\":",
        log_records,
        schema_url,
    );
}

/// A resource or scope group (`ResourceSpans`, `ScopeSpans`, `ResourceLogs`, `ScopeLogs`): its
/// head (the Resource or scope) after `head_key`, its items' array after `items_key`, then its
/// schema URL.
fn group(
    out: &mut Vec<u8>,
    head_key: &[u8],
    head: impl FnOnce(&mut Vec<u8>),
    items_key: &[u8],
    items: impl FnOnce(&mut Vec<u8>),
    schema_url: &str,
) {
    out.extend_from_slice(head_key);
    head(out);
    out.extend_from_slice(items_key);
    items(out);
    out.extend_from_slice(b",\"schemaUrl\":");
    string(out, schema_url);
    out.push(b'}');
}

pub(crate) fn resource(out: &mut Vec<u8>, r: &Resource) {
    resource_with(
        out,
        |out| array(out, &r.attributes, key_value),
        r.dropped_attributes_count,
        &r.entity_refs,
    );
}

/// A Resource object: `attributes` writes the array of `KeyValue`s.
pub(crate) fn resource_with(
    out: &mut Vec<u8>,
    attributes: impl FnOnce(&mut Vec<u8>),
    dropped_attributes_count: u32,
    entity_refs: &[EntityRef],
) {
    out.extend_from_slice(b"{\"attributes\":");
    attributes(out);
    out.extend_from_slice(b",\"droppedAttributesCount\":");
    number(out, dropped_attributes_count);
    out.extend_from_slice(b",\"entityRefs\":");
    serde(out, entity_refs);
    out.push(b'}');
}

fn scope(out: &mut Vec<u8>, s: &InstrumentationScope) {
    out.extend_from_slice(b"{\"name\":");
    string(out, &s.name);
    out.extend_from_slice(b",\"version\":");
    string(out, &s.version);
    out.extend_from_slice(b",\"attributes\":");
    array(out, &s.attributes, key_value);
    out.extend_from_slice(b",\"droppedAttributesCount\":");
    number(out, s.dropped_attributes_count);
    out.push(b'}');
}

/// A span object, `extra` (more `KeyValue` objects, comma-separated) after its own
/// attributes.
fn span(out: &mut Vec<u8>, s: &Span, extra: &[u8]) {
    out.extend_from_slice(b"{\"traceId\":");
    hex(out, &s.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    hex(out, &s.span_id);
    out.extend_from_slice(b",\"traceState\":");
    string(out, &s.trace_state);
    out.extend_from_slice(b",\"parentSpanId\":");
    hex(out, &s.parent_span_id);
    out.extend_from_slice(b",\"flags\":");
    number(out, s.flags);
    out.extend_from_slice(b",\"name\":");
    string(out, &s.name);
    out.extend_from_slice(b",\"kind\":");
    number(out, s.kind);
    out.extend_from_slice(b",\"startTimeUnixNano\":");
    quoted_number(out, s.start_time_unix_nano);
    out.extend_from_slice(b",\"endTimeUnixNano\":");
    quoted_number(out, s.end_time_unix_nano);
    out.extend_from_slice(b",\"attributes\":");
    array(out, &s.attributes, key_value);
    if !extra.is_empty() {
        out.pop();
        if !s.attributes.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(extra);
        out.push(b']');
    }
    out.extend_from_slice(b",\"droppedAttributesCount\":");
    number(out, s.dropped_attributes_count);
    out.extend_from_slice(b",\"events\":");
    serde(out, &s.events);
    out.extend_from_slice(b",\"droppedEventsCount\":");
    number(out, s.dropped_events_count);
    out.extend_from_slice(b",\"links\":");
    serde(out, &s.links);
    out.extend_from_slice(b",\"droppedLinksCount\":");
    number(out, s.dropped_links_count);
    out.extend_from_slice(b",\"status\":");
    option(out, s.status.as_ref(), status);
    out.push(b'}');
}

/// A kernel event's span ([`crate::kernel_logs`]): the object [`span`] writes for a span with
/// no parent, trace state, events, links or flags; `attributes` writes the array of
/// `KeyValue`s.
pub(crate) fn kernel_span_with(
    out: &mut Vec<u8>,
    head: &SpanHead<'_>,
    attributes: impl FnOnce(&mut Vec<u8>),
) {
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    out.extend_from_slice(b"{\"traceId\":");
    hex(out, head.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    hex(out, head.span_id);
    out.extend_from_slice(b",\"traceState\":\"\",\"parentSpanId\":\"\",\"flags\":0,\"name\":");
    string(out, head.name);
    out.extend_from_slice(b",\"kind\":");
    number(out, head.kind);
    out.extend_from_slice(b",\"startTimeUnixNano\":");
    quoted_number(out, head.start_time_unix_nano);
    out.extend_from_slice(b",\"endTimeUnixNano\":");
    quoted_number(out, head.end_time_unix_nano);
    out.extend_from_slice(b",\"attributes\":");
    attributes(out);
    out.extend_from_slice(
        b",\"droppedAttributesCount\":0,\"events\":[],\"droppedEventsCount\":0,\"links\":[],\
          \"droppedLinksCount\":0,\"status\":",
    );
    match &head.error {
        Some(message) => {
            out.extend_from_slice(b"{\"message\":");
            string(out, message);
            out.extend_from_slice(b",\"code\":");
            number(out, StatusCode::Error as i32);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

fn status(out: &mut Vec<u8>, s: &Status) {
    out.extend_from_slice(b"{\"message\":");
    string(out, &s.message);
    out.extend_from_slice(b",\"code\":");
    number(out, s.code);
    out.push(b'}');
}

fn log_record(out: &mut Vec<u8>, l: &LogRecord) {
    log_record_with(
        out,
        &LogHead::of(l),
        |out| option(out, l.body.as_ref(), any_value),
        |out| array(out, &l.attributes, key_value),
    );
}

/// A log record object: `body` writes the body (or `null`), `attributes` the array of
/// `KeyValue`s.
pub(crate) fn log_record_with(
    out: &mut Vec<u8>,
    head: &LogHead<'_>,
    body: impl FnOnce(&mut Vec<u8>),
    attributes: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(b"{\"timeUnixNano\":");
    quoted_number(out, head.time_unix_nano);
    out.extend_from_slice(b",\"observedTimeUnixNano\":");
    quoted_number(out, head.observed_time_unix_nano);
    out.extend_from_slice(b",\"severityNumber\":");
    number(out, head.severity_number);
    out.extend_from_slice(b",\"severityText\":");
    string(out, head.severity_text);
    out.extend_from_slice(b",\"body\":");
    body(out);
    out.extend_from_slice(b",\"attributes\":");
    attributes(out);
    out.extend_from_slice(b",\"droppedAttributesCount\":");
    number(out, head.dropped_attributes_count);
    out.extend_from_slice(b",\"flags\":");
    number(out, head.flags);
    out.extend_from_slice(b",\"traceId\":");
    hex(out, head.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    hex(out, head.span_id);
    out.extend_from_slice(b",\"eventName\":");
    string(out, head.event_name);
    out.push(b'}');
}

pub(crate) fn key_value(out: &mut Vec<u8>, kv: &KeyValue) {
    key_value_with(out, &kv.key, |out| {
        option(out, kv.value.as_ref(), any_value);
    });
}

/// A `KeyValue` object: `value` writes the `AnyValue` (or `null`).
pub(crate) fn key_value_with(out: &mut Vec<u8>, key: &str, value: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"{\"key\":");
    string(out, key);
    out.extend_from_slice(b",\"value\":");
    value(out);
    out.push(b'}');
}

/// The `oneof` flattened into the object: `{"stringValue":"..."}`, `{}` when unset.
fn any_value(out: &mut Vec<u8>, v: &AnyValue) {
    match &v.value {
        None => out.extend_from_slice(b"{}"),
        Some(Value::StringValue(s)) => string_value(out, s),
        Some(Value::IntValue(i)) => int_value(out, *i),
        Some(Value::BoolValue(b)) => bool_value(out, *b),
        Some(Value::ArrayValue(a)) => {
            array_value_with(out, |out| array(out, &a.values, any_value));
        }
        Some(Value::KvlistValue(l)) => {
            out.extend_from_slice(b"{\"kvlistValue\":{\"values\":");
            array(out, &l.values, key_value);
            out.extend_from_slice(b"}}");
        }
        Some(Value::DoubleValue(_) | Value::BytesValue(_)) => serde(out, v),
    }
}

// The members of an `AnyValue`, each as the whole `AnyValue` object.
pub(crate) fn string_value(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(b"{\"stringValue\":");
    string(out, s);
    out.push(b'}');
}
pub(crate) fn int_value(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(b"{\"intValue\":");
    quoted_number(out, i);
    out.push(b'}');
}
pub(crate) fn bool_value(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b {
        b"{\"boolValue\":true}"
    } else {
        b"{\"boolValue\":false}"
    });
}
/// Through `serde_json`, as the typed writer writes a `doubleValue`.
pub(crate) fn double_value(out: &mut Vec<u8>, d: f64) {
    serde(
        out,
        &AnyValue {
            value: Some(Value::DoubleValue(d)),
        },
    );
}
/// `values` writes the array of `AnyValue`s.
pub(crate) fn array_value_with(out: &mut Vec<u8>, values: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"{\"arrayValue\":{\"values\":");
    values(out);
    out.extend_from_slice(b"}}");
}

fn array<T>(out: &mut Vec<u8>, items: &[T], item: fn(&mut Vec<u8>, &T)) {
    array_with(out, items, item);
}

/// A JSON array of `items`, each written by `item`.
pub(crate) fn array_with<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (i, it) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, it);
    }
    out.push(b']');
}

fn option<T>(out: &mut Vec<u8>, value: Option<&T>, some: fn(&mut Vec<u8>, &T)) {
    match value {
        Some(v) => some(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// Through `serde_json` (the rare parts). Writing serde's own output into a `Vec` cannot
/// fail: these types serialize without error.
fn serde<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}

fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn quoted_number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.push(b'"');
    number(out, n);
    out.push(b'"');
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 2);
    out.push(b'"');
    for b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    out.push(b'"');
}

/// A JSON string, escaped as `serde_json` escapes: `"`, `\` and control characters only.
/// Runs without such a byte (nearly all text) are found eight bytes at a time and copied whole.
fn string(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// What [`string`] writes between the quotes.
pub(crate) fn escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        i += clean_prefix(&bytes[i..]);
        let Some(&b) = bytes.get(i) else { break };
        out.extend_from_slice(&bytes[start..i]);
        escape(out, b);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// How many leading bytes of `bytes` need no escape: whole words of eight are tested at once
/// (a word holds such a byte when one of its bytes is below 0x20, or equals `"` or `\`), and
/// the word that holds one is looked at byte by byte.
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    for chunk in bytes.chunks_exact(8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // Exact per word (no false positives as a whole): a zero byte of `v` sets the high
        // bit of `(v - ONES) & !v`, and a byte below 0x20 sets it in `(w - 0x20..) & !w`.
        let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        if below | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) != 0 {
            break;
        }
        n += 8;
    }
    n + bytes[n..]
        .iter()
        .position(|&b| ESCAPE[usize::from(b)])
        .unwrap_or(bytes.len() - n)
}

/// The bytes JSON strings escape.
static ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// `b`'s escape, as `serde_json` writes it.
fn escape(out: &mut Vec<u8>, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let escape: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => &[
            b'\\',
            b'u',
            b'0',
            b'0',
            DIGITS[usize::from(b >> 4)],
            DIGITS[usize::from(b & 0xf)],
        ],
    };
    out.extend_from_slice(escape);
}

#[cfg(test)]
mod tests {
    /// Every byte that is escaped, and every other ASCII byte and some non-ASCII text, at each
    /// position of the first three eight-byte words: as `serde_json` writes them.
    #[test]
    fn strings_escape_as_serde_json_does_at_every_position() {
        let specials: Vec<String> = (0u8..0x80)
            .map(|b| char::from(b).to_string())
            .chain(["é", "\u{2028}", "😀", "\u{7f}"].map(String::from))
            .collect();
        for special in &specials {
            for before in 0..24 {
                for after in [0, 1, 7, 8, 9] {
                    let s = format!("{}{special}{}", "a".repeat(before), "b".repeat(after));
                    let mut ours = Vec::new();
                    super::string(&mut ours, &s);
                    assert_eq!(
                        String::from_utf8_lossy(&ours),
                        serde_json::to_string(&s).expect("serializes"),
                        "{s:?}"
                    );
                }
            }
        }
        let mut ours = Vec::new();
        super::string(&mut ours, "\"\\\n\u{1}x\"\"");
        assert_eq!(
            ours,
            serde_json::to_vec("\"\\\n\u{1}x\"\"").expect("serializes")
        );
    }
}

//! OTLP protobuf of trace and log export requests, with each nested message's length computed
//! once. prost's `encode_to_vec` asks every nested message for its length when it writes the
//! message's length prefix, and that asks its children again: an attribute value six levels
//! down (request → resource → scope → span → attribute → value) is measured six times. Here
//! one walk measures every message (lengths kept in the walk's order), the second writes the
//! bytes reading those lengths back in the same order.
//!
//! The bytes are prost's, byte for byte: fields in tag order, proto3 defaults left out (but a
//! `oneof` member always written, and an optional message whenever it is set, empty or not).
//! `tests/encode.rs` checks that against `encode_to_vec` on the test kit's requests and on
//! random ones. Metrics requests go through prost ([`crate::signal::Signal::to_protobuf`]).

use crate::convert::{LogHead, SpanHead};
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{
        AnyValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    },
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span},
};

use prost::encoding::encoded_len_varint;

mod pass;

use pass::{LEN, key};
pub(crate) use pass::{Measure, Pass, Shift};

/// A trace export request as protobuf, appended to `out`.
pub fn encode_traces(request: &ExportTraceServiceRequest, out: &mut Vec<u8>) {
    encode_traces_with(request, out, |_| &[]);
}

/// [`encode_traces`], the span at position `i` (counting every span of the request in order)
/// followed by `extra(i)`: protobuf of more of its fields ([`attributes_field`]), written after
/// its own attributes.
pub(crate) fn encode_traces_with<'x>(
    request: &ExportTraceServiceRequest,
    out: &mut Vec<u8>,
    extra: impl Fn(usize) -> &'x [u8],
) {
    let mut measure = Measure::default();
    trace_request(&mut measure, request, &mut Extra::new(&extra));
    measure.write(out, |w| trace_request(w, request, &mut Extra::new(&extra)));
}

/// More attributes written after a span's own, by the span's position in the request.
struct Extra<'f, F> {
    at: usize,
    of: &'f F,
}

impl<'f, 'x, F: Fn(usize) -> &'x [u8]> Extra<'f, F> {
    fn new(of: &'f F) -> Self {
        Self { at: 0, of }
    }

    /// The next span's.
    fn next(&mut self) -> &'x [u8] {
        self.at += 1;
        (self.of)(self.at - 1)
    }
}

/// `attributes` as an item's `attributes` field number `field` (protobuf), to be appended to
/// the item's own: a span's by [`encode_traces_with`], a log record's by the log records
/// written from kernel events.
pub(crate) fn attributes_field(field: u32, attributes: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::new();
    self::attributes(&mut Shift { out: &mut out }, field, attributes);
    out
}

/// A log export request as protobuf, appended to `out`.
pub fn encode_logs(request: &ExportLogsServiceRequest, out: &mut Vec<u8>) {
    let mut measure = Measure::default();
    log_request(&mut measure, request);
    measure.write(out, |w| log_request(w, request));
}

fn trace_request<'x, P: Pass, F: Fn(usize) -> &'x [u8]>(
    p: &mut P,
    r: &ExportTraceServiceRequest,
    extra: &mut Extra<'_, F>,
) {
    for rs in &r.resource_spans {
        p.message(1, |p| resource_spans(p, rs, extra));
    }
}

fn log_request<P: Pass>(p: &mut P, r: &ExportLogsServiceRequest) {
    for rl in &r.resource_logs {
        resource_logs_message(p, ROOM_GROUP, |p| resource_logs(p, rl));
    }
}

/// The room a [`ResourceLogs`]' or [`ScopeLogs`]' length is written after by [`Shift`]: three
/// bytes hold 16 KiB to 2 MiB, what a busy process's share of a batch takes.
pub(crate) const ROOM_GROUP: usize = 3;

/// The room a log record's length is written after by [`Shift`]: two bytes hold 128 bytes to
/// 16 KiB.
pub(crate) const ROOM_RECORD: usize = 2;

// A `ResourceSpans` has the fields of a `ResourceLogs` (resource 1, scopes 2, schema URL 3),
// a `ScopeSpans` those of a `ScopeLogs` (scope 1, items 2, schema URL 3), and a trace request's
// `resource_spans` the tag of a log request's `resource_logs`: the spans written from kernel
// events ([`crate::kernel_logs`]) go through the same functions as their log records.

fn resource_spans<'x, P: Pass, F: Fn(usize) -> &'x [u8]>(
    p: &mut P,
    r: &ResourceSpans,
    extra: &mut Extra<'_, F>,
) {
    if let Some(res) = &r.resource {
        p.message(1, |p| resource(p, res));
    }
    for s in &r.scope_spans {
        p.message(2, |p| scope_spans(p, s, extra));
    }
    p.string(3, &r.schema_url);
}

fn scope_spans<'x, P: Pass, F: Fn(usize) -> &'x [u8]>(
    p: &mut P,
    s: &ScopeSpans,
    extra: &mut Extra<'_, F>,
) {
    if let Some(scope) = &s.scope {
        p.message(1, |p| instrumentation_scope(p, scope));
    }
    for sp in &s.spans {
        p.message(2, |p| span(p, sp, extra.next()));
    }
    p.string(3, &s.schema_url);
}

fn resource_logs<P: Pass>(p: &mut P, r: &ResourceLogs) {
    resource_logs_with(
        p,
        r.resource.as_ref().map(|res| |p: &mut P| resource(p, res)),
        |p, tag| {
            for s in &r.scope_logs {
                p.message_sized(tag, ROOM_GROUP, |p| scope_logs(p, s));
            }
        },
        &r.schema_url,
    );
}

/// A `ResourceLogs`' fields: `resource` writes the Resource's, `scope_logs` the `ScopeLogs`
/// messages under the tag it is given.
pub(crate) fn resource_logs_with<P: Pass>(
    p: &mut P,
    resource: Option<impl FnOnce(&mut P)>,
    scope_logs: impl FnOnce(&mut P, u32),
    schema_url: &str,
) {
    if let Some(res) = resource {
        p.message(1, res);
    }
    scope_logs(p, 2);
    p.string(3, schema_url);
}

/// A `ResourceLogs` message of one group, under the tag of a request's `resource_logs`, its
/// length written after `room` bytes by [`Shift`].
pub(crate) fn resource_logs_message<P: Pass>(p: &mut P, room: usize, body: impl FnOnce(&mut P)) {
    p.message_sized(1, room, body);
}

/// The room [`Shift`] should leave for the length of a message of about `bytes` bytes.
pub(crate) fn room_for(bytes: usize) -> usize {
    encoded_len_varint(bytes as u64)
}

fn scope_logs<P: Pass>(p: &mut P, s: &ScopeLogs) {
    scope_logs_with(
        p,
        s.scope.as_ref(),
        |p, tag| {
            for l in &s.log_records {
                p.message_sized(tag, ROOM_RECORD, |p| log_record(p, l));
            }
        },
        &s.schema_url,
    );
}

/// A `ScopeLogs`' fields: `log_records` writes the records under the tag it is given.
pub(crate) fn scope_logs_with<P: Pass>(
    p: &mut P,
    scope: Option<&InstrumentationScope>,
    log_records: impl FnOnce(&mut P, u32),
    schema_url: &str,
) {
    if let Some(scope) = scope {
        p.message(1, |p| instrumentation_scope(p, scope));
    }
    log_records(p, 2);
    p.string(3, schema_url);
}

pub(crate) fn resource<P: Pass>(p: &mut P, r: &Resource) {
    resource_with(
        p,
        |p, tag| attributes(p, tag, &r.attributes),
        r.dropped_attributes_count,
        &r.entity_refs,
    );
}

/// A Resource's fields: `attributes` writes the `KeyValue`s under the tag it is given.
pub(crate) fn resource_with<P: Pass>(
    p: &mut P,
    attributes: impl FnOnce(&mut P, u32),
    dropped_attributes_count: u32,
    entity_refs: &[EntityRef],
) {
    attributes(p, 1);
    p.uint32(2, dropped_attributes_count);
    for e in entity_refs {
        p.message(3, |p| entity_ref(p, e));
    }
}

fn entity_ref<P: Pass>(p: &mut P, e: &EntityRef) {
    p.string(1, &e.schema_url);
    p.string(2, &e.r#type);
    // Repeated strings: every element written, empty ones too.
    for k in &e.id_keys {
        p.bytes(3, k.as_bytes());
    }
    for k in &e.description_keys {
        p.bytes(4, k.as_bytes());
    }
}

fn instrumentation_scope<P: Pass>(p: &mut P, s: &InstrumentationScope) {
    p.string(1, &s.name);
    p.string(2, &s.version);
    attributes(p, 3, &s.attributes);
    p.uint32(4, s.dropped_attributes_count);
}

/// A span's fields, `extra` (more attributes, encoded) after its own attributes.
fn span<P: Pass>(p: &mut P, s: &Span, extra: &[u8]) {
    p.opt_bytes(1, &s.trace_id);
    p.opt_bytes(2, &s.span_id);
    p.string(3, &s.trace_state);
    p.opt_bytes(4, &s.parent_span_id);
    p.string(5, &s.name);
    p.enumeration(6, s.kind);
    p.opt_fixed64(7, s.start_time_unix_nano);
    p.opt_fixed64(8, s.end_time_unix_nano);
    attributes(p, 9, &s.attributes);
    p.encoded(extra);
    p.uint32(10, s.dropped_attributes_count);
    for e in &s.events {
        p.message(11, |p| event(p, e));
    }
    p.uint32(12, s.dropped_events_count);
    for l in &s.links {
        p.message(13, |p| link(p, l));
    }
    p.uint32(14, s.dropped_links_count);
    if let Some(st) = &s.status {
        p.message(15, |p| status(p, st));
    }
    p.opt_fixed32(16, s.flags);
}

/// A kernel event's span ([`crate::kernel_logs`]): the fields of [`span`], in its order, of a
/// span with no parent, trace state, events, links or flags; `attributes` writes the
/// `KeyValue`s under the tag it is given.
pub(crate) fn kernel_span_with<P: Pass>(
    p: &mut P,
    head: &SpanHead<'_>,
    attributes: impl FnOnce(&mut P, u32),
) {
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    p.opt_bytes(1, head.trace_id);
    p.opt_bytes(2, head.span_id);
    p.string(5, head.name);
    p.enumeration(6, head.kind);
    p.opt_fixed64(7, head.start_time_unix_nano);
    p.opt_fixed64(8, head.end_time_unix_nano);
    attributes(p, 9);
    if let Some(message) = &head.error {
        p.message(15, |p| {
            p.string(2, message);
            p.enumeration(3, StatusCode::Error as i32);
        });
    }
}

fn event<P: Pass>(p: &mut P, e: &span::Event) {
    p.opt_fixed64(1, e.time_unix_nano);
    p.string(2, &e.name);
    attributes(p, 3, &e.attributes);
    p.uint32(4, e.dropped_attributes_count);
}

fn link<P: Pass>(p: &mut P, l: &span::Link) {
    p.opt_bytes(1, &l.trace_id);
    p.opt_bytes(2, &l.span_id);
    p.string(3, &l.trace_state);
    attributes(p, 4, &l.attributes);
    p.uint32(5, l.dropped_attributes_count);
    p.opt_fixed32(6, l.flags);
}

fn status<P: Pass>(p: &mut P, s: &Status) {
    p.string(2, &s.message);
    p.enumeration(3, s.code);
}

fn log_record<P: Pass>(p: &mut P, l: &LogRecord) {
    log_record_with(
        p,
        &LogHead::of(l),
        l.body
            .as_ref()
            .map(|body| |p: &mut P, tag| p.message(tag, |p| any_value(p, body))),
        |p, tag| attributes(p, tag, &l.attributes),
    );
}

/// A log record's fields: `body` writes the body's `AnyValue` message under the tag it is
/// given, `attributes` the `KeyValue`s under the tag it is given.
pub(crate) fn log_record_with<P: Pass>(
    p: &mut P,
    head: &LogHead<'_>,
    body: Option<impl FnOnce(&mut P, u32)>,
    attributes: impl FnOnce(&mut P, u32),
) {
    p.opt_fixed64(1, head.time_unix_nano);
    p.enumeration(2, head.severity_number);
    p.string(3, head.severity_text);
    if let Some(body) = body {
        body(p, 5);
    }
    attributes(p, 6);
    p.uint32(7, head.dropped_attributes_count);
    p.opt_fixed32(8, head.flags);
    p.opt_bytes(9, head.trace_id);
    p.opt_bytes(10, head.span_id);
    p.opt_fixed64(11, head.observed_time_unix_nano);
    p.string(12, head.event_name);
}

pub(crate) fn attributes<P: Pass>(p: &mut P, tag: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        p.message(tag, |p| key_value(p, kv));
    }
}

fn key_value<P: Pass>(p: &mut P, kv: &KeyValue) {
    key_value_with(
        p,
        &kv.key,
        kv.value.as_ref().map(|v| |p: &mut P| any_value(p, v)),
    );
}

/// A `KeyValue`'s fields: `value` writes the `AnyValue`'s.
pub(crate) fn key_value_with<P: Pass>(p: &mut P, key: &str, value: Option<impl FnOnce(&mut P)>) {
    p.string(1, key);
    if let Some(value) = value {
        p.message(2, value);
    }
}

/// A `KeyValue` message under `tag` whose value's `AnyValue` fields take `any` bytes, written
/// by `value` with the field writers only: both lengths known before anything is written
/// ([`Pass::len_prefix`]). The bytes of [`key_value_with`] under [`Pass::message`].
pub(crate) fn key_value_sized<P: Pass>(
    p: &mut P,
    tag: u32,
    key: &str,
    any: usize,
    value: impl FnOnce(&mut P),
) {
    let key_len = if key.is_empty() {
        0
    } else {
        field_len(1, key.len())
    };
    p.len_prefix(tag, key_len + field_len(2, any));
    p.string(1, key);
    p.len_prefix(2, any);
    value(p);
}

/// The bytes a length-delimited field `tag` of `len` bytes takes.
pub(crate) fn field_len(tag: u32, len: usize) -> usize {
    encoded_len_varint(key(tag, LEN)) + encoded_len_varint(len as u64) + len
}

// The bytes each member of an `AnyValue` takes, as the functions below write it.
pub(crate) fn string_value_len(s: &str) -> usize {
    field_len(1, s.len())
}
pub(crate) fn bool_value_len() -> usize {
    2
}
pub(crate) fn int_value_len(i: i64) -> usize {
    1 + encoded_len_varint(i as u64)
}
pub(crate) fn double_value_len() -> usize {
    9
}

/// A `oneof`: the member that is set is written even at its default value.
fn any_value<P: Pass>(p: &mut P, v: &AnyValue) {
    match &v.value {
        None => {}
        Some(Value::StringValue(s)) => string_value(p, s),
        Some(Value::BoolValue(b)) => bool_value(p, *b),
        Some(Value::IntValue(i)) => int_value(p, *i),
        Some(Value::DoubleValue(d)) => double_value(p, *d),
        Some(Value::ArrayValue(a)) => array_value_with(p, |p, tag| {
            for v in &a.values {
                p.message(tag, |p| any_value(p, v));
            }
        }),
        Some(Value::KvlistValue(l)) => p.message(6, |p| kvlist_value(p, l)),
        Some(Value::BytesValue(b)) => p.bytes(7, b),
    }
}

// The members of an `AnyValue`, each as the `AnyValue`'s fields.
pub(crate) fn string_value<P: Pass>(p: &mut P, s: &str) {
    p.bytes(1, s.as_bytes());
}
pub(crate) fn bool_value<P: Pass>(p: &mut P, b: bool) {
    p.varint(2, u64::from(b));
}
pub(crate) fn int_value<P: Pass>(p: &mut P, i: i64) {
    p.varint(3, i as u64);
}
pub(crate) fn double_value<P: Pass>(p: &mut P, d: f64) {
    p.fixed64(4, d.to_bits());
}
/// `values` writes the array's `AnyValue` messages under the tag it is given.
pub(crate) fn array_value_with<P: Pass>(p: &mut P, values: impl FnOnce(&mut P, u32)) {
    p.message(5, |p| values(p, 1));
}

fn kvlist_value<P: Pass>(p: &mut P, l: &KeyValueList) {
    attributes(p, 1, &l.values);
}

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

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{
        AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
        any_value::Value,
    },
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span},
};
use std::mem::MaybeUninit;

use prost::encoding::encoded_len_varint;

/// A trace export request as protobuf, appended to `out`.
pub fn encode_traces(request: &ExportTraceServiceRequest, out: &mut Vec<u8>) {
    let mut measure = Measure::default();
    trace_request(&mut measure, request);
    measure.write(out, |w| trace_request(w, request));
}

/// A log export request as protobuf, appended to `out`.
pub fn encode_logs(request: &ExportLogsServiceRequest, out: &mut Vec<u8>) {
    let mut measure = Measure::default();
    log_request(&mut measure, request);
    measure.write(out, |w| log_request(w, request));
}

fn trace_request<P: Pass>(p: &mut P, r: &ExportTraceServiceRequest) {
    for rs in &r.resource_spans {
        p.message(1, |p| resource_spans(p, rs));
    }
}

fn log_request<P: Pass>(p: &mut P, r: &ExportLogsServiceRequest) {
    for rl in &r.resource_logs {
        p.message(1, |p| resource_logs(p, rl));
    }
}

/// One walk over a request: [`Measure`] counts bytes, [`Write`] writes them. Every message's
/// walk below is written once, for both.
trait Pass {
    fn varint(&mut self, tag: u32, value: u64);
    fn fixed64(&mut self, tag: u32, value: u64);
    fn fixed32(&mut self, tag: u32, value: u32);
    fn bytes(&mut self, tag: u32, value: &[u8]);
    /// A nested message, `body` writing its fields.
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self));

    // Proto3 scalars: a field at its default value is not written.
    fn string(&mut self, tag: u32, value: &str) {
        self.opt_bytes(tag, value.as_bytes());
    }
    fn opt_bytes(&mut self, tag: u32, value: &[u8]) {
        if !value.is_empty() {
            self.bytes(tag, value);
        }
    }
    fn uint32(&mut self, tag: u32, value: u32) {
        if value != 0 {
            self.varint(tag, value.into());
        }
    }
    /// An enum: an `i32` as a sign-extended varint.
    fn enumeration(&mut self, tag: u32, value: i32) {
        if value != 0 {
            self.varint(tag, i64::from(value) as u64);
        }
    }
    fn opt_fixed64(&mut self, tag: u32, value: u64) {
        if value != 0 {
            self.fixed64(tag, value);
        }
    }
    fn opt_fixed32(&mut self, tag: u32, value: u32) {
        if value != 0 {
            self.fixed32(tag, value);
        }
    }
}

/// Wire types (protobuf encoding guide).
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

fn key(tag: u32, wire: u32) -> u64 {
    u64::from(tag << 3 | wire)
}

/// The first walk: the request's length and every nested message's.
#[derive(Default)]
struct Measure {
    /// Bytes of the message being measured so far.
    len: usize,
    /// Every nested message's length, in the order the walk reaches the messages.
    lengths: Vec<usize>,
}

impl Measure {
    /// The second walk, `walk`, writing into room reserved in `out` for the whole request: the
    /// bytes go straight into that room, without a capacity check per field. Should the walks
    /// ever disagree, writing past the room panics, and a shorter request is not appended.
    fn write(&self, out: &mut Vec<u8>, walk: impl FnOnce(&mut Write<'_>)) {
        out.reserve(self.len);
        let start = out.len();
        let mut w = Write {
            lengths: self.lengths.iter(),
            room: &mut out.spare_capacity_mut()[..self.len],
            at: 0,
        };
        walk(&mut w);
        assert_eq!(w.at, self.len, "both walks measure the same request");
        // SAFETY: the `self.len` bytes after `start` are initialised: `Write` wrote them all
        // in order (`at` counts them, checked just above), and `reserve` made them capacity.
        unsafe { out.set_len(start + self.len) };
    }
}

impl Pass for Measure {
    fn varint(&mut self, tag: u32, value: u64) {
        self.len += encoded_len_varint(key(tag, VARINT)) + encoded_len_varint(value);
    }
    fn fixed64(&mut self, tag: u32, _: u64) {
        self.len += encoded_len_varint(key(tag, FIXED64)) + 8;
    }
    fn fixed32(&mut self, tag: u32, _: u32) {
        self.len += encoded_len_varint(key(tag, FIXED32)) + 4;
    }
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.len += encoded_len_varint(key(tag, LEN))
            + encoded_len_varint(value.len() as u64)
            + value.len();
    }
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self)) {
        let slot = self.lengths.len();
        self.lengths.push(0);
        let outer = std::mem::take(&mut self.len);
        body(self);
        let inner = std::mem::replace(&mut self.len, outer);
        self.lengths[slot] = inner;
        self.len += encoded_len_varint(key(tag, LEN)) + encoded_len_varint(inner as u64) + inner;
    }
}

/// The second walk: the bytes, into room reserved for them.
struct Write<'a> {
    /// The lengths [`Measure`] found, consumed in the same order.
    lengths: std::slice::Iter<'a, usize>,
    room: &'a mut [MaybeUninit<u8>],
    /// Bytes written so far.
    at: usize,
}

impl Write<'_> {
    fn raw_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.room[self.at].write((value & 0x7f) as u8 | 0x80);
            self.at += 1;
            value >>= 7;
        }
        self.room[self.at].write(value as u8);
        self.at += 1;
    }

    fn raw(&mut self, bytes: &[u8]) {
        let end = self.at + bytes.len();
        self.room[self.at..end].write_copy_of_slice(bytes);
        self.at = end;
    }
}

impl Pass for Write<'_> {
    fn varint(&mut self, tag: u32, value: u64) {
        self.raw_varint(key(tag, VARINT));
        self.raw_varint(value);
    }
    fn fixed64(&mut self, tag: u32, value: u64) {
        self.raw_varint(key(tag, FIXED64));
        self.raw(&value.to_le_bytes());
    }
    fn fixed32(&mut self, tag: u32, value: u32) {
        self.raw_varint(key(tag, FIXED32));
        self.raw(&value.to_le_bytes());
    }
    fn bytes(&mut self, tag: u32, value: &[u8]) {
        self.raw_varint(key(tag, LEN));
        self.raw_varint(value.len() as u64);
        self.raw(value);
    }
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Self)) {
        // Both passes walk the same request in the same order: a length is always there.
        let len = self.lengths.next().copied().unwrap_or_default();
        self.raw_varint(key(tag, LEN));
        self.raw_varint(len as u64);
        body(self);
    }
}

fn resource_spans<P: Pass>(p: &mut P, r: &ResourceSpans) {
    if let Some(res) = &r.resource {
        p.message(1, |p| resource(p, res));
    }
    for s in &r.scope_spans {
        p.message(2, |p| scope_spans(p, s));
    }
    p.string(3, &r.schema_url);
}

fn scope_spans<P: Pass>(p: &mut P, s: &ScopeSpans) {
    if let Some(scope) = &s.scope {
        p.message(1, |p| instrumentation_scope(p, scope));
    }
    for sp in &s.spans {
        p.message(2, |p| span(p, sp));
    }
    p.string(3, &s.schema_url);
}

fn resource_logs<P: Pass>(p: &mut P, r: &ResourceLogs) {
    if let Some(res) = &r.resource {
        p.message(1, |p| resource(p, res));
    }
    for s in &r.scope_logs {
        p.message(2, |p| scope_logs(p, s));
    }
    p.string(3, &r.schema_url);
}

fn scope_logs<P: Pass>(p: &mut P, s: &ScopeLogs) {
    if let Some(scope) = &s.scope {
        p.message(1, |p| instrumentation_scope(p, scope));
    }
    for l in &s.log_records {
        p.message(2, |p| log_record(p, l));
    }
    p.string(3, &s.schema_url);
}

fn resource<P: Pass>(p: &mut P, r: &Resource) {
    attributes(p, 1, &r.attributes);
    p.uint32(2, r.dropped_attributes_count);
    for e in &r.entity_refs {
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

fn span<P: Pass>(p: &mut P, s: &Span) {
    p.opt_bytes(1, &s.trace_id);
    p.opt_bytes(2, &s.span_id);
    p.string(3, &s.trace_state);
    p.opt_bytes(4, &s.parent_span_id);
    p.string(5, &s.name);
    p.enumeration(6, s.kind);
    p.opt_fixed64(7, s.start_time_unix_nano);
    p.opt_fixed64(8, s.end_time_unix_nano);
    attributes(p, 9, &s.attributes);
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
    p.opt_fixed64(1, l.time_unix_nano);
    p.enumeration(2, l.severity_number);
    p.string(3, &l.severity_text);
    if let Some(body) = &l.body {
        p.message(5, |p| any_value(p, body));
    }
    attributes(p, 6, &l.attributes);
    p.uint32(7, l.dropped_attributes_count);
    p.opt_fixed32(8, l.flags);
    p.opt_bytes(9, &l.trace_id);
    p.opt_bytes(10, &l.span_id);
    p.opt_fixed64(11, l.observed_time_unix_nano);
    p.string(12, &l.event_name);
}

fn attributes<P: Pass>(p: &mut P, tag: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        p.message(tag, |p| key_value(p, kv));
    }
}

fn key_value<P: Pass>(p: &mut P, kv: &KeyValue) {
    p.string(1, &kv.key);
    if let Some(v) = &kv.value {
        p.message(2, |p| any_value(p, v));
    }
}

/// A `oneof`: the member that is set is written even at its default value.
fn any_value<P: Pass>(p: &mut P, v: &AnyValue) {
    match &v.value {
        None => {}
        Some(Value::StringValue(s)) => p.bytes(1, s.as_bytes()),
        Some(Value::BoolValue(b)) => p.varint(2, u64::from(*b)),
        Some(Value::IntValue(i)) => p.varint(3, *i as u64),
        Some(Value::DoubleValue(d)) => p.fixed64(4, d.to_bits()),
        Some(Value::ArrayValue(a)) => p.message(5, |p| array_value(p, a)),
        Some(Value::KvlistValue(l)) => p.message(6, |p| kvlist_value(p, l)),
        Some(Value::BytesValue(b)) => p.bytes(7, b),
    }
}

fn array_value<P: Pass>(p: &mut P, a: &ArrayValue) {
    for v in &a.values {
        p.message(1, |p| any_value(p, v));
    }
}

fn kvlist_value<P: Pass>(p: &mut P, l: &KeyValueList) {
    attributes(p, 1, &l.values);
}

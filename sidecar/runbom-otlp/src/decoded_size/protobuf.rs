//! The decoded size of a protobuf export request, read from its wire format.
//!
//! Each OTLP message type is described by a `Message`: the size of its prost struct and its
//! fields whose decoding allocates. Walking a request adds, for every element of a repeated
//! message field, the size of the element's struct, and for every `string` or `bytes` field its
//! length; a singular message field is held inline by its parent and adds only what its own
//! fields allocate. Fields that allocate nothing (numbers, enums) and fields OTLP does not define
//! are skipped, as prost skips them. Keys, lengths and skipped fields are read with prost's own
//! functions, so the walk reads a request as prost reads it.

use std::mem::size_of;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, EntityRef, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, SummaryDataPoint, summary_data_point::ValueAtQuantile,
    },
    trace::v1::{ResourceSpans, ScopeSpans, Span, span},
};
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

use super::Estimate;
use crate::signal::SignalKind;

/// Nested messages walked, as deep as prost decodes them (its recursion limit is 100); a
/// request nested deeper is one prost refuses, and the walk stops there.
const MAX_DEPTH: u32 = 101;

/// The decoded size of `message`, an encoded export request of `kind`: every element of a
/// repeated message field counts the size of its struct, every `string` and `bytes` field its
/// length, every element of a repeated number field 8 bytes.
#[must_use]
pub fn protobuf(kind: SignalKind, message: &[u8]) -> Estimate {
    let request = match kind {
        SignalKind::Traces => &TRACES_REQUEST,
        SignalKind::Logs => &LOGS_REQUEST,
        SignalKind::Metrics => &METRICS_REQUEST,
    };
    let mut estimate = Estimate::default();
    // A request that does not parse is left for prost to refuse; what was counted before the
    // fault is what prost allocates before it finds it.
    let _malformed = walk(request, message, 0, &mut estimate).is_err();
    estimate
}

/// A request that does not parse as protobuf, or is nested deeper than prost decodes.
struct Malformed;

impl From<prost::DecodeError> for Malformed {
    fn from(_: prost::DecodeError) -> Self {
        Self
    }
}

fn walk(
    message: &Message,
    mut buf: &[u8],
    depth: u32,
    estimate: &mut Estimate,
) -> Result<(), Malformed> {
    while !buf.is_empty() {
        let (number, wire_type) = decode_key(&mut buf)?;
        let field = message
            .fields
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, field)| *field);
        match (field, wire_type) {
            (Some(Field::Repeated(element)), WireType::LengthDelimited) => {
                let value = length_delimited(&mut buf)?;
                estimate.add(element.size);
                estimate.items += u64::from(element.item);
                nested(element, value, depth, estimate)?;
            }
            (Some(Field::Inline(inline)), WireType::LengthDelimited) => {
                let value = length_delimited(&mut buf)?;
                nested(inline, value, depth, estimate)?;
            }
            (Some(Field::Bytes), WireType::LengthDelimited) => {
                let value = length_delimited(&mut buf)?;
                estimate.add(value.len());
            }
            (Some(Field::Strings), WireType::LengthDelimited) => {
                let value = length_delimited(&mut buf)?;
                estimate.add(size_of::<String>() + value.len());
            }
            (Some(Field::Fixed64s), WireType::LengthDelimited) => {
                // Packed: 8 bytes each.
                let value = length_delimited(&mut buf)?;
                estimate.add(value.len());
            }
            (Some(Field::Varints), WireType::LengthDelimited) => {
                // Packed: a varint ends at each byte without the continuation bit.
                let value = length_delimited(&mut buf)?;
                let count = value.iter().filter(|b| **b < 0x80).count();
                estimate.add(count * size_of::<u64>());
            }
            (Some(Field::Fixed64s | Field::Varints), _) => {
                // One element, not packed.
                estimate.add(size_of::<u64>());
                skip_field(wire_type, number, &mut buf, DecodeContext::default())?;
            }
            _ => skip_field(wire_type, number, &mut buf, DecodeContext::default())?,
        }
    }
    Ok(())
}

fn nested(
    message: &Message,
    buf: &[u8],
    depth: u32,
    estimate: &mut Estimate,
) -> Result<(), Malformed> {
    if depth >= MAX_DEPTH {
        return Err(Malformed);
    }
    walk(message, buf, depth + 1, estimate)
}

/// The value of a length-delimited field, its length read from `buf`.
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], Malformed> {
    let len = usize::try_from(decode_varint(buf)?).map_err(|_| Malformed)?;
    let value = buf.get(..len).ok_or(Malformed)?;
    *buf = &buf[len..];
    Ok(value)
}

/// An OTLP message type: what its struct takes as an element of a repeated field, and its
/// fields whose decoding allocates, by field number.
struct Message {
    size: usize,
    /// Whether it is an item of its signal (span, log record, data point).
    item: bool,
    fields: &'static [(u32, Field)],
}

impl Message {
    const fn new(size: usize, fields: &'static [(u32, Field)]) -> Self {
        Self {
            size,
            item: false,
            fields,
        }
    }

    const fn item(size: usize, fields: &'static [(u32, Field)]) -> Self {
        Self {
            size,
            item: true,
            fields,
        }
    }
}

/// How decoding a field allocates.
#[derive(Clone, Copy)]
enum Field {
    /// `repeated` message: an element's struct each, and what its fields allocate.
    Repeated(&'static Message),
    /// A singular message, held inline by its parent (a oneof's too): what its fields allocate.
    Inline(&'static Message),
    /// `string` or `bytes`: its length.
    Bytes,
    /// `repeated string`: a `String` each, and its length.
    Strings,
    /// `repeated fixed64` or `double`, packed or not: 8 bytes each.
    Fixed64s,
    /// `repeated uint64`, packed or not: 8 bytes each.
    Varints,
}

use Field::{Bytes, Fixed64s, Inline, Repeated, Strings, Varints};

// Common messages. A struct held inline by its parent has size 0 here.

static ANY_VALUE: Message = Message::new(
    size_of::<AnyValue>(),
    &[
        (1, Bytes),
        (5, Inline(&ARRAY_VALUE)),
        (6, Inline(&KEY_VALUE_LIST)),
        (7, Bytes),
    ],
);
static ARRAY_VALUE: Message = Message::new(0, &[(1, Repeated(&ANY_VALUE))]);
static KEY_VALUE_LIST: Message = Message::new(0, &[(1, Repeated(&KEY_VALUE))]);
static KEY_VALUE: Message = Message::new(
    size_of::<KeyValue>(),
    &[(1, Bytes), (2, Inline(&ANY_VALUE))],
);
static SCOPE: Message = Message::new(0, &[(1, Bytes), (2, Bytes), (3, Repeated(&KEY_VALUE))]);
static ENTITY_REF: Message = Message::new(
    size_of::<EntityRef>(),
    &[(1, Bytes), (2, Bytes), (3, Strings), (4, Strings)],
);
static RESOURCE: Message =
    Message::new(0, &[(1, Repeated(&KEY_VALUE)), (3, Repeated(&ENTITY_REF))]);

// Traces.

static TRACES_REQUEST: Message = Message::new(0, &[(1, Repeated(&RESOURCE_SPANS))]);
static RESOURCE_SPANS: Message = Message::new(
    size_of::<ResourceSpans>(),
    &[
        (1, Inline(&RESOURCE)),
        (2, Repeated(&SCOPE_SPANS)),
        (3, Bytes),
    ],
);
static SCOPE_SPANS: Message = Message::new(
    size_of::<ScopeSpans>(),
    &[(1, Inline(&SCOPE)), (2, Repeated(&SPAN)), (3, Bytes)],
);
static SPAN: Message = Message::item(
    size_of::<Span>(),
    &[
        (1, Bytes),
        (2, Bytes),
        (3, Bytes),
        (4, Bytes),
        (5, Bytes),
        (9, Repeated(&KEY_VALUE)),
        (11, Repeated(&EVENT)),
        (13, Repeated(&LINK)),
        (15, Inline(&STATUS)),
    ],
);
static EVENT: Message = Message::new(
    size_of::<span::Event>(),
    &[(2, Bytes), (3, Repeated(&KEY_VALUE))],
);
static LINK: Message = Message::new(
    size_of::<span::Link>(),
    &[
        (1, Bytes),
        (2, Bytes),
        (3, Bytes),
        (4, Repeated(&KEY_VALUE)),
    ],
);
static STATUS: Message = Message::new(0, &[(2, Bytes)]);

// Logs.

static LOGS_REQUEST: Message = Message::new(0, &[(1, Repeated(&RESOURCE_LOGS))]);
static RESOURCE_LOGS: Message = Message::new(
    size_of::<ResourceLogs>(),
    &[
        (1, Inline(&RESOURCE)),
        (2, Repeated(&SCOPE_LOGS)),
        (3, Bytes),
    ],
);
static SCOPE_LOGS: Message = Message::new(
    size_of::<ScopeLogs>(),
    &[(1, Inline(&SCOPE)), (2, Repeated(&LOG_RECORD)), (3, Bytes)],
);
static LOG_RECORD: Message = Message::item(
    size_of::<LogRecord>(),
    &[
        (3, Bytes),
        (5, Inline(&ANY_VALUE)),
        (6, Repeated(&KEY_VALUE)),
        (9, Bytes),
        (10, Bytes),
        (12, Bytes),
    ],
);

// Metrics.

static METRICS_REQUEST: Message = Message::new(0, &[(1, Repeated(&RESOURCE_METRICS))]);
static RESOURCE_METRICS: Message = Message::new(
    size_of::<ResourceMetrics>(),
    &[
        (1, Inline(&RESOURCE)),
        (2, Repeated(&SCOPE_METRICS)),
        (3, Bytes),
    ],
);
static SCOPE_METRICS: Message = Message::new(
    size_of::<ScopeMetrics>(),
    &[(1, Inline(&SCOPE)), (2, Repeated(&METRIC)), (3, Bytes)],
);
static METRIC: Message = Message::new(
    size_of::<Metric>(),
    &[
        (1, Bytes),
        (2, Bytes),
        (3, Bytes),
        (5, Inline(&NUMBER_POINTS)),
        (7, Inline(&NUMBER_POINTS)),
        (9, Inline(&HISTOGRAM_POINTS)),
        (10, Inline(&EXPONENTIAL_HISTOGRAM_POINTS)),
        (11, Inline(&SUMMARY_POINTS)),
        (12, Repeated(&KEY_VALUE)),
    ],
);
/// `Gauge` and `Sum`.
static NUMBER_POINTS: Message = Message::new(0, &[(1, Repeated(&NUMBER_POINT))]);
static HISTOGRAM_POINTS: Message = Message::new(0, &[(1, Repeated(&HISTOGRAM_POINT))]);
static EXPONENTIAL_HISTOGRAM_POINTS: Message =
    Message::new(0, &[(1, Repeated(&EXPONENTIAL_HISTOGRAM_POINT))]);
static SUMMARY_POINTS: Message = Message::new(0, &[(1, Repeated(&SUMMARY_POINT))]);
static NUMBER_POINT: Message = Message::item(
    size_of::<NumberDataPoint>(),
    &[(5, Repeated(&EXEMPLAR)), (7, Repeated(&KEY_VALUE))],
);
static HISTOGRAM_POINT: Message = Message::item(
    size_of::<HistogramDataPoint>(),
    &[
        (6, Fixed64s),
        (7, Fixed64s),
        (8, Repeated(&EXEMPLAR)),
        (9, Repeated(&KEY_VALUE)),
    ],
);
static EXPONENTIAL_HISTOGRAM_POINT: Message = Message::item(
    size_of::<ExponentialHistogramDataPoint>(),
    &[
        (1, Repeated(&KEY_VALUE)),
        (8, Inline(&BUCKETS)),
        (9, Inline(&BUCKETS)),
        (11, Repeated(&EXEMPLAR)),
    ],
);
static BUCKETS: Message = Message::new(0, &[(2, Varints)]);
static SUMMARY_POINT: Message = Message::item(
    size_of::<SummaryDataPoint>(),
    &[(6, Repeated(&VALUE_AT_QUANTILE)), (7, Repeated(&KEY_VALUE))],
);
static VALUE_AT_QUANTILE: Message = Message::new(size_of::<ValueAtQuantile>(), &[]);
static EXEMPLAR: Message = Message::new(
    size_of::<Exemplar>(),
    &[(4, Bytes), (5, Bytes), (7, Repeated(&KEY_VALUE))],
);

#[cfg(test)]
#[path = "protobuf_tests.rs"]
mod tests;

//! The decoded size of an OTLP/JSON export request, from its characters.
//!
//! [`crate::json::decode`] reads a body into a `serde_json::Value` tree first, then turns the
//! tree into the request's prost structs, freeing the tree as it goes; at worst both are held
//! at once, so both are counted. One pass over the bytes counts, outside strings, the objects
//! (`{`), the members (`:`) and the values that open an array or follow a comma (`[`, `,`),
//! and the bytes inside strings:
//! - an object: a `BTreeMap` node, which holds up to 11 members, and the struct it becomes,
//!   counted as the largest struct of the signal (every object of a request could be a span);
//! - a member: the share of a node beyond the first, for objects of more than 11 members (a
//!   node but the first holds at least 5);
//! - a value in an array: a `Value`;
//! - a string's bytes: its `String`, in the tree then in the struct (moved, not copied).

use std::mem::size_of;

use opentelemetry_proto::tonic::{
    logs::v1::LogRecord,
    metrics::v1::{
        Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
        ScopeMetrics, SummaryDataPoint,
    },
    trace::v1::{ScopeSpans, Span, span},
};
use serde_json::Value;

use super::Estimate;
use crate::signal::SignalKind;

/// A `BTreeMap<String, Value>` leaf node: parent link, index and length, then room for 11
/// keys and 11 values (std's B-tree with B = 6).
const LEAF_NODE: usize = 2 * size_of::<usize>() + 11 * (size_of::<String>() + size_of::<Value>());
/// An internal node: a leaf's fields and 12 child links.
const INTERNAL_NODE: usize = LEAF_NODE + 12 * size_of::<usize>();

/// The decoded size of `body`, an OTLP/JSON export request of `kind` (see the module docs),
/// and its items: the objects where a request of `kind` holds its spans, log records or data
/// points.
#[must_use]
pub fn json(kind: SignalKind, body: &[u8]) -> Estimate {
    let shape = Shape::of(kind);
    let mut count = Count::default();
    let mut estimate = Estimate::default();
    // Whether each enclosing container, from the outermost, is an array (bit `depth - 1`).
    let mut arrays: u64 = 0;
    let mut depth: u32 = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
                continue;
            }
            count.string_bytes += 1;
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                let array = byte == b'[';
                if depth <= u64::BITS {
                    let bit = 1 << (depth - 1);
                    arrays = if array { arrays | bit } else { arrays & !bit };
                }
                if array {
                    count.values += 1;
                } else {
                    count.objects += 1;
                    if depth == shape.item_depth && arrays & ((1 << depth) - 1) == shape.item_arrays
                    {
                        estimate.items += 1;
                    }
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => count.values += 1,
            b':' => count.members += 1,
            _ => {}
        }
    }
    estimate.add(size_of::<Value>());
    estimate.add(
        count
            .objects
            .saturating_mul(LEAF_NODE + shape.largest_struct),
    );
    estimate.add(count.members.saturating_mul(INTERNAL_NODE / 5));
    estimate.add(count.values.saturating_mul(size_of::<Value>()));
    estimate.add(count.string_bytes);
    estimate
}

#[derive(Default)]
struct Count {
    objects: usize,
    members: usize,
    values: usize,
    string_bytes: usize,
}

/// Where a request of a signal holds its items, and its largest struct.
struct Shape {
    /// The depth of an item's object (the request's object is at 1) ...
    item_depth: u32,
    /// ... and which of its enclosing containers are arrays (bit `depth - 1`).
    item_arrays: u64,
    largest_struct: usize,
}

impl Shape {
    fn of(kind: SignalKind) -> Self {
        // `{"resourceSpans": [{"scopeSpans": [{"spans": [{ ... }]}]}]}`: the span's object is
        // at depth 7, in arrays at depths 2, 4 and 6; logs alike.
        let items = 0b10_1010;
        match kind {
            SignalKind::Traces => Self {
                item_depth: 7,
                item_arrays: items,
                largest_struct: largest(&[
                    size_of::<Span>(),
                    size_of::<span::Event>(),
                    size_of::<span::Link>(),
                    size_of::<ScopeSpans>(),
                ]),
            },
            SignalKind::Logs => Self {
                item_depth: 7,
                item_arrays: items,
                largest_struct: largest(&[size_of::<LogRecord>(), size_of::<ScopeSpans>()]),
            },
            // A data point is in `dataPoints` (an array at depth 9) of a metric's `sum`,
            // `gauge`, ... (an object at depth 8).
            SignalKind::Metrics => Self {
                item_depth: 10,
                item_arrays: items | (1 << 8),
                largest_struct: largest(&[
                    size_of::<Metric>(),
                    size_of::<ScopeMetrics>(),
                    size_of::<NumberDataPoint>(),
                    size_of::<HistogramDataPoint>(),
                    size_of::<ExponentialHistogramDataPoint>(),
                    size_of::<SummaryDataPoint>(),
                    size_of::<Exemplar>(),
                ]),
            },
        }
    }
}

fn largest(sizes: &[usize]) -> usize {
    sizes.iter().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_objects_members_and_values_outside_strings() {
        let plain = json(SignalKind::Traces, br#"{"a":[1,2]}"#);
        // The same with braces, brackets, commas, colons and an escaped quote inside strings.
        let quoted = json(SignalKind::Traces, br#"{"{[,:\"":[1,2]}"#);
        let shape = Shape::of(SignalKind::Traces);
        let want = size_of::<Value>()
            + (LEAF_NODE + shape.largest_struct)
            + INTERNAL_NODE / 5
            + 2 * size_of::<Value>()
            + 1;
        assert_eq!(plain.bytes, want as u64);
        assert_eq!(quoted.bytes, plain.bytes + 5, "{quoted:?}");
    }

    #[test]
    fn items_are_the_objects_where_the_signal_keeps_them() {
        let traces = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"stringValue":"v"}}]},
            "scopeSpans":[{"scope":{"name":"s"},"spans":[{"name":"a"},{"name":"b","events":[{}]}]}]}]}"#;
        assert_eq!(json(SignalKind::Traces, traces).items, 2);
        let logs = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{},{"body":{"kvlistValue":{}}}]}]}]}"#;
        assert_eq!(json(SignalKind::Logs, logs).items, 3);
        let metrics = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"m","metadata":[{"key":"k","value":{}}],"sum":{"dataPoints":[{},{"exemplars":[{}]}]}},
            {"gauge":{"dataPoints":[{}]}}]}]}]}"#;
        assert_eq!(json(SignalKind::Metrics, metrics).items, 3);
    }

    #[test]
    fn an_empty_span_flood_is_hundreds_of_times_its_size() {
        let mut body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#.to_vec();
        for _ in 0..10_000 {
            body.extend_from_slice(b"{},");
        }
        body.extend_from_slice(b"{}]}]}]}");
        let estimate = json(SignalKind::Traces, &body);
        assert_eq!(estimate.items, 10_001);
        assert!(
            estimate.bytes > 100 * body.len() as u64,
            "{estimate:?} for {} bytes",
            body.len()
        );
    }

    #[test]
    fn anything_is_estimated_without_panicking() {
        for body in [
            &b""[..],
            b"\"",
            b"\\",
            b"}}}]]]",
            b"{\"a\":\"\\",
            &[0xff, 0xfe, b'{', 0x80],
        ] {
            let _ = json(SignalKind::Metrics, body);
        }
        let deep = "[".repeat(100_000) + &"{".repeat(100_000);
        assert_eq!(json(SignalKind::Traces, deep.as_bytes()).items, 0);
    }
}

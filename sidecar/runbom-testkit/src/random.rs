//! Random OTLP trace and log requests from a seed, for checks that an encoder writes what a
//! reference writes for any request: every field drawn (empty, zero and unset included),
//! every kind of attribute value, nested arrays and lists, strings with quotes, backslashes,
//! control characters and non-ASCII text.

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
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Draws requests; the same seed gives the same requests.
pub struct RandomRequests(StdRng);

impl RandomRequests {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }

    #[must_use]
    pub fn traces(&mut self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: self.some(3, |r| ResourceSpans {
                resource: r.maybe(Self::resource),
                scope_spans: r.some(3, |r| ScopeSpans {
                    scope: r.maybe(Self::scope),
                    spans: r.some(4, Self::span),
                    schema_url: r.text(),
                }),
                schema_url: r.text(),
            }),
        }
    }

    #[must_use]
    pub fn logs(&mut self) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: self.some(3, |r| ResourceLogs {
                resource: r.maybe(Self::resource),
                scope_logs: r.some(3, |r| ScopeLogs {
                    scope: r.maybe(Self::scope),
                    log_records: r.some(4, Self::log_record),
                    schema_url: r.text(),
                }),
                schema_url: r.text(),
            }),
        }
    }

    /// Up to `max` items.
    fn some<T>(&mut self, max: usize, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let n = self.0.random_range(0..=max);
        (0..n).map(|_| f(self)).collect()
    }

    fn maybe<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.0.random_bool(0.8).then(|| f(self))
    }

    /// A number that is often 0 (a proto3 default), else small or anywhere in the range.
    fn number(&mut self) -> u64 {
        match self.0.random_range(0..4) {
            0 => 0,
            1 => self.0.random_range(1..300),
            _ => self.0.random(),
        }
    }

    fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "",
            "a",
            "process.pid",
            "/tmp/x y",
            "\"",
            "\\",
            "\n",
            "\t",
            "\r",
            "\u{8}",
            "\u{c}",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "日本",
            "🙂",
            "{}",
            "</",
            "0",
        ];
        let n = self.0.random_range(0..5);
        (0..n)
            .map(|_| PIECES[self.0.random_range(0..PIECES.len())])
            .collect()
    }

    fn bytes(&mut self, lengths: &[usize]) -> Vec<u8> {
        let n = lengths[self.0.random_range(0..lengths.len())];
        (0..n).map(|_| self.0.random()).collect()
    }

    fn value(&mut self, depth: u32) -> AnyValue {
        let kinds = if depth > 1 { 5 } else { 7 };
        let value = match self.0.random_range(0..=kinds) {
            0 => None,
            1 => Some(Value::StringValue(self.text())),
            2 => Some(Value::BoolValue(self.0.random())),
            3 => Some(Value::IntValue(self.number() as i64)),
            4 => Some(Value::DoubleValue(
                [
                    0.0,
                    -0.0,
                    1.5,
                    -2.25e-7,
                    1e300,
                    f64::from(self.0.random::<u32>()),
                ][self.0.random_range(0..6)],
            )),
            5 => Some(Value::BytesValue(self.bytes(&[0, 1, 3, 16]))),
            6 => Some(Value::ArrayValue(ArrayValue {
                values: self.some(3, |r| r.value(depth + 1)),
            })),
            _ => Some(Value::KvlistValue(KeyValueList {
                values: self.some(3, |r| r.key_value(depth + 1)),
            })),
        };
        AnyValue { value }
    }

    fn key_value(&mut self, depth: u32) -> KeyValue {
        KeyValue {
            key: self.text(),
            value: self.maybe(|r| r.value(depth)),
        }
    }

    fn attributes(&mut self) -> Vec<KeyValue> {
        self.some(5, |r| r.key_value(0))
    }

    fn resource(&mut self) -> Resource {
        Resource {
            attributes: self.attributes(),
            dropped_attributes_count: self.number() as u32,
            entity_refs: self.some(2, |r| EntityRef {
                schema_url: r.text(),
                r#type: r.text(),
                id_keys: r.some(2, Self::text),
                description_keys: r.some(2, Self::text),
            }),
        }
    }

    fn scope(&mut self) -> InstrumentationScope {
        InstrumentationScope {
            name: self.text(),
            version: self.text(),
            attributes: self.attributes(),
            dropped_attributes_count: self.number() as u32,
        }
    }

    fn span(&mut self) -> Span {
        Span {
            trace_id: self.bytes(&[0, 16]),
            span_id: self.bytes(&[0, 8]),
            trace_state: self.text(),
            parent_span_id: self.bytes(&[0, 8]),
            flags: self.number() as u32,
            name: self.text(),
            kind: self.0.random_range(-1..6),
            start_time_unix_nano: self.number(),
            end_time_unix_nano: self.number(),
            attributes: self.attributes(),
            dropped_attributes_count: self.number() as u32,
            events: self.some(2, |r| span::Event {
                time_unix_nano: r.number(),
                name: r.text(),
                attributes: r.attributes(),
                dropped_attributes_count: r.number() as u32,
            }),
            dropped_events_count: self.number() as u32,
            links: self.some(2, |r| span::Link {
                trace_id: r.bytes(&[0, 16]),
                span_id: r.bytes(&[0, 8]),
                trace_state: r.text(),
                attributes: r.attributes(),
                dropped_attributes_count: r.number() as u32,
                flags: r.number() as u32,
            }),
            dropped_links_count: self.number() as u32,
            status: self.maybe(|r| Status {
                message: r.text(),
                code: r.0.random_range(-1..3),
            }),
        }
    }

    fn log_record(&mut self) -> LogRecord {
        LogRecord {
            time_unix_nano: self.number(),
            observed_time_unix_nano: self.number(),
            severity_number: self.0.random_range(-1..25),
            severity_text: self.text(),
            body: self.maybe(|r| r.value(0)),
            attributes: self.attributes(),
            dropped_attributes_count: self.number() as u32,
            flags: self.number() as u32,
            trace_id: self.bytes(&[0, 16]),
            span_id: self.bytes(&[0, 8]),
            event_name: self.text(),
        }
    }
}

//! Sample OTLP export requests: every kind of attribute value, events, links and status on
//! spans; log records; a sum, a gauge and a histogram.

use std::io::Write as _;

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    },
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status},
};

#[must_use]
pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

#[must_use]
pub fn text(s: &str) -> Value {
    Value::StringValue(s.into())
}

fn resource() -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", text("checkout")),
            kv("host.cpu.count", Value::IntValue(8)),
        ],
        dropped_attributes_count: 1,
        ..Resource::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "runbom.test".into(),
        version: "1.0.0".into(),
        attributes: vec![kv("scope.attr", Value::BoolValue(true))],
        dropped_attributes_count: 0,
    }
}

/// A valid span with every kind of attribute value, events, a link and a status.
#[must_use]
pub fn span(name: &str, trace_id: [u8; 16], span_id: [u8; 8]) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: vec![9; 8],
        trace_state: "vendor=1".into(),
        flags: 0x301,
        name: name.into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: vec![
            kv("gen_ai.request.model", text("gpt-4o")),
            kv("gen_ai.usage.input_tokens", Value::IntValue(-42)),
            kv("gen_ai.request.temperature", Value::DoubleValue(0.25)),
            kv("stream", Value::BoolValue(false)),
            kv("raw", Value::BytesValue(vec![0, 1, 2, 255])),
            kv(
                "gen_ai.response.finish_reasons",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(text("stop")),
                    }],
                }),
            ),
            kv(
                "nested",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", Value::IntValue(1))],
                }),
            ),
        ],
        dropped_attributes_count: 2,
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "gen_ai.user.message".into(),
            attributes: vec![kv("content", text("hello"))],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 0,
        links: vec![span::Link {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            trace_state: String::new(),
            attributes: vec![kv("link.reason", text("retrieval"))],
            dropped_attributes_count: 0,
            flags: 1,
        }],
        dropped_links_count: 0,
        status: Some(Status {
            message: "tool timed out".into(),
            code: status::StatusCode::Error as i32,
        }),
    }
}

#[must_use]
pub fn traces_of(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[must_use]
pub fn sample_traces() -> ExportTraceServiceRequest {
    traces_of(vec![
        span("chat gpt-4o", [1; 16], [2; 8]),
        span("execute_tool get_weather", [1; 16], [3; 8]),
    ])
}

#[must_use]
pub fn log_record(trace_id: &[u8], span_id: &[u8]) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        observed_time_unix_nano: 1_700_000_000_000_000_001,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(text("prompt sent")),
        }),
        attributes: vec![kv("gen_ai.system", text("openai"))],
        dropped_attributes_count: 0,
        flags: 1,
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        event_name: "gen_ai.client.inference.operation.details".into(),
    }
}

#[must_use]
pub fn logs_of(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[must_use]
pub fn sample_logs() -> ExportLogsServiceRequest {
    logs_of(vec![log_record(&[1; 16], &[2; 8]), log_record(&[], &[])])
}

#[must_use]
pub fn sample_metrics() -> ExportMetricsServiceRequest {
    let point = |value| NumberDataPoint {
        attributes: vec![kv("gen_ai.token.type", text("input"))],
        start_time_unix_nano: 1_700_000_000_000_000_000,
        time_unix_nano: 1_700_000_060_000_000_000,
        value: Some(value),
        ..NumberDataPoint::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: vec![
                    Metric {
                        name: "gen_ai.client.token.usage".into(),
                        unit: "{token}".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: vec![point(number_data_point::Value::AsInt(-3))],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Metric::default()
                    },
                    Metric {
                        name: "queue.depth".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![point(number_data_point::Value::AsDouble(1.5))],
                        })),
                        ..Metric::default()
                    },
                    Metric {
                        name: "gen_ai.client.operation.duration".into(),
                        unit: "s".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                time_unix_nano: 1_700_000_060_000_000_000,
                                count: 3,
                                sum: Some(2.5),
                                bucket_counts: vec![1, 2, 0],
                                explicit_bounds: vec![0.5, 1.0],
                                min: Some(0.1),
                                max: Some(1.2),
                                ..HistogramDataPoint::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        ..Metric::default()
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[must_use]
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(data)
        .expect("writing into a Vec cannot fail");
    encoder.finish().expect("finishing a Vec gzip cannot fail")
}

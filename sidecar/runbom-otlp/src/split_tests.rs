use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message as _;

use super::*;
use crate::signal::Signal;

fn resource(name: &str) -> Resource {
    Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(name.into())),
            }),
        }],
        ..Default::default()
    }
}

fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.into(),
        ..Default::default()
    }
}

/// Resources a and b; a has scopes x (`n[0]` spans) and y (`n[1]`), b has z (`n[2]`); each span
/// named after where it is, with a payload of `pad` bytes.
fn traces(n: [usize; 3], pad: usize) -> ExportTraceServiceRequest {
    let scope_spans = |name: &str, n: usize| ScopeSpans {
        scope: Some(scope(name)),
        spans: (0..n)
            .map(|i| Span {
                name: format!("{name}{i}"),
                trace_id: vec![7; 16],
                span_id: vec![u8::try_from(i % 256).unwrap_or(0); 8],
                attributes: vec![KeyValue {
                    key: "pad".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("p".repeat(pad + i % 7))),
                    }),
                }],
                ..Default::default()
            })
            .collect(),
        schema_url: format!("https://example.com/{name}"),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(resource("a")),
                scope_spans: vec![scope_spans("x", n[0]), scope_spans("y", n[1])],
                schema_url: "https://example.com/a".into(),
            },
            ResourceSpans {
                resource: Some(resource("b")),
                scope_spans: vec![scope_spans("z", n[2])],
                schema_url: String::new(),
            },
        ],
    }
}

/// Every span with its resource, scope and schema URLs, in order.
fn flat(request: &ExportTraceServiceRequest) -> Vec<String> {
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push(format!(
                    "{:?} {} {:?} {} {:?}",
                    rs.resource, rs.schema_url, ss.scope, ss.schema_url, span
                ));
            }
        }
    }
    out
}

/// `request` cut at `max`, each part decoded; checks every part's size.
fn cut(request: &ExportTraceServiceRequest, max: usize) -> Option<Vec<ExportTraceServiceRequest>> {
    let bytes = Signal::Traces(request.clone()).to_protobuf();
    let parts = split_encoded(&bytes, max)?;
    Some(
        parts
            .iter()
            .map(|part| {
                let decoded =
                    ExportTraceServiceRequest::decode(part.as_slice()).expect("every part decodes");
                let items: usize = decoded
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                assert!(items > 0, "an empty part");
                assert!(
                    part.len() <= max || items == 1,
                    "a part of {} bytes over {max} with {items} items",
                    part.len()
                );
                decoded
            })
            .collect(),
    )
}

#[test]
fn parts_keep_every_item_in_order_under_its_resource_and_scope() {
    for n in [[3, 4, 5], [1, 0, 9], [0, 12, 0], [200, 1, 50]] {
        let whole = traces(n, 300);
        let size = whole.encode_to_vec().len();
        for divisor in [2, 3, 5, 8, 40] {
            let max = size / divisor;
            let parts = cut(&whole, max).expect("larger than max, more than one item");
            let joined: Vec<String> = parts.iter().flat_map(flat).collect();
            assert_eq!(joined, flat(&whole), "{n:?} cut at {max}");
            assert!(
                parts.len() >= divisor.min(n.iter().sum()),
                "{n:?}: {}",
                parts.len()
            );
        }
    }
}

#[test]
fn a_part_is_as_full_as_the_limit_allows() {
    // 12 spans of about the same size: 4 per part.
    let whole = traces([3, 4, 5], 1000);
    let per_span = whole.encode_to_vec().len() / 12;
    let parts = cut(&whole, 4 * per_span + 200).expect("cut");
    assert_eq!(parts.len(), 3);
}

#[test]
fn what_fits_or_cannot_be_cut_is_left_alone() {
    let whole = traces([3, 4, 5], 10);
    let size = whole.encode_to_vec().len();
    assert_eq!(cut(&whole, size), None);
    let one = traces([0, 1, 0], 10_000);
    assert_eq!(cut(&one, 100), None);
    assert_eq!(
        split_encoded(b"\x0a\xff\xff", 1),
        None,
        "a length past the end"
    );
    assert_eq!(
        split_encoded(b"\x0f\x00\x00", 1),
        None,
        "an unknown wire type"
    );
}

#[test]
fn an_item_larger_than_the_limit_goes_alone() {
    let mut whole = traces([2, 0, 1], 10);
    whole.resource_spans[0].scope_spans[0].spans[1].name = "n".repeat(5_000);
    let parts = cut(&whole, 1_000).expect("cut");
    assert_eq!(parts.len(), 3);
    assert_eq!(parts.iter().flat_map(flat).count(), 3);
}

#[test]
fn logs_and_metrics_are_cut_alike() {
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource("a")),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope("x")),
                log_records: (0..10)
                    .map(|i| LogRecord {
                        time_unix_nano: i,
                        event_name: "e".repeat(100),
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let bytes = Signal::Logs(logs.clone()).to_protobuf();
    let parts = split_encoded(&bytes, bytes.len() / 2).expect("cut");
    let decoded: Vec<ExportLogsServiceRequest> = parts
        .iter()
        .map(|p| ExportLogsServiceRequest::decode(p.as_slice()).expect("decodes"))
        .collect();
    let times: Vec<u64> = decoded
        .iter()
        .flat_map(|r| &r.resource_logs[0].scope_logs[0].log_records)
        .map(|l| l.time_unix_nano)
        .collect();
    assert_eq!(times, (0..10).collect::<Vec<_>>());
    assert!(
        decoded
            .iter()
            .all(|r| r.resource_logs[0].resource == Some(resource("a")))
    );

    let metric = |name: &str, points: usize| Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint::default(); points],
        })),
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource("a")),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope("x")),
                metrics: vec![metric("m1", 50), metric("m2", 3), metric("m3", 40)],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let bytes = metrics.encode_to_vec();
    let parts = split_encoded(&bytes, 1).expect("three metrics can be cut");
    let names: Vec<String> = parts
        .iter()
        .map(|p| ExportMetricsServiceRequest::decode(p.as_slice()).expect("decodes"))
        .map(|r| {
            r.resource_metrics[0].scope_metrics[0].metrics[0]
                .name
                .clone()
        })
        .collect();
    assert_eq!(names, ["m1", "m2", "m3"]);
}

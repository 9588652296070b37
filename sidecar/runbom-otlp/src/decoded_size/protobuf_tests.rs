use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    },
    common::v1::{InstrumentationScope, any_value::Value},
    metrics::v1::{
        ExponentialHistogram, Gauge, Summary, exponential_histogram_data_point::Buckets,
        metric::Data,
    },
    resource::v1::Resource,
};
use prost::Message as _;
use runbom_testkit::{
    random::RandomRequests,
    requests::{kv, sample_logs, sample_metrics, sample_traces, span, text, traces_of},
};

use super::*;
use crate::signal::Signal;

// What decoding keeps, computed from the decoded request: the oracle the walk must match on
// a request encoded by prost (each field once, in order).

fn key_values(kvs: &[KeyValue]) -> usize {
    kvs.iter()
        .map(|kv| size_of::<KeyValue>() + kv.key.len() + kv.value.as_ref().map_or(0, any_value))
        .sum()
}

fn any_value(v: &AnyValue) -> usize {
    match &v.value {
        Some(Value::StringValue(s)) => s.len(),
        Some(Value::BytesValue(b)) => b.len(),
        Some(Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| size_of::<AnyValue>() + any_value(v))
            .sum(),
        Some(Value::KvlistValue(l)) => key_values(&l.values),
        _ => 0,
    }
}

fn scope(s: Option<&InstrumentationScope>) -> usize {
    s.map_or(0, |s| {
        s.name.len() + s.version.len() + key_values(&s.attributes)
    })
}

fn resource(r: Option<&Resource>) -> usize {
    r.map_or(0, |r| {
        key_values(&r.attributes)
            + r.entity_refs
                .iter()
                .map(|e| {
                    size_of::<EntityRef>()
                        + e.schema_url.len()
                        + e.r#type.len()
                        + e.id_keys
                            .iter()
                            .chain(&e.description_keys)
                            .map(|k| size_of::<String>() + k.len())
                            .sum::<usize>()
                })
                .sum::<usize>()
    })
}

fn traces(request: &ExportTraceServiceRequest) -> u64 {
    let span = |s: &Span| {
        size_of::<Span>()
            + s.trace_id.len()
            + s.span_id.len()
            + s.trace_state.len()
            + s.parent_span_id.len()
            + s.name.len()
            + key_values(&s.attributes)
            + s.events
                .iter()
                .map(|e| size_of::<span::Event>() + e.name.len() + key_values(&e.attributes))
                .sum::<usize>()
            + s.links
                .iter()
                .map(|l| {
                    size_of::<span::Link>()
                        + l.trace_id.len()
                        + l.span_id.len()
                        + l.trace_state.len()
                        + key_values(&l.attributes)
                })
                .sum::<usize>()
            + s.status.as_ref().map_or(0, |s| s.message.len())
    };
    let total: usize = request
        .resource_spans
        .iter()
        .map(|r| {
            size_of::<ResourceSpans>()
                + resource(r.resource.as_ref())
                + r.schema_url.len()
                + r.scope_spans
                    .iter()
                    .map(|s| {
                        size_of::<ScopeSpans>()
                            + scope(s.scope.as_ref())
                            + s.schema_url.len()
                            + s.spans.iter().map(span).sum::<usize>()
                    })
                    .sum::<usize>()
        })
        .sum();
    total as u64
}

fn logs(request: &ExportLogsServiceRequest) -> u64 {
    let record = |l: &LogRecord| {
        size_of::<LogRecord>()
            + l.severity_text.len()
            + l.body.as_ref().map_or(0, any_value)
            + key_values(&l.attributes)
            + l.trace_id.len()
            + l.span_id.len()
            + l.event_name.len()
    };
    let total: usize = request
        .resource_logs
        .iter()
        .map(|r| {
            size_of::<ResourceLogs>()
                + resource(r.resource.as_ref())
                + r.schema_url.len()
                + r.scope_logs
                    .iter()
                    .map(|s| {
                        size_of::<ScopeLogs>()
                            + scope(s.scope.as_ref())
                            + s.schema_url.len()
                            + s.log_records.iter().map(record).sum::<usize>()
                    })
                    .sum::<usize>()
        })
        .sum();
    total as u64
}

fn metrics(request: &ExportMetricsServiceRequest) -> u64 {
    let exemplars = |es: &[Exemplar]| -> usize {
        es.iter()
            .map(|e| {
                size_of::<Exemplar>()
                    + e.span_id.len()
                    + e.trace_id.len()
                    + key_values(&e.filtered_attributes)
            })
            .sum()
    };
    let numbers = |ps: &[NumberDataPoint]| -> usize {
        ps.iter()
            .map(|p| {
                size_of::<NumberDataPoint>() + key_values(&p.attributes) + exemplars(&p.exemplars)
            })
            .sum()
    };
    let buckets = |b: Option<&Buckets>| b.map_or(0, |b| 8 * b.bucket_counts.len());
    let data = |d: Option<&Data>| match d {
        None => 0,
        Some(Data::Gauge(g)) => numbers(&g.data_points),
        Some(Data::Sum(s)) => numbers(&s.data_points),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter()
            .map(|p| {
                size_of::<HistogramDataPoint>()
                    + key_values(&p.attributes)
                    + 8 * (p.bucket_counts.len() + p.explicit_bounds.len())
                    + exemplars(&p.exemplars)
            })
            .sum(),
        Some(Data::ExponentialHistogram(h)) => h
            .data_points
            .iter()
            .map(|p| {
                size_of::<ExponentialHistogramDataPoint>()
                    + key_values(&p.attributes)
                    + buckets(p.positive.as_ref())
                    + buckets(p.negative.as_ref())
                    + exemplars(&p.exemplars)
            })
            .sum(),
        Some(Data::Summary(s)) => s
            .data_points
            .iter()
            .map(|p| {
                size_of::<SummaryDataPoint>()
                    + key_values(&p.attributes)
                    + size_of::<ValueAtQuantile>() * p.quantile_values.len()
            })
            .sum(),
    };
    let total: usize = request
        .resource_metrics
        .iter()
        .map(|r| {
            size_of::<ResourceMetrics>()
                + resource(r.resource.as_ref())
                + r.schema_url.len()
                + r.scope_metrics
                    .iter()
                    .map(|s| {
                        size_of::<ScopeMetrics>()
                            + scope(s.scope.as_ref())
                            + s.schema_url.len()
                            + s.metrics
                                .iter()
                                .map(|m| {
                                    size_of::<Metric>()
                                        + m.name.len()
                                        + m.description.len()
                                        + m.unit.len()
                                        + key_values(&m.metadata)
                                        + data(m.data.as_ref())
                                })
                                .sum::<usize>()
                    })
                    .sum::<usize>()
        })
        .sum();
    total as u64
}

/// The estimate of `signal` encoded by prost, with what its decoded form holds.
fn estimate_and_oracle(signal: &Signal) -> (Estimate, Estimate) {
    let (kind, bytes, oracle) = match signal {
        Signal::Traces(r) => (SignalKind::Traces, r.encode_to_vec(), traces(r)),
        Signal::Logs(r) => (SignalKind::Logs, r.encode_to_vec(), logs(r)),
        Signal::Metrics(r) => (SignalKind::Metrics, r.encode_to_vec(), metrics(r)),
        _ => unreachable!("only requests a receiver decodes"),
    };
    let oracle = Estimate {
        bytes: oracle,
        items: signal.item_count() as u64,
    };
    (protobuf(kind, &bytes), oracle)
}

fn all_metric_kinds() -> ExportMetricsServiceRequest {
    let mut request = sample_metrics();
    let exemplar = Exemplar {
        filtered_attributes: vec![kv("k", text("v"))],
        span_id: vec![1; 8],
        trace_id: vec![2; 16],
        ..Exemplar::default()
    };
    let metrics = &mut request.resource_metrics[0].scope_metrics[0].metrics;
    if let Some(Data::Histogram(h)) = &mut metrics[2].data {
        h.data_points[0].exemplars = vec![exemplar.clone(); 2];
    }
    metrics.push(Metric {
        name: "exponential".into(),
        metadata: vec![kv("m", Value::BoolValue(true))],
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: vec![kv("a", text("b"))],
                // Varints of 1, 2 and 3 bytes.
                positive: Some(Buckets {
                    offset: -3,
                    bucket_counts: vec![1, 300, 70_000, 0],
                }),
                negative: Some(Buckets {
                    offset: 1,
                    bucket_counts: vec![5],
                }),
                exemplars: vec![exemplar],
                ..ExponentialHistogramDataPoint::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Metric::default()
    });
    metrics.push(Metric {
        name: "summary".into(),
        data: Some(Data::Summary(Summary {
            data_points: vec![
                SummaryDataPoint {
                    quantile_values: vec![ValueAtQuantile::default(); 3],
                    ..SummaryDataPoint::default()
                };
                2
            ],
        })),
        ..Metric::default()
    });
    metrics.push(Metric {
        name: "gauge".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint::default(); 4],
        })),
        ..Metric::default()
    });
    request
}

#[test]
fn requests_encoded_by_prost_are_estimated_exactly() {
    let mut random = RandomRequests::new(7);
    let mut signals = vec![
        Signal::Traces(sample_traces()),
        Signal::Logs(sample_logs()),
        Signal::Metrics(sample_metrics()),
        Signal::Metrics(all_metric_kinds()),
    ];
    for _ in 0..200 {
        signals.push(Signal::Traces(random.traces()));
        signals.push(Signal::Logs(random.logs()));
    }
    for signal in &signals {
        let (estimate, oracle) = estimate_and_oracle(signal);
        assert_eq!(estimate, oracle, "{signal:?}");
    }
    let (estimate, _) = estimate_and_oracle(&Signal::Metrics(all_metric_kinds()));
    assert_eq!(estimate.items, 3 + 1 + 2 + 4, "{estimate:?}");
}

#[test]
fn repeated_numbers_count_alike_packed_or_not() {
    let point = HistogramDataPoint {
        bucket_counts: vec![1, 2, 3],
        explicit_bounds: vec![0.5, 1.5],
        ..HistogramDataPoint::default()
    };
    let packed = point.encode_to_vec();
    // The same fields unpacked: each element with its own key (fixed64 6, double 7).
    let mut unpacked = Vec::new();
    for count in &point.bucket_counts {
        unpacked.push((6 << 3) | 1);
        unpacked.extend_from_slice(&count.to_le_bytes());
    }
    for bound in &point.explicit_bounds {
        unpacked.push((7 << 3) | 1);
        unpacked.extend_from_slice(&bound.to_le_bytes());
    }
    assert_eq!(
        HistogramDataPoint::decode(unpacked.as_slice()).ok(),
        Some(point),
        "prost reads both"
    );
    let estimate = |point: &[u8]| {
        let mut e = Estimate::default();
        assert!(walk(&HISTOGRAM_POINT, point, 1, &mut e).is_ok());
        e.bytes
    };
    assert_eq!(estimate(&packed), 5 * 8);
    assert_eq!(estimate(&unpacked), 5 * 8);
}

/// `12 00` (an empty span) `n` times in one scope.
fn empty_span_flood(n: usize) -> Vec<u8> {
    let spans = [0x12, 0x00].repeat(n);
    // ResourceSpans.scope_spans (2), holding the spans; the request's resource_spans (1).
    let scope = [&[0x12][..], &varint(spans.len()), &spans].concat();
    [&[0x0a][..], &varint(scope.len()), &scope].concat()
}

fn varint(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(n as u64, &mut out);
    out
}

#[test]
fn an_empty_span_flood_is_counted_span_by_span() {
    let flood = empty_span_flood(10_000);
    let estimate = protobuf(SignalKind::Traces, &flood);
    assert_eq!(estimate.items, 10_000);
    assert_eq!(
        estimate.bytes,
        (size_of::<ResourceSpans>() + size_of::<ScopeSpans>() + 10_000 * size_of::<Span>()) as u64
    );
    assert!(estimate.bytes > 100 * flood.len() as u64, "{estimate:?}");
    let decoded = ExportTraceServiceRequest::decode(flood.as_slice()).expect("it decodes");
    assert_eq!(Signal::Traces(decoded).item_count(), 10_000);
}

#[test]
fn a_request_cut_short_is_estimated_up_to_the_fault() {
    // Cut anywhere, the one resource group's length runs past the end: prost refuses the
    // request before it allocates anything, and the walk counts nothing.
    let whole = sample_traces().encode_to_vec();
    for end in 0..whole.len() {
        assert_eq!(
            protobuf(SignalKind::Traces, &whole[..end]),
            Estimate::default(),
            "cut at {end}"
        );
    }
    // A whole flood followed by a resource group cut short: prost allocates the flood's spans
    // before it finds the fault, and they are counted.
    let flood = [empty_span_flood(1_000), vec![0x0a, 0x05, 0x12]].concat();
    assert!(ExportTraceServiceRequest::decode(flood.as_slice()).is_err());
    assert_eq!(protobuf(SignalKind::Traces, &flood).items, 1_000);
}

#[test]
fn malformed_bytes_are_estimated_without_panicking() {
    // A deterministic mix of bytes that look like keys, lengths and garbage.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for len in 0..2_000 {
        let bytes: Vec<u8> = (0..len % 64)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                [0x0a, 0x12, 0x00, 0x01, 0x4a, 0x80, 0xff, state as u8][(state >> 40) as usize % 8]
            })
            .collect();
        for kind in SignalKind::ALL {
            let _ = protobuf(kind, &bytes);
        }
    }
    // A length past the end, a varint that never ends, an end-group key with no group.
    for bytes in [&[0x0a, 0x05, 0x12][..], &[0x0a, 0xff, 0xff, 0xff], &[0x0c]] {
        assert_eq!(protobuf(SignalKind::Traces, bytes), Estimate::default());
    }
}

#[test]
fn unknown_fields_and_groups_are_skipped_as_prost_skips_them() {
    // Field 99, a group holding a varint and a nested group, then the flood.
    let group = [
        &varint((99 << 3) | 3)[..],
        &[0x08, 0x01],
        &varint((5 << 3) | 3),
        &varint((5 << 3) | 4),
        &varint((99 << 3) | 4),
    ]
    .concat();
    let request = [group, empty_span_flood(100)].concat();
    assert!(ExportTraceServiceRequest::decode(request.as_slice()).is_ok());
    assert_eq!(protobuf(SignalKind::Traces, &request).items, 100);
}

/// Prepends field `number`'s key and `value`'s length to `value`, kept reversed (so that
/// wrapping it again and again takes time in proportion to its length).
fn wrap_reversed(reversed: &mut Vec<u8>, number: u8) {
    let mut head = vec![(number << 3) | 2];
    head.extend(varint(reversed.len()));
    reversed.extend(head.iter().rev());
}

/// A span whose one attribute's value is `depth` arrays, one in the other.
fn nested_arrays(depth: usize) -> Vec<u8> {
    // AnyValue { array_value (5): ArrayValue { values (1): [AnyValue ...] } }, inside out.
    let mut reversed = Vec::new();
    for _ in 0..depth {
        wrap_reversed(&mut reversed, 1);
        wrap_reversed(&mut reversed, 5);
    }
    // KeyValue.value, Span.attributes, ScopeSpans.spans, ResourceSpans.scope_spans, and the
    // request's resource_spans.
    for number in [2, 9, 2, 2, 1] {
        wrap_reversed(&mut reversed, number);
    }
    reversed.reverse();
    reversed
}

#[test]
fn nested_values_are_walked_as_deep_as_prost_decodes_them() {
    let mut deepest = 0;
    for depth in 1..100 {
        let request = nested_arrays(depth);
        let Ok(decoded) = ExportTraceServiceRequest::decode(request.as_slice()) else {
            break;
        };
        deepest = depth;
        let (estimate, oracle) = estimate_and_oracle(&Signal::Traces(decoded));
        assert_eq!(estimate, oracle, "{depth} arrays deep");
        assert_eq!(protobuf(SignalKind::Traces, &request), oracle);
    }
    assert!(deepest > 40, "prost decoded only {deepest} levels");
    // Far deeper than prost decodes: refused by prost, walked without exhausting the stack.
    let request = nested_arrays(20_000);
    assert!(ExportTraceServiceRequest::decode(request.as_slice()).is_err());
    assert_eq!(protobuf(SignalKind::Traces, &request).items, 1);
}

#[test]
fn an_attribute_heavy_request_is_a_few_times_its_size() {
    let request = traces_of(
        (0..100_u8)
            .map(|i| span("chat gpt-4o", [i; 16], [i; 8]))
            .collect(),
    );
    let bytes = request.encode_to_vec();
    let estimate = protobuf(SignalKind::Traces, &bytes);
    let size = bytes.len() as u64;
    assert!(
        (size..8 * size).contains(&estimate.bytes),
        "{estimate:?} for {size} bytes"
    );
}

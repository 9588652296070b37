//! The AI-BOM span metrics count a released request with its verdicts beside it
//! (`AibomMetrics::count_annotated`, what the stage does) exactly as they count the same spans
//! with the verdicts written onto them (`AibomMetrics::count_spans`): the same series, the same
//! values, for spans of several resources and namespaces, traces with and without drift, and
//! spans that get no verdict beside them (counted by their own attributes).

use std::time::Instant;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use runbom_aibom::{Processor, Settings};
use runbom_otlp::AnnotatedTraces;
use runbom_pipeline::{Telemetry, processor::aibom::metrics::AibomMetrics};
use runbom_testkit::agent_trace as common;

/// `req` with its resources in three namespaces (and one in none) by turn.
fn in_namespaces(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    for (i, rs) in req.resource_spans.iter_mut().enumerate() {
        let Some(ns) = ["ns-a", "ns-b", "ns-c", ""]
            .get(i % 4)
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        rs.resource
            .get_or_insert_default()
            .attributes
            .push(KeyValue {
                key: "k8s.namespace.name".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue((*ns).into())),
                }),
            });
    }
    req
}

fn requests(seeds: std::ops::Range<u8>) -> ExportTraceServiceRequest {
    let mut req = ExportTraceServiceRequest::default();
    for seed in seeds {
        req.resource_spans
            .extend(common::benign(seed).request().resource_spans);
        req.resource_spans
            .extend(common::injected(seed).0.request().resource_spans);
    }
    in_namespaces(req)
}

/// The series of `runbom.aibom.*` as `/metrics` shows them after their first collection.
fn aibom_series(telemetry: &Telemetry) -> Vec<String> {
    let _ = telemetry.render_prometheus();
    let mut lines: Vec<String> = telemetry
        .render_prometheus()
        .lines()
        .filter(|l| l.starts_with("runbom_aibom_"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn spans_are_counted_alike_with_their_verdicts_beside_them() {
    let bom = common::bom();
    let now = Instant::now();
    let mut beside = Processor::new(Settings::default());
    let mut annotated = beside
        .push_annotated(requests(0..12), now, &bom)
        .traces
        .expect("spans let go of");
    // Spans released with their verdicts written onto them: none beside them.
    let mut written = Processor::new(Settings::default());
    let mut rest = written
        .push(requests(12..16), now, &bom)
        .traces
        .expect("spans let go of");
    rest.resource_spans.extend(
        written
            .release_all(&bom)
            .traces
            .unwrap_or_default()
            .resource_spans,
    );
    annotated.append(AnnotatedTraces::plain(rest));
    annotated.append(
        beside
            .push_annotated(requests(16..20), now, &bom)
            .traces
            .expect("spans let go of"),
    );

    let (a, b) = (Telemetry::default(), Telemetry::default());
    AibomMetrics::new(a.metrics()).count_annotated(&annotated);
    AibomMetrics::new(b.metrics()).count_spans(&annotated.clone().into_request());
    let counted = aibom_series(&a);
    assert_eq!(counted, aibom_series(&b));
    let spans: Vec<&String> = counted
        .iter()
        .filter(|l| l.starts_with("runbom_aibom_spans_total{"))
        .collect();
    assert!(
        spans
            .iter()
            .any(|l| l.contains("k8s_namespace_name=\"ns-b\""))
            && spans.iter().any(|l| !l.contains("k8s_namespace_name"))
            && spans.iter().any(|l| l.contains("aibom_declared=\"false\"")),
        "{spans:#?}"
    );
}

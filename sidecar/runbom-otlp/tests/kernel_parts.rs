//! A request held as kernel events written in parts (what the `otlp` and `otlphttp` exporters
//! send a request too large for its receiver as): every record once, in the request's order,
//! each under its own resource, no part over its number of events.

use std::sync::Arc;

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    logs::v1::LogRecord,
    resource::v1::Resource,
    trace::v1::Span,
};
use prost::Message as _;
use runbom_otlp::{
    ConvertOptions, KernelLogs, KernelSpans, kernel_logs::cut_groups, signal::Signal, span_ids,
};
use runbom_testkit::random_events::RandomEvents;

fn opts() -> Arc<ConvertOptions> {
    Arc::new(ConvertOptions {
        host_name: "node-1".into(),
        uncorrelated_spans: true,
    })
}

/// Every log record with its resource, in the request's order.
fn log_records(req: &ExportLogsServiceRequest) -> Vec<(Option<Resource>, LogRecord)> {
    req.resource_logs
        .iter()
        .flat_map(|r| {
            r.scope_logs.iter().flat_map(|s| {
                s.log_records
                    .iter()
                    .map(|l| (r.resource.clone(), l.clone()))
            })
        })
        .collect()
}

/// Every span with its resource, in the request's order.
fn spans(req: &ExportTraceServiceRequest) -> Vec<(Option<Resource>, Span)> {
    req.resource_spans
        .iter()
        .flat_map(|r| {
            r.scope_spans
                .iter()
                .flat_map(|s| s.spans.iter().map(|sp| (r.resource.clone(), sp.clone())))
        })
        .collect()
}

#[test]
fn groups_are_cut_in_order_into_parts_of_at_most_so_many_events() {
    let groups = vec![vec![0, 2, 4, 6, 8], vec![1], vec![3, 5, 7]];
    let cut = cut_groups(groups.clone(), 2);
    assert_eq!(
        cut,
        vec![
            vec![vec![0, 2]],
            vec![vec![4, 6]],
            vec![vec![8], vec![1]],
            vec![vec![3, 5]],
            vec![vec![7]],
        ]
    );
    assert_eq!(cut_groups(groups.clone(), 100), vec![groups.clone()]);
    assert_eq!(cut_groups(groups, 0).len(), 9, "at least one event a part");
    assert!(cut_groups(Vec::new(), 3).is_empty());
}

#[test]
fn parts_hold_every_record_and_span_once_in_order() {
    for seed in 0..24u64 {
        let mut random = RandomEvents::new(seed, 1 + seed as usize % 6);
        let events = random.batch([1, 9, 60, 300][seed as usize % 4]);
        let ids = span_ids(&events);
        let logs = Signal::KernelLogs(KernelLogs::with_spans(events, ids, opts()));
        let Signal::KernelLogs(k) = &logs else {
            unreachable!()
        };
        let kernel_spans = KernelSpans::of(k.clone());
        let (whole_logs, whole_spans) = (
            log_records(&k.to_request()),
            spans(&kernel_spans.to_request()),
        );
        let spans_of = Signal::KernelSpans(kernel_spans);
        let n = k.len();
        for per_part in [1, 4, 25, n.saturating_sub(1).max(1), n] {
            let Some(parts) = logs.event_parts(per_part) else {
                assert!(n <= per_part, "{n} events, {per_part} a part");
                assert!(spans_of.event_parts(per_part).is_none());
                continue;
            };
            let (mut got_logs, mut got_spans) = (Vec::new(), Vec::new());
            for part in &parts {
                let events: usize = part.iter().map(Vec::len).sum();
                assert!(events <= per_part && events > 0, "{events} > {per_part}");
                let mut out = Vec::new();
                logs.write_protobuf_part(part, &mut out);
                got_logs.extend(log_records(
                    &ExportLogsServiceRequest::decode(out.as_slice()).expect("a log request"),
                ));
                out.clear();
                spans_of.write_protobuf_part(part, &mut out);
                got_spans.extend(spans(
                    &ExportTraceServiceRequest::decode(out.as_slice()).expect("a trace request"),
                ));
            }
            assert_eq!(got_logs, whole_logs, "seed {seed}, {per_part} a part");
            assert_eq!(got_spans, whole_spans, "seed {seed}, {per_part} a part");
        }
    }
}

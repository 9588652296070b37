//! Spans with attributes added beside them (`AnnotatedTraces`) are written as the request with
//! the attributes added is: the same protobuf as prost's, the same OTLP/JSON as
//! `serde_json`'s, on random requests and random attribute sets; and they merge as that
//! request would.

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::KeyValue,
};
use prost::Message as _;
use runbom_otlp::{
    AnnotatedTraces, AttributeSet,
    json::write::write_traces,
    signal::{Signal, SignalKind},
};
use runbom_testkit::{random::RandomRequests, requests};

fn span_count(r: &ExportTraceServiceRequest) -> usize {
    r.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Attribute sets taken from the spans of `source` (the empty set among them).
fn sets_from(source: &ExportTraceServiceRequest) -> Vec<Vec<KeyValue>> {
    let mut sets = vec![Vec::new()];
    sets.extend(
        source
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.attributes.clone()),
    );
    sets
}

/// `request`, span `i` getting set `(i * step) % (sets + 1)`, none when that is `sets`.
fn annotate(
    request: &ExportTraceServiceRequest,
    sets: &[Vec<KeyValue>],
    step: usize,
) -> AnnotatedTraces {
    let n = span_count(request);
    let index = (0..n).map(|i| {
        let s = (i * step) % (sets.len() + 1);
        (s < sets.len()).then(|| u32::try_from(s).expect("few sets"))
    });
    AnnotatedTraces::new(
        request.clone(),
        sets.iter().cloned().map(AttributeSet::new).collect(),
        index,
    )
}

/// `annotated` writes what the request with its attributes added writes.
fn writes_as_built(annotated: &AnnotatedTraces) {
    let built = annotated.clone().into_request();
    let mut out = b"prefix".to_vec();
    annotated.write_protobuf(&mut out);
    assert_eq!(&out[6..], &built.encode_to_vec()[..], "{built:?}");
    let mut json = Vec::new();
    annotated.write_json(&mut json);
    let mut reference = Vec::new();
    write_traces(&built, &mut reference);
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&reference)
    );
    assert_eq!(
        json,
        serde_json::to_vec(&built).expect("serializes"),
        "serde_json's OTLP/JSON"
    );
    let signal = Signal::AnnotatedTraces(annotated.clone());
    assert_eq!(signal.kind(), SignalKind::Traces);
    assert_eq!(signal.item_count(), span_count(&built));
    assert_eq!(signal.to_protobuf(), built.encode_to_vec());
    assert_eq!(signal.into_typed(), Signal::Traces(built));
}

#[test]
fn sample_and_random_requests_with_attributes_added() {
    let sample = requests::sample_traces();
    for step in 0..4 {
        writes_as_built(&annotate(&sample, &sets_from(&sample), step));
    }
    writes_as_built(&AnnotatedTraces::plain(sample.clone()));
    writes_as_built(&AnnotatedTraces::default());
    let mut random = RandomRequests::new(7);
    for step in 0..600 {
        let request = random.traces();
        let sets = sets_from(&random.traces());
        writes_as_built(&annotate(&request, &sets, step % 5));
    }
}

#[test]
fn annotated_traces_merge_as_their_requests_do() {
    let mut random = RandomRequests::new(11);
    for step in 0..200 {
        let (a, b) = (random.traces(), random.traces());
        let sets = sets_from(&random.traces());
        let (x, y) = (annotate(&a, &sets, step % 3), annotate(&b, &sets, 1));
        let both = |mut first: Signal, second: Signal| {
            let mut typed = first.clone().into_typed();
            typed.merge(second.clone().into_typed()).expect("traces");
            first.merge(second).expect("traces");
            assert!(
                matches!(first, Signal::AnnotatedTraces(_)),
                "still annotated"
            );
            let mut out = Vec::new();
            first.write_protobuf(&mut out);
            assert_eq!(out, typed.to_protobuf());
            assert_eq!(first.into_typed(), typed);
        };
        both(
            Signal::AnnotatedTraces(x.clone()),
            Signal::AnnotatedTraces(y.clone()),
        );
        both(
            Signal::AnnotatedTraces(x.clone()),
            Signal::Traces(b.clone()),
        );
        both(Signal::Traces(a.clone()), Signal::AnnotatedTraces(y));
    }
}

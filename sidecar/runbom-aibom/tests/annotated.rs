//! The processor with its verdicts beside the request (`Processor::push_annotated`, what
//! runbom's pipelines use) lets go of exactly what it lets go of with them written onto the
//! spans (`Processor::push`): the same spans once built, the same protobuf and OTLP/JSON
//! written from the verdicts' encodings, the same alerts (held as their parts, the same
//! protobuf and OTLP/JSON written from the parts as from the built alerts). On every kind of
//! verdict the test
//! kit's traces give (declared, undeclared, drift with reasons, kernel spans, spans of no
//! agent), with `aibom.*` attributes a sender forged, traces held and released, late spans,
//! a request whose traces are interleaved, and random requests.

use runbom_testkit::agent_trace as common;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use prost::Message as _;
use runbom_aibom::{DeclaredBom, Processor, Settings, endpoint::Endpoint};
use runbom_otlp::{
    SharedLogs,
    json::write::{write_logs, write_traces},
};
use runbom_testkit::random::RandomRequests;

fn settings() -> Settings {
    let mut s = Settings {
        wait: Duration::from_secs(5),
        max_spans: 10_000,
        ..Settings::default()
    };
    s.judge.ignore = vec![Endpoint::parse("127.0.0.1:4318").expect("an endpoint")];
    s
}

/// Two processors fed the same requests, one writing its verdicts onto the spans, the other
/// keeping them beside the request.
struct Twins {
    written: Processor,
    beside: Processor,
    /// Spans let go of with verdicts beside them.
    annotated: usize,
    /// Alerts let go of as their parts.
    alerts: usize,
}

impl Twins {
    fn new() -> Self {
        Self {
            written: Processor::new(settings()),
            beside: Processor::new(settings()),
            annotated: 0,
            alerts: 0,
        }
    }

    fn push(&mut self, req: &ExportTraceServiceRequest, bom: &DeclaredBom) {
        let now = Instant::now();
        let a = self.written.push(req.clone(), now, bom);
        let b = self.beside.push_annotated(req.clone(), now, bom);
        if let Some(alerts) = &b.alerts {
            written_alike(alerts);
            self.alerts += alerts.len();
        }
        let alerts = b.alerts.map(SharedLogs::into_request);
        assert_eq!(untimed(a.alerts), untimed(alerts), "the same alerts");
        let (a, b) = match (a.traces, b.traces) {
            (Some(a), Some(b)) => (a, b),
            (None, None) => return,
            _ => panic!("spans let go of by one only"),
        };
        self.annotated += (0..b.spans().count())
            .filter(|i| !b.added(*i).is_empty())
            .count();
        let mut protobuf = Vec::new();
        b.write_protobuf(&mut protobuf);
        assert_eq!(protobuf, a.encode_to_vec(), "the same protobuf");
        let (mut json, mut reference) = (Vec::new(), Vec::new());
        b.write_json(&mut json);
        write_traces(&a, &mut reference);
        assert_eq!(
            String::from_utf8_lossy(&json),
            String::from_utf8_lossy(&reference),
            "the same OTLP/JSON"
        );
        assert_eq!(b.into_request(), a, "the same spans");
    }

    fn release_all(&mut self, bom: &DeclaredBom) {
        let a = self.written.release_all(bom);
        let b = self.beside.release_all(bom);
        assert_eq!(a.traces, b.traces);
        assert_eq!(untimed(a.alerts), untimed(b.alerts));
    }
}

/// Alerts held as their parts are written as the request they build is.
fn written_alike(alerts: &SharedLogs) {
    let built = alerts.to_request();
    let mut protobuf = Vec::new();
    alerts.write_protobuf(&mut protobuf);
    assert_eq!(protobuf, built.encode_to_vec(), "the alerts' protobuf");
    let (mut json, mut reference) = (Vec::new(), Vec::new());
    alerts.write_json(&mut json);
    write_logs(&built, &mut reference);
    assert_eq!(
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&reference),
        "the alerts' OTLP/JSON"
    );
    assert_eq!(
        ExportLogsServiceRequest::decode(protobuf.as_slice()).expect("decodes"),
        built,
        "the alerts decoded"
    );
}

/// `alerts` without the times they were made at.
fn untimed(mut alerts: Option<ExportLogsServiceRequest>) -> Option<ExportLogsServiceRequest> {
    let records = alerts
        .iter_mut()
        .flat_map(|a| &mut a.resource_logs)
        .flat_map(|r| &mut r.scope_logs)
        .flat_map(|s| &mut s.log_records);
    for r in records {
        r.observed_time_unix_nano = 0;
    }
    alerts
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
    }
}

/// `req` with `aibom.*` attributes a sender set on every other span.
fn forged(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let spans = req
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
        .flat_map(|s| &mut s.spans);
    for (i, s) in spans.enumerate().filter(|(i, _)| i % 2 == 0) {
        s.attributes.insert(0, kv("aibom.drift", "false"));
        s.attributes.push(kv("aibom.agent.ref", "agent:forged"));
        if i % 4 == 0 {
            s.attributes.clear();
            s.attributes.push(kv("aibom.declared", "true"));
        }
    }
    req
}

/// `req`'s spans of every trace interleaved with the other traces', one resource per span.
fn interleaved(reqs: &[ExportTraceServiceRequest]) -> ExportTraceServiceRequest {
    let mut lists: Vec<_> = reqs
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        let mut one = rs.clone();
                        one.scope_spans = vec![ss.clone()];
                        one.scope_spans[0].spans = vec![s.clone()];
                        out.push(one);
                    }
                }
            }
            out.into_iter()
        })
        .collect();
    let mut resource_spans = Vec::new();
    while lists.iter().any(|l| l.len() > 0) {
        for l in &mut lists {
            resource_spans.extend(l.next());
        }
    }
    ExportTraceServiceRequest { resource_spans }
}

/// `req` without its root spans (and the root spans alone).
fn without_roots(
    req: &ExportTraceServiceRequest,
) -> (ExportTraceServiceRequest, ExportTraceServiceRequest) {
    let (mut rest, mut roots) = (req.clone(), req.clone());
    for (r, keep_roots) in [(&mut rest, false), (&mut roots, true)] {
        for ss in r.resource_spans.iter_mut().flat_map(|r| &mut r.scope_spans) {
            ss.spans
                .retain(|s| s.parent_span_id.is_empty() == keep_roots);
        }
    }
    (rest, roots)
}

#[test]
fn verdicts_beside_the_request_make_the_same_request() {
    let bom = common::bom();
    let mut twins = Twins::new();
    let (injected, _) = common::injected(1);
    let injected = injected.request();
    let benign = common::benign(2).request();
    twins.push(&injected, &bom);
    twins.push(&benign, &bom);
    twins.push(&forged(common::injected(3).0.request()), &bom);
    twins.push(&forged(common::benign(4).request()), &bom);
    twins.push(
        &interleaved(&[
            common::injected(5).0.request(),
            common::benign(6).request(),
            forged(common::benign(7).request()),
        ]),
        &bom,
    );
    // A trace whose root comes later is held; the request that completes it also brings
    // a complete trace (judged in place) and lets the held one go.
    let (rest, roots) = without_roots(&common::injected(8).0.request());
    twins.push(&rest, &bom);
    let mut completing = roots.clone();
    completing
        .resource_spans
        .extend(common::benign(9).request().resource_spans);
    completing.resource_spans.extend(
        without_roots(&common::benign(10).request())
            .0
            .resource_spans,
    );
    twins.push(&completing, &bom);
    // Late spans of a released trace, and the same requests again (alerts deduplicated).
    let mut late = common::benign(2);
    late.kernel_request(&[2; 8], "GET", "http://10.0.0.9:8080/x", 8080, None);
    twins.push(&late.request(), &bom);
    twins.push(&injected, &bom);
    twins.push(&ExportTraceServiceRequest::default(), &bom);
    twins.release_all(&bom);
    assert!(twins.annotated > 100, "spans got verdicts beside them");
    assert!(twins.alerts >= 3, "alerts let go of as their parts");
}

/// The BOM that declares everything `runbom-loadgen`'s requests use.
fn load_bom() -> DeclaredBom {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../runbom-loadgen/bom.cdx.json"
    );
    DeclaredBom::from_file(std::path::Path::new(path)).expect("the BOM loads")
}

#[test]
fn the_load_and_random_requests_make_the_same_request() {
    let declared = load_bom();
    let reference = common::bom();
    let mut twins = Twins::new();
    let load = runbom_loadgen::genai::request(100);
    twins.push(&load, &declared);
    // Against the reference agent's BOM the load's models and tool are undeclared.
    twins.push(&forged(load), &reference);
    let mut random = RandomRequests::new(3);
    for i in 0..300 {
        let req = random.traces();
        twins.push(&req, if i % 2 == 0 { &reference } else { &declared });
    }
    twins.release_all(&reference);
    assert!(twins.annotated >= 200, "spans got verdicts beside them");
    assert!(twins.alerts >= 40, "alerts let go of as their parts");
}

/// `req` cut into one request per trace (each span keeps its resource and scope).
fn by_trace(req: &ExportTraceServiceRequest) -> Vec<ExportTraceServiceRequest> {
    let mut out: Vec<(Vec<u8>, ExportTraceServiceRequest)> = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let at = out
                    .iter()
                    .position(|(t, _)| *t == span.trace_id)
                    .unwrap_or_else(|| {
                        out.push((span.trace_id.clone(), ExportTraceServiceRequest::default()));
                        out.len() - 1
                    });
                let mut one = rs.clone();
                one.scope_spans = vec![ss.clone()];
                one.scope_spans[0].spans = vec![span.clone()];
                out[at].1.resource_spans.push(one);
            }
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

/// Each span's attributes (sorted by key), by span id.
fn span_attributes(reqs: &[ExportTraceServiceRequest]) -> Vec<(Vec<u8>, Vec<String>)> {
    let mut out: Vec<(Vec<u8>, Vec<String>)> = reqs
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| {
            let mut a: Vec<String> = s.attributes.iter().map(|kv| format!("{kv:?}")).collect();
            a.sort();
            (s.span_id.clone(), a)
        })
        .collect();
    out.sort();
    out
}

/// Verdicts reached once per request and taken again by the request's other spans are the
/// ones each trace gets judged alone.
#[test]
fn verdicts_kept_for_a_request_are_those_of_each_trace_alone() {
    let declared = load_bom();
    let reference = common::bom();
    let mut mixed = runbom_loadgen::genai::request(100);
    for seed in 0..8 {
        mixed
            .resource_spans
            .extend(common::benign(seed).request().resource_spans);
        mixed
            .resource_spans
            .extend(common::injected(20 + seed).0.request().resource_spans);
    }
    for bom in [&declared, &reference] {
        let now = Instant::now();
        let mut together = Processor::new(settings());
        let mut alone = Processor::new(settings());
        let a = together.push(mixed.clone(), now, bom);
        let b: Vec<ExportTraceServiceRequest> = by_trace(&mixed)
            .into_iter()
            .filter_map(|r| alone.push(r, now, bom).traces)
            .collect();
        let a = span_attributes(&[a.traces.expect("the traces are complete")]);
        assert!(a.len() > 500, "every span: {}", a.len());
        assert_eq!(a, span_attributes(&b));
    }
}

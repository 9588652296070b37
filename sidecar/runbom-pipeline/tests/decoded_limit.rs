//! Requests within the size limit that would take far more memory decoded (4 MiB of empty
//! spans: two bytes each in protobuf, three in OTLP/JSON, a few hundred decoded) are refused
//! before they are decoded, over gRPC and over HTTP in both encodings, and their spans counted
//! as refused; a request of real spans as large is still accepted. The binary's allocator
//! tracks the heap, so the tests also say what a refused flood cost.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
};
use prost::Message as _;
use runbom_pipeline::{SignalKind, receiver::Limits, transport::rpc};
use runbom_testkit::{
    client::{grpc_raw, post},
    harness::Harness,
    heap,
    requests::{gzip, span, traces_of},
};
use tonic::Code;

#[global_allocator]
static HEAP: heap::Tracking = heap::Tracking;

const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The most a refused flood may cost, client and server together: the request's bytes a few
/// times over (the client's copy, the server's, gzip's buffers), nothing like the 550 MB of
/// its spans decoded.
const FLOOD_PEAK_MAX: usize = 64 << 20;

fn max_request_bytes() -> usize {
    Limits::default().max_request_bytes
}

/// `12 00` (an empty span) repeated in one scope of one resource, as many as fit in `max`
/// bytes; and how many.
fn protobuf_flood(max: usize) -> (Vec<u8>, u64) {
    let n = (max - 16) / 2;
    let spans = [0x12, 0x00].repeat(n);
    // ResourceSpans.scope_spans (2), holding the spans; the request's resource_spans (1).
    let scope = [&[0x12][..], &varint(spans.len()), &spans].concat();
    let request = [&[0x0a][..], &varint(scope.len()), &scope].concat();
    assert!(request.len() <= max);
    (request, n as u64)
}

fn varint(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(n as u64, &mut out);
    out
}

/// `{}` (an empty span) repeated in one scope of one resource, as many as fit in `max` bytes;
/// and how many.
fn json_flood(max: usize) -> (Vec<u8>, u64) {
    let (head, tail) = (r#"{"resourceSpans":[{"scopeSpans":[{"spans":["#, "{}]}]}]}");
    let n = (max - head.len() - tail.len()) / 3;
    let body = [head.as_bytes(), &b"{},".repeat(n), tail.as_bytes()].concat();
    assert!(body.len() <= max);
    (body, n as u64 + 1)
}

/// The `google.rpc.Status` of a refusal says what was too large.
fn assert_says_decoded(status: &rpc::Status, spans: u64) {
    assert_eq!(status.code, Code::ResourceExhausted as i32, "{status:?}");
    assert!(
        status.message.contains("too large once decoded")
            && status.message.contains(&format!("{spans} spans")),
        "{status:?}"
    );
}

#[tokio::test]
async fn grpc_refuses_an_empty_span_flood_before_decoding_it() {
    let _alone = heap::one_at_a_time().await;
    let mut h = Harness::all();
    let (addr, _) = h.start_grpc(Limits::default()).await;
    let (flood, spans) = protobuf_flood(max_request_bytes());
    for (i, gzipped) in [false, true].into_iter().enumerate() {
        let before = heap::start_peak();
        let status = grpc_raw(addr, TRACE_SERVICE, flood.clone(), gzipped)
            .await
            .expect_err("the flood must be refused");
        let peak = heap::peak_since(before);
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let details = rpc::Status::decode(status.details())
            .unwrap_or_else(|e| panic!("the details should be a google.rpc.Status ({e})"));
        assert_says_decoded(&details, spans);
        assert!(
            peak < FLOOD_PEAK_MAX,
            "gzip: {gzipped}: refusing the flood took {peak} bytes of heap"
        );
        assert_eq!(
            h.counters(SignalKind::Traces).refused(),
            (i as u64 + 1) * spans,
            "the flood's spans count as refused"
        );
    }
    h.assert_empty(SignalKind::Traces);
}

#[tokio::test]
async fn http_refuses_empty_span_floods_in_both_encodings_before_decoding_them() {
    let _alone = heap::one_at_a_time().await;
    let mut h = Harness::all();
    let (addr, _) = h.start_http(Limits::default()).await;
    let mut refused = 0;
    for (content_type, (flood, spans)) in [
        (
            "application/x-protobuf",
            protobuf_flood(max_request_bytes()),
        ),
        ("application/json", json_flood(max_request_bytes())),
    ] {
        for gzipped in [false, true] {
            let body = if gzipped { gzip(&flood) } else { flood.clone() };
            let before = heap::start_peak();
            let answer = post(addr, "/v1/traces", content_type, gzipped, body).await;
            let peak = heap::peak_since(before);
            assert_eq!(
                answer.status, 413,
                "{content_type} (gzip: {gzipped}): {answer:?}"
            );
            let status = if content_type == "application/json" {
                let json: serde_json::Value = serde_json::from_slice(&answer.body)
                    .unwrap_or_else(|e| panic!("a JSON request gets a JSON status ({e})"));
                rpc::Status {
                    code: json["code"].as_i64().unwrap_or_default() as i32,
                    message: json["message"].as_str().unwrap_or_default().into(),
                    details: Vec::new(),
                }
            } else {
                rpc::Status::decode(answer.body.clone())
                    .unwrap_or_else(|e| panic!("the 413 body is a google.rpc.Status ({e})"))
            };
            assert_says_decoded(&status, spans);
            assert!(
                peak < FLOOD_PEAK_MAX,
                "{content_type} (gzip: {gzipped}): refusing the flood took {peak} bytes of heap"
            );
            refused += spans;
            assert_eq!(h.counters(SignalKind::Traces).refused(), refused);
        }
    }
    h.assert_empty(SignalKind::Traces);
}

/// Real spans (every kind of attribute value, an event, a link, a status), as many as fit in
/// `max` bytes of `encoded_len`.
fn real_spans(
    max: usize,
    encoded_len: impl Fn(&ExportTraceServiceRequest) -> usize,
) -> ExportTraceServiceRequest {
    let one = |i: u32| {
        let (mut trace_id, mut span_id) = ([1; 16], [2; 8]);
        trace_id[12..].copy_from_slice(&i.to_be_bytes());
        span_id[4..].copy_from_slice(&i.to_be_bytes());
        span(&format!("chat gpt-4o {i}"), trace_id, span_id)
    };
    let (one_span, two_spans) = (
        encoded_len(&traces_of(vec![one(1)])),
        encoded_len(&traces_of(vec![one(1), one(2)])),
    );
    let mut n = (max - one_span) / (two_spans - one_span);
    loop {
        let request = traces_of((0..n as u32).map(one).collect());
        let len = encoded_len(&request);
        if len <= max {
            assert!(len > max / 10 * 9, "{len} bytes: far from {max}");
            return request;
        }
        n -= n / 100 + 1;
    }
}

#[tokio::test]
async fn a_request_of_real_spans_as_large_is_accepted_in_every_encoding() {
    let _alone = heap::one_at_a_time().await;
    let mut h = Harness::all();
    let (grpc, _) = h.start_grpc(Limits::default()).await;
    let (http, _) = h.start_http(Limits::default()).await;
    let protobuf = real_spans(max_request_bytes(), prost::Message::encoded_len);
    let json = real_spans(max_request_bytes(), |r| {
        serde_json::to_vec(r).map_or(usize::MAX, |j| j.len())
    });

    TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("connecting should work")
        .export(protobuf.clone())
        .await
        .expect("a large request of real spans is accepted over gRPC");
    let answer = post(
        http,
        "/v1/traces",
        "application/x-protobuf",
        false,
        protobuf.encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = serde_json::to_vec(&json).expect("the request serialises");
    let answer = post(http, "/v1/traces", "application/json", false, body).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    for want in [&protobuf, &protobuf, &json] {
        let got = h.next(SignalKind::Traces).await;
        assert_eq!(
            got.item_count(),
            want.resource_spans[0].scope_spans[0].spans.len()
        );
    }
    assert_eq!(h.counters(SignalKind::Traces).refused(), 0);
}

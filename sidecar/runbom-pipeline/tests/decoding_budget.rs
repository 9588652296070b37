//! Requests each within the per-request limits, sent many at once, are decoded only as far
//! as the server's decoding budget (`max_decoding_bytes`) allows: the others are refused at
//! once with a retry hint (HTTP 503 + `Retry-After`, gRPC `UNAVAILABLE` + `RetryInfo`) and
//! their items counted as refused, so the heap stays within a bound derived from the budget.
//! The budget is given back on every path (accepted, malformed, client gone): afterwards a
//! request that needs all of it is accepted.
//!
//! The floods: 4 MiB of OTLP/JSON `{"name":""}` spans (about 90 bytes decoded per byte, near
//! 280 MB while decoding) and 4 MiB of protobuf spans named with 16 bytes (about 15 per byte;
//! up to twice that while decoding). Sixteen at once, all decoded, peaked at 3.8 GB of heap
//! (OTLP/JSON) and 1.25 GB (protobuf); within the default budget, at 0.28 and 0.34 GB.

use std::{net::SocketAddr, time::Duration};

use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use runbom_pipeline::{SignalKind, receiver::Limits};
use runbom_testkit::{
    client::{Answer, grpc_raw, post},
    harness::Harness,
    heap,
    requests::{sample_traces, traces_of},
};
use tokio::{io::AsyncWriteExt as _, net::TcpStream, sync::mpsc, task::JoinSet};
use tonic::Code;

#[global_allocator]
static HEAP: heap::Tracking = heap::Tracking;

const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const JSON: &str = "application/json";
const PROTOBUF: &str = "application/x-protobuf";
/// Floods sent at once, on as many runtime threads: without a budget, all are decoded at once.
const CONCURRENT: usize = 16;

fn max_request_bytes() -> usize {
    Limits::default().max_request_bytes
}

/// `{"name":""}` spans in one scope of one resource, as many as fit in `max` bytes; and how
/// many.
fn json_flood(max: usize) -> (Vec<u8>, u64) {
    let (head, tail) = (
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":["#,
        r#"{"name":""}]}]}]}"#,
    );
    let one = br#"{"name":""},"#;
    let n = (max - head.len() - tail.len()) / one.len();
    let body = [head.as_bytes(), &one.repeat(n), tail.as_bytes()].concat();
    assert!(body.len() <= max);
    (body, n as u64 + 1)
}

/// Spans of only a 16-byte name, as many as fit in `max` bytes of protobuf; and how many.
fn protobuf_flood(max: usize) -> (Vec<u8>, u64) {
    let span = Span {
        name: "0123456789abcdef".into(),
        ..Span::default()
    };
    let per_span = traces_of(vec![span.clone(), span.clone()]).encoded_len()
        - traces_of(vec![span.clone()]).encoded_len();
    let n = max / per_span - 16;
    let body = traces_of(vec![span; n]).encode_to_vec();
    assert!(body.len() <= max, "{} bytes", body.len());
    (body, n as u64)
}

/// The most the floods may take at once, client and server together: what the budget admits
/// (one request alone when it needs more than the budget), `growth` times over (protobuf's
/// vectors grow by doubling), and every flood's body three times (the client's copy, the
/// server's, and the server's while collecting it).
fn peak_bound(budget: u64, need: u64, growth: u64, body: usize) -> u64 {
    budget.max(need) * growth + 3 * (CONCURRENT * body) as u64
}

/// What a request takes from the budget: its decoded size, estimated as the receivers do, and
/// its body.
fn need(format: &str, body: &[u8]) -> u64 {
    let estimate = if format == JSON {
        runbom_otlp::decoded_size::json(SignalKind::Traces, body)
    } else {
        runbom_otlp::decoded_size::protobuf(SignalKind::Traces, body)
    };
    estimate.bytes + body.len() as u64
}

/// Takes the traces channel and empties it as a pipeline would, so that what the floods cost
/// is what decoding them holds.
fn drain_traces(h: &mut Harness) {
    let mut traces = std::mem::replace(&mut h.traces, mpsc::channel(1).1);
    tokio::spawn(async move { while traces.recv().await.is_some() {} });
}

/// Whether an HTTP answer is an acceptance (`true`) or the retryable refusal (`false`).
fn http_accepted(answer: &Answer) -> bool {
    match answer.status.as_u16() {
        200 => true,
        503 => {
            assert!(
                answer.retry_after_seconds().is_some_and(|s| s >= 1),
                "{answer:?}"
            );
            false
        }
        _ => panic!("neither accepted nor refused for now: {answer:?}"),
    }
}

/// Whether a gRPC answer is an acceptance (`true`) or the retryable refusal (`false`).
fn grpc_accepted(answer: &Result<Vec<u8>, tonic::Status>) -> bool {
    match answer {
        Ok(_) => true,
        Err(status) if status.code() == Code::Unavailable => {
            assert!(
                status
                    .metadata()
                    .get_bin("google.rpc.retryinfo-bin")
                    .is_some(),
                "a refusal for want of budget carries a retry delay: {status:?}"
            );
            assert!(status.message().contains("being decoded"), "{status:?}");
            false
        }
        Err(status) => panic!("neither accepted nor refused for now: {status:?}"),
    }
}

/// Sends `body` to the HTTP receiver at `addr` from [`CONCURRENT`] clients at once; returns
/// how many were accepted and the heap's peak meanwhile.
async fn http_flood(addr: SocketAddr, content_type: &'static str, body: &[u8]) -> (u64, u64) {
    let before = heap::start_peak();
    let mut clients = JoinSet::new();
    for _ in 0..CONCURRENT {
        let body = body.to_vec();
        clients.spawn(async move { post(addr, "/v1/traces", content_type, false, body).await });
    }
    let mut accepted = 0;
    while let Some(answer) = clients.join_next().await {
        let answer = answer.unwrap_or_else(|e| panic!("a client panicked: {e}"));
        accepted += u64::from(http_accepted(&answer));
    }
    (accepted, heap::peak_since(before) as u64)
}

/// As [`http_flood`], over gRPC.
async fn grpc_flood(addr: SocketAddr, body: &[u8]) -> (u64, u64) {
    let before = heap::start_peak();
    let mut clients = JoinSet::new();
    for _ in 0..CONCURRENT {
        let body = body.to_vec();
        clients.spawn(async move { grpc_raw(addr, TRACE_SERVICE, body, false).await });
    }
    let mut accepted = 0;
    while let Some(answer) = clients.join_next().await {
        let answer = answer.unwrap_or_else(|e| panic!("a client panicked: {e}"));
        accepted += u64::from(grpc_accepted(&answer));
    }
    (accepted, heap::peak_since(before) as u64)
}

/// Asserts what a flood of `spans`-item requests came to: some decoded, the others refused,
/// every span counted as refused, within `bound` bytes of heap.
fn assert_flood(h: &Harness, what: &str, (accepted, peak): (u64, u64), spans: u64, bound: u64) {
    let refused = CONCURRENT as u64 - accepted;
    eprintln!("{what}: {accepted} accepted, {refused} refused, heap peak {peak} bytes");
    assert!(
        peak < bound,
        "{what}: the floods took {peak} bytes of heap at once, over {bound}"
    );
    assert!(accepted >= 1, "{what}: at least the first flood is decoded");
    assert!(refused >= 1, "{what}: the budget refuses some floods");
    // The floods' spans have no ids: those of a flood that is decoded are dropped as invalid
    // (a partial success), those of a flood refused undecoded are counted from the estimate.
    let counters = h.counters(SignalKind::Traces);
    assert_eq!(
        counters.refused(),
        CONCURRENT as u64 * spans,
        "{what}: every flood's spans count as refused"
    );
    assert_eq!(counters.accepted(), 0, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 16)]
async fn http_floods_sent_at_once_are_decoded_within_the_budget() {
    let _alone = heap::one_at_a_time().await;
    let budget = Limits::default().max_decoding_bytes;
    for (content_type, (body, spans), growth) in [
        (JSON, json_flood(max_request_bytes()), 1),
        (PROTOBUF, protobuf_flood(max_request_bytes()), 2),
    ] {
        let mut h = Harness::all();
        drain_traces(&mut h);
        let (addr, _) = h.start_http(Limits::default()).await;
        let outcome = http_flood(addr, content_type, &body).await;
        let bound = peak_bound(budget, need(content_type, &body), growth, body.len());
        assert_flood(&h, content_type, outcome, spans, bound);
        // The floods gave their share back: an honest request, then a flood alone, accepted.
        let honest = post(
            addr,
            "/v1/traces",
            PROTOBUF,
            false,
            sample_traces().encode_to_vec(),
        );
        assert_eq!(honest.await.status, 200);
        let alone = post(addr, "/v1/traces", content_type, false, body).await;
        assert_eq!(alone.status, 200, "{alone:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 16)]
async fn grpc_floods_sent_at_once_are_decoded_within_the_budget() {
    let _alone = heap::one_at_a_time().await;
    let budget = Limits::default().max_decoding_bytes;
    let (body, spans) = protobuf_flood(max_request_bytes());
    let mut h = Harness::all();
    drain_traces(&mut h);
    let (addr, _) = h.start_grpc(Limits::default()).await;
    let outcome = grpc_flood(addr, &body).await;
    let bound = peak_bound(budget, need(PROTOBUF, &body), 2, body.len());
    assert_flood(&h, "gRPC", outcome, spans, bound);
    let honest = sample_traces().encode_to_vec();
    grpc_raw(addr, TRACE_SERVICE, honest, false)
        .await
        .expect("an honest request is accepted after the floods");
    grpc_raw(addr, TRACE_SERVICE, body, false)
        .await
        .expect("a flood alone is accepted after the floods");
}

/// Sends `body` to `/v1/traces` and closes the connection without waiting for the answer.
async fn post_and_leave(addr: SocketAddr, content_type: &str, body: &[u8]) {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr} failed: {e}"));
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: runbom\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("writing the head should work");
    // The server may answer and close before it has read everything (a refusal).
    let _ = stream.write_all(body).await;
}

/// Retries `send` (a request that needs the whole budget) until it is accepted, for up to
/// a minute: the server may still be decoding requests whose clients left.
async fn accepted_once_the_budget_is_free<F: Future<Output = bool>>(
    what: &str,
    mut send: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
    while !send().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the budget was not given back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 16)]
async fn the_budget_is_given_back_when_decoding_fails_or_the_client_leaves() {
    let _alone = heap::one_at_a_time().await;
    // Smaller than one flood needs: a flood is then accepted only while nothing else holds any
    // of the budget, which is what the end of this test checks.
    let limits = Limits {
        max_decoding_bytes: 32 << 20,
        ..Limits::default()
    };
    let mut h = Harness::all();
    drain_traces(&mut h);
    let (http, _) = h.start_http(limits).await;
    let (grpc, _) = h.start_grpc(limits).await;
    let (json, _) = json_flood(max_request_bytes());
    let (protobuf, _) = protobuf_flood(max_request_bytes());
    // Malformed: the JSON's closing brackets and the protobuf's last span cut off.
    let broken_json = json[..json.len() - 4].to_vec();
    let broken_protobuf = protobuf[..protobuf.len() - 3].to_vec();
    let mut clients = JoinSet::new();
    for _ in 0..4 {
        let body = broken_json.clone();
        clients.spawn(async move {
            let answer = post(http, "/v1/traces", JSON, false, body).await;
            assert!(
                [400, 503].contains(&answer.status.as_u16()),
                "malformed: {answer:?}"
            );
        });
        let body = broken_protobuf.clone();
        clients.spawn(async move {
            let answer = grpc_raw(grpc, TRACE_SERVICE, body, false).await;
            let code = answer.expect_err("malformed").code();
            assert!(
                [Code::InvalidArgument, Code::Unavailable].contains(&code),
                "{code:?}"
            );
        });
        let body = json.clone();
        clients.spawn(async move { post_and_leave(http, JSON, &body).await });
        let body = protobuf.clone();
        let leaving = tokio::spawn(async move { grpc_raw(grpc, TRACE_SERVICE, body, false).await });
        clients.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            leaving.abort();
        });
    }
    while let Some(client) = clients.join_next().await {
        client.unwrap_or_else(|e| panic!("a client failed: {e}"));
    }
    accepted_once_the_budget_is_free("HTTP", || {
        let body = json.clone();
        async move { http_accepted(&post(http, "/v1/traces", JSON, false, body).await) }
    })
    .await;
    accepted_once_the_budget_is_free("gRPC", || {
        let body = protobuf.clone();
        async move { grpc_accepted(&grpc_raw(grpc, TRACE_SERVICE, body, false).await) }
    })
    .await;
}

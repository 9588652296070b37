//! The OTLP receivers against real clients: tonic's generated OTLP clients, a hyper client,
//! raw malformed payloads, and (at the end) the OpenTelemetry Python SDK.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsServiceResponse, logs_service_client::LogsServiceClient},
    metrics::v1::{ExportMetricsServiceResponse, metrics_service_client::MetricsServiceClient},
    trace::v1::{ExportTraceServiceResponse, trace_service_client::TraceServiceClient},
};
use prost::Message as _;
use runbom_pipeline::transport::rpc;
use runbom_pipeline::{Signal, SignalKind, receiver::Limits};
use runbom_testkit::{
    client::{grpc_raw, http, post},
    harness::Harness,
    python,
    requests::{
        gzip, log_record, logs_of, sample_logs, sample_metrics, sample_traces, span, traces_of,
    },
};
use tonic::{Code, codec::CompressionEncoding};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";

fn small() -> Limits {
    Limits {
        max_request_bytes: 1024,
        ..Limits::default()
    }
}

// ---- gRPC ----

#[tokio::test]
async fn grpc_delivers_every_signal_unchanged() {
    let mut h = Harness::all();
    let (addr, _) = h.start_grpc(Limits::default()).await;
    let url = format!("http://{addr}");
    for gzipped in [false, true] {
        let mut traces = TraceServiceClient::connect(url.clone())
            .await
            .expect("connecting the trace client should work");
        let mut logs = LogsServiceClient::connect(url.clone())
            .await
            .expect("connecting the logs client should work");
        let mut metrics = MetricsServiceClient::connect(url.clone())
            .await
            .expect("connecting the metrics client should work");
        if gzipped {
            traces = traces.send_compressed(CompressionEncoding::Gzip);
            logs = logs.send_compressed(CompressionEncoding::Gzip);
            metrics = metrics.send_compressed(CompressionEncoding::Gzip);
        }
        let answer = traces.export(sample_traces()).await;
        assert_eq!(
            answer.map(tonic::Response::into_inner).ok(),
            Some(ExportTraceServiceResponse::default()),
            "traces (gzip: {gzipped})"
        );
        let answer = logs.export(sample_logs()).await;
        assert_eq!(
            answer.map(tonic::Response::into_inner).ok(),
            Some(ExportLogsServiceResponse::default()),
            "logs (gzip: {gzipped})"
        );
        let answer = metrics.export(sample_metrics()).await;
        assert_eq!(
            answer.map(tonic::Response::into_inner).ok(),
            Some(ExportMetricsServiceResponse::default()),
            "metrics (gzip: {gzipped})"
        );
        h.assert_samples().await;
    }
    assert_eq!(h.counters(SignalKind::Traces).accepted(), 4, "2 spans × 2");
}

#[tokio::test]
async fn grpc_malformed_payload_is_invalid_argument() {
    let mut h = Harness::all();
    let (addr, _) = h.start_grpc(Limits::default()).await;
    let whole = sample_traces().encode_to_vec();
    for gzipped in [false, true] {
        let truncated = whole[..whole.len() - 5].to_vec();
        let status = grpc_raw(addr, TRACE_SERVICE, truncated, gzipped)
            .await
            .expect_err("a truncated request must be refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("decode"),
            "the message should say why: {status:?}"
        );
    }
    h.assert_empty(SignalKind::Traces);
}

#[tokio::test]
async fn grpc_oversized_request_is_resource_exhausted() {
    let mut h = Harness::all();
    let (addr, _) = h.start_grpc(small()).await;
    let big = sample_traces().encode_to_vec();
    assert!(big.len() > 1024, "the sample should exceed the small limit");
    for gzipped in [false, true] {
        let status = grpc_raw(addr, TRACE_SERVICE, big.clone(), gzipped)
            .await
            .expect_err("an oversized request must be refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    h.assert_empty(SignalKind::Traces);
}

#[tokio::test]
async fn grpc_full_pipeline_is_unavailable_with_retry_info() {
    let mut h = Harness::new(&SignalKind::ALL, 1, Duration::from_millis(200));
    let (addr, _) = h.start_grpc(Limits::default()).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connecting should work");
    let first = traces_of(vec![span("first", [1; 16], [1; 8])]);
    client
        .export(first.clone())
        .await
        .expect("the first request fits in the channel");
    let status = client
        .export(traces_of(vec![span("second", [1; 16], [2; 8])]))
        .await
        .expect_err("the second request finds the channel full");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let details =
        rpc::Status::decode(status.details()).expect("the details should be a google.rpc.Status");
    let retry = details
        .details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.RetryInfo")
        .and_then(|d| rpc::RetryInfo::decode(d.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .unwrap_or_else(|| panic!("no RetryInfo in {details:?}"));
    assert!(retry.seconds > 0 || retry.nanos > 0, "{retry:?}");
    assert!(
        status
            .metadata()
            .get_bin("google.rpc.retryinfo-bin")
            .is_some(),
        "the Python SDK reads the retry delay from this trailer: {:?}",
        status.metadata()
    );
    // Nothing accepted is lost; nothing refused got in.
    assert_eq!(h.next(SignalKind::Traces).await, Signal::Traces(first));
    h.assert_empty(SignalKind::Traces);
    assert_eq!(h.counters(SignalKind::Traces).accepted(), 1);
    assert_eq!(h.counters(SignalKind::Traces).refused(), 1);
}

#[tokio::test]
async fn grpc_partial_success_counts_rejected_items() {
    let mut h = Harness::all();
    let (addr, _) = h.start_grpc(Limits::default()).await;
    let url = format!("http://{addr}");
    let good = span("good", [1; 16], [2; 8]);
    let mut short = span("short trace id", [1; 16], [3; 8]);
    short.trace_id.truncate(4);
    let zero = span("zero span id", [1; 16], [0; 8]);
    let answer = TraceServiceClient::connect(url.clone())
        .await
        .expect("connecting should work")
        .export(traces_of(vec![good.clone(), short, zero]))
        .await
        .expect("a partly valid request is accepted")
        .into_inner();
    let partial = answer
        .partial_success
        .expect("rejections are reported as a partial success");
    assert_eq!(partial.rejected_spans, 2, "{partial:?}");
    assert!(partial.error_message.contains("trace_id"), "{partial:?}");
    assert_eq!(
        h.next(SignalKind::Traces).await,
        Signal::Traces(traces_of(vec![good]))
    );
    assert_eq!(h.counters(SignalKind::Traces).accepted(), 1);
    assert_eq!(h.counters(SignalKind::Traces).refused(), 2);

    let answer = LogsServiceClient::connect(url)
        .await
        .expect("connecting should work")
        .export(logs_of(vec![
            log_record(&[1; 16], &[2; 8]),
            log_record(&[1; 5], &[2; 8]),
        ]))
        .await
        .expect("a partly valid request is accepted")
        .into_inner();
    assert_eq!(
        answer.partial_success.map(|p| p.rejected_log_records),
        Some(1)
    );
    assert_eq!(
        h.next(SignalKind::Logs).await,
        Signal::Logs(logs_of(vec![log_record(&[1; 16], &[2; 8])]))
    );
}

#[tokio::test]
async fn grpc_signal_without_pipeline_is_unimplemented() {
    let h = Harness::new(&[SignalKind::Traces], 4, Duration::from_secs(1));
    let (addr, _) = h.start_grpc(Limits::default()).await;
    let status = LogsServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connecting should work")
        .export(sample_logs())
        .await
        .expect_err("no pipeline takes logs");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn grpc_stops_when_asked() {
    let h = Harness::all();
    let (_, server) = h.start_grpc(Limits::default()).await;
    h.assert_stops("serve_grpc", server).await;
}

// ---- HTTP ----

#[tokio::test]
async fn http_protobuf_delivers_every_signal_unchanged() {
    let mut h = Harness::all();
    let (addr, _) = h.start_http(Limits::default()).await;
    for gzipped in [false, true] {
        let bodies = [
            ("/v1/traces", sample_traces().encode_to_vec()),
            ("/v1/logs", sample_logs().encode_to_vec()),
            ("/v1/metrics", sample_metrics().encode_to_vec()),
        ];
        for (path, body) in bodies {
            let body = if gzipped { gzip(&body) } else { body };
            let answer = post(addr, path, PROTOBUF, gzipped, body).await;
            assert_eq!(answer.status, 200, "{path} (gzip: {gzipped}): {answer:?}");
            assert_eq!(
                answer
                    .headers
                    .get("content-type")
                    .map(hyper::http::HeaderValue::as_bytes),
                Some(PROTOBUF.as_bytes())
            );
            assert!(
                answer.body.is_empty(),
                "a full success is an empty response message: {answer:?}"
            );
        }
        h.assert_samples().await;
    }
}

#[tokio::test]
async fn http_json_delivers_every_signal_unchanged() {
    let mut h = Harness::all();
    let (addr, _) = h.start_http(Limits::default()).await;
    for gzipped in [false, true] {
        let bodies = [
            ("/v1/traces", json(&sample_traces())),
            ("/v1/logs", json(&sample_logs())),
            ("/v1/metrics", json(&sample_metrics())),
        ];
        for (path, body) in bodies {
            let body = if gzipped { gzip(&body) } else { body };
            let answer = post(addr, path, "application/json; charset=utf-8", gzipped, body).await;
            assert_eq!(answer.status, 200, "{path} (gzip: {gzipped}): {answer:?}");
            assert_eq!(&answer.body[..], b"{}", "{path}: {answer:?}");
        }
        h.assert_samples().await;
    }
}

/// An OTLP/JSON body made with `opentelemetry-proto`'s own serde serialisation.
fn json<T: serde::Serialize>(request: &T) -> Vec<u8> {
    serde_json::to_vec(request).expect("the sample requests serialise")
}

#[tokio::test]
async fn http_malformed_bodies_are_400_with_a_reason() {
    let mut h = Harness::all();
    let (addr, _) = h.start_http(Limits::default()).await;
    let whole = sample_traces().encode_to_vec();
    let answer = post(
        addr,
        "/v1/traces",
        PROTOBUF,
        false,
        whole[..whole.len() - 5].to_vec(),
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let status = rpc::Status::decode(answer.body.clone())
        .unwrap_or_else(|e| panic!("the 400 body should be a google.rpc.Status ({e}): {answer:?}"));
    assert!(status.message.contains("protobuf"), "{status:?}");

    let answer = post(
        addr,
        "/v1/traces",
        JSON,
        false,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    let status: serde_json::Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("a JSON request gets a JSON status ({e}): {answer:?}"));
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("OTLP/JSON")),
        "{status}"
    );

    let answer = post(addr, "/v1/logs", PROTOBUF, true, b"not gzip".to_vec()).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    h.assert_empty(SignalKind::Traces);
    h.assert_empty(SignalKind::Logs);
}

#[tokio::test]
async fn http_refuses_what_is_not_an_otlp_request() {
    let h = Harness::all();
    let (addr, _) = h.start_http(Limits::default()).await;
    let body = || sample_traces().encode_to_vec();
    let answer = post(addr, "/v1/traces", "text/plain", false, body()).await;
    assert_eq!(answer.status, 415, "{answer:?}");
    let answer = http(addr, "POST", "/v1/traces", &[], body()).await;
    assert_eq!(answer.status, 415, "missing Content-Type: {answer:?}");
    let answer = http(
        addr,
        "POST",
        "/v1/traces",
        &[("content-type", PROTOBUF), ("content-encoding", "br")],
        body(),
    )
    .await;
    assert_eq!(
        answer.status, 415,
        "unsupported Content-Encoding: {answer:?}"
    );
    let answer = post(addr, "/v1/spans", PROTOBUF, false, body()).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    let answer = http(addr, "GET", "/v1/traces", &[], Vec::new()).await;
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_eq!(
        answer
            .headers
            .get("allow")
            .map(hyper::http::HeaderValue::as_bytes),
        Some(&b"POST"[..])
    );
}

#[tokio::test]
async fn http_oversized_bodies_are_413() {
    let mut h = Harness::all();
    let (addr, _) = h.start_http(small()).await;
    let big = sample_traces().encode_to_vec();
    assert!(big.len() > 1024 && big.len() < 4096, "{}", big.len());
    let answer = post(addr, "/v1/traces", PROTOBUF, false, big.clone()).await;
    assert_eq!(answer.status, 413, "by Content-Length: {answer:?}");

    // Chunked: no Content-Length, so the limit applies while reading.
    let chunked = support_chunked(addr, &big).await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "chunked: {chunked}");

    // Small on the wire, too large once decompressed.
    let bomb = gzip(&vec![0_u8; 64 * 1024]);
    assert!(bomb.len() < 1024, "{}", bomb.len());
    let answer = post(addr, "/v1/traces", PROTOBUF, true, bomb).await;
    assert_eq!(answer.status, 413, "gzip bomb: {answer:?}");
    h.assert_empty(SignalKind::Traces);
}

/// Posts `body` with `Transfer-Encoding: chunked` over a raw socket; returns the answer's head.
async fn support_chunked(addr: std::net::SocketAddr, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting should work");
    let mut request = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: test\r\ncontent-type: {PROTOBUF}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(512) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream
        .write_all(&request)
        .await
        .expect("writing the request should work");
    let mut head = vec![0; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
        .await
        .expect("an answer should come within 5 s")
        .expect("reading the answer should work");
    String::from_utf8_lossy(&head[..n]).into_owned()
}

#[tokio::test]
async fn http_full_pipeline_is_503_with_retry_after() {
    let mut h = Harness::new(&SignalKind::ALL, 1, Duration::from_millis(200));
    let (addr, _) = h.start_http(Limits::default()).await;
    let first = traces_of(vec![span("first", [1; 16], [1; 8])]);
    let answer = post(addr, "/v1/traces", PROTOBUF, false, first.encode_to_vec()).await;
    assert_eq!(answer.status, 200, "the first request fits: {answer:?}");
    let second = traces_of(vec![span("second", [1; 16], [2; 8])]);
    let answer = post(addr, "/v1/traces", JSON, false, json(&second)).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer.retry_after_seconds().is_some_and(|s| s >= 1),
        "{answer:?}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&answer.body).expect("a JSON request gets a JSON status");
    assert_eq!(
        status["details"][0]["@type"], "type.googleapis.com/google.rpc.RetryInfo",
        "{status}"
    );
    assert_eq!(h.next(SignalKind::Traces).await, Signal::Traces(first));
    h.assert_empty(SignalKind::Traces);
}

#[tokio::test]
async fn http_partial_success_in_both_encodings() {
    let mut h = Harness::all();
    let (addr, _) = h.start_http(Limits::default()).await;
    let good = span("good", [1; 16], [2; 8]);
    let bad = span("bad", [0; 16], [2; 8]);
    let request = traces_of(vec![good.clone(), bad]);

    let answer = post(addr, "/v1/traces", PROTOBUF, false, request.encode_to_vec()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let response = ExportTraceServiceResponse::decode(answer.body.clone())
        .unwrap_or_else(|e| panic!("the body should be an ExportTraceServiceResponse ({e})"));
    assert_eq!(response.partial_success.map(|p| p.rejected_spans), Some(1));

    let answer = post(addr, "/v1/traces", JSON, false, json(&request)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let response: serde_json::Value =
        serde_json::from_slice(&answer.body).expect("a JSON request gets a JSON response");
    assert_eq!(
        response["partialSuccess"]["rejectedSpans"], "1",
        "{response}"
    );
    assert!(
        response["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("all-zero trace_id")),
        "{response}"
    );
    for _ in 0..2 {
        assert_eq!(
            h.next(SignalKind::Traces).await,
            Signal::Traces(traces_of(vec![good.clone()]))
        );
    }
    assert_eq!(h.counters(SignalKind::Traces).refused(), 2);
}

#[tokio::test]
async fn http_signal_without_pipeline_is_404() {
    let h = Harness::new(&[SignalKind::Traces], 4, Duration::from_secs(1));
    let (addr, _) = h.start_http(Limits::default()).await;
    let answer = post(
        addr,
        "/v1/logs",
        PROTOBUF,
        false,
        sample_logs().encode_to_vec(),
    )
    .await;
    assert_eq!(answer.status, 404, "{answer:?}");
}

#[tokio::test]
async fn http_stops_when_asked() {
    let h = Harness::all();
    let (_, server) = h.start_http(Limits::default()).await;
    h.assert_stops("serve_http", server).await;
}

// ---- the OpenTelemetry Python SDK (tests/sdk_client.py) ----

/// Every signal, plain and gzipped, over `protocol`: what arrives is exactly the request the
/// SDK's encoder makes.
async fn python_sdk_interop(protocol: &str) {
    let mut h = Harness::all();
    let (addr, _) = if protocol == "grpc" {
        h.start_grpc(Limits::default()).await
    } else {
        h.start_http(Limits::default()).await
    };
    for kind in SignalKind::ALL {
        for gzipped in [false, true] {
            let sent = python::sdk_export(protocol, kind, addr, gzipped).await;
            let arrived = h.next(kind).await;
            if kind == SignalKind::Traces {
                python::assert_spans_arrived(&sent, &arrived);
            }
            assert_eq!(
                arrived,
                python::sent_request(kind, &sent),
                "{} over {protocol} (gzip: {gzipped})",
                kind.as_str()
            );
            assert!(!arrived.is_empty(), "the SDK sent something");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc() {
    python_sdk_interop("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_protobuf() {
    python_sdk_interop("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_json() {
    python_sdk_interop("http/json").await;
}

/// With sender attribution on (a correlating pipeline), every resource that has no
/// `process.pid` gets the pid of the process on the other end of the connection — here the
/// Python SDK's — over gRPC and HTTP alike; everything else arrives unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_pid_is_added_to_resources_without_one() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use runbom_pipeline::receiver::sender::SenderPids;
    for protocol in ["grpc", "http/protobuf"] {
        let mut h = Harness::all();
        h.ingest = h
            .ingest
            .with_sender_pids(std::sync::Arc::new(SenderPids::default()));
        let (addr, _) = if protocol == "grpc" {
            h.start_grpc(Limits::default()).await
        } else {
            h.start_http(Limits::default()).await
        };
        let sent = python::sdk_export(protocol, SignalKind::Traces, addr, false).await;
        let Signal::Traces(arrived) = h.next(SignalKind::Traces).await else {
            unreachable!()
        };
        let Signal::Traces(mut expected) = python::sent_request(SignalKind::Traces, &sent) else {
            unreachable!()
        };
        let pid = sent["pid"].as_i64().expect("sdk_client.py reports its pid");
        for rs in &mut expected.resource_spans {
            let resource = rs.resource.get_or_insert_with(Default::default);
            assert!(
                !resource.attributes.iter().any(|a| a.key == "process.pid"),
                "the SDK's resource has no process.pid of its own"
            );
            resource
                .attributes
                .push(opentelemetry_proto::tonic::common::v1::KeyValue {
                    key: "process.pid".into(),
                    value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(Value::IntValue(pid)),
                    }),
                });
        }
        assert_eq!(arrived, expected, "over {protocol}");
    }
}

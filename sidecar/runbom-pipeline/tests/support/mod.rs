//! Fixtures for the receiver tests: an `Ingest` over channels the test reads, servers on
//! ephemeral ports, sample requests, and small HTTP and raw-gRPC clients.

#![allow(dead_code)] // each test binary uses a different part

pub mod pki;
pub mod python;

use std::{io::Write as _, net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf as _, BufMut as _, Bytes};
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
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
use runbom_pipeline::{
    Ingest, Signal, SignalKind, StageCounters, Telemetry,
    receiver::{Limits, serve_grpc, serve_http},
};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// An `Ingest` whose pipelines are channels the test reads.
pub struct Harness {
    pub ingest: Ingest,
    pub traces: mpsc::Receiver<Signal>,
    pub logs: mpsc::Receiver<Signal>,
    pub metrics: mpsc::Receiver<Signal>,
    pub counters: Vec<(SignalKind, Arc<StageCounters>)>,
    pub stop: CancellationToken,
}

impl Harness {
    /// Pipelines for `kinds`, each a channel of `capacity`; a push waits `accept_timeout`.
    pub fn new(kinds: &[SignalKind], capacity: usize, accept_timeout: Duration) -> Self {
        let telemetry = Telemetry::default();
        let stop = CancellationToken::new();
        let (traces_tx, traces) = mpsc::channel(capacity);
        let (logs_tx, logs) = mpsc::channel(capacity);
        let (metrics_tx, metrics) = mpsc::channel(capacity);
        let mut routes = Vec::new();
        let mut counters = Vec::new();
        for (kind, tx) in [
            (SignalKind::Traces, traces_tx),
            (SignalKind::Logs, logs_tx),
            (SignalKind::Metrics, metrics_tx),
        ] {
            if kinds.contains(&kind) {
                routes.push((kind, tx));
                counters.push((kind, telemetry.stage("receiver", "otlp", kind)));
            }
        }
        let ingest = Ingest::new(
            "otlp".into(),
            routes,
            counters.clone(),
            accept_timeout,
            stop.clone(),
        );
        Self {
            ingest,
            traces,
            logs,
            metrics,
            counters,
            stop,
        }
    }

    /// All three signals, roomy channels.
    pub fn all() -> Self {
        Self::new(&SignalKind::ALL, 16, Duration::from_secs(5))
    }

    pub fn counters(&self, kind: SignalKind) -> &StageCounters {
        let (_, counters) = self
            .counters
            .iter()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("no {kind:?} counters registered"));
        counters
    }

    pub fn channel(&mut self, kind: SignalKind) -> &mut mpsc::Receiver<Signal> {
        match kind {
            SignalKind::Traces => &mut self.traces,
            SignalKind::Logs => &mut self.logs,
            SignalKind::Metrics => &mut self.metrics,
        }
    }

    /// The next request in `kind`'s channel; panics if none arrives within 5 s.
    pub async fn next(&mut self, kind: SignalKind) -> Signal {
        tokio::time::timeout(Duration::from_secs(5), self.channel(kind).recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} request arrived within 5 s"))
            .unwrap_or_else(|| panic!("the {kind:?} channel closed"))
    }

    /// Panics if `kind`'s channel holds anything.
    pub fn assert_empty(&mut self, kind: SignalKind) {
        if let Ok(signal) = self.channel(kind).try_recv() {
            panic!("unexpected {kind:?} request in the channel: {signal:?}");
        }
    }

    pub async fn start_grpc(
        &self,
        limits: Limits,
    ) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
        self.start_grpc_with(limits, None).await
    }

    pub async fn start_http(
        &self,
        limits: Limits,
    ) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
        self.start_http_with(limits, None).await
    }

    /// The gRPC receiver, over TLS when `tls` is set.
    pub async fn start_grpc_with(
        &self,
        limits: Limits,
        tls: Option<rustls::ServerConfig>,
    ) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
        let listener = bind().await;
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        (
            addr,
            tokio::spawn(serve_grpc(listener, self.ingest.clone(), limits, tls)),
        )
    }

    /// The HTTP receiver, over TLS when `tls` is set.
    pub async fn start_http_with(
        &self,
        limits: Limits,
        tls: Option<rustls::ServerConfig>,
    ) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
        let listener = bind().await;
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        (
            addr,
            tokio::spawn(serve_http(listener, self.ingest.clone(), limits, tls)),
        )
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0 should work")
}

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

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

pub fn sample_traces() -> ExportTraceServiceRequest {
    traces_of(vec![
        span("chat gpt-4o", [1; 16], [2; 8]),
        span("execute_tool get_weather", [1; 16], [3; 8]),
    ])
}

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

pub fn sample_logs() -> ExportLogsServiceRequest {
    logs_of(vec![log_record(&[1; 16], &[2; 8]), log_record(&[], &[])])
}

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

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(data)
        .expect("writing into a Vec cannot fail");
    encoder.finish().expect("finishing a Vec gzip cannot fail")
}

/// An HTTP answer, body read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Sends `method path` with `headers` and `body` to `addr`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .expect("the test request should be well-formed");
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("reading the answer to {method} {path} failed: {e}"))
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// POSTs `body` with `content_type` (and `Content-Encoding: gzip` when `gzipped`).
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    gzipped: bool,
    body: Vec<u8>,
) -> Answer {
    let mut headers = vec![("content-type", content_type)];
    if gzipped {
        headers.push(("content-encoding", "gzip"));
    }
    http(addr, "POST", path, &headers, body).await
}

/// `google.rpc.Status` and `RetryInfo`, to read error answers: the messages runbom sends.
// Not every test binary that includes this module reads error answers.
#[allow(unused_imports)]
pub use runbom_otlp::rpc;

/// A tonic codec that sends and receives raw bytes, to send malformed gRPC payloads.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `/opentelemetry.proto.collector.<signal>.v1.<Service>/Export` with raw `payload`.
pub async fn grpc_raw(
    addr: SocketAddr,
    service: &str,
    payload: Vec<u8>,
    gzipped: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("the test endpoint is a valid URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr} failed: {e}"));
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzipped {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .unwrap_or_else(|e| panic!("the gRPC channel to {addr} is not ready: {e}"));
    let path = format!("/{service}/Export")
        .parse()
        .expect("the method path is valid");
    grpc.unary(tonic::Request::new(payload), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

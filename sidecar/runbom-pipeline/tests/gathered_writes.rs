//! The `otlp` exporter's connections gather their HTTP/2 writes (`transport::gather`): a burst
//! of frames goes out in one write at the flush after it. Against real gRPC servers no request
//! may be left with its last frames gathered while the client waits for its answer: 32
//! requests of about 3 MiB at once on one connection, then 200 small ones one after another
//! (each alone on the connection, nothing written after it), to runbom's own `otlp` receiver
//! in plain text and over TLS, and to a tonic server with 64 KiB flow-control windows that
//! reads each body slowly, so window updates arrive while bytes are gathered. Every request
//! must be answered within 30 s and arrive whole (which also needs the receiver to announce no
//! more streams than it reads at once, [`Limits::streams_announced`]).

use std::{
    collections::BTreeMap,
    future::Future as _,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
};
use prost::Message as _;
use runbom_pipeline::{
    Signal, SignalKind,
    exporter::{GrpcExporter, NetworkSettings, RetryPolicy},
    receiver::Limits,
    transport::tls::ClientTlsSettings,
};
use runbom_testkit::{
    harness::Harness,
    pki::Pki,
    requests::{kv, span, text, traces_of},
};
use tokio::{task::JoinSet, time::Sleep};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    Status,
    body::Body,
    codegen::{Service, http},
    server::NamedService,
};

/// Requests of about 3 MiB sent at once, then small ones sent one after another.
const LARGE: usize = 32;
const SMALL: usize = 200;
/// Spans in a large request, each with a payload of about 4 KiB.
const LARGE_SPANS: usize = 700;
const PAYLOAD: usize = 4 << 10;
/// How long each request may wait for its answer: a stall fails the test, it does not hang it.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Exporter settings with no retries (a lost request must not be sent again) and a timeout
/// longer than [`ANSWER_WITHIN`], so a stall is reported as one.
fn network(endpoint: String, tls: ClientTlsSettings) -> NetworkSettings {
    NetworkSettings {
        endpoint,
        headers: BTreeMap::new(),
        gzip: false,
        timeout: ANSWER_WITHIN * 2,
        tls,
        retry: RetryPolicy {
            enabled: false,
            ..RetryPolicy::default()
        },
        retries: Arc::default(),
    }
}

fn plain_text() -> ClientTlsSettings {
    ClientTlsSettings {
        insecure: true,
        ..ClientTlsSettings::default()
    }
}

fn id<const N: usize>(n: usize) -> [u8; N] {
    let mut id = [1u8; N];
    for (b, byte) in id.iter_mut().zip(n.to_le_bytes()) {
        *b ^= byte;
    }
    id
}

/// Request `i` of about 3 MiB: every span's payload differs, so a lost or misplaced chunk
/// changes what arrives.
fn large(i: usize) -> ExportTraceServiceRequest {
    let spans = (0..LARGE_SPANS)
        .map(|j| {
            let mut s = span(&format!("large-{i:02}-{j:04}"), id(i), id(j));
            let stamp = format!("{i}:{j};");
            let payload = stamp.repeat(PAYLOAD / stamp.len());
            s.attributes.push(kv("payload", text(&payload)));
            s
        })
        .collect();
    traces_of(spans)
}

/// Small request `i`: one span, a few hundred bytes.
fn small(i: usize) -> ExportTraceServiceRequest {
    traces_of(vec![span(&format!("small-{i:03}"), id(i), id(i))])
}

fn spans(r: &ExportTraceServiceRequest) -> usize {
    Signal::Traces(r.clone()).item_count()
}

/// The name a request is known by: its first span's.
fn name_of(r: &ExportTraceServiceRequest) -> String {
    r.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .next()
        .unwrap_or_default()
}

/// Exports `request` and panics, saying so, if it is not answered within [`ANSWER_WITHIN`].
async fn export_within(exporter: &mut GrpcExporter, request: ExportTraceServiceRequest) {
    let what = name_of(&request);
    tokio::time::timeout(ANSWER_WITHIN, exporter.export(&Signal::Traces(request)))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: no answer within {ANSWER_WITHIN:?} (were the request's last frames \
                 left gathered?)"
            )
        })
        .unwrap_or_else(|e| panic!("{what}: the export failed: {e}"));
}

/// Sends the [`LARGE`] requests at once on one connection (the exporter's clones share its
/// channel), then the [`SMALL`] ones one after another, each awaited before the next. Returns
/// every request sent.
async fn exchange(exporter: &GrpcExporter) -> Vec<ExportTraceServiceRequest> {
    let mut sent = Vec::with_capacity(LARGE + SMALL);
    let mut at_once = JoinSet::new();
    for i in 0..LARGE {
        let request = large(i);
        let size = request.encoded_len();
        assert!(
            (5 << 19..4 << 20).contains(&size),
            "a large request is about 3 MiB, under the receivers' 4 MiB: {size} bytes"
        );
        sent.push(request.clone());
        let mut exporter = exporter.clone();
        at_once.spawn(async move { export_within(&mut exporter, request).await });
    }
    while let Some(done) = at_once.join_next().await {
        if let Err(e) = done {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    let mut exporter = exporter.clone();
    for i in 0..SMALL {
        let request = small(i);
        let size = request.encoded_len();
        assert!(
            (100..1000).contains(&size),
            "a small request is a few hundred bytes: {size}"
        );
        sent.push(request.clone());
        export_within(&mut exporter, request).await;
    }
    sent
}

/// Asserts that `got` holds every request `sent`, once and whole.
fn assert_whole(
    what: &str,
    mut sent: Vec<ExportTraceServiceRequest>,
    mut got: Vec<ExportTraceServiceRequest>,
) {
    let items = |rs: &[ExportTraceServiceRequest]| rs.iter().map(spans).sum::<usize>();
    assert_eq!(
        (got.len(), items(&got)),
        (sent.len(), items(&sent)),
        "{what}: the requests and spans received are not those sent"
    );
    sent.sort_by_key(name_of);
    got.sort_by_key(name_of);
    for (s, g) in sent.iter().zip(&got) {
        assert!(
            s == g,
            "{what}: {} arrived changed ({} spans, {} bytes; sent {} spans, {} bytes)",
            name_of(s),
            spans(g),
            g.encoded_len(),
            spans(s),
            s.encoded_len()
        );
    }
}

/// Everything runbom's receiver of `h` pushed: one request per export.
async fn received(h: &mut Harness) -> Vec<ExportTraceServiceRequest> {
    let mut got = Vec::with_capacity(LARGE + SMALL);
    for _ in 0..LARGE + SMALL {
        match h.next(SignalKind::Traces).await {
            Signal::Traces(r) => got.push(r),
            other => panic!("a request of traces arrives as one: {:?}", other.kind()),
        }
    }
    h.assert_empty(SignalKind::Traces);
    got
}

/// The receiver's own limits: it reads 8 requests of a connection at once and announces no
/// more streams than that. When it announced 100, the large requests waiting for a turn took
/// the connection's flow-control window unread, and the ones being read waited for bytes that
/// could not come until the read timeout (both tests against runbom's receiver, in each of
/// three runs).
fn limits() -> Limits {
    Limits::default()
}

/// The receiver's pipeline holds every request, so none waits for room.
fn roomy_harness() -> Harness {
    Harness::new(&[SignalKind::Traces], 2 * (LARGE + SMALL), ANSWER_WITHIN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_to_runbom_receiver_every_request_answered_and_whole() {
    let mut h = roomy_harness();
    let (addr, _) = h.start_grpc(limits()).await;
    let exporter = GrpcExporter::new(network(format!("http://{addr}"), plain_text()))
        .unwrap_or_else(|e| panic!("building the otlp exporter failed: {e}"));
    let sent = exchange(&exporter).await;
    assert_whole("plain text", sent, received(&mut h).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_runbom_receiver_every_request_answered_and_whole() {
    let pki = Pki::new();
    let mut h = roomy_harness();
    let (addr, _) = h
        .start_grpc_with(limits(), Some(pki.server_tls(false)))
        .await;
    let tls = ClientTlsSettings {
        ca_file: Some(pki.path("ca.pem")),
        ..ClientTlsSettings::default()
    };
    let exporter = GrpcExporter::new(network(format!("https://localhost:{}", addr.port()), tls))
        .unwrap_or_else(|e| panic!("building the otlp exporter failed: {e}"));
    let sent = exchange(&exporter).await;
    assert_whole("TLS", sent, received(&mut h).await);
}

// ---- a tonic server with small windows that reads slowly ----

/// Keeps every request it is given, after a short pause.
#[derive(Clone, Default)]
struct Kept(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Kept {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        tokio::time::sleep(Duration::from_millis(3)).await;
        self.0
            .lock()
            .expect("no handler panics holding the lock")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A request body read slowly: a pause before each chunk, so the server's window is given back
/// a little at a time.
struct SlowBody {
    inner: Body,
    pause: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for SlowBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let pause = this
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(1))));
        ready!(pause.as_mut().poll(cx));
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        this.pause = None;
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A service whose requests' bodies are [`SlowBody`]s.
#[derive(Clone)]
struct SlowReader<S>(S);

impl<S: NamedService> NamedService for SlowReader<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: Service<http::Request<Body>>> Service<http::Request<Body>> for SlowReader<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.0
            .call(request.map(|inner| Body::new(SlowBody { inner, pause: None })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_windows_and_a_slow_reader_every_request_answered_and_whole() {
    let (listener, addr) = runbom_testkit::harness::bind().await;
    let kept = Kept::default();
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .add_service(SlowReader(TraceServiceServer::new(kept.clone())))
        .serve_with_incoming(TcpListenerStream::new(listener));
    let server = tokio::spawn(server);
    let exporter = GrpcExporter::new(network(format!("http://{addr}"), plain_text()))
        .unwrap_or_else(|e| panic!("building the otlp exporter failed: {e}"));
    let sent = exchange(&exporter).await;
    let got = std::mem::take(&mut *kept.0.lock().expect("no handler panicked"));
    assert_whole("64 KiB windows, slow reader", sent, got);
    server.abort();
}

#[test]
fn requests_are_told_apart_by_their_payloads() {
    let payload = |r: &ExportTraceServiceRequest, j: usize| {
        r.resource_spans[0].scope_spans[0].spans[j]
            .attributes
            .iter()
            .find(|a| a.key == "payload")
            .and_then(|a| a.value.as_ref()?.value.clone())
    };
    let (a, b) = (large(1), large(2));
    assert_eq!(spans(&a), LARGE_SPANS);
    assert_ne!(payload(&a, 7), payload(&b, 7));
    assert_ne!(payload(&a, 7), payload(&a, 8));
    assert!(matches!(payload(&a, 0), Some(Value::StringValue(s)) if s.len() > PAYLOAD - 16));
    assert_ne!(name_of(&small(3)), name_of(&small(4)));
}

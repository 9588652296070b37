//! TLS on both sides, with throwaway certificates: the OTLP receivers terminating TLS (and
//! requiring client certificates under `client_ca_file`), runbom's `otlp` and `otlphttp`
//! exporters sending to them, refusals for an untrusted server or a missing client
//! certificate, certificate reload, and the OpenTelemetry Python SDK as a TLS client.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::{HttpsConnectorBuilder, builderstates::WantsProtocols1};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message as _;
use runbom_pipeline::transport::tls::{ClientTlsSettings, ServerTlsSettings, TlsVersion};
use runbom_pipeline::{
    Signal, SignalKind,
    exporter::{ExportError, GrpcExporter, HttpExporter, NetworkSettings, RetryPolicy},
    receiver::Limits,
};
use runbom_testkit::{
    harness::{Harness, TlsReceivers, samples},
    pki::{self, Pki},
    python,
    requests::{sample_logs, sample_traces},
};

fn trusting(ca: &Path) -> ClientTlsSettings {
    ClientTlsSettings {
        ca_file: Some(ca.to_owned()),
        ..ClientTlsSettings::default()
    }
}

/// A client connector that trusts the test CA and speaks only TLS.
fn https(pki: &Pki) -> HttpsConnectorBuilder<WantsProtocols1> {
    let config = trusting(&pki.path("ca.pem"))
        .load()
        .unwrap_or_else(|e| panic!("the client TLS settings should load: {e}"));
    HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
}

/// `tls` plus the test client certificate.
fn with_client_cert(pki: &Pki, tls: ClientTlsSettings) -> ClientTlsSettings {
    ClientTlsSettings {
        cert_file: Some(pki.path("client.pem")),
        key_file: Some(pki.path("client-key.pem")),
        ..tls
    }
}

/// Exporter settings that fail fast: no retries, 5 s timeout.
fn network(endpoint: String, tls: ClientTlsSettings) -> NetworkSettings {
    NetworkSettings {
        endpoint,
        headers: BTreeMap::new(),
        gzip: false,
        timeout: Duration::from_secs(5),
        tls,
        retry: RetryPolicy {
            enabled: false,
            ..RetryPolicy::default()
        },
        retries: Arc::default(),
    }
}

async fn grpc_export(endpoint: String, tls: ClientTlsSettings) -> Result<(), ExportError> {
    let mut exporter = GrpcExporter::new(network(endpoint, tls))
        .unwrap_or_else(|e| panic!("building the otlp exporter failed: {e}"));
    exporter.export(&Signal::Traces(sample_traces())).await
}

async fn http_export(endpoint: String, tls: ClientTlsSettings) -> Result<(), ExportError> {
    let mut exporter = HttpExporter::new(network(endpoint, tls))
        .unwrap_or_else(|e| panic!("building the otlphttp exporter failed: {e}"));
    exporter.export(&Signal::Traces(sample_traces())).await
}

/// Asserts that `result` failed and that its message contains `expected`.
fn assert_refused(result: Result<(), ExportError>, expected: &str, what: &str) {
    match result {
        Ok(()) => panic!("{what}: the export should have been refused"),
        Err(error) => assert!(
            error.to_string().contains(expected),
            "{what}: expected an error mentioning {expected:?}, got: {error}"
        ),
    }
}

/// Like [`assert_refused`], and the message ends with a hint at what to change.
fn assert_refused_with_hint(result: Result<(), ExportError>, expected: &str, what: &str) {
    let text = result.as_ref().map_err(ToString::to_string).err();
    assert_refused(result, expected, what);
    let text = text.unwrap_or_default();
    assert!(
        text.ends_with(')') && text.contains(" (") && text.contains("tls"),
        "{what}: the error should end with a hint naming the tls setting to change: {text}"
    );
}

// ---- receivers ----

#[tokio::test]
async fn grpc_receiver_serves_a_tonic_tls_client() {
    let r = TlsReceivers::start(false).await;
    let (pki, mut h, addr) = (r.pki, r.h, r.grpc);
    let connector = https(&pki).enable_http2().build();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
            .expect("the test endpoint is a valid URI")
            .connect_with_connector(connector)
            .await
            .unwrap_or_else(|e| panic!("connecting over TLS to {addr} failed: {e}"));
    TraceServiceClient::new(channel)
        .export(sample_traces())
        .await
        .unwrap_or_else(|e| panic!("the export over TLS was refused: {e}"));
    h.assert_next(Signal::Traces(sample_traces())).await;

    let plain = TraceServiceClient::connect(format!("http://{addr}")).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut client) => client.export(sample_traces()).await.is_err(),
    };
    assert!(
        refused,
        "a plain-text client must not get through a TLS receiver"
    );
    h.assert_empty(SignalKind::Traces);
}

#[tokio::test]
async fn http_receiver_serves_https() {
    let r = TlsReceivers::start(false).await;
    let (pki, mut h, addr) = (r.pki, r.h, r.http);
    let connector = https(&pki).enable_http1().build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = hyper::Request::post(format!("https://localhost:{}/v1/logs", addr.port()))
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(sample_logs().encode_to_vec())))
        .expect("the test request is well-formed");
    let response = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("POST over TLS to {addr} failed: {e}"));
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the answer's body should be readable")
        .to_bytes();
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(h.next(SignalKind::Logs).await, Signal::Logs(sample_logs()));

    let plain: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = hyper::Request::post(format!("http://{addr}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(sample_logs().encode_to_vec())))
        .expect("the test request is well-formed");
    let answer = tokio::time::timeout(Duration::from_secs(5), plain.request(request))
        .await
        .expect("a plain-text request to a TLS port should fail quickly");
    assert!(
        answer.is_err(),
        "a plain-text request must not be answered by a TLS receiver: {answer:?}"
    );
    h.assert_empty(SignalKind::Logs);
}

#[tokio::test]
async fn tls_receivers_stop_on_shutdown() {
    let pki = Pki::new();
    let h = Harness::all();
    let (grpc, grpc_task) = h
        .start_grpc_with(Limits::default(), Some(pki.server_tls(false)))
        .await;
    let (http, http_task) = h
        .start_http_with(Limits::default(), Some(pki.server_tls(false)))
        .await;
    // An idle connection that never starts its handshake must not hold shutdown up.
    let _idle = tokio::net::TcpStream::connect(grpc)
        .await
        .unwrap_or_else(|e| panic!("connecting to {grpc} failed: {e}"));
    h.stop.cancel();
    for (what, task) in [("gRPC", grpc_task), ("HTTP", http_task)] {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap_or_else(|_| panic!("the {what} TLS receiver did not stop within 5 s"))
            .unwrap_or_else(|e| panic!("the {what} receiver task panicked: {e}"))
            .unwrap_or_else(|e| panic!("the {what} receiver failed: {e}"));
    }
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "the HTTP port should be closed after shutdown"
    );
}

// ---- exporters ----

#[tokio::test]
async fn otlp_exporter_uses_tls_with_ca_file() {
    let r = TlsReceivers::start(false).await;
    let (ca, mut h, addr) = (r.ca, r.h, r.grpc);
    // A plain host:port means TLS, as in the Collector; so does https://, by name or address.
    for endpoint in [
        addr.to_string(),
        format!("https://localhost:{}", addr.port()),
        format!("https://{addr}"),
    ] {
        let mut exporter = GrpcExporter::new(network(endpoint.clone(), trusting(&ca)))
            .unwrap_or_else(|e| panic!("building the otlp exporter failed: {e}"));
        for signal in samples() {
            exporter
                .export(&signal)
                .await
                .unwrap_or_else(|e| panic!("{endpoint}: {:?} export failed: {e}", signal.kind()));
            assert_eq!(h.next(signal.kind()).await, signal, "{endpoint}");
        }
    }
}

#[tokio::test]
async fn server_name_override_names_the_certificate_to_expect() {
    let pki = Pki::new();
    let mut h = Harness::all();
    let named = pki::load(&pki.server_settings("named-server", false));
    let (grpc, _) = h
        .start_grpc_with(Limits::default(), Some(named.clone()))
        .await;
    let (http, _) = h.start_http_with(Limits::default(), Some(named)).await;
    let ca = pki.path("ca.pem");
    // The certificate names otlp.runbom.test only: 127.0.0.1 is refused ...
    assert_refused(
        grpc_export(grpc.to_string(), trusting(&ca)).await,
        "not valid for name",
        "otlp to a certificate for another name",
    );
    assert_refused(
        http_export(format!("https://{http}"), trusting(&ca)).await,
        "not valid for name",
        "otlphttp to a certificate for another name",
    );
    // ... unless the name checked is overridden.
    let overridden = ClientTlsSettings {
        server_name_override: Some("otlp.runbom.test".into()),
        ..trusting(&ca)
    };
    grpc_export(grpc.to_string(), overridden.clone())
        .await
        .unwrap_or_else(|e| panic!("otlp with server_name_override failed: {e}"));
    http_export(format!("https://{http}"), overridden)
        .await
        .unwrap_or_else(|e| panic!("otlphttp with server_name_override failed: {e}"));
    for _ in 0..2 {
        h.assert_next(Signal::Traces(sample_traces())).await;
    }
}

#[tokio::test]
async fn otlp_exporter_plain_text_and_skip_verify() {
    let pki = Pki::new();
    let mut h = Harness::all();
    let (plain, _) = h.start_grpc(Limits::default()).await;
    let (tls, _) = h
        .start_grpc_with(Limits::default(), Some(pki.server_tls(false)))
        .await;
    let insecure = ClientTlsSettings {
        insecure: true,
        ..ClientTlsSettings::default()
    };
    for endpoint in [plain.to_string(), format!("http://{plain}")] {
        let tls = if endpoint.starts_with("http://") {
            ClientTlsSettings::default()
        } else {
            insecure.clone()
        };
        grpc_export(endpoint.clone(), tls)
            .await
            .unwrap_or_else(|e| panic!("plain text to {endpoint} failed: {e}"));
        h.assert_next(Signal::Traces(sample_traces())).await;
    }
    // TLS (the default) to a plain-text server fails, saying what to change.
    assert_refused_with_hint(
        grpc_export(plain.to_string(), ClientTlsSettings::default()).await,
        "set `tls: {insecure: true}`",
        "TLS to a plain-text receiver",
    );
    let skip = ClientTlsSettings {
        insecure_skip_verify: true,
        ..ClientTlsSettings::default()
    };
    grpc_export(format!("https://{tls}"), skip)
        .await
        .unwrap_or_else(|e| panic!("insecure_skip_verify should accept any certificate: {e}"));
    h.assert_next(Signal::Traces(sample_traces())).await;
}

#[tokio::test]
async fn otlphttp_exporter_uses_https() {
    let r = TlsReceivers::start(false).await;
    let (ca, mut h, addr) = (r.ca, r.h, r.http);
    let mut exporter = HttpExporter::new(network(format!("https://{addr}"), trusting(&ca)))
        .unwrap_or_else(|e| panic!("building the otlphttp exporter failed: {e}"));
    for signal in samples() {
        exporter
            .export(&signal)
            .await
            .unwrap_or_else(|e| panic!("{:?} export over https failed: {e}", signal.kind()));
        assert_eq!(h.next(signal.kind()).await, signal);
    }
    // For otlphttp the scheme decides: http:// is plain text, whatever `tls` says.
    let (plain, _) = h.start_http(Limits::default()).await;
    http_export(format!("http://{plain}"), trusting(&ca))
        .await
        .unwrap_or_else(|e| panic!("plain text to http://{plain} failed: {e}"));
    h.assert_next(Signal::Traces(sample_traces())).await;
}

#[tokio::test]
async fn an_untrusted_server_is_refused_clearly() {
    let r = TlsReceivers::start(false).await;
    let (pki, grpc, http) = (r.pki, r.grpc, r.http);
    let wrong = trusting(&pki.path("other-ca.pem"));
    // rustls says UnknownIssuer; runbom adds what to check.
    let expected = "UnknownIssuer";
    assert_refused_with_hint(
        grpc_export(format!("https://{grpc}"), wrong.clone()).await,
        expected,
        "otlp with the wrong CA",
    );
    assert_refused_with_hint(
        http_export(format!("https://{http}"), wrong).await,
        expected,
        "otlphttp with the wrong CA",
    );
    // Without ca_file the system's CAs are used, and they did not sign the test server either.
    assert_refused(
        http_export(format!("https://{http}"), ClientTlsSettings::default()).await,
        "invalid peer certificate",
        "otlphttp with the system CAs",
    );
}

#[tokio::test]
async fn min_and_max_version_are_enforced() {
    let pki = Pki::new();
    let mut h = Harness::all();
    let tls13 = pki::load(&ServerTlsSettings {
        min_version: Some(TlsVersion::V1_3),
        ..pki.server_settings("server", false)
    });
    let (addr, _) = h.start_grpc_with(Limits::default(), Some(tls13)).await;
    let ca = pki.path("ca.pem");
    let tls12 = ClientTlsSettings {
        max_version: Some(TlsVersion::V1_2),
        ..trusting(&ca)
    };
    assert_refused(
        grpc_export(addr.to_string(), tls12).await,
        "ProtocolVersion",
        "a TLS 1.2 client to a TLS 1.3-only receiver",
    );
    grpc_export(addr.to_string(), trusting(&ca))
        .await
        .unwrap_or_else(|e| panic!("a TLS 1.3 client should be served: {e}"));
    h.assert_next(Signal::Traces(sample_traces())).await;
}

#[tokio::test]
async fn client_ca_file_requires_a_client_certificate() {
    let r = TlsReceivers::start(true).await;
    let (pki, ca, mut h, grpc, http) = (r.pki, r.ca, r.h, r.grpc, r.http);

    assert_refused_with_hint(
        grpc_export(format!("https://{grpc}"), trusting(&ca)).await,
        "CertificateRequired",
        "otlp without a client certificate",
    );
    assert_refused_with_hint(
        http_export(format!("https://{http}"), trusting(&ca)).await,
        "CertificateRequired",
        "otlphttp without a client certificate",
    );
    // A client certificate from a CA the server does not trust is refused too.
    let mut stranger = with_client_cert(&pki, trusting(&ca));
    stranger.cert_file = Some(pki.path("other-server.pem"));
    stranger.key_file = Some(pki.path("other-server-key.pem"));
    assert!(
        grpc_export(format!("https://{grpc}"), stranger)
            .await
            .is_err(),
        "a client certificate from an unknown CA must be refused"
    );
    h.assert_empty(SignalKind::Traces);

    grpc_export(
        format!("https://{grpc}"),
        with_client_cert(&pki, trusting(&ca)),
    )
    .await
    .unwrap_or_else(|e| panic!("otlp with the client certificate failed: {e}"));
    h.assert_next(Signal::Traces(sample_traces())).await;
    http_export(
        format!("https://{http}"),
        with_client_cert(&pki, trusting(&ca)),
    )
    .await
    .unwrap_or_else(|e| panic!("otlphttp with the client certificate failed: {e}"));
    h.assert_next(Signal::Traces(sample_traces())).await;
}

#[tokio::test]
async fn reload_interval_picks_up_a_new_certificate() {
    let pki = Pki::new();
    let mut h = Harness::all();
    let config = pki::load(&ServerTlsSettings {
        reload_interval: Some(Duration::ZERO),
        ..pki.server_settings("server", false)
    });
    let (addr, _) = h.start_http_with(Limits::default(), Some(config)).await;
    let endpoint = format!("https://{addr}");
    let (ca, other) = (pki.path("ca.pem"), pki.path("other-ca.pem"));
    http_export(endpoint.clone(), trusting(&ca))
        .await
        .unwrap_or_else(|e| panic!("the first certificate should be served: {e}"));
    h.next(SignalKind::Traces).await;

    for file in ["server.pem", "server-key.pem"] {
        let replacement = std::fs::read_to_string(pki.path(&format!("other-{file}")))
            .unwrap_or_else(|e| panic!("reading other-{file} failed: {e}"));
        pki.write(file, &replacement);
    }
    assert!(
        http_export(endpoint.clone(), trusting(&ca)).await.is_err(),
        "the old CA must not verify the reloaded certificate"
    );
    http_export(endpoint, trusting(&other))
        .await
        .unwrap_or_else(|e| panic!("the reloaded certificate should be served: {e}"));
    h.next(SignalKind::Traces).await;
}

// ---- the OpenTelemetry Python SDK ----

#[tokio::test]
async fn python_sdk_exports_over_tls() {
    let r = TlsReceivers::start(false).await;
    let (ca, mut h, grpc, http) = (r.ca, r.h, r.grpc, r.http);
    for (protocol, addr) in [("grpc", grpc), ("http/protobuf", http), ("http/json", http)] {
        let sent = python::sdk_export_tls(protocol, SignalKind::Traces, addr, &ca, None).await;
        let arrived = h.next(SignalKind::Traces).await;
        python::assert_spans_arrived(&sent, &arrived);
        assert_eq!(
            arrived,
            python::sent_request(SignalKind::Traces, &sent),
            "{protocol} over TLS"
        );
    }
}

#[tokio::test]
async fn python_sdk_exports_with_a_client_certificate() {
    let r = TlsReceivers::start(true).await;
    let (pki, ca, mut h, grpc) = (r.pki, r.ca, r.h, r.grpc);
    let client = (pki.path("client.pem"), pki.path("client-key.pem"));
    let sent = python::sdk_export_tls(
        "grpc",
        SignalKind::Logs,
        grpc,
        &ca,
        Some((&client.0, &client.1)),
    )
    .await;
    assert_eq!(
        h.next(SignalKind::Logs).await,
        python::sent_request(SignalKind::Logs, &sent)
    );
}

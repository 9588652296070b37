//! The project's Python helpers (`tests/*.py`): running a script, comparing OTLP data in one
//! canonical form (`tests/otlp_canon.py`), and the OpenTelemetry Python SDK as a client
//! (`tests/sdk_client.py`).

use std::{collections::BTreeMap, ffi::OsStr, path::Path, process::Command, time::Duration};

use prost::Message as _;
use runbom_pipeline::{Signal, SignalKind};
use serde_json::Value;

use crate::{python_bin, run_bounded, test_script};

/// How long a Python helper may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs a `tests/` Python script; panics unless it exits 0. Returns its stdout.
#[must_use]
pub fn run_script(name: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script(name)).args(args);
    let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Like [`run_script`], parsing stdout as one JSON value.
#[must_use]
pub fn run_script_json(name: &str, args: &[&str]) -> Value {
    let stdout = run_script(name, args);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{name} {args:?} printed no JSON ({e}):\n{stdout}"))
}

/// `tests/otlp_canon.py`: the spans (by span id) or log records of `sources`, in one form.
#[must_use]
pub fn canon(signal: &str, sources: &[String]) -> Value {
    let mut args = vec!["--signal", signal];
    args.extend(sources.iter().map(String::as_str));
    let canon = run_script_json("otlp_canon.py", &args);
    assert_eq!(
        canon["duplicate_span_ids"],
        serde_json::json!([]),
        "a span arrived more than once in {sources:?}"
    );
    canon
}

/// Spans per trace id (hex) in `sources` (see [`canon`]), for requests that repeat span ids.
#[must_use]
pub fn trace_span_counts(sources: &[String]) -> BTreeMap<String, u64> {
    let mut args = vec!["--signal", "traces", "--counts-only"];
    args.extend(sources.iter().map(String::as_str));
    let counts = run_script_json("otlp_canon.py", &args);
    counts["trace_span_counts"]
        .as_object()
        .expect("trace_span_counts")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_default()))
        .collect()
}

/// Asserts two canonical span maps (see [`canon`]) are equal, showing the first difference.
pub fn assert_same_spans(what: &str, want: &Value, got: &Value) {
    let (want, got) = (
        want.as_object().expect("span map"),
        got.as_object().expect("span map"),
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: span ids differ; missing {missing:?}, unexpected {extra:?}"
    );
    for (id, span) in want {
        assert_eq!(
            &got[id],
            span,
            "{what}: span {id} changed on the way\nsent:\n{}\nreceived:\n{}",
            pretty(span),
            pretty(&got[id])
        );
    }
}

#[must_use]
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Runs `tests/sdk_client.py` against `addr` from a blocking task and returns what it says
/// it sent.
pub async fn sdk_export(
    protocol: &str,
    kind: SignalKind,
    addr: std::net::SocketAddr,
    gzipped: bool,
) -> serde_json::Value {
    let extra: [&OsStr; 0] = [];
    run(protocol, kind, addr, gzipped, &extra).await
}

/// Like [`sdk_export`], over TLS: the SDK trusts `ca_file` and, when given, presents `client`
/// (certificate and key files) for mTLS.
pub async fn sdk_export_tls(
    protocol: &str,
    kind: SignalKind,
    addr: std::net::SocketAddr,
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> serde_json::Value {
    let mut extra = vec![OsStr::new("--ca-file"), ca_file.as_os_str()];
    if let Some((cert, key)) = client {
        extra.extend([
            OsStr::new("--client-cert"),
            cert.as_os_str(),
            OsStr::new("--client-key"),
            key.as_os_str(),
        ]);
    }
    run(protocol, kind, addr, false, &extra).await
}

async fn run(
    protocol: &str,
    kind: SignalKind,
    addr: std::net::SocketAddr,
    gzipped: bool,
    extra: &[&OsStr],
) -> serde_json::Value {
    let python = python_bin();
    let mut command = std::process::Command::new(&python);
    command.arg(test_script("sdk_client.py")).args([
        "--protocol",
        protocol,
        "--signal",
        kind.as_str(),
        "--endpoint",
        &addr.to_string(),
    ]);
    if gzipped {
        command.arg("--gzip");
    }
    command.args(extra);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the blocking task should not panic")
        .unwrap_or_else(|e| panic!("running {} failed: {e}", python.display()));
    assert!(
        output.status.success(),
        "sdk_client.py: {} over {protocol} failed ({}): {}",
        kind.as_str(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "sdk_client.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The export request the SDK's encoder made, from `sent["request"]` (hex protobuf).
#[must_use]
pub fn sent_request(kind: SignalKind, sent: &serde_json::Value) -> Signal {
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
    };
    let text = sent["request"]
        .as_str()
        .unwrap_or_else(|| panic!("sdk_client.py printed no request: {sent}"));
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16)
                .unwrap_or_else(|e| panic!("the request is not hex ({e}): {text}"))
        })
        .collect();
    let decoded = match kind {
        SignalKind::Traces => {
            ExportTraceServiceRequest::decode(bytes.as_slice()).map(Signal::Traces)
        }
        SignalKind::Logs => ExportLogsServiceRequest::decode(bytes.as_slice()).map(Signal::Logs),
        SignalKind::Metrics => {
            ExportMetricsServiceRequest::decode(bytes.as_slice()).map(Signal::Metrics)
        }
    };
    decoded.unwrap_or_else(|e| panic!("the SDK's request does not decode: {e}"))
}

/// Checks the spans the SDK says it sent against what arrived, field by field (a readable
/// failure before the whole-request comparison).
pub fn assert_spans_arrived(sent: &serde_json::Value, arrived: &Signal) {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let Signal::Traces(request) = arrived else {
        panic!("expected traces, got {arrived:?}");
    };
    let resource_attr = |key: &str| {
        request.resource_spans[0]
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == key))
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone())
    };
    assert_eq!(
        resource_attr("service.name"),
        Some(Value::StringValue("runbom-interop".into()))
    );
    let spans: Vec<_> = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let expected = sent["spans"]
        .as_array()
        .expect("sdk_client.py lists its spans");
    assert_eq!(spans.len(), expected.len(), "{spans:#?}");
    for want in expected {
        let span_id = want["span_id"].as_str().expect("span_id is a string");
        let got = spans
            .iter()
            .find(|s| hex(&s.span_id) == span_id)
            .unwrap_or_else(|| panic!("span {want} did not arrive"));
        assert_eq!(got.name, want["name"], "{want}");
        assert_eq!(hex(&got.trace_id), want["trace_id"], "{want}");
        assert_eq!(hex(&got.parent_span_id), want["parent_span_id"], "{want}");
        let events: Vec<_> = got.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(serde_json::json!(events), want["events"], "{want}");
        let links: Vec<_> = got
            .links
            .iter()
            .map(|l| serde_json::json!({"trace_id": hex(&l.trace_id), "span_id": hex(&l.span_id)}))
            .collect();
        assert_eq!(serde_json::json!(links), want["links"], "{want}");
        let attributes = want["attributes"]
            .as_object()
            .expect("attributes is an object");
        assert_eq!(got.attributes.len(), attributes.len(), "{want}");
        for kv in &got.attributes {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => serde_json::json!(s),
                Some(Value::IntValue(i)) => serde_json::json!(i),
                Some(Value::DoubleValue(d)) => serde_json::json!(d),
                Some(Value::BoolValue(b)) => serde_json::json!(b),
                Some(Value::ArrayValue(a)) => serde_json::json!(
                    a.values
                        .iter()
                        .map(|v| match &v.value {
                            Some(Value::StringValue(s)) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>()
                ),
                other => panic!("unexpected attribute value {other:?}"),
            };
            assert_eq!(
                attributes.get(&kv.key),
                Some(&value),
                "attribute {}",
                kv.key
            );
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

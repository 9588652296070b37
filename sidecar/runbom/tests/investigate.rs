//! `runbom investigate` on recorded exports (`tests/fixtures/investigate/`: what runbom's `file`
//! exporter wrote while the reference agent ran its injected scenario): the tree, the
//! findings, errors for bad input, fetching from Tempo and Jaeger (stand-ins speaking their
//! HTTP APIs), and the HTML report rendered in headless Chromium.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::Duration,
};

use runbom_testkit::{TempDir, run_bounded, runbom_bin, workspace_root};
use serde_json::Value;

fn fixture() -> PathBuf {
    workspace_root().join("tests/fixtures/investigate")
}

fn investigate(args: &[&str]) -> Output {
    run_bounded(
        Command::new(runbom_bin!())
            .arg("investigate")
            .args(["--color", "never"])
            .args(args),
        Duration::from_secs(30),
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The trace id of the fixture's drift finding.
fn alert_trace() -> String {
    let logs = fs::read_to_string(fixture().join("logs.jsonl")).expect("fixture logs");
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).expect("fixture line is JSON");
        for rl in v["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    if r["eventName"] == "aibom.drift" {
                        return r["traceId"].as_str().expect("trace id").to_owned();
                    }
                }
            }
        }
    }
    panic!("the fixture has no aibom.drift record");
}

#[test]
fn shows_the_alerted_trace_as_a_tree() {
    let fixture = fixture();
    let out = investigate(&["--from", fixture.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    for needle in [
        "invoke_agent support-agent",
        "execute_tool http_post",
        "net.connect 127.0.0.1:18099",
        "http.request POST 127.0.0.1",
        "⚠ DRIFT undeclared_endpoint",
        "traceparent/high",
        "stitched",
    ] {
        assert!(
            text.contains(needle),
            "the tree should show {needle:?}:\n{text}"
        );
    }
}

#[test]
fn alerts_name_the_prompt_data_tool_and_destination() {
    let fixture = fixture();
    let out = investigate(&["--from", fixture.to_str().unwrap(), "--alerts"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    assert_eq!(text.matches("drift finding ").count(), 1, "{text}");
    for needle in [
        "undeclared_endpoint",
        "http_post",
        "127.0.0.1:18099",
        "customer",
    ] {
        assert!(
            text.contains(needle),
            "the finding should name {needle:?}:\n{text}"
        );
    }
}

#[test]
fn a_malformed_file_is_refused_naming_the_line() {
    let dir = TempDir::new("investigate-malformed");
    let good = fs::read_to_string(fixture().join("traces.jsonl")).unwrap();
    let mut lines: Vec<&str> = good.lines().take(2).collect();
    lines.push("{\"resourceSpans\": [ this is not json");
    // Followed by another line: damage, not the torn last line a killed writer leaves (that
    // one is skipped with a warning, see reliability.rs).
    lines.extend(good.lines().skip(2).take(1));
    let bad = dir.path().join("traces.jsonl");
    fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let out = investigate(&["--from", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3:", bad.display())) && err.contains("not OTLP/JSON"),
        "the error should name the file and line 3: {err}"
    );
}

#[test]
fn an_unknown_trace_id_says_so() {
    let fixture = fixture();
    let out = investigate(&[
        "--from",
        fixture.to_str().unwrap(),
        "--trace",
        "0123456789abcdef0123456789abcdef",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not in the data read"),
        "{}",
        stderr(&out)
    );
    let out = investigate(&["--from", fixture.to_str().unwrap(), "--trace", "xyz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("32 hex digits"), "{}", stderr(&out));
}

/// Serves `routes` (path → (status, body)) over HTTP/1.1 until dropped; returns the base URL.
fn stand_in(routes: Vec<(String, u16, String)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (status, body) = routes.iter().find(|(p, _, _)| *p == path).map_or(
                (404, "{\"error\":\"trace not found\"}".to_owned()),
                |(_, s, b)| (*s, b.clone()),
            );
            // Chunked, as Tempo and Jaeger answer large traces.
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            );
        }
    });
    base
}

fn trace_document(trace: &str) -> Value {
    let text = fs::read_to_string(fixture().join("traces.jsonl")).unwrap();
    let mut resource_spans = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            let mut rs = rs.clone();
            for ss in rs["scopeSpans"].as_array_mut().into_iter().flatten() {
                let spans: Vec<Value> = ss["spans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["traceId"] == trace)
                    .cloned()
                    .collect();
                ss["spans"] = Value::Array(spans);
            }
            resource_spans.push(rs);
        }
    }
    serde_json::json!({ "resourceSpans": resource_spans })
}

#[test]
fn fetches_a_trace_from_tempo_and_jaeger() {
    let trace = alert_trace();
    let doc = trace_document(&trace);
    let tempo = stand_in(vec![(
        format!("/api/v2/traces/{trace}"),
        200,
        serde_json::json!({ "trace": doc }).to_string(),
    )]);
    let jaeger = stand_in(vec![(
        format!("/api/v3/traces/{trace}"),
        200,
        serde_json::json!({ "result": doc }).to_string(),
    )]);
    for (flag, base) in [("--tempo", &tempo), ("--jaeger", &jaeger)] {
        let out = investigate(&[flag, base, "--trace", &trace]);
        let text = stdout(&out);
        assert!(out.status.success(), "{flag}: {text}{}", stderr(&out));
        assert!(
            text.contains("invoke_agent support-agent"),
            "{flag}: {text}"
        );
        assert!(
            text.contains("⚠ DRIFT undeclared_endpoint"),
            "{flag}: {text}"
        );
        let missing = investigate(&[flag, base, "--trace", "0123456789abcdef0123456789abcdef"]);
        assert_eq!(
            missing.status.code(),
            Some(1),
            "{flag}: {}",
            stderr(&missing)
        );
    }
}

fn chromium() -> PathBuf {
    let path = PathBuf::from("/usr/bin/chromium");
    assert!(
        path.exists(),
        "/usr/bin/chromium is missing: `bash scripts/setup.sh --tests` installs it"
    );
    path
}

fn headless(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let dir = TempDir::new("investigate-html");
    let report = dir.path().join("report.html");
    let fixture = fixture();
    let bom = workspace_root().join("examples/agent/bom.cdx.json");
    let out = investigate(&[
        "--from",
        fixture.to_str().unwrap(),
        "--bom",
        bom.to_str().unwrap(),
        "--html",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = fs::read_to_string(&report).unwrap();
    assert!(
        !html.contains("http://") || !html.contains("<script src"),
        "no external fetch"
    );
    assert!(!html.contains("<link "), "no external stylesheet");
    // The DOM Chromium built from the file.
    let dom = run_bounded(
        headless(&dir.path().join("profile-dom"))
            .arg("--dump-dom")
            .arg(format!("file://{}", report.display())),
        Duration::from_mins(1),
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium --dump-dom failed: {}",
        stderr(&dom)
    );
    for needle in [
        "invoke_agent support-agent",
        "execute_tool http_post",
        "class=\"finding\"",
        "undeclared_endpoint",
        "Declared vs observed",
        "tool:http_post",
    ] {
        assert!(
            dom_text.contains(needle),
            "the rendered page should show {needle:?}"
        );
    }
    let rows = dom_text.matches("data-span-id=").count();
    assert!(
        rows >= 10,
        "the waterfall should list the trace's spans ({rows})"
    );
    // And a picture of it.
    let shot = dir.path().join("report.png");
    let png = run_bounded(
        headless(&dir.path().join("profile-shot"))
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1400,1100")
            .arg(format!("file://{}", report.display())),
        Duration::from_mins(1),
    );
    assert!(
        png.status.success(),
        "chromium --screenshot failed: {}",
        stderr(&png)
    );
    let mut bytes = Vec::new();
    fs::File::open(&shot)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "a real screenshot"
    );
}

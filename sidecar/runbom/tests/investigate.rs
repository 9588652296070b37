//! `runbom investigate` on recorded exports (`tests/fixtures/investigate/`: what runbom's `file`
//! exporter wrote while the reference agent ran its injected scenario): the tree, the
//! findings, errors for bad input, fetching from Tempo and Jaeger (a local stand-in serving
//! replies taken from Tempo's and Jaeger's own repositories, `tests/fixtures/backends/`:
//! the tree printed must be the one `--from` prints of the same spans as runbom's file
//! export), and the HTML report rendered in headless Chromium.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::Duration,
};

use runbom_otlp::signal::{Signal, SignalKind};
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

/// A reply of Tempo or Jaeger taken from the project's own repository
/// (`tests/fixtures/backends/README.md` names each one's source).
fn backend_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backends")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The spans of a backend's reply as runbom's `file` exporter writes them: the OTLP/JSON
/// export request, hex ids, serialised as the exporter does (`serde_json` of the request).
fn as_file_export(reply: &str) -> String {
    let reply: Value = serde_json::from_str(reply).expect("the fixture is JSON");
    let mut doc = reply
        .get("trace")
        .or_else(|| reply.get("result"))
        .unwrap_or(&reply)
        .clone();
    if let Some(batches) = doc.as_object_mut().and_then(|o| o.remove("batches")) {
        doc["resourceSpans"] = batches;
    }
    for rs in doc["resourceSpans"].as_array_mut().expect("resourceSpans") {
        for ss in rs["scopeSpans"].as_array_mut().into_iter().flatten() {
            for span in ss["spans"].as_array_mut().into_iter().flatten() {
                for key in ["traceId", "spanId", "parentSpanId"] {
                    if let Some(id) = span[key].as_str() {
                        span[key] = Value::String(hex_id(id));
                    }
                }
            }
        }
    }
    let Signal::Traces(request) =
        runbom_otlp::json::decode_value(SignalKind::Traces, doc).expect("an OTLP/JSON trace")
    else {
        unreachable!("decoded as traces")
    };
    serde_json::to_string(&request).expect("serialise the request") + "\n"
}

/// An id as OTLP/JSON writes it (lower-case hex) from hex or the protobuf JSON mapping's
/// base64 (what Tempo's `jsonpb` marshaller writes).
fn hex_id(id: &str) -> String {
    if id.len().is_multiple_of(2) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return id.to_ascii_lowercase();
    }
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = String::new();
    for c in id.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("{id:?} is neither hex nor base64"),
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            let _ = write!(out, "{:02x}", (bits >> n) & 0xff);
        }
    }
    out
}

/// The trace id of the first span of a reply, as hex.
fn first_trace_id(reply: &str) -> String {
    let line: Value = serde_json::from_str(&as_file_export(reply)).expect("JSON");
    line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
        .as_str()
        .expect("a trace id")
        .to_owned()
}

/// `investigate` fetching `trace` from a backend prints the same tree as `investigate --from`
/// on the same spans written as runbom's file export; an unknown id is "not found" (exit 1).
fn same_tree_as_from_the_file(flag: &str, base: &str, trace: &str, reply: &str, names: &[&str]) {
    let dir = TempDir::new("investigate-backend");
    fs::write(dir.join("traces.jsonl"), as_file_export(reply)).expect("write traces.jsonl");
    let from = investigate(&["--from", dir.path().to_str().unwrap(), "--trace", trace]);
    assert!(from.status.success(), "--from: {}", stderr(&from));
    let fetched = investigate(&[flag, base, "--trace", trace]);
    assert!(fetched.status.success(), "{flag}: {}", stderr(&fetched));
    assert_eq!(
        stdout(&fetched),
        stdout(&from),
        "{flag} and --from on the same spans print different trees"
    );
    for name in names {
        assert!(
            stdout(&fetched).contains(name),
            "{flag}: the tree should show span {name:?}:\n{}",
            stdout(&fetched)
        );
    }
    let missing = investigate(&[flag, base, "--trace", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(
        missing.status.code(),
        Some(1),
        "{flag}: {}",
        stderr(&missing)
    );
}

/// Tempo 2.x answers `/api/v2/traces/<id>` with `{"trace": <Trace as jsonpb>}`: the vulture's
/// fixture is such a `Trace` (base64 ids, two resources, a chain of parents).
#[test]
fn tempo_v2_reply_prints_the_tree_of_the_same_spans() {
    let reply = backend_fixture("tempo-vulture-trace.json");
    let trace = first_trace_id(&reply);
    let body = format!("{{\"trace\":{}}}", reply.trim());
    let tempo = stand_in(vec![(format!("/api/v2/traces/{trace}"), 200, body)]);
    same_tree_as_from_the_file(
        "--tempo",
        &tempo,
        &trace,
        &reply,
        &["vulture-68", "vulture-45", "vulture-96", "vulture-48"],
    );
}

/// Older Tempo has only `/api/traces/<id>`, answering the `Trace` with its first
/// `"resourceSpans":` renamed `"batches":` (Tempo's `MarshalToJSONV1`); runbom falls back to it
/// on a 404 from the v2 path. Both of Tempo's fixtures, served that way.
#[test]
fn tempo_v1_reply_prints_the_tree_of_the_same_spans() {
    let vulture = backend_fixture("tempo-vulture-trace.json");
    let v1 = vulture.replacen("\"resourceSpans\":", "\"batches\":", 1);
    let plain = backend_fixture("tempo-v1-trace.json");
    for (reply, names) in [
        (v1, &["vulture-68", "vulture-48"][..]),
        (plain, &["I'm a server span"][..]),
    ] {
        let trace = first_trace_id(&reply);
        let tempo = stand_in(vec![(format!("/api/traces/{trace}"), 200, reply.clone())]);
        same_tree_as_from_the_file("--tempo", &tempo, &trace, &reply, names);
    }
}

/// Jaeger's `/api/v3/traces/<id>` reply, as Jaeger's own gateway test pins it (a snapshot).
#[test]
fn jaeger_api_v3_reply_prints_the_tree_of_the_same_spans() {
    let reply = backend_fixture("jaeger-api-v3-GetTrace.json");
    let trace = first_trace_id(&reply);
    let jaeger = stand_in(vec![(
        format!("/api/v3/traces/{trace}"),
        200,
        reply.clone(),
    )]);
    same_tree_as_from_the_file("--jaeger", &jaeger, &trace, &reply, &["foobar"]);
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

/// `%XX` decoding of a URL component (what the browser does before Grafana reads `panes`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// The Explore state (`panes`) of every link of `class` in the report.
fn explore_links(html: &str, class: &str, base: &str) -> Vec<Value> {
    let marker = format!("class=\"{class}\" href=\"");
    html.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            let href = rest[..rest.find('"').expect("closing quote")].replace("&amp;", "&");
            let query = href
                .strip_prefix(&format!("{base}/explore?"))
                .unwrap_or_else(|| panic!("{href} is not under {base}/explore"));
            let panes = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("panes="))
                .expect("a panes parameter");
            serde_json::from_str(&percent_decode(panes)).expect("panes is JSON")
        })
        .collect()
}

#[test]
fn html_links_each_finding_to_its_trace_and_logs_in_grafana_explore() {
    let dir = TempDir::new("investigate-grafana");
    let page = dir.path().join("report.html");
    let fixture = fixture();
    let out = investigate(&[
        "--from",
        fixture.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
        "--grafana",
        "https://grafana.example.com/ops/",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = fs::read_to_string(&page).expect("the report");
    let alerted = investigate(&["--from", fixture.to_str().unwrap(), "--alerts"]);
    let findings = stdout(&alerted).matches("drift finding ").count();
    let base = "https://grafana.example.com/ops";
    let traces = explore_links(&html, "grafana-trace", base);
    let logs = explore_links(&html, "grafana-logs", base);
    assert!(!traces.is_empty() && traces.len() == findings, "{html}");
    assert_eq!(logs.len(), traces.len());
    let trace_id = html
        .split("trace <code>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the report names its trace")
        .to_owned();
    for (t, l) in traces.iter().zip(&logs) {
        let tempo = &t["runbom"];
        assert_eq!(tempo["datasource"], "runbom-tempo");
        assert_eq!(tempo["queries"][0]["datasource"]["type"], "tempo");
        assert_eq!(tempo["queries"][0]["query"], trace_id.as_str());
        let from: u64 = tempo["range"]["from"].as_str().unwrap().parse().unwrap();
        let to: u64 = tempo["range"]["to"].as_str().unwrap().parse().unwrap();
        assert_eq!(to - from, 30 * 60 * 1000, "half an hour around the finding");
        let loki = &l["runbom"];
        assert_eq!(loki["datasource"], "runbom-loki");
        assert_eq!(
            loki["queries"][0]["expr"],
            format!("{{service_name=~\".+\"}} | trace_id=\"{trace_id}\"")
        );
    }

    // Other datasource uids; a URL that is not one is refused, naming the flag.
    let out = investigate(&[
        "--from",
        fixture.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
        "--grafana",
        "http://localhost:3000",
        "--grafana-tempo",
        "tempo-prod",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = fs::read_to_string(&page).expect("the report");
    let traces = explore_links(&html, "grafana-trace", "http://localhost:3000");
    assert_eq!(traces[0]["runbom"]["datasource"], "tempo-prod");
    let out = investigate(&[
        "--from",
        fixture.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
        "--grafana",
        "localhost:3000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--grafana"), "{}", stderr(&out));
}

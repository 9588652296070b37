//! `http.request` against the real kernel: real HTTP and HTTPS clients and servers
//! (`tests/http_workload.py`, Python's `http.client` and `ssl`, i.e. OpenSSL), runbom capturing
//! them, and what reaches a real OTLP receiver (or, for the fields that only the correlation
//! stage consumes, what the agent library hands on).
//!
//! Needs root and the project's Python venv (`bash scripts/setup.sh`). Each test has its own
//! servers, sink and runbom; every "exactly" is about the test's own client pid.

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use runbom_event::{Detail, HttpRequest, KernelEvent};
use runbom_kernel::ProbeSettings;
use runbom_testkit::{
    HttpServer, Proc, Ready, Runbom, Sink, TempDir,
    config::{service, traces_and_logs},
    indent,
    items::{Item, flatten, summaries},
    python_bin, run_bounded, runbom_bin, test_script,
};
use serde_json::Value;

const SYSTEM_LIBSSL: &str = "/lib/x86_64-linux-gnu/libssl.so.3";

type Server = HttpServer;

/// How the client talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    /// Plain HTTP, the JSON body in a write of its own after the head.
    PlainSplit,
    /// `http.client` over an `ssl.SSLSocket`.
    Tls,
    /// asyncio streams: `ssl.SSLObject` over a memory BIO (no fd for OpenSSL).
    TlsAsyncio,
}

fn client_command(server: &Server, mode: Mode) -> Command {
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script("http_workload.py"))
        .arg("client")
        .args(["--port", &server.port.to_string()]);
    match mode {
        Mode::Plain => {}
        Mode::PlainSplit => {
            cmd.arg("--split");
        }
        Mode::Tls | Mode::TlsAsyncio => {
            cmd.arg("--tls").arg("--cert").arg(&server.cert);
        }
    }
    if mode == Mode::TlsAsyncio {
        cmd.arg("--asyncio");
    }
    cmd
}

/// Runs one client request to completion; returns its JSON report.
fn run_client(server: &Server, mode: Mode) -> Value {
    let out = run_bounded(&mut client_command(server, mode), Duration::from_mins(1));
    report(&out.stdout, &out.stderr, out.status.success())
}

fn report(stdout: &[u8], stderr: &[u8], ok: bool) -> Value {
    let stdout = String::from_utf8_lossy(stdout);
    assert!(
        ok,
        "http_workload.py client failed; stderr:\n{}",
        String::from_utf8_lossy(stderr)
    );
    let line = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the client printed no JSON line ({e}): {stdout:?}"));
    assert_eq!(v["status"], 200, "the server did not answer 200: {v}");
    v
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("client report lacks {key}: {v}"))
}

fn pid_of(v: &Value) -> i64 {
    v["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("client report lacks pid: {v}"))
}

fn config(sink: &Sink) -> String {
    format!(
        "\
receivers:
  ebpf:
    file:
      include: [\"/nonexistent-runbom-http-test/\"]
exporters:
  otlp:
    endpoint: 127.0.0.1:{}
    tls:
      insecure: true
{}",
        sink.grpc_port,
        service("none", &traces_and_logs(&["ebpf"], &[], &["otlp"])),
    )
}

/// runbom and its receiver around `work`; returns what was exported and runbom's log.
struct Capture {
    items: Vec<Item>,
    raw: String,
    context: String,
}

fn capture(dir: &Path, work: impl FnOnce(&Runbom) -> String) -> Capture {
    let sink = Sink::start(dir);
    let config_path = dir.join("runbom.yaml");
    fs::write(&config_path, config(&sink)).expect("write config");
    let runbom = Runbom::start(runbom_bin!(), &config_path, dir, Ready::ProbesAttached);
    let what = work(&runbom);
    let (status, log) = runbom.stop();
    let (records, raw) = sink.stop();
    let context = format!(
        "runbom stderr:\n{}\nworkload: {what}\nfiles in {}",
        indent(&log),
        dir.display()
    );
    assert!(status.success(), "runbom exited with {status}\n{context}");
    assert!(
        !log.lines().any(|l| l.contains(" ERROR ")),
        "runbom logged errors\n{context}"
    );
    Capture {
        items: flatten(&records),
        raw,
        context,
    }
}

/// The `http.request` spans and logs of one pid: exactly one of each, the same attributes.
fn the_request(c: &Capture, pid: i64) -> &Item {
    let mine = |signal: &str| -> Vec<&Item> {
        c.items
            .iter()
            .filter(|i| i.signal == signal && i.event() == "http.request" && i.pid() == Some(pid))
            .collect()
    };
    let (spans, logs) = (mine("span"), mine("log"));
    let all: Vec<&Item> = c
        .items
        .iter()
        .filter(|i| i.event() == "http.request")
        .collect();
    assert!(
        spans.len() == 1 && logs.len() == 1,
        "expected exactly one http.request span and log of pid {pid}, got:\n{}{}\nall http.request:\n{}\n{}",
        summaries(&spans),
        summaries(&logs),
        summaries(&all),
        c.context
    );
    let (span, log) = (spans[0], logs[0]);
    let mut log_attrs = log.attrs.clone();
    log_attrs.remove("event.name");
    assert_eq!(span.attrs, log_attrs, "span and log differ\n{}", c.context);
    assert_eq!(span.span_id, log.span_id, "{}", c.context);
    assert_eq!(span.kind, "SPAN_KIND_CLIENT", "{}", c.context);
    span
}

fn assert_attrs(item: &Item, want: &[(&str, Value)], context: &str) {
    for (key, value) in want {
        assert_eq!(
            item.attr(key),
            Some(value),
            "{} of {}: {:?}\n{context}",
            key,
            item.name,
            item.attrs
        );
    }
}

/// The recorded api.openai.com chat completion `tests/http_workload.py` answers LLM calls with,
/// read whole from the response the capture saw.
fn assert_read_whole(item: &Item, context: &str) {
    assert_attrs(
        item,
        &[
            ("http.response.status_code", 200.into()),
            ("gen_ai.operation.name", "chat".into()),
            ("gen_ai.provider.name", "_OTHER".into()),
            ("gen_ai.response.model", "gpt-4.1-mini-2025-04-14".into()),
            ("gen_ai.usage.input_tokens", 50.into()),
            ("gen_ai.usage.output_tokens", 15.into()),
            (
                "gen_ai.response.finish_reasons",
                serde_json::json!(["tool_calls"]),
            ),
            (
                "runbom.gen_ai.tool_calls",
                serde_json::json!(["get_temperature"]),
            ),
        ],
        context,
    );
    assert_eq!(
        item.attr("runbom.gen_ai.partial"),
        None,
        "the response was read whole\n{context}"
    );
}

#[test]
fn plaintext_request_with_long_headers_is_captured_at_the_socket() {
    let dir = TempDir::new("http-plain");
    let server = Server::start(dir.path(), false);
    let (mut client, mut split) = (Value::Null, Value::Null);
    let c = capture(dir.path(), |_| {
        client = run_client(&server, Mode::Plain);
        split = run_client(&server, Mode::PlainSplit);
        format!("{client} {split}")
    });
    let port = i64::from(server.port);
    // The body written after the head is read for `model` (a local model server's case), and
    // the response the socket read back is read as an LLM response, as inside TLS.
    let llm = the_request(&c, pid_of(&split));
    assert_attrs(
        llm,
        &[
            ("runbom.capture", "socket".into()),
            ("url.path", "/v1/chat/completions".into()),
            ("gen_ai.request.model", "llama3.2".into()),
            ("http.request.body.size", split["body_size"].clone()),
        ],
        &c.context,
    );
    assert_read_whole(llm, &c.context);
    let span = the_request(&c, pid_of(&client));
    // `Host` (localhost) and `traceparent` come after 5 KiB of other headers.
    assert_eq!(span.name, "http.request POST localhost", "{}", c.context);
    assert_attrs(
        span,
        &[
            ("runbom.capture", "socket".into()),
            ("http.request.method", "POST".into()),
            ("url.path", "/submit".into()),
            (
                "url.full",
                format!("http://localhost:{port}/submit?user=[REDACTED]&token=[REDACTED]").into(),
            ),
            ("server.address", "localhost".into()),
            ("server.port", port.into()),
            ("network.peer.address", "127.0.0.1".into()),
            ("network.peer.port", port.into()),
            ("http.request.body.size", client["body_size"].clone()),
            ("user_agent.original", "runbom-test/1.0".into()),
        ],
        &c.context,
    );
    let secret = field(&client, "query_secret");
    assert!(
        !c.raw.contains(secret),
        "the query value {secret} was exported\n{}",
        c.context
    );
}

#[test]
fn tls_request_has_model_and_status_and_no_secret() {
    let dir = TempDir::new("http-tls");
    let server = Server::start(dir.path(), true);
    let mut clients = Vec::new();
    let c = capture(dir.path(), |_| {
        clients = vec![
            run_client(&server, Mode::Tls),
            run_client(&server, Mode::TlsAsyncio),
        ];
        format!("{clients:?}")
    });
    let port = i64::from(server.port);
    for client in &clients {
        let span = the_request(&c, pid_of(client));
        assert_attrs(
            span,
            &[
                ("runbom.capture", "openssl".into()),
                ("http.request.method", "POST".into()),
                ("url.path", "/v1/chat/completions".into()),
                (
                    "url.full",
                    format!("https://127.0.0.1:{port}/v1/chat/completions").into(),
                ),
                ("server.address", "127.0.0.1".into()),
                ("server.port", port.into()),
                ("gen_ai.request.model", "gpt-4o-mini".into()),
                ("http.response.status_code", 200.into()),
                ("http.request.body.size", client["body_size"].clone()),
            ],
            &c.context,
        );
        // The response, read inside TLS.
        assert_read_whole(span, &c.context);
        assert!(
            span.end_ns >= span.start_ns,
            "the span ends before it starts\n{}",
            c.context
        );
        // The ciphertext the socket carried never parses as HTTP: no socket capture.
        assert!(
            !c.items.iter().any(|i| i.pid() == Some(pid_of(client))
                && i.attr_str("runbom.capture") == Some("socket")),
            "the TLS request was also reported at the socket\n{}",
            c.context
        );
        let key = field(client, "api_key");
        assert!(
            !c.raw.contains(key) && !c.raw.contains("sk-runbomtest"),
            "the API key was exported\n{}",
            c.context
        );
    }
}

#[test]
fn libssl_loaded_after_start_is_hooked_on_exec() {
    let dir = TempDir::new("http-late-lib");
    // A copy of libssl is a file runbom has never seen: only the exec rescan can find it.
    let lib_dir = dir.path().join("lib");
    fs::create_dir_all(&lib_dir).expect("create lib dir");
    let lib = lib_dir.join("libssl.so.3");
    fs::copy(SYSTEM_LIBSSL, &lib).expect("copy libssl");
    let lib = lib.to_str().expect("UTF-8 path").to_owned();
    let server = Server::start(dir.path(), true);
    let mut client = Value::Null;
    let c = capture(dir.path(), |runbom| {
        let mut cmd = client_command(&server, Mode::Tls);
        cmd.arg("--wait-stdin")
            .env("LD_LIBRARY_PATH", &lib_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.path().join("client.stderr")).expect("stderr"));
        let mut guard = Proc::spawn("http_workload.py client", &mut cmd);
        let mut stdout = BufReader::new(guard.child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read LOADED");
        assert!(line.starts_with("LOADED"), "client printed {line:?}");
        let maps = fs::read_to_string(format!("/proc/{}/maps", guard.pid())).unwrap_or_default();
        assert!(
            maps.contains(&lib),
            "the client did not load the copied libssl ({lib}); its maps:\n{maps}"
        );
        // The exec rescan hooks the new file shortly after the client loaded it.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !runbom
            .log()
            .lines()
            .any(|l| l.contains("OpenSSL uprobes attached") && l.contains(&lib))
        {
            assert!(
                Instant::now() < deadline,
                "runbom did not hook {lib} within 15 s of the client's exec; log:\n{}",
                runbom.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        writeln!(guard.child.stdin.as_mut().expect("piped stdin")).expect("release client");
        let status = guard.wait_timeout(Duration::from_mins(1));
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read client output");
        let stderr = fs::read(dir.path().join("client.stderr")).unwrap_or_default();
        client = report(
            rest.as_bytes(),
            &stderr,
            status.is_some_and(|s| s.success()),
        );
        client.to_string()
    });
    let span = the_request(&c, pid_of(&client));
    assert_attrs(
        span,
        &[
            ("runbom.capture", "openssl".into()),
            ("gen_ai.request.model", "gpt-4o-mini".into()),
            ("http.response.status_code", 200.into()),
        ],
        &c.context,
    );
}

/// What the correlation stage consumes is not all exported as attributes (the traceparent
/// becomes the span's parent there): check it on the agent's own events, probes loaded here.
#[test]
fn events_carry_the_parsed_traceparent_and_thread() {
    let dir = TempDir::new("http-agent");
    let plain = Server::start(dir.path(), false);
    let tls = Server::start(dir.path(), true);
    // Opens are not what this test is about: keep the ring to HTTP and process events.
    let settings = ProbeSettings {
        file_include: vec!["/nonexistent-runbom-http-test/".into()],
        ..ProbeSettings::default()
    };
    let (events, clients) = runbom_testkit::kernel::capture(&settings, true, move || {
        let before = wall_ns();
        let a = run_client(&plain, Mode::Plain);
        let b = run_client(&tls, Mode::TlsAsyncio);
        (before, wall_ns(), a, b)
    });
    let (before, after, plain_client, tls_client) = clients;
    for (client, capture) in [(&plain_client, "socket"), (&tls_client, "openssl")] {
        let pid = u32::try_from(pid_of(client)).expect("pid");
        let http: Vec<(&KernelEvent, &HttpRequest)> = events
            .iter()
            .filter(|e| e.pid == pid)
            .filter_map(|e| match &e.detail {
                Detail::HttpRequest(h) => Some((e, &**h)),
                _ => None,
            })
            .collect();
        assert_eq!(http.len(), 1, "{capture}: {http:#?}");
        let (e, h) = http[0];
        assert_eq!(h.capture.as_str(), capture);
        let tp = h.traceparent.expect("traceparent parsed");
        assert_eq!(hex(&tp.trace_id), field(client, "trace_id"));
        assert_eq!(hex(&tp.span_id), field(client, "span_id"));
        assert!(tp.sampled);
        // A single-threaded client: the main thread sent it.
        assert_eq!(e.tid, pid);
        assert!(
            before <= e.start_ns && e.start_ns <= e.end_ns && e.end_ns <= after,
            "times {}..{} outside the client's run {before}..{after}",
            e.start_ns,
            e.end_ns
        );
        assert_eq!(h.method, "POST");
    }
}

fn wall_ns() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(d.as_nanos()).expect("fits u64")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

//! Coverage of real HTTP clients: each client makes exactly one request against a
//! local server, and runbom must export exactly one `http.request` for it, with the method,
//! `url.path`, `server.address`, the response status where it is seen (inside TLS), the
//! body's `model` and how it was captured (`runbom.capture`).
//!
//! Clients: curl (HTTPS and HTTP), Python `requests` and `httpx` over HTTPS, Node 20's `https`
//! and `http` modules and `fetch` (undici: `writev([head, body])` in plaintext) over HTTPS and
//! HTTP, and Node writing before the TLS handshake is done (its first `SSL_write` calls return
//! -1). Node links OpenSSL into its executable: no `libssl` is involved. Plus DNS questions
//! written with write(2) and writev(2) on a connected UDP socket (as Go's resolver does).
//!
//! Needs root, the project's Python venv (`bash scripts/setup.sh`), curl and node.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use runbom_testkit::{
    DnsServer, HttpServer, Proc, Ready, Runbom, Sink, TempDir,
    config::{service, traces_and_logs},
    indent,
    items::{Item, flatten, summaries},
    python_bin, runbom_bin, test_script,
};
use serde_json::Value;

const PATH: &str = "/v1/chat/completions";
const NODE: &str = "/usr/bin/node";

/// One client run: what it is, how runbom should see it, and the command.
struct Client {
    label: &'static str,
    /// `openssl` (a response status is seen) or `socket`.
    capture: &'static str,
    tls: bool,
    /// The `model` the request body carries.
    model: String,
    cmd: Command,
}

impl Client {
    fn new(label: &'static str, tls: bool, cmd: Command) -> Self {
        Self {
            label,
            capture: if tls { "openssl" } else { "socket" },
            tls,
            model: format!("model-{label}"),
            cmd,
        }
    }
}

fn curl(server: &HttpServer, tls: bool, label: &'static str) -> Client {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--fail",
        "-o",
        "/dev/null",
        "-w",
        "{\"status\":%{http_code}}",
    ])
    .args(["-H", "Content-Type: application/json"]);
    if tls {
        cmd.arg("--cacert").arg(&server.cert);
    }
    let mut c = Client::new(label, tls, cmd);
    let body = format!(r#"{{"model":"{}","messages":[]}}"#, c.model);
    c.cmd.args(["-d", &body, &server.url(tls, PATH)]);
    c
}

fn python(server: &HttpServer, library: &str, label: &'static str) -> Client {
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script("http_clients.py")).arg(library);
    let mut c = Client::new(label, true, cmd);
    let url = server.url(true, PATH);
    c.cmd
        .args(["--url", &url, "--model", &c.model.clone(), "--cert"])
        .arg(&server.cert);
    c
}

fn node(server: &HttpServer, mode: &str, tls: bool, label: &'static str) -> Client {
    let mut cmd = Command::new(NODE);
    cmd.arg(test_script("http_clients.mjs"))
        .arg(mode)
        .arg(server.url(tls, PATH));
    let mut c = Client::new(label, tls, cmd);
    c.cmd.arg(c.model.clone());
    if tls {
        c.cmd
            .arg(&server.cert)
            .env("NODE_EXTRA_CA_CERTS", &server.cert);
    }
    c
}

/// Runs one client to completion; its pid, after checking it got its 200.
fn run(dir: &Path, client: &mut Client) -> i64 {
    let mut proc = Proc::spawn_logged(client.label, dir, &mut client.cmd);
    let pid = i64::from(proc.pid());
    let status = proc.wait_timeout(Duration::from_mins(1));
    let out = proc.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "client {} failed ({status:?})\n{out}",
        client.label
    );
    let report: Value =
        serde_json::from_str(proc.stdout_text().trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("client {} printed no JSON ({e})\n{out}", client.label));
    assert_eq!(report["status"], 200, "client {}: {report}", client.label);
    pid
}

fn config(sink: &Sink, dns_port: u16) -> String {
    format!(
        "\
receivers:
  ebpf:
    file:
      include: [\"/nonexistent-runbom-http-test/\"]
    dns:
      ports: [{dns_port}]
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

/// The spans of `event` of one pid (each event is also a log record with the same attributes).
fn spans_of<'a>(items: &'a [Item], event: &str, pid: i64) -> Vec<&'a Item> {
    let spans: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "span" && i.event() == event && i.pid() == Some(pid))
        .collect();
    let logs = items
        .iter()
        .filter(|i| i.signal == "log" && i.event() == event && i.pid() == Some(pid))
        .count();
    assert_eq!(
        spans.len(),
        logs,
        "{event} of pid {pid}: spans and logs differ"
    );
    spans
}

/// What is wrong with what runbom exported for one client's request (nothing: empty).
fn check(items: &[Item], client: &Client, pid: i64, port: u16) -> Vec<String> {
    let spans = spans_of(items, "http.request", pid);
    if spans.len() != 1 {
        return vec![format!(
            "{} (pid {pid}): {} http.request, want exactly 1",
            client.label,
            spans.len()
        )];
    }
    let span = spans[0];
    let mut want: Vec<(&str, Value)> = vec![
        ("http.request.method", "POST".into()),
        ("url.path", PATH.into()),
        ("server.address", "127.0.0.1".into()),
        ("server.port", i64::from(port).into()),
        ("runbom.capture", client.capture.into()),
        ("gen_ai.request.model", client.model.clone().into()),
    ];
    // The response is read inside TLS only (at the socket, writes alone are hooked).
    if client.tls {
        want.push(("http.response.status_code", 200.into()));
    }
    want.into_iter()
        .filter(|(key, value)| span.attr(key) != Some(value))
        .map(|(key, value)| {
            format!(
                "{} (pid {pid}): {key} = {:?}, want {value}",
                client.label,
                span.attr(key)
            )
        })
        .collect()
}

/// Two DNS questions on a UDP socket connected to `port`, one written with write(2), one with
/// writev(2); returns the client's pid.
fn dns_client(dir: &Path, port: u16) -> i64 {
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script("http_clients.py"))
        .args(["dns", "--port", &port.to_string()])
        .args(["--name-write", "write.coverage.runbom.test"])
        .args(["--name-writev", "writev.coverage.runbom.test"])
        .stdin(Stdio::null());
    let mut proc = Proc::spawn_logged("dns-connected-udp", dir, &mut cmd);
    let status = proc.wait_timeout(Duration::from_mins(1));
    assert!(
        status.is_some_and(|s| s.success()),
        "dns client failed\n{}",
        proc.output()
    );
    i64::from(proc.pid())
}

#[test]
fn every_client_request_is_one_http_request() {
    let dir = TempDir::new("http-coverage");
    let tls = HttpServer::start(dir.path(), true);
    let plain = HttpServer::start(dir.path(), false);
    let dns = DnsServer::start();
    let sink = Sink::start(dir.path());
    let config_path = dir.path().join("runbom.yaml");
    fs::write(&config_path, config(&sink, dns.port)).expect("write config");
    let runbom = Runbom::start(
        runbom_bin!(),
        &config_path,
        dir.path(),
        Ready::ProbesAttached,
    );
    // Node's OpenSSL is in its executable: found at start by its exported symbols.
    let log = runbom.log();
    assert!(
        log.lines()
            .any(|l| l.contains("OpenSSL uprobes attached") && l.contains(NODE)),
        "runbom did not hook {NODE} at start; log:\n{log}"
    );

    let mut clients = vec![
        curl(&tls, true, "curl-https"),
        curl(&plain, false, "curl-http"),
        python(&tls, "requests", "requests-https"),
        python(&tls, "httpx", "httpx-https"),
        node(&tls, "https", true, "node-https"),
        node(&plain, "http", false, "node-http"),
        node(&tls, "fetch", true, "node-fetch-https"),
        node(&plain, "fetch", false, "node-fetch-http"),
        node(&tls, "tls-early", true, "node-tls-early"),
    ];
    let pids: Vec<i64> = clients.iter_mut().map(|c| run(dir.path(), c)).collect();

    let dns_pid = dns_client(dir.path(), dns.port);

    let (status, log) = runbom.stop();
    let (records, _) = sink.stop();
    let items = flatten(&records);
    let all: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "span" && i.event() == "http.request")
        .collect();
    let context = format!(
        "runbom stderr:\n{}\nall http.request spans:\n{}files in {}",
        indent(&log),
        summaries(&all),
        dir.path().display()
    );
    assert!(status.success(), "runbom exited with {status}\n{context}");

    let mut failures = Vec::new();
    for (client, &pid) in clients.iter().zip(&pids) {
        let server = if client.tls { &tls } else { &plain };
        failures.extend(check(&items, client, pid, server.port));
    }

    let dns_spans = spans_of(&items, "dns.query", dns_pid);
    let mut names: Vec<&str> = dns_spans
        .iter()
        .filter_map(|s| s.attr_str("dns.question.name"))
        .collect();
    names.sort_unstable();
    if names != ["write.coverage.runbom.test", "writev.coverage.runbom.test"] {
        failures.push(format!(
            "dns-connected-udp (pid {dns_pid}): dns.query names {names:?}, want one per write"
        ));
    }
    let seen = dns.stop();
    assert_eq!(seen.len(), 2, "the DNS server saw {} queries", seen.len());

    assert!(
        failures.is_empty(),
        "{} of {} clients not covered:\n  {}\n{context}",
        failures.len(),
        clients.len() + 1,
        failures.join("\n  ")
    );
}

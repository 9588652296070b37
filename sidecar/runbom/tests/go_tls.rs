//! Go's `crypto/tls`: a Go client (standard library only, built here with Debian's golang-go)
//! makes one HTTPS request over HTTP/1.1 (to Python's `http.server`) and one over HTTP/2 (to
//! Node's `node:http2`, ALPN h2), and once more over HTTP/2 from a client stripped of its symbol
//! table (`-ldflags=-s -w`); runbom must export exactly one `http.request` for each
//! with the method, `url.path`, `server.address`/`server.port`, `network.peer.*` (the socket
//! under the `tls.Conn`), the response status, the body's `model`, `network.protocol.version`
//! and `runbom.capture` = `go-tls`.
//!
//! The executable is new to runbom: it hooks it after the exec (uprobes on
//! `(*Conn).Write`/`Read` and every `RET` of each, found in its symbol table), and the client
//! waits for that (a start file the test creates once runbom's log says so).
//!
//! Needs root, the project's Python venv, node and go (`bash scripts/setup.sh --tests`).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use runbom_testkit::{
    HttpServer, Proc, Ready, Runbom, Sink, TempDir,
    coverage::{ebpf_to_sink, one_request_problems, stop_and_collect},
    eventually,
    h2_peers::H2Server,
    pki::Pki,
    runbom_bin, workspace_root,
};
use serde_json::Value;

const PATH: &str = "/v1/chat/completions";

/// Builds the Go client into `dir/name`, with `ldflags` (`-s -w`: stripped).
fn build_client(dir: &Path, name: &str, ldflags: &str) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("go")
        .arg("build")
        .arg(format!("-ldflags={ldflags}"))
        .arg("-o")
        .arg(&out)
        .arg(workspace_root().join("tests/go_client/main.go"))
        .env("GOCACHE", dir.join("go-cache"))
        .env("GOPATH", dir.join("go-path"))
        .env("GOFLAGS", "-mod=mod")
        .status()
        .unwrap_or_else(|e| panic!("go build: {e} (install golang-go: scripts/setup.sh --tests)"));
    assert!(status.success(), "go build failed: {status}");
    out
}

struct Run {
    label: &'static str,
    pid: i64,
    port: u16,
    version: &'static str,
}

impl Run {
    /// The attributes its one `http.request` must have.
    fn want(&self) -> [(&'static str, Value); 10] {
        [
            ("http.request.method", "POST".into()),
            // The socket under the tls.Conn, read through Go's own structures.
            ("network.peer.address", "127.0.0.1".into()),
            ("network.peer.port", i64::from(self.port).into()),
            ("url.path", PATH.into()),
            ("server.address", "127.0.0.1".into()),
            ("server.port", i64::from(self.port).into()),
            ("http.response.status_code", 200.into()),
            (
                "gen_ai.request.model",
                format!("model-{}", self.label).into(),
            ),
            ("network.protocol.version", self.version.into()),
            ("runbom.capture", "go-tls".into()),
        ]
    }
}

/// Waits until runbom's log says it hooked `binary`.
fn wait_hooked(runbom: &Runbom, binary: &Path) {
    let path = binary.display().to_string();
    let hooked = eventually(Duration::from_secs(20), || {
        runbom
            .log()
            .lines()
            .any(|l| l.contains("Go crypto/tls uprobes attached") && l.contains(&path))
    });
    assert!(hooked, "runbom did not hook {path}; log:\n{}", runbom.log());
}

#[test]
fn go_crypto_tls_requests_are_seen_once_each() {
    let dir = TempDir::new("go-tls");
    let client = build_client(dir.path(), "go_client", "");
    let stripped = build_client(dir.path(), "go_client_stripped", "-s -w");
    let pki = Pki::new();
    let h1 = HttpServer::start(dir.path(), true);
    let h2 = H2Server::start(&pki);
    let sink = Sink::start(dir.path());
    let config_path = dir.path().join("runbom.yaml");
    fs::write(&config_path, ebpf_to_sink(&sink, "")).expect("write config");
    let runbom = Runbom::start(
        runbom_bin!(),
        &config_path,
        dir.path(),
        Ready::ProbesAttached,
    );

    let h2_ca = pki.path("ca.pem");
    // (label, executable, url, CA, port, HTTP version); the stripped executable has no ELF
    // symbol table: it is found through Go's own function table.
    let cases = [
        (
            "go-https-h1",
            &client,
            h1.url(true, PATH),
            &h1.cert,
            h1.port,
            "1.1",
        ),
        (
            "go-https-h2",
            &client,
            h2.url(true, PATH),
            &h2_ca,
            h2.tls_port,
            "2",
        ),
        (
            "go-stripped-h2",
            &stripped,
            h2.url(true, PATH),
            &h2_ca,
            h2.tls_port,
            "2",
        ),
    ];
    let mut runs = Vec::new();
    let mut hooked: Vec<&PathBuf> = Vec::new();
    for (label, binary, url, ca, port, version) in cases {
        let start = dir.path().join(format!("start-{label}"));
        let mut cmd = Command::new(binary);
        cmd.args([url.as_str(), &format!("model-{label}")])
            .arg(ca)
            .arg(&start);
        let mut proc = Proc::spawn_logged(label, dir.path(), &mut cmd);
        if !hooked.contains(&binary) {
            hooked.push(binary);
            wait_hooked(&runbom, binary);
        }
        fs::write(&start, b"").expect("write start file");
        let status = proc.wait_timeout(Duration::from_mins(1));
        let out = proc.output();
        assert!(
            status.is_some_and(|s| s.success()),
            "{label} failed ({status:?})\n{out}"
        );
        let report: Value = serde_json::from_str(proc.stdout_text().trim())
            .unwrap_or_else(|e| panic!("{label} printed no JSON ({e})\n{out}"));
        assert_eq!(report["status"], 200, "{label}: {report}");
        runs.push(Run {
            label,
            pid: i64::from(proc.pid()),
            port,
            version,
        });
    }

    let (items, context) = stop_and_collect(runbom, sink, dir.path());
    let failures: Vec<String> = runs
        .iter()
        .flat_map(|run| one_request_problems(&items, run.label, run.pid, &run.want()))
        .collect();
    assert!(
        failures.is_empty(),
        "{} problems:\n  {}\n{context}",
        failures.len(),
        failures.join("\n  ")
    );
}

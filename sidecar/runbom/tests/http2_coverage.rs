//! Coverage of real HTTP/2 and gRPC clients: each client makes exactly one request (one stream)
//! against a local server, and runbom must export exactly one `http.request` for it with the
//! method, `url.path`, `server.address`/`server.port`, the response status, the body's `model`
//! (JSON requests), `network.protocol.version` = `2`, how it was captured (`runbom.capture`),
//! and for gRPC `rpc.system`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`.
//!
//! Clients: curl (`--http2` over TLS, ALPN h2; `--http2-prior-knowledge` in cleartext), Python
//! httpx with `http2=True` (both), Node 20's `node:http2` (both: Node's statically linked
//! OpenSSL inside TLS), and grpcio in cleartext (an OK call and an UNIMPLEMENTED one). Servers:
//! Node's `node:http2` and grpcio.
//!
//! Needs root, the project's Python venv (`bash scripts/setup.sh`), curl and node.

use std::{fs, process::Command};

use runbom_testkit::{
    Ready, Runbom, Sink, TempDir,
    coverage::{ebpf_to_sink, one_request_problems, run_client, stop_and_collect},
    h2_peers::{GrpcServer, H2Server},
    items::Item,
    pki::Pki,
    python_bin, runbom_bin, test_script,
};
use serde_json::Value;

const PATH: &str = "/v1/chat/completions";

/// One client run and what runbom should export for it.
struct Client {
    label: &'static str,
    cmd: Command,
    /// Attributes the one `http.request` must have.
    want: Vec<(&'static str, Value)>,
}

impl Client {
    /// An OpenAI-style POST with a JSON body naming `model-<label>`.
    fn llm(label: &'static str, server: &H2Server, tls: bool, cmd: Command) -> Self {
        let port = if tls {
            server.tls_port
        } else {
            server.plain_port
        };
        Self {
            label,
            cmd,
            want: vec![
                ("http.request.method", "POST".into()),
                ("url.path", PATH.into()),
                ("server.address", "127.0.0.1".into()),
                ("server.port", i64::from(port).into()),
                ("http.response.status_code", 200.into()),
                ("gen_ai.request.model", format!("model-{label}").into()),
                ("network.protocol.version", "2".into()),
                (
                    "runbom.capture",
                    if tls { "openssl" } else { "socket" }.into(),
                ),
            ],
        }
    }
}

fn curl(server: &H2Server, pki: &Pki, tls: bool, label: &'static str) -> Client {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "-o", "/dev/null"])
        .args(["-w", "{\"status\":%{http_code}}"])
        .args(["-H", "Content-Type: application/json"])
        .args([
            "-d",
            &format!(r#"{{"model":"model-{label}","messages":[]}}"#),
        ]);
    if tls {
        cmd.arg("--http2").arg("--cacert").arg(pki.path("ca.pem"));
    } else {
        cmd.arg("--http2-prior-knowledge");
    }
    cmd.arg(server.url(tls, PATH));
    Client::llm(label, server, tls, cmd)
}

fn httpx(server: &H2Server, pki: &Pki, tls: bool, label: &'static str) -> Client {
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script("h2_clients.py"))
        .args(["httpx", "--url", &server.url(tls, PATH)])
        .args(["--model", &format!("model-{label}")]);
    if tls {
        cmd.arg("--cert").arg(pki.path("ca.pem"));
    }
    Client::llm(label, server, tls, cmd)
}

/// Node's `node:http2`; `big`: a 300 KB download on the same session first (reads much larger
/// than one capture, many frames each), which must not cost runbom its place in the frames.
fn node(server: &H2Server, pki: &Pki, tls: bool, big: bool, label: &'static str) -> Client {
    let mode = if big { "client-big" } else { "client" };
    let mut cmd = Command::new("node");
    cmd.arg(test_script("h2_peers.mjs"))
        .args([mode, &server.url(tls, PATH), &format!("model-{label}")])
        .env("NODE_EXTRA_CA_CERTS", pki.path("ca.pem"));
    Client::llm(label, server, tls, cmd)
}

fn grpc(server: &GrpcServer, method: &'static str, code: i64, label: &'static str) -> Client {
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script("h2_clients.py"))
        .args(["grpc-client", "--port", &server.port.to_string()])
        .args(["--name", method]);
    Client {
        label,
        cmd,
        want: vec![
            ("http.request.method", "POST".into()),
            ("url.path", format!("/runbom.test.Echo/{method}").into()),
            ("server.address", "127.0.0.1".into()),
            ("server.port", i64::from(server.port).into()),
            ("http.response.status_code", 200.into()),
            ("network.protocol.version", "2".into()),
            ("runbom.capture", "socket".into()),
            ("rpc.system", "grpc".into()),
            ("rpc.service", "runbom.test.Echo".into()),
            ("rpc.method", method.into()),
            ("rpc.grpc.status_code", code.into()),
        ],
    }
}

/// A client that downloaded `/big` first: that GET with its 200, then its POST as any client's.
fn after_download_problems(items: &[Item], c: &Client, pid: i64) -> Vec<String> {
    let spans: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "span" && i.event() == "http.request" && i.pid() == Some(pid))
        .collect();
    let get = spans
        .iter()
        .filter(|s| s.attr_str("url.path") == Some("/big"))
        .count();
    let mut problems = Vec::new();
    if spans.len() != 2 || get != 1 {
        problems.push(format!(
            "{} (pid {pid}): {} http.request ({get} GET /big), want the GET and the POST",
            c.label,
            spans.len()
        ));
    }
    let post: Vec<Item> = spans
        .into_iter()
        .filter(|s| s.attr_str("url.path") == Some(PATH))
        .cloned()
        .collect();
    problems.extend(one_request_problems(&post, c.label, pid, &c.want));
    problems
}

#[test]
fn every_http2_client_request_is_one_http_request() {
    let dir = TempDir::new("http2-coverage");
    let pki = Pki::new();
    let h2 = H2Server::start(&pki);
    let grpc_server = GrpcServer::start();
    let sink = Sink::start(dir.path());
    let config_path = dir.path().join("runbom.yaml");
    fs::write(&config_path, ebpf_to_sink(&sink, "")).expect("write config");
    let runbom = Runbom::start(
        runbom_bin!(),
        &config_path,
        dir.path(),
        Ready::ProbesAttached,
    );

    let mut clients = [
        curl(&h2, &pki, true, "curl-h2"),
        curl(&h2, &pki, false, "curl-h2c"),
        httpx(&h2, &pki, true, "httpx-h2"),
        httpx(&h2, &pki, false, "httpx-h2c"),
        node(&h2, &pki, true, false, "node-http2-tls"),
        node(&h2, &pki, false, false, "node-http2-h2c"),
        node(&h2, &pki, true, true, "node-http2-tls-after-300k"),
        node(&h2, &pki, false, true, "node-http2-h2c-after-300k"),
        grpc(&grpc_server, "Say", 0, "grpcio-ok"),
        grpc(&grpc_server, "Missing", 12, "grpcio-unimplemented"),
    ];
    let pids: Vec<i64> = clients
        .iter_mut()
        .map(|c| run_client(dir.path(), c.label, &mut c.cmd))
        .collect();

    let (items, context) = stop_and_collect(runbom, sink, dir.path());
    let failures: Vec<String> = clients
        .iter()
        .zip(&pids)
        .flat_map(|(c, &pid)| {
            if c.label.ends_with("-after-300k") {
                after_download_problems(&items, c, pid)
            } else {
                one_request_problems(&items, c.label, pid, &c.want)
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} problems over {} clients:\n  {}\n{context}",
        failures.len(),
        clients.len(),
        failures.join("\n  ")
    );
}

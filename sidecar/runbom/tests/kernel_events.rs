//! runbom against the real kernel and a real OTLP receiver: load the probes, run a known
//! workload, stop runbom, and check that exactly the workload's kernel events arrived, named
//! and shaped as the telemetry contract (§1) says.
//!
//! Needs root (the probes are loaded into this kernel) and the project's Python venv
//! (`bash scripts/setup.sh`). Every test has its own scratch directory, DNS port, receiver and
//! runbom, so they run in parallel: each runbom sees the other tests' processes too, which is
//! why every "exactly" below is about this test's workload pid, its child, its watched
//! directory or its DNS port.

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use runbom_testkit::{
    DnsServer, Proc, Ready, Runbom, Sink, TempDir,
    config::{service, traces_and_logs},
    indent,
    items::{Item, flatten, summaries},
    python_bin, runbom_bin, test_script,
};
use serde_json::Value;

/// The exit code the workload is asked to exit with (seen again as `process.exit.code`).
const WORKLOAD_EXIT_CODE: i32 = 7;
const SECRET: &str = "supersecret";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exporter {
    /// `otlp` (gRPC), `compression: none`.
    Grpc,
    /// `otlphttp` (protobuf over HTTP), `compression: gzip`.
    Http,
}

#[test]
fn kernel_events_reach_an_otlp_grpc_receiver() {
    scenario(Exporter::Grpc);
}

#[test]
fn kernel_events_reach_an_otlp_http_receiver_gzip() {
    scenario(Exporter::Http);
}

/// What `tests/workload.py` reports about itself.
#[derive(Debug)]
struct Workload {
    pid: i64,
    child_pid: i64,
    marker: String,
    executable: String,
    dns_name: String,
    tcp_ok: i64,
    tcp_refused: i64,
    tcp6_ok: i64,
    /// Local ports of the successful connects, as the workload's sockets reported them.
    local_ok: i64,
    local6_ok: i64,
    watched: String,
    missing: String,
    ignored: String,
    /// Wall-clock window the workload ran in (Unix ns).
    started_ns: u64,
    ended_ns: u64,
    raw: Value,
}

fn unix_ns() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(d.as_nanos()).expect("fits u64")
}

fn config(exporter: Exporter, scratch: &Path, dns_port: u16, sink: &Sink) -> String {
    let exporters = match exporter {
        Exporter::Grpc => format!(
            // As in the Collector, a bare `host:port` means TLS unless told otherwise.
            "  otlp:\n    endpoint: 127.0.0.1:{}\n    tls:\n      insecure: true\n    compression: none\n",
            sink.grpc_port
        ),
        Exporter::Http => format!(
            "  otlphttp:\n    endpoint: http://127.0.0.1:{}\n    compression: gzip\n",
            sink.http_port
        ),
    };
    let name = match exporter {
        Exporter::Grpc => "otlp",
        Exporter::Http => "otlphttp",
    };
    format!(
        "\
receivers:
  ebpf:
    file:
      include: [\"{watched}/\"]
    dns:
      ports: [{dns_port}]
processors:
  batch:
    timeout: 200ms
exporters:
{exporters}{service}",
        watched = scratch.join("watched").display(),
        service = service("none", &traces_and_logs(&["ebpf"], &["batch"], &[name])),
    )
}

fn run_workload(dir: &Path, scratch: &Path, dns_port: u16) -> Workload {
    let stderr_path = dir.join("workload.stderr");
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script("workload.py"))
        .arg("--scratch")
        .arg(scratch)
        .args(["--dns-port", &dns_port.to_string()])
        .args(["--exit-code", &WORKLOAD_EXIT_CODE.to_string()])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr_path).expect("create workload.stderr"));
    let started_ns = unix_ns();
    let mut guard = Proc::spawn("workload.py", &mut cmd);
    let status = guard.wait_timeout(Duration::from_mins(1));
    let ended_ns = unix_ns();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(status) = status else {
        panic!("workload.py did not finish within 60 s; stderr:\n{stderr}");
    };
    assert_eq!(
        status.code(),
        Some(WORKLOAD_EXIT_CODE),
        "workload.py failed ({status}); stderr:\n{stderr}"
    );
    let mut stdout = String::new();
    std::io::Read::read_to_string(
        guard.child.stdout.as_mut().expect("piped stdout"),
        &mut stdout,
    )
    .expect("read workload stdout");
    let raw: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("workload.py printed no JSON line ({e}): {stdout:?}"));
    let int = |p: &str| {
        raw.pointer(p)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("workload report lacks {p}: {raw}"))
    };
    let text = |p: &str| {
        raw.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("workload report lacks {p}: {raw}"))
            .to_owned()
    };
    // The workload must have done what it says, or the events below would be meaningless.
    for (step, want) in [
        ("/results/connect_ok", "ok"),
        ("/results/connect_refused", "ECONNREFUSED"),
        ("/results/connect_v6", "ok"),
        ("/results/open_missing", "ENOENT"),
    ] {
        assert_eq!(text(step), want, "workload step {step}: {raw}");
    }
    assert_eq!(
        raw.pointer("/results/dns_answered"),
        Some(&Value::Bool(true)),
        "the DNS server did not answer the workload: {raw}"
    );
    assert_eq!(int("/child_exit_code"), 0, "/bin/echo failed: {raw}");
    Workload {
        pid: int("/pid"),
        child_pid: int("/child_pid"),
        marker: text("/marker"),
        // The path runbom saw in execve(2) is the one this test spawned.
        executable: python_bin().to_str().expect("UTF-8 path").to_owned(),
        dns_name: text("/dns_name"),
        tcp_ok: int("/ports/tcp_ok"),
        tcp_refused: int("/ports/tcp_refused"),
        tcp6_ok: int("/ports/tcp6_ok"),
        local_ok: int("/local_ports/tcp_ok"),
        local6_ok: int("/local_ports/tcp6_ok"),
        watched: text("/paths/watched"),
        missing: text("/paths/missing"),
        ignored: text("/paths/ignored"),
        started_ns,
        ended_ns,
        raw,
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read /proc/sys/kernel/hostname")
        .trim()
        .to_owned()
}

/// What one expected span must look like (besides its name and pid).
struct Expect {
    pid: i64,
    name: String,
    kind: &'static str,
    /// `error.type`, and with it status ERROR; `None`: no error.type and status not ERROR.
    error: Option<&'static str>,
    attrs: Vec<(&'static str, Value)>,
    /// Attributes the span must not have.
    absent: &'static [&'static str],
}

fn expected_spans(w: &Workload, dns_port: u16) -> Vec<Expect> {
    // The local end (`client.*`) is exported when the kernel bound a port: not after a refusal.
    let tcp = |port: i64, addr: &str, net: &str, local: Option<i64>| Expect {
        pid: w.pid,
        name: if net == "ipv6" {
            format!("net.connect [{addr}]:{port}")
        } else {
            format!("net.connect {addr}:{port}")
        },
        kind: "SPAN_KIND_CLIENT",
        error: local.is_none().then_some("ECONNREFUSED"),
        attrs: [
            ("runbom.event", "net.connect".into()),
            ("server.address", addr.into()),
            ("server.port", port.into()),
            ("network.peer.address", addr.into()),
            ("network.peer.port", port.into()),
            ("network.transport", "tcp".into()),
            ("network.type", net.into()),
        ]
        .into_iter()
        .chain(local.map(|p| ("client.port", p.into())))
        .chain(local.map(|_| ("client.address", addr.into())))
        .collect(),
        absent: if local.is_none() {
            &["client.address", "client.port"]
        } else {
            &[]
        },
    };
    // Python's os.open adds O_CLOEXEC; glibc's O_LARGEFILE bit is not a flag the program chose.
    let open = |path: &str, flags: &str, error| Expect {
        pid: w.pid,
        name: format!("file.open {path}"),
        kind: "SPAN_KIND_INTERNAL",
        error,
        attrs: vec![
            ("runbom.event", "file.open".into()),
            ("file.path", path.into()),
            ("runbom.file.flags", flags.into()),
        ],
        absent: &[],
    };
    vec![
        Expect {
            pid: w.pid,
            name: format!("process.exec {}", w.executable),
            kind: "SPAN_KIND_INTERNAL",
            error: None,
            attrs: vec![
                ("runbom.event", "process.exec".into()),
                ("process.executable.path", w.executable.clone().into()),
            ],
            absent: &[],
        },
        Expect {
            pid: w.child_pid,
            name: "process.exec /bin/echo".into(),
            kind: "SPAN_KIND_INTERNAL",
            error: None,
            attrs: vec![
                ("runbom.event", "process.exec".into()),
                ("process.parent_pid", w.pid.into()),
                ("process.executable.path", "/bin/echo".into()),
                (
                    "process.command_line",
                    format!("/bin/echo {} --token=[REDACTED]", w.marker).into(),
                ),
            ],
            absent: &[],
        },
        tcp(w.tcp_ok, "127.0.0.1", "ipv4", Some(w.local_ok)),
        tcp(w.tcp_refused, "127.0.0.1", "ipv4", None),
        tcp(w.tcp6_ok, "::1", "ipv6", Some(w.local6_ok)),
        open(&w.watched, "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC", None),
        open(&w.missing, "O_RDONLY|O_CLOEXEC", Some("ENOENT")),
        Expect {
            pid: w.pid,
            name: format!("dns.query {}", w.dns_name),
            kind: "SPAN_KIND_CLIENT",
            error: None,
            attrs: vec![
                ("runbom.event", "dns.query".into()),
                ("dns.question.name", w.dns_name.clone().into()),
                ("runbom.dns.question.type", "A".into()),
                ("server.address", "127.0.0.1".into()),
                ("server.port", i64::from(dns_port).into()),
                ("network.transport", "udp".into()),
                ("network.type", "ipv4".into()),
            ],
            absent: &[],
        },
    ]
}

fn scenario(exporter: Exporter) {
    let dir = TempDir::new(match exporter {
        Exporter::Grpc => "grpc",
        Exporter::Http => "http",
    });
    let scratch = dir.path().join("scratch");
    for sub in ["watched", "ignored"] {
        fs::create_dir_all(scratch.join(sub)).expect("create scratch dirs");
    }
    let dns = DnsServer::start();
    let dns_port = dns.port;
    let sink = Sink::start(dir.path());
    let config_path = dir.path().join("runbom.yaml");
    fs::write(&config_path, config(exporter, &scratch, dns_port, &sink)).expect("write config");

    let runbom = Runbom::start(
        runbom_bin!(),
        &config_path,
        dir.path(),
        Ready::ProbesAttached,
    );
    let runbom_pid = runbom.pid();
    let workload = run_workload(dir.path(), &scratch, dns_port);
    let (status, log) = runbom.stop();
    let (records, raw) = sink.stop();
    let dns_seen = dns.stop();

    let context = format!(
        "runbom stderr:\n{}\nworkload: {}\nfiles in {}",
        indent(&log),
        workload.raw,
        dir.path().display()
    );
    assert!(status.success(), "runbom exited with {status}\n{context}");
    assert!(
        log.contains("runbom stopped"),
        "runbom did not log its stop summary\n{context}"
    );
    assert!(
        !log.lines().any(|l| l.contains(" ERROR ")),
        "runbom logged errors\n{context}"
    );
    assert_eq!(
        dns_seen.len(),
        1,
        "the DNS server should have seen exactly the workload's query\n{context}"
    );

    // Secrets and filtered paths appear nowhere, in any process's events.
    assert!(
        !raw.contains(SECRET),
        "`{SECRET}` (from the echo command line) was exported\n{context}"
    );
    let ignored_dir = scratch.join("ignored");
    let ignored_dir = ignored_dir.to_str().expect("UTF-8 path");
    assert!(
        !raw.contains(ignored_dir) && !raw.contains(&workload.ignored),
        "the sink output mentions {ignored_dir}, which the file filter excludes\n{context}"
    );

    let items = flatten(&records);
    check_envelope(exporter, &records, &items, &context);
    check_workload(&workload, dns_port, runbom_pid, &items, &context);
}

#[path = "kernel_events/checks.rs"]
mod checks;
use checks::{check_envelope, check_workload};

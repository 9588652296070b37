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

/// Transport, compression, resource and scope of everything received.
fn check_envelope(exporter: Exporter, records: &[Value], items: &[Item], context: &str) {
    assert!(
        records.iter().any(|r| r["signal"] == "traces")
            && records.iter().any(|r| r["signal"] == "logs"),
        "the receiver got no traces or no logs ({} requests)\n{context}",
        records.len()
    );
    let host = hostname();
    for item in items {
        match exporter {
            Exporter::Grpc => assert_eq!(item.transport, "grpc", "{}", item.summary()),
            Exporter::Http => {
                assert_eq!(item.transport, "http", "{}", item.summary());
                assert_eq!(
                    item.compression, "gzip",
                    "otlphttp with `compression: gzip` sent an uncompressed request"
                );
            }
        }
        assert_eq!(item.scope, "runbom.kernel", "scope of {}", item.summary());
        let service = item.resource.get("service.name").and_then(Value::as_str);
        assert!(
            service.is_some_and(|s| !s.is_empty()),
            "resource without service.name: {:?} ({})",
            item.resource,
            item.summary()
        );
        assert_eq!(
            item.resource.get("host.name").and_then(Value::as_str),
            Some(host.as_str()),
            "resource host.name of {}",
            item.summary()
        );
        assert!(
            !item.event().is_empty(),
            "{} has no runbom.event attribute",
            item.summary()
        );
        if item.signal == "span" {
            assert_ne!(
                item.event(),
                "process.exit",
                "process.exit must be a log only, never a span"
            );
        }
    }
}

fn check_workload(w: &Workload, dns_port: u16, runbom_pid: u32, items: &[Item], context: &str) {
    let ours = |i: &&Item| i.pid() == Some(w.pid) || i.pid() == Some(w.child_pid);
    let spans: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "span")
        .filter(ours)
        .collect();
    let logs: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "log")
        .filter(ours)
        .collect();
    let context = format!(
        "{context}\nthe workload's spans:\n{}the workload's logs:\n{}",
        summaries(&spans),
        summaries(&logs)
    );

    // runbom never reports itself.
    let runbom_pid = i64::from(runbom_pid);
    assert!(
        !items.iter().any(|i| i.pid() == Some(runbom_pid)),
        "runbom exported its own activity\n{context}"
    );
    // The workload started exactly one child, /bin/echo.
    let children: BTreeSet<i64> = items
        .iter()
        .filter(|i| i.attr_int("process.parent_pid") == Some(w.pid))
        .filter_map(Item::pid)
        .collect();
    assert_eq!(
        children,
        BTreeSet::from([w.child_pid]),
        "events name other children of the workload\n{context}"
    );
    // Only this test's watched directory passes the file filter, and only the workload opened
    // files in it; only the workload sent to this test's DNS port.
    let all_opens: Vec<&Item> = items.iter().filter(|i| i.event() == "file.open").collect();
    let all_dns: Vec<&Item> = items.iter().filter(|i| i.event() == "dns.query").collect();
    assert!(
        all_opens.iter().chain(&all_dns).all(ours),
        "file.open / dns.query events of other processes got through the filters:\n{}\n{context}",
        summaries(&all_opens) + &summaries(&all_dns)
    );

    // Exactly the expected spans.
    let expected = expected_spans(w, dns_port);
    let mut want: Vec<(i64, &str)> = expected.iter().map(|e| (e.pid, e.name.as_str())).collect();
    let mut got: Vec<(i64, &str)> = spans
        .iter()
        .map(|s| (s.pid().unwrap_or(0), s.name.as_str()))
        .collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "the workload's spans differ\n{context}");

    for e in &expected {
        let span = spans
            .iter()
            .find(|s| s.pid() == Some(e.pid) && s.name == e.name)
            .expect("matched above");
        check_span(span, e, w, &context);
    }
    check_order(&spans, w, &context);
    check_logs(&spans, &logs, w, &context);
    check_exits(&spans, &logs, w, &context);
    check_traces(&spans, w, &context);
}

fn check_span(span: &Item, e: &Expect, w: &Workload, context: &str) {
    let what = span.summary();
    assert_eq!(span.kind, e.kind, "kind of {what}\n{context}");
    for (key, want) in &e.attrs {
        assert_eq!(
            span.attr(key),
            Some(want),
            "attribute {key} of {what}: {:?}\n{context}",
            span.attrs
        );
    }
    for key in e.absent {
        assert_eq!(span.attr(key), None, "attribute {key} of {what}\n{context}");
    }
    if let Some(errno) = e.error {
        assert_eq!(
            span.attr_str("error.type"),
            Some(errno),
            "{what}\n{context}"
        );
        assert_eq!(
            span.status_code, "STATUS_CODE_ERROR",
            "a failed syscall's span needs status ERROR: {what}\n{context}"
        );
    } else {
        assert_eq!(span.attr("error.type"), None, "{what}\n{context}");
        assert_ne!(span.status_code, "STATUS_CODE_ERROR", "{what}\n{context}");
    }
    // Attributes every kernel span carries.
    assert!(span.attr_int("thread.id").is_some(), "thread.id of {what}");
    assert!(
        span.attr_int("process.user.id").is_some(),
        "process.user.id of {what}"
    );
    let (exe, service) = if span.pid() == Some(w.child_pid) {
        ("/bin/echo", "echo")
    } else {
        (w.executable.as_str(), exe_name(&w.executable))
    };
    assert_eq!(
        span.attr_str("process.executable.path"),
        Some(exe),
        "process.executable.path of {what}\n{context}"
    );
    assert_eq!(
        span.resource.get("service.name").and_then(Value::as_str),
        Some(service),
        "service.name of {what}\n{context}"
    );
    assert_eq!(
        span.resource.get("process.pid").and_then(Value::as_i64),
        span.pid(),
        "resource process.pid of {what}\n{context}"
    );
    if span.pid() == Some(w.pid) {
        let cmd = span.attr_str("process.command_line").unwrap_or("");
        assert!(
            cmd.contains("workload.py") && cmd.contains("--dns-port"),
            "process.command_line of {what}: {cmd:?}\n{context}"
        );
        // The workload is this test's child: runbom followed the fork.
        assert_eq!(
            span.attr_int("process.parent_pid"),
            Some(i64::from(std::process::id())),
            "process.parent_pid of {what}\n{context}"
        );
    }
    // Span timing: Unix time, inside the workload's run (with slack for clock conversion).
    let slack = 2_000_000_000;
    assert!(
        span.start_ns >= w.started_ns - slack
            && span.end_ns <= w.ended_ns + slack
            && span.start_ns <= span.end_ns,
        "{what}: start {} / end {} not within the workload's run {}..{}\n{context}",
        span.start_ns,
        span.end_ns,
        w.started_ns,
        w.ended_ns
    );
    assert_eq!(
        span.trace_id.len(),
        24,
        "trace_id (base64 of 16 bytes) of {what}"
    );
    assert_eq!(
        span.span_id.len(),
        12,
        "span_id (base64 of 8 bytes) of {what}"
    );
}

fn exe_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The workload's steps happen one after the other; their spans' start times must say so.
fn check_order(spans: &[&Item], w: &Workload, context: &str) {
    let start = |pred: &dyn Fn(&Item) -> bool, what: &str| {
        spans
            .iter()
            .find(|s| pred(s))
            .unwrap_or_else(|| panic!("no span for {what}"))
            .start_ns
    };
    let steps = [
        (
            "exec of the workload",
            start(
                &|s| s.pid() == Some(w.pid) && s.event() == "process.exec",
                "exec",
            ),
        ),
        (
            "exec of /bin/echo",
            start(&|s| s.pid() == Some(w.child_pid), "echo"),
        ),
        (
            "connect ok",
            start(
                &|s| s.attr_int("server.port") == Some(w.tcp_ok),
                "connect ok",
            ),
        ),
        (
            "connect refused",
            start(
                &|s| s.attr_int("server.port") == Some(w.tcp_refused),
                "refused",
            ),
        ),
        (
            "connect ipv6",
            start(&|s| s.attr_int("server.port") == Some(w.tcp6_ok), "v6"),
        ),
        (
            "open watched",
            start(&|s| s.attr_str("file.path") == Some(&w.watched), "open"),
        ),
        (
            "open missing",
            start(&|s| s.attr_str("file.path") == Some(&w.missing), "missing"),
        ),
        ("dns query", start(&|s| s.event() == "dns.query", "dns")),
    ];
    for pair in steps.windows(2) {
        assert!(
            pair[0].1 < pair[1].1,
            "span of `{}` ({}) does not start before `{}` ({})\n{context}",
            pair[0].0,
            pair[0].1,
            pair[1].0,
            pair[1].1
        );
    }
}

/// Every event is also a log record pointing at its span; exits are logs only.
fn check_logs(spans: &[&Item], logs: &[&Item], w: &Workload, context: &str) {
    assert_eq!(
        logs.len(),
        spans.len() + 2,
        "expected a log per span plus two process.exit logs\n{context}"
    );
    for span in spans {
        let matching: Vec<&&Item> = logs.iter().filter(|l| l.span_id == span.span_id).collect();
        assert_eq!(
            matching.len(),
            1,
            "span {} has {} log records with its span_id\n{context}",
            span.summary(),
            matching.len()
        );
        let log = matching[0];
        assert_eq!(
            log.trace_id,
            span.trace_id,
            "trace_id of the log of {}",
            span.summary()
        );
        assert_eq!(
            log.name,
            span.event(),
            "event_name of the log of {}",
            span.summary()
        );
        assert_eq!(
            log.attr_str("event.name"),
            Some(span.event()),
            "event.name attribute of the log of {}",
            span.summary()
        );
        let mut log_attrs = log.attrs.clone();
        log_attrs.remove("event.name");
        assert_eq!(
            log_attrs,
            span.attrs,
            "the log of {} carries different attributes\n{context}",
            span.summary()
        );
        assert_eq!(
            log.resource,
            span.resource,
            "resource of the log of {}",
            span.summary()
        );
        assert_eq!(
            log.start_ns,
            span.start_ns,
            "time of the log of {}",
            span.summary()
        );
        assert!(
            !log.body.is_empty(),
            "the log of {} has no body",
            span.summary()
        );
    }
    let exec_body = logs
        .iter()
        .find(|l| l.pid() == Some(w.child_pid) && l.name == "process.exec")
        .map(|l| l.body.as_str())
        .unwrap_or_default();
    assert!(
        exec_body.contains("--token=[REDACTED]"),
        "exec log body of /bin/echo: {exec_body:?}\n{context}"
    );
}

/// One `process.exit` log per process, with its code, after everything else it did.
fn check_exits(spans: &[&Item], logs: &[&Item], w: &Workload, context: &str) {
    for (pid, code) in [(w.pid, i64::from(WORKLOAD_EXIT_CODE)), (w.child_pid, 0)] {
        let exits: Vec<&&Item> = logs
            .iter()
            .filter(|l| l.pid() == Some(pid) && l.name == "process.exit")
            .collect();
        assert_eq!(exits.len(), 1, "process.exit logs of pid {pid}\n{context}");
        let exit = exits[0];
        assert_eq!(exit.event(), "process.exit");
        assert_eq!(
            exit.attr_int("process.exit.code"),
            Some(code),
            "process.exit.code of pid {pid}: {:?}\n{context}",
            exit.attrs
        );
        assert!(
            exit.span_id.is_empty(),
            "process.exit log of pid {pid} points at a span"
        );
        // The exit comes after everything else the process did.
        let last = spans
            .iter()
            .filter(|s| s.pid() == Some(pid))
            .map(|s| s.end_ns)
            .max()
            .unwrap_or(0);
        assert!(
            exit.start_ns >= last,
            "process.exit of pid {pid} at {} precedes its last span's end {last}\n{context}",
            exit.start_ns
        );
    }
}

/// Uncorrelated events of one program run share one trace; the child has its own.
fn check_traces(spans: &[&Item], w: &Workload, context: &str) {
    let traces = |pid: i64| -> BTreeSet<&str> {
        spans
            .iter()
            .filter(|s| s.pid() == Some(pid))
            .map(|s| s.trace_id.as_str())
            .collect()
    };
    let (parent, child) = (traces(w.pid), traces(w.child_pid));
    assert_eq!(
        parent.len(),
        1,
        "the workload's spans span traces {parent:?}\n{context}"
    );
    assert_eq!(child.len(), 1, "the child's spans span traces {child:?}");
    assert!(parent.is_disjoint(&child), "parent and child share a trace");
}

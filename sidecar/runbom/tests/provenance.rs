//! Provenance (contract §6): a local user cannot forge runbom's evidence.
//!
//! Each forgery of the table is sent with the real OpenTelemetry Python SDK
//! (`tests/forge_client.py`) to runbom's receivers, and what runbom exported is checked:
//! - a forged `event.name=aibom.drift` log record is not a finding (`investigate --alerts`);
//! - forged kernel spans (`runbom.kernel` scope, `runbom.event`, `runbom.correlation.method`)
//!   reach the export only under `received.`;
//! - a non-root client (uid 1001) claiming a root process's `process.pid` gets its own pid, and
//!   none of root's opens of a 0600 file under its trace (root; loads the probes).

use std::{
    collections::BTreeSet, fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command,
    time::Duration,
};

use runbom_testkit::{
    Proc, Ready, Runbom, SidecarConfig, TempDir, config::service, eventually, free_port, metrics,
    pipeline, python_bin, run_bounded, runbom::Stdout, runbom_bin, test_script,
};
use serde_json::Value;

/// Runs `forge_client.py` (as `uid` when given) and returns what it printed.
fn forge(uid: Option<u32>, args: &[&str]) -> Value {
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ])
            .arg(python_bin());
            c
        }
        None => Command::new(python_bin()),
    };
    cmd.arg(test_script("forge_client.py")).args(args);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "forge_client.py {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("forge_client.py printed no JSON ({e}): {stdout}"))
}

/// Every OTLP/JSON document of a `file` exporter's `name` file.
fn documents(out: &Path, name: &str) -> Vec<Value> {
    fs::read_to_string(out.join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an OTLP/JSON line"))
        .collect()
}

/// Every attribute key, scope name and log event name anywhere in `v`.
fn names(v: &Value, found: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(k)) = o.get("key") {
                found.insert(format!("key {k}"));
            }
            if let Some(Value::String(e)) = o.get("eventName") {
                found.insert(format!("eventName {e}"));
            }
            if let Some(Value::String(s)) = o.get("scope").and_then(|s| s.get("name")) {
                found.insert(format!("scope {s}"));
            }
            if o.get("key") == Some(&Value::String("event.name".into()))
                && let Some(Value::String(e)) = o.get("value").and_then(|x| x.get("stringValue"))
            {
                found.insert(format!("event.name {e}"));
            }
            o.values().for_each(|x| names(x, found));
        }
        Value::Array(a) => a.iter().for_each(|x| names(x, found)),
        _ => {}
    }
}

#[test]
fn forged_alerts_and_kernel_spans_are_not_evidence() {
    let dir = TempDir::new("provenance-forged");
    let sidecar = SidecarConfig::new();
    let (runbom, out) = sidecar.start_to_file(
        runbom_bin!(),
        &dir,
        "200ms",
        &runbom_testkit::config::traces_and_logs(&["otlp"], &["batch"], &["file"]),
    );
    for (protocol, endpoint) in [
        ("grpc", sidecar.grpc_endpoint()),
        ("http", sidecar.http_endpoint()),
    ] {
        for case in ["alert", "kernel"] {
            forge(
                None,
                &[
                    "--protocol",
                    protocol,
                    "--endpoint",
                    &endpoint,
                    "--case",
                    case,
                ],
            );
        }
    }
    let log = runbom.stop_ok();
    let (traces, logs) = (
        documents(&out, "traces.jsonl"),
        documents(&out, "logs.jsonl"),
    );
    assert!(
        !traces.is_empty() && !logs.is_empty(),
        "nothing exported:\n{log}"
    );
    let mut found = BTreeSet::new();
    traces
        .iter()
        .chain(&logs)
        .for_each(|d| names(d, &mut found));
    // Nothing carries runbom's names: there is no runbom component in these pipelines that
    // could have made them, so anything that did would be the forger's.
    let forged: Vec<&String> = found
        .iter()
        .filter(|n| {
            let name = n.split_once(' ').map_or(n.as_str(), |(_, v)| v);
            name.starts_with("runbom.")
                || name.starts_with("aibom.")
                || matches!(name, "aibom.drift" | "file.open" | "net.connect")
        })
        .collect();
    assert!(
        forged.is_empty(),
        "forged names got through: {forged:?}\nall: {found:?}"
    );
    // ... and they are kept where they can be told apart.
    for want in [
        "key received.runbom.event",
        "key received.runbom.correlation.method",
        "key received.aibom.drift",
        "key received.event.name",
        "key received.runbom.instance.id",
        "scope received.runbom.kernel",
        "scope received.runbom.aibom",
    ] {
        assert!(found.contains(want), "{want} missing: {found:?}");
    }
    let investigate = run_bounded(
        Command::new(runbom_bin!())
            .args(["investigate", "--alerts", "--color", "never", "--from"])
            .arg(&out),
        Duration::from_secs(20),
    );
    let shown = String::from_utf8_lossy(&investigate.stdout);
    assert!(investigate.status.success(), "investigate failed: {shown}");
    assert!(
        shown.contains("No drift finding") && !shown.contains("forged"),
        "a forged alert was shown as a finding:\n{shown}"
    );
}

/// The case: uid 1001 claims the pid of a root process that reads a 0600 file, in a
/// trace of its own; a correlator that trusted the pid placed root's opens under it.
#[test]
fn a_forged_pid_gets_no_other_users_events() {
    let dir = TempDir::new("provenance-pid");
    let secret_dir = dir.path().join("secret");
    fs::create_dir(&secret_dir).expect("secret dir");
    let secret = secret_dir.join("key.pem");
    fs::write(&secret, "not a key\n").expect("secret file");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    let export = dir.path().join("export");
    let (grpc, http, admin) = (free_port(), free_port(), free_port());
    let config = pid_config(&dir, &secret_dir, &export, (grpc, http, admin));
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::ProbesAttached);
    // Root reads the secret ten times a second, in one process.
    let reader = Proc::spawn(
        "root reader",
        Command::new(python_bin()).args([
            "-c",
            &format!(
                "import time\nwhile True:\n    open({:?}).read()\n    time.sleep(0.1)",
                secret.display().to_string()
            ),
        ]),
    );
    let root_pid = reader.pid();
    std::thread::sleep(Duration::from_millis(300));
    let sent = forge(
        Some(1001),
        &[
            "--protocol",
            "http",
            "--endpoint",
            &format!("127.0.0.1:{http}"),
            "--case",
            "pid",
            "--pid",
            &root_pid.to_string(),
            "--seconds",
            "2",
        ],
    );
    let trace_id = sent["trace_id"].as_str().expect("trace id").to_owned();
    let client_pid = sent["pid"].as_u64().expect("client pid");
    // Read now (runbom stops below); checked last, after what it is about.
    let counted = eventually(Duration::from_secs(10), || {
        metrics(admin)
            .get("runbom_receiver_pid_mismatch_total")
            .is_some_and(|n| *n >= 1)
    });
    // Past correlate's wait, so that root's events have been placed (or not).
    std::thread::sleep(Duration::from_secs(3));
    reader.terminate();
    let log = runbom.stop_ok();
    let (traces, logs) = (
        documents(&export, "traces.jsonl"),
        documents(&export, "logs.jsonl"),
    );

    let Scan {
        root_opens,
        root_opens_in_forged_trace,
        forged_resource,
    } = scan(traces.iter().chain(&logs), &trace_id, root_pid);
    assert!(
        root_opens > 0,
        "root's opens of the secret were not captured:\n{log}"
    );
    assert_eq!(
        root_opens_in_forged_trace, 0,
        "root's opens were placed under uid 1001's forged trace {trace_id}"
    );
    let resource = forged_resource.expect("the forged span was exported");
    assert_eq!(
        int_attr(&resource, "process.pid"),
        Some(client_pid),
        "process.pid is the client's own: {resource}"
    );
    assert_eq!(
        int_attr(&resource, "received.process.pid"),
        Some(u64::from(root_pid)),
        "the claimed pid is kept under received.: {resource}"
    );
    assert!(
        counted,
        "runbom_receiver_pid_mismatch_total did not count the forged pid"
    );
}

/// runbom with the ebpf receiver watching `secret_dir`, `correlate`, and a `file` exporter.
fn pid_config(
    dir: &TempDir,
    secret_dir: &Path,
    export: &Path,
    ports: (u16, u16, u16),
) -> std::path::PathBuf {
    let (grpc, http, admin) = ports;
    dir.write(
        "runbom.yaml",
        &format!(
            "receivers:
  ebpf:
    file:
      include: [\"{secret_dir}/\"]
  otlp:
    protocols:
      grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }}
      http: {{ endpoint: \"127.0.0.1:{http}\" }}
processors:
  correlate:
    wait: 2s
  batch: {{ timeout: 200ms }}
exporters:
  file:
    path: {export}
{service}",
            secret_dir = secret_dir.display(),
            export = export.display(),
            service = service(
                &format!("127.0.0.1:{admin}"),
                &(pipeline(
                    "traces",
                    &["otlp", "ebpf"],
                    &["correlate", "batch"],
                    &["file"]
                ) + &pipeline("logs", &["otlp", "ebpf"], &["batch"], &["file"])),
            ),
        ),
    )
}

/// An integer attribute (OTLP/JSON writes 64-bit integers as strings).
fn int_attr(attrs: &Value, key: &str) -> Option<u64> {
    let v = &attrs.as_array()?.iter().find(|a| a["key"] == key)?["value"]["intValue"];
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
}

/// What the pid test looks for in the export.
struct Scan {
    /// `file.open` spans and log records of root's reader ...
    root_opens: usize,
    /// ... of them in the forged trace.
    root_opens_in_forged_trace: usize,
    /// The resource of the forged span.
    forged_resource: Option<Value>,
}

fn scan<'a>(documents: impl Iterator<Item = &'a Value>, trace_id: &str, root_pid: u32) -> Scan {
    let mut found = Scan {
        root_opens: 0,
        root_opens_in_forged_trace: 0,
        forged_resource: None,
    };
    for d in documents {
        for rs in d["resourceSpans"]
            .as_array()
            .or_else(|| d["resourceLogs"].as_array())
            .into_iter()
            .flatten()
        {
            let scopes = rs["scopeSpans"]
                .as_array()
                .or_else(|| rs["scopeLogs"].as_array());
            for ss in scopes.into_iter().flatten() {
                let items = ss["spans"]
                    .as_array()
                    .or_else(|| ss["logRecords"].as_array());
                for item in items.into_iter().flatten() {
                    let in_forged = item["traceId"] == trace_id;
                    if in_forged && item["name"] == "invoke_agent forged" {
                        found.forged_resource = Some(rs["resource"]["attributes"].clone());
                    }
                    let opens = runbom_testkit::otlp_file::str_attribute(item, "runbom.event")
                        == Some("file.open");
                    let pid = int_attr(&item["attributes"], "process.pid")
                        .or_else(|| int_attr(&rs["resource"]["attributes"], "process.pid"));
                    if opens && pid == Some(u64::from(root_pid)) {
                        found.root_opens += 1;
                        found.root_opens_in_forged_trace += usize::from(in_forged);
                    }
                }
            }
        }
    }
    found
}

/// Runs `sdk_client.py` (the real SDK's exporters) with `header`; returns whether the export
/// succeeded, the trace ids it sent and its stderr.
fn sdk_export(protocol: &str, endpoint: &str, header: Option<&str>) -> (bool, Vec<String>, String) {
    let mut cmd = Command::new(python_bin());
    cmd.arg(test_script("sdk_client.py"))
        .args(["--protocol", protocol, "--endpoint", endpoint]);
    if let Some(h) = header {
        cmd.args(["--header", h]);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return (false, Vec::new(), stderr);
    }
    let sent: Value = serde_json::from_slice(&out.stdout).expect("sdk_client.py prints JSON");
    let ids = sent["spans"]
        .as_array()
        .expect("the spans sent")
        .iter()
        .map(|s| s["trace_id"].as_str().expect("a trace id").to_owned())
        .collect();
    (true, ids, stderr)
}

/// An `otlp` receiver whose gRPC server takes the token in `token_file` and whose HTTP
/// server takes `$RUNBOM_TEST_OTLP_TOKEN`, into a `file` exporter writing `out`; debug logs.
fn bearer_config(
    dir: &TempDir,
    token_file: &Path,
    [grpc, http, admin]: [u16; 3],
    out: &Path,
) -> std::path::PathBuf {
    dir.write(
        "runbom.yaml",
        &format!(
            "extensions:
  bearertokenauth/file:
    filename: {token}
  bearertokenauth/env:
    token: ${{env:RUNBOM_TEST_OTLP_TOKEN}}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        auth: {{ authenticator: bearertokenauth/file }}
      http:
        endpoint: 127.0.0.1:{http}
        auth: {{ authenticator: bearertokenauth/env }}
exporters:
  file: {{ path: {out} }}
service:
  extensions: [bearertokenauth/file, bearertokenauth/env]
  telemetry:
    logs: {{ level: debug }}
    metrics: {{ address: 127.0.0.1:{admin} }}
  pipelines:
{pipelines}",
            token = token_file.display(),
            out = out.display(),
            pipelines = pipeline("traces", &["otlp"], &[], &["file"]),
        ),
    )
}

/// Receivers behind the `bearertokenauth` extension (the Collector's shape): the gRPC server
/// takes the token of a file, the HTTP server one from the environment (`${env:...}`). The
/// real SDK's exporters with the token are accepted; without it, or with a wrong one, they are
/// refused (`UNAUTHENTICATED` / 401) and nothing of theirs is exported. A rewritten token file
/// takes effect without a restart. No token is ever logged, even at debug level.
#[test]
fn receivers_behind_bearertokenauth_take_only_their_token() {
    let dir = TempDir::new("bearertokenauth");
    let token_file = dir.write("otlp.token", "file-tok-7c1e9a\n");
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let (grpc, http, admin) = (free_port(), free_port(), free_port());
    let out = dir.join("out");
    let config = bearer_config(&dir, &token_file, [grpc, http, admin], &out);
    let mut cmd = Runbom::command(runbom_bin!(), &config, dir.path());
    cmd.env("RUNBOM_TEST_OTLP_TOKEN", "env-tok-51ab3f");
    let runbom = Runbom::try_spawn(&mut cmd, dir.path(), Ready::Admin(admin), Stdout::File)
        .unwrap_or_else(|e| panic!("{e}"));
    let (grpc, http) = (format!("127.0.0.1:{grpc}"), format!("127.0.0.1:{http}"));

    let mut accepted = BTreeSet::new();
    let cases = [
        (
            "grpc",
            &grpc,
            "file-tok-7c1e9a",
            "StatusCode.UNAUTHENTICATED",
        ),
        ("http/protobuf", &http, "env-tok-51ab3f", "code: 401"),
        ("http/json", &http, "env-tok-51ab3f", "HTTP 401"),
    ];
    for (protocol, endpoint, token, refused) in cases {
        let (ok, ids, stderr) = sdk_export(
            protocol,
            endpoint,
            Some(&format!("authorization=Bearer {token}")),
        );
        assert!(ok, "{protocol} with its token was refused:\n{stderr}");
        accepted.extend(ids);
        for header in [
            None,
            Some("authorization=Bearer wrong-tok-0000"),
            Some("authorization=Basic x"),
        ] {
            let (ok, _, stderr) = sdk_export(protocol, endpoint, header);
            assert!(
                !ok && stderr.contains(refused),
                "{protocol} {header:?}:\n{stderr}"
            );
        }
    }
    // The other server's token does not open this one.
    let (ok, _, _) = sdk_export("grpc", &grpc, Some("authorization=Bearer env-tok-51ab3f"));
    assert!(!ok, "the HTTP server's token opened the gRPC server");

    // A rotated token file: the new token in, the old one out (looked at once a second).
    fs::write(&token_file, "file-tok-rotated-22\n").expect("rotate the token");
    std::thread::sleep(Duration::from_millis(1_200));
    let (ok, ids, stderr) = sdk_export(
        "grpc",
        &grpc,
        Some("authorization=Bearer file-tok-rotated-22"),
    );
    assert!(ok, "the rotated token was refused:\n{stderr}");
    accepted.extend(ids);
    let (ok, _, _) = sdk_export("grpc", &grpc, Some("authorization=Bearer file-tok-7c1e9a"));
    assert!(!ok, "the old token still opens the gRPC server");

    let log = runbom.stop_ok();
    let exported: BTreeSet<String> =
        runbom_testkit::otlp_file::trace_ids_in_file(&out.join("traces.jsonl"))
            .into_keys()
            .collect();
    assert_eq!(
        exported, accepted,
        "exactly the authenticated exports reach the pipeline"
    );
    assert!(
        log.contains("without a valid bearer token"),
        "refusals are logged at debug:\n{log}"
    );
    for token in [
        "file-tok-7c1e9a",
        "env-tok-51ab3f",
        "file-tok-rotated-22",
        "wrong-tok-0000",
    ] {
        assert!(!log.contains(token), "`{token}` appears in runbom's log");
    }
}

//! The correlation accuracy suite: the reference agent (`examples/agent`) runs under runbom —
//! its OTLP traces into runbom's receiver, its syscalls under runbom's probes — and
//! `tests/score_correlation.py` scores what runbom exported against the run's ground truth:
//! the share of the agent's kernel-visible actions placed under the span that caused them, and
//! the share of orphan spans (broken context propagation) stitched back into their trace.
//!
//! The sequential run must be exact. The concurrent runs (two conversations on threads, and
//! on one asyncio loop) must place at least 95% (they are exact as of writing;
//! `docs/benchmarks.md` records the figures).
//!
//! Every run also checks that the agent's API key is in nothing runbom wrote (every exporter
//! file, its stdout and stderr, `/metrics`), whole or as any 12-character piece, a missing
//! output counting as a failure; and proves the check can fail: the key is planted where runbom
//! captures (an exec's argv, a plaintext request's query, headers and body), runbom's export
//! must show it saw the plant (redacted), and the same outputs with the redaction undone must
//! fail the check.
//!
//! Needs root and the project's venv (`bash scripts/setup.sh`).

use std::{fs, path::Path, process::Command, time::Duration};

use runbom_testkit::{
    Ready, Runbom, TempDir,
    config::service,
    free_port, http_get,
    leak::{Outputs, Planted, plant},
    pipeline, python_bin, run_bounded, runbom_bin, workspace_root,
};
use serde_json::Value;

/// How long the correlator waits for application spans: its default, one SDK batch interval
/// (5 s) and a second. The agent's first batch arrives only when it ends; until then its
/// events must be held, not released as a stranger's.
const WAIT: &str = "6s";

/// The agent's API key (sent in `Authorization` to the stub LLM over TLS).
/// Made up and assembled, so that no key-shaped literal sits in the source.
const API_KEY: &str = concat!("sk", "-runbom-", "FAKEtestKEYnotReal0000");

/// Runs one scenario and returns the scorer's JSON; fails if the API key is in anything
/// runbom wrote, or if the leak check could not have failed.
fn accuracy(scenario: &str, mode: &str, protocol: &str) -> Value {
    let dir = TempDir::new(&format!("correlation-{scenario}-{mode}"));
    let work = dir.path().join("agent");
    let export = dir.path().join("export");
    let (grpc, http, admin) = (free_port(), free_port(), free_port());
    let config = dir.path().join("runbom.yaml");
    fs::write(
        &config,
        format!(
            "receivers:
  ebpf:
    file:
      include: [\"{data}/\"]
  otlp:
    protocols:
      grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }}
      http: {{ endpoint: \"127.0.0.1:{http}\" }}
processors:
  correlate:
    wait: {WAIT}
  batch: {{}}
exporters:
  file:
    path: {export}
{service}",
            data = work.join("data").display(),
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
    .expect("writing the config");
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::ProbesAttached);
    let ground_truth = dir.path().join("ground-truth.json");
    let endpoint = if protocol == "grpc" {
        format!("http://127.0.0.1:{grpc}")
    } else {
        format!("http://127.0.0.1:{http}")
    };
    let agent = run_bounded(
        Command::new(python_bin())
            .env("RUNBOM_DEMO_API_KEY", API_KEY)
            .arg(workspace_root().join("examples/agent/run.py"))
            .args(["--scenario", scenario, "--mode", mode, "--any-ports"])
            .args(["--otlp-protocol", protocol, "--otlp-endpoint", &endpoint])
            .arg("--work-dir")
            .arg(&work)
            .arg("--ground-truth")
            .arg(&ground_truth),
        Duration::from_mins(2),
    );
    assert!(
        agent.status.success(),
        "the reference agent failed: {}\n{}",
        String::from_utf8_lossy(&agent.stdout),
        String::from_utf8_lossy(&agent.stderr)
    );
    let planted = plant(API_KEY);
    let metrics = match http_get(admin, "/metrics") {
        (200, text) => Some(text),
        _ => None,
    };
    let (status, log) = runbom.stop();
    assert!(status.success(), "runbom exited with {status}:\n{log}");
    // The stub checks the agent's `Authorization: Bearer <key>`; runbom saw it inside TLS.
    let outputs = Outputs::default()
        .export_dir(&export, &["traces.jsonl", "logs.jsonl"])
        .file("runbom's stdout", &dir.join("runbom.stdout"))
        .file("runbom's stderr", &dir.join("runbom.stderr"))
        .text("runbom's /metrics", metrics);
    assert_eq!(
        outputs.leaks(API_KEY),
        Vec::<String>::new(),
        "the agent's API key leaked"
    );
    the_check_could_have_failed(&outputs, &export, &planted);
    score(&export, &ground_truth)
}

/// runbom captured the plant (its exec and request are in the export, redacted), and the
/// same outputs with that redaction undone — the whole key, a 12-character piece, in upper
/// case — or with an output missing fail the check.
fn the_check_could_have_failed(outputs: &Outputs, export: &Path, planted: &Planted) {
    let logs_name = format!("exporter file {}", export.join("logs.jsonl").display());
    let logs = outputs.get(&logs_name).expect("logs.jsonl was read");
    let lines: Vec<&str> = logs.lines().collect();
    let exec = format!("\"intValue\":\"{}\"", planted.exec_pid);
    let plant_lines: Vec<usize> = (0..lines.len())
        .filter(|&n| lines[n].contains("runbom-plant"))
        .collect();
    assert!(
        plant_lines.iter().any(|&n| lines[n].contains(&exec)
            && lines[n].contains("runbom-plant --api-key [REDACTED] [REDACTED] TOKEN=[REDACTED]")),
        "runbom's logs should hold the planted exec (pid {}), redacted",
        planted.exec_pid
    );
    assert!(
        plant_lines.iter().any(|&n| lines[n].contains(&format!(
            "{}?api_key=[REDACTED]&note=[REDACTED]",
            planted.http_path
        ))),
        "runbom's logs should hold the planted request {}, its query redacted",
        planted.http_path
    );
    let upper = API_KEY[..12].to_ascii_uppercase();
    for undo in [API_KEY, &API_KEY[14..26], upper.as_str()] {
        let forged: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(n, l)| {
                if plant_lines.contains(&n) {
                    l.replace("[REDACTED]", undo)
                } else {
                    (*l).to_owned()
                }
            })
            .collect();
        let mut forged_outputs = outputs.clone();
        forged_outputs.set(&logs_name, Some(forged.join("\n")));
        let leaks = forged_outputs.leaks(API_KEY);
        assert!(
            !leaks.is_empty() && leaks.iter().all(|l| l.starts_with(&logs_name)),
            "the check should fail on the plant unredacted ({} characters), and only on the logs: {leaks:?}",
            undo.len()
        );
    }
    let mut missing = outputs.clone();
    missing.set("runbom's /metrics", None);
    assert_eq!(
        missing.leaks(API_KEY).len(),
        1,
        "a missing output must fail the check"
    );
}

fn score(export: &Path, ground_truth: &Path) -> Value {
    let out = run_bounded(
        Command::new(python_bin())
            .arg(workspace_root().join("tests/score_correlation.py"))
            .arg("--export")
            .arg(export)
            .arg("--ground-truth")
            .arg(ground_truth)
            .arg("--json"),
        Duration::from_mins(1),
    );
    assert!(
        out.status.success(),
        "score_correlation.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("the scorer prints JSON");
    eprintln!(
        "{}/{}: placed {}/{} (captured {}), stitched {}/{}, methods {}",
        result["scenario"],
        result["mode"],
        result["placed"],
        result["actions"],
        result["captured"],
        result["stitched"],
        result["orphans"],
        result["methods"]
    );
    result
}

fn assert_at_least(result: &Value, share: f64) {
    assert!(
        result["placed_share"].as_f64().unwrap_or(0.0) >= share
            && result["stitched_share"].as_f64().unwrap_or(0.0) >= share,
        "below {share}: {result:#}"
    );
}

fn assert_exact(result: &Value) {
    assert_eq!(
        result["captured"], result["actions"],
        "every kernel-visible action of the agent should be exported: {result:#}"
    );
    assert_eq!(
        result["placed"], result["actions"],
        "every action should sit under the span that caused it: {result:#}"
    );
    assert_eq!(
        result["stitched"], result["orphans"],
        "every orphan span should be stitched into its trace: {result:#}"
    );
    assert!(result["orphans"].as_u64() > Some(0), "{result:#}");
}

#[test]
fn sequential_benign_run_is_exact() {
    assert_exact(&accuracy("benign", "sequential", "http/protobuf"));
}

#[test]
fn sequential_injected_run_over_grpc_is_exact() {
    assert_exact(&accuracy("injected", "sequential", "grpc"));
}

/// Two conversations on two threads of one process: `traceparent` and `thread` tell them
/// apart.
#[test]
fn threaded_run_accuracy() {
    let result = accuracy("injected", "threads", "http/protobuf");
    println!("threads: {result}");
    assert_at_least(&result, 0.95);
}

/// Two conversations on one asyncio loop (one thread): `traceparent` tells them apart for
/// HTTP; the rest falls back to `process` (the innermost span in time).
#[test]
fn asyncio_run_accuracy() {
    let result = accuracy("injected", "asyncio", "http/protobuf");
    println!("asyncio: {result}");
    assert_at_least(&result, 0.95);
}

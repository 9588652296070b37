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
//! Needs root and the project's venv (`bash scripts/setup.sh`).

use std::{fs, path::Path, process::Command, time::Duration};

use runbom_testkit::{
    Ready, Runbom, TempDir, config::service, free_port, pipeline, python_bin, run_bounded,
    runbom_bin, workspace_root,
};
use serde_json::Value;

/// How long the correlator waits for application spans: its default, one SDK batch interval
/// (5 s) and a second. The agent's first batch arrives only when it ends; until then its
/// events must be held, not released as a stranger's.
const WAIT: &str = "6s";

/// The agent's API key (sent in `Authorization` to the stub LLM over TLS).
/// Made up and assembled, so that no key-shaped literal sits in the source.
const API_KEY: &str = concat!("sk", "-runbom-", "FAKEtestKEYnotReal0000");

/// Runs one scenario and returns the scorer's JSON; fails if the API key is in any export.
fn accuracy(scenario: &str, mode: &str, protocol: &str) -> Value {
    let dir = TempDir::new(&format!("correlation-{scenario}-{mode}"));
    let work = dir.path().join("agent");
    let export = dir.path().join("export");
    let (grpc, http) = (free_port(), free_port());
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
                "none",
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
    let (status, log) = runbom.stop();
    assert!(status.success(), "runbom exited with {status}:\n{log}");
    // The stub checks the agent's `Authorization: Bearer <key>`; runbom saw it inside TLS.
    for file in ["traces.jsonl", "logs.jsonl"] {
        let text = fs::read_to_string(export.join(file)).unwrap_or_default();
        assert!(
            !text.contains(API_KEY) && !text.contains("FAKEtestKEY"),
            "the agent's API key leaked into {file}"
        );
    }
    assert!(
        !log.contains(API_KEY),
        "the agent's API key leaked into runbom's log"
    );
    score(&export, &ground_truth)
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

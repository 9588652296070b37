//! Correlation end to end (telemetry contract §2): runbom with a `correlate` processor, the
//! reference agent (`examples/agent`) sending it traces, and the agent's ground truth saying
//! under which span each kernel action must land.
//!
//! Needs root (the probes are loaded) and the project's venv (`bash scripts/setup.sh`).

mod common;

use std::{
    collections::BTreeMap, fmt::Write as _, fs, net::TcpListener, path::Path, process::Command,
    time::Duration,
};

use common::{Runbom, TempDir, python, run_bounded, workspace_root};
use serde_json::Value;

/// `correlate.wait` of the test's configuration: short, so that the test is.
const WAIT: Duration = Duration::from_secs(2);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

fn config(work: &Path, out: &Path, port: u16) -> String {
    format!(
        "\
receivers:
  ebpf:
    file: {{ include: [\"{data}/\"] }}
  otlp:
    protocols:
      http: {{ endpoint: \"127.0.0.1:{port}\" }}
processors:
  batch: {{ timeout: 200ms }}
  correlate: {{ wait: {wait}s }}
exporters:
  file: {{ path: {out} }}
service:
  telemetry:
    metrics: {{ address: none }}
  pipelines:
    traces: {{ receivers: [otlp, ebpf], processors: [correlate, batch], exporters: [file] }}
    logs: {{ receivers: [otlp, ebpf], processors: [batch], exporters: [file] }}
",
        data = work.join("data").display(),
        out = out.display(),
        wait = WAIT.as_secs(),
    )
}

/// One span of the export, flattened.
#[derive(Debug)]
struct Exported {
    scope: String,
    trace_id: String,
    span_id: String,
    parent: String,
    start_ns: u64,
    attrs: BTreeMap<String, String>,
}

fn scalar(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.values().next())
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
        .unwrap_or_default()
}

fn exported_spans(path: &Path) -> Vec<Exported> {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (runbom exported no traces)", path.display()));
    let mut out = Vec::new();
    for line in text.lines() {
        let request: Value = serde_json::from_str(line).expect("a JSON line");
        for rs in request["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    out.push(Exported {
                        scope: ss["scope"]["name"].as_str().unwrap_or_default().to_owned(),
                        trace_id: text("traceId"),
                        span_id: text("spanId"),
                        parent: text("parentSpanId"),
                        start_ns: text("startTimeUnixNano").parse().unwrap_or(0),
                        attrs: s["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| {
                                (
                                    a["key"].as_str().unwrap_or_default().to_owned(),
                                    scalar(&a["value"]),
                                )
                            })
                            .collect(),
                    });
                }
            }
        }
    }
    out
}

/// The kernel span of ground-truth action `a`, if runbom exported one.
fn kernel_span<'a>(spans: &'a [Exported], a: &Value) -> Option<&'a Exported> {
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    let attr = |s: &Exported, k: &str| s.attrs.get(k).cloned().unwrap_or_default();
    let slack = 2_000_000;
    spans.iter().find(|s| {
        s.scope == "runbom.kernel"
            && attr(s, "runbom.event") == a["kind"].as_str().unwrap_or_default()
            && attr(s, "process.pid") == n("pid").to_string()
            && (n("start_ns").saturating_sub(slack)..=n("end_ns") + slack).contains(&s.start_ns)
            && match a["kind"].as_str() {
                Some("file.open") => attr(s, "file.path") == a["path"].as_str().unwrap_or_default(),
                Some("net.connect") => attr(s, "server.port") == n("port").to_string(),
                _ => true,
            }
            && (a["by"] != "agent" || attr(s, "thread.id") == n("thread_id").to_string())
    })
}

/// Runs the agent once; returns its ground truth.
fn run_agent(dir: &Path, mode: &str, port: u16) -> Value {
    let truth = dir.join(format!("ground-truth-{mode}.json"));
    let mut cmd = Command::new(python());
    cmd.arg(workspace_root().join("examples/agent/run.py"))
        .args(["--scenario", "injected", "--mode", mode, "--any-ports"])
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{port}")])
        .arg("--work-dir")
        .arg(dir.join("agent"))
        .arg("--ground-truth")
        .arg(&truth);
    let out = run_bounded(&mut cmd, Duration::from_mins(2));
    assert!(
        out.status.success(),
        "run.py --mode {mode} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&fs::read_to_string(&truth).expect("ground truth written"))
        .expect("ground truth is JSON")
}

#[test]
fn the_reference_agents_kernel_actions_land_under_their_spans() {
    let dir = TempDir::new("correlation");
    let port = free_port();
    let out = dir.path().join("out");
    let config_path = dir.path().join("runbom.yaml");
    fs::write(&config_path, config(&dir.path().join("agent"), &out, port)).expect("config");
    let runbom = Runbom::start(&config_path, dir.path());
    let truths: Vec<Value> = ["sequential", "threads"]
        .iter()
        .map(|mode| run_agent(dir.path(), mode, port))
        .collect();
    // Let every held event settle and every held trace be decided before the stop flushes.
    std::thread::sleep(WAIT * 2 + Duration::from_secs(2));
    let (status, log) = runbom.stop();
    assert!(status.success(), "runbom failed:\n{log}");
    let spans = exported_spans(&out.join("traces.jsonl"));

    let mut report = String::new();
    let mut checked = 0;
    for truth in &truths {
        let stitched: BTreeMap<&str, &str> = truth["orphans"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                let s = |k: &str| o[k].as_str().unwrap_or_default();
                (s("trace_id"), s("stitch_parent_trace_id"))
            })
            .collect();
        for o in truth["orphans"].as_array().into_iter().flatten() {
            let s = |k: &str| o[k].as_str().unwrap_or_default();
            let span = spans.iter().find(|x| x.span_id == s("span_id"));
            let got = span.map(|x| (x.trace_id.as_str(), x.parent.as_str()));
            if got != Some((s("stitch_parent_trace_id"), s("stitch_parent_span_id"))) {
                let _ = writeln!(report, "orphan {} not stitched: {got:?}", s("span_id"));
            }
        }
        let actions = truth["conversations"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["actions"].as_array().into_iter().flatten());
        for a in actions {
            let kind = a["kind"].as_str().unwrap_or_default();
            let Some(k) = kernel_span(&spans, a) else {
                // http.request needs the HTTP capture; every other action must be there.
                if kind != "http.request" {
                    let _ = writeln!(report, "no kernel span for {a}");
                }
                continue;
            };
            checked += 1;
            let s = |k: &str| a[k].as_str().unwrap_or_default();
            let trace = stitched
                .get(s("trace_id"))
                .copied()
                .unwrap_or(s("trace_id"));
            if (k.trace_id.as_str(), k.parent.as_str()) != (trace, s("span_id")) {
                let _ = writeln!(
                    report,
                    "{kind} of {} under {} ({}), want {} ({}): {:?}",
                    s("by"),
                    k.parent,
                    k.attrs
                        .get("runbom.correlation.method")
                        .map_or("", String::as_str),
                    s("span_id"),
                    s("span_name"),
                    k.attrs
                );
            }
        }
    }
    assert!(checked >= 20, "only {checked} actions found\n{report}");
    assert!(report.is_empty(), "{report}\nrunbom log:\n{log}");
}

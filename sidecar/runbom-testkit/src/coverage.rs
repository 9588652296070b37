//! What the HTTP coverage tests share: an `ebpf`-only configuration exporting to a [`Sink`],
//! running one client to completion, collecting what was exported, and judging the one
//! `http.request` a client must have caused.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::{
    Proc, Runbom, Sink,
    config::{service, traces_and_logs},
    indent,
    items::{Item, flatten, summaries},
};

/// An `ebpf` receiver (no file events: `file.include` names nothing) whose traces and logs go
/// to `sink` over OTLP/gRPC, without an admin endpoint; `receiver_extra` is appended to the
/// receiver's section (indented by four spaces, e.g. `    dns:\n      ports: [5353]\n`).
#[must_use]
pub fn ebpf_to_sink(sink: &Sink, receiver_extra: &str) -> String {
    format!(
        "\
receivers:
  ebpf:
    file:
      include: [\"/nonexistent-runbom-coverage-test/\"]
{receiver_extra}exporters:
  otlp:
    endpoint: 127.0.0.1:{}
    tls:
      insecure: true
{}",
        sink.grpc_port,
        service("none", &traces_and_logs(&["ebpf"], &[], &["otlp"])),
    )
}

/// Runs one client to completion (stdout and stderr in `dir/<label>.*`); its pid, after
/// checking that it succeeded and that its last stdout line is JSON with `"status": 200`.
#[must_use]
pub fn run_client(dir: &Path, label: &str, cmd: &mut Command) -> i64 {
    let mut proc = Proc::spawn_logged(label, dir, cmd);
    let pid = i64::from(proc.pid());
    let status = proc.wait_timeout(Duration::from_mins(1));
    let out = proc.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "client {label} failed ({status:?})\n{out}"
    );
    let report: Value =
        serde_json::from_str(proc.stdout_text().trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("client {label} printed no JSON ({e})\n{out}"));
    assert_eq!(report["status"], 200, "client {label}: {report}");
    pid
}

/// What is wrong with the `http.request` spans of `pid` among `items`: there must be exactly
/// one, with every attribute of `want` (nothing wrong: empty).
#[must_use]
pub fn one_request_problems(
    items: &[Item],
    label: &str,
    pid: i64,
    want: &[(&str, Value)],
) -> Vec<String> {
    let spans: Vec<&Item> = items
        .iter()
        .filter(|i| i.signal == "span" && i.event() == "http.request" && i.pid() == Some(pid))
        .collect();
    if spans.len() != 1 {
        return vec![format!(
            "{label} (pid {pid}): {} http.request, want exactly 1",
            spans.len()
        )];
    }
    want.iter()
        .filter(|(key, value)| spans[0].attr(key) != Some(value))
        .map(|(key, value)| {
            format!(
                "{label} (pid {pid}): {key} = {:?}, want {value}",
                spans[0].attr(key)
            )
        })
        .collect()
}

/// Stops runbom (it must exit cleanly) and then `sink`: what was exported, and the context a
/// failure message wants (runbom's log, every `http.request` span, where the files are in `dir`).
#[must_use]
pub fn stop_and_collect(runbom: Runbom, sink: Sink, dir: &Path) -> (Vec<Item>, String) {
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
        dir.display()
    );
    assert!(status.success(), "runbom exited with {status}\n{context}");
    (items, context)
}

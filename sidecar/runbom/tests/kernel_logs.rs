//! The ebpf receiver without spans for its events (`uncorrelated_spans: false`) and no
//! `correlate`: its events go down a logs pipeline as kernel log records, written by each
//! exporter from the events. Against the real kernel and a real OTLP receiver
//! (`tests/otlp_sink.py`): every open of this test arrives exactly once through `file`, `otlp`
//! and `otlphttp`, the three identical, and nothing else is exported for them. The same for
//! the events' spans (the default) down a traces pipeline: written from the events too.
//!
//! With spans (the default), the log records are written from the events too, each pointing
//! at its event's span: through the `file` exporter (OTLP/JSON written from the events), every
//! open's record points at exactly one exported span, of the same open, in the process's trace.
//!
//! Needs root (the probes are loaded into this kernel) and the project's Python venv. Other
//! tests' processes run beside this one: only this test's pid and watched directory count.

use std::{collections::BTreeMap, fs};

use runbom_testkit::{
    Ready, Runbom, Sink, TempDir,
    config::{pipeline, service, start_kernel_to_file},
    python::canon,
    runbom::stop_summary,
    runbom_bin,
};
use serde_json::Value;

/// Opens of the watched directory the test makes.
const OPENS: usize = 300;

/// The string value of attribute `key` in a canonical item's `attributes` (or a resource's).
fn attribute<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// The log records of `source` (canonical form) about this process's files under `watched`,
/// by path.
fn opens(source: &str, watched: &str) -> BTreeMap<String, Vec<Value>> {
    opens_of("logs", source, watched)
}

/// The log records (`signal` "logs") or spans ("traces") of `source` (canonical form) about
/// this process's files under `watched`, by path.
fn opens_of(signal: &str, source: &str, watched: &str) -> BTreeMap<String, Vec<Value>> {
    let canon = canon(signal, &[source.to_owned()]);
    let items: Vec<&Value> = if signal == "logs" {
        canon["logs"]
            .as_array()
            .expect("log records")
            .iter()
            .collect()
    } else {
        assert!(
            canon["duplicate_span_ids"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "{source}: a span arrived twice"
        );
        canon["spans"]
            .as_object()
            .expect("spans by id")
            .values()
            .collect()
    };
    let pid = i64::from(std::process::id()).to_string();
    let mut by_path: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for record in items {
        let ours = attribute(&record["resource"], "process.pid")
            .is_some_and(|v| v["int_value"].as_str() == Some(pid.as_str()));
        let path = attribute(record, "file.path").and_then(|v| v["string_value"].as_str());
        if let (true, Some(path)) = (ours, path)
            && path.starts_with(watched)
        {
            by_path
                .entry(path.to_owned())
                .or_default()
                .push((*record).clone());
        }
    }
    by_path
}

/// What runbom exported of this test's opens through `file`, `otlp` and `otlphttp` in a
/// `signal` pipeline (with spans for the events or not), by path, each exporter's.
fn opens_through_three_exporters(
    signal: &str,
    spans: bool,
) -> [(&'static str, BTreeMap<String, Vec<Value>>); 3] {
    let dir = TempDir::new(&format!("kernel-{signal}"));
    let watched = dir.path().join("watched");
    fs::create_dir_all(&watched).expect("create the watched directory");
    let watched = watched.to_str().expect("UTF-8 path").to_owned();
    let sink = Sink::start(dir.path());
    let out = dir.path().join("out");
    let config = format!(
        "\
receivers:
  ebpf:
    uncorrelated_spans: {spans}
    file:
      include: [\"{watched}/\"]
processors:
  batch:
    timeout: 200ms
exporters:
  file:
    path: {out}
  otlp:
    endpoint: http://127.0.0.1:{grpc}
    compression: gzip
  otlphttp:
    endpoint: http://127.0.0.1:{http}
    compression: none
{service}",
        out = out.display(),
        grpc = sink.grpc_port,
        http = sink.http_port,
        service = service(
            "none",
            &pipeline(signal, &["ebpf"], &["batch"], &["file", "otlp", "otlphttp"])
        ),
    );
    let config = dir.write("runbom.yaml", &config);
    let runbom = Runbom::start(runbom_bin!(), &config, dir.path(), Ready::ProbesAttached);
    for i in 0..OPENS {
        fs::write(format!("{watched}/f{i}"), b"x").expect("write a watched file");
    }
    let log = runbom.stop_ok();
    let summary = stop_summary(&log);
    assert_eq!(
        summary.get("failed"),
        Some(&0),
        "runbom gave up on data:\n{log}"
    );
    let (grpc, http) = (sink.source("grpc"), sink.source("http"));
    sink.finish();

    let other = if signal == "logs" { "traces" } else { "logs" };
    let other = out.join(format!("{other}.jsonl"));
    assert!(
        !other.exists() || fs::read_to_string(&other).is_ok_and(|t| t.is_empty()),
        "a {signal}-only runbom wrote {}",
        other.display()
    );
    let file = format!("otlpjson:{}", out.join(format!("{signal}.jsonl")).display());
    let file = opens_of(signal, &file, &watched);
    assert_eq!(file.len(), OPENS, "every open is in the file\n{log}");
    [
        ("file", file),
        ("otlp", opens_of(signal, &grpc, &watched)),
        ("otlphttp", opens_of(signal, &http, &watched)),
    ]
}

/// Every exporter got what `file` got.
fn the_same(exported: &[(&str, BTreeMap<String, Vec<Value>>)]) {
    let file = &exported[0].1;
    for (exporter, got) in &exported[1..] {
        assert!(
            got == file,
            "{exporter}: what arrived differs from the file exporter's ({} paths vs {})",
            got.len(),
            file.len()
        );
    }
}

#[test]
fn kernel_log_records_reach_file_otlp_and_otlphttp_once_and_the_same() {
    let exported = opens_through_three_exporters("logs", false);
    for (path, records) in &exported[0].1 {
        assert_eq!(records.len(), 1, "{path}: {records:#?}");
        let record = &records[0];
        assert_eq!(record["event_name"], "file.open", "{record:#}");
        assert!(
            record.get("trace_id").is_none() && record.get("span_id").is_none(),
            "a log record without a span points at none: {record:#}"
        );
    }
    the_same(&exported);
}

#[test]
fn kernel_spans_reach_file_otlp_and_otlphttp_once_and_the_same() {
    let exported = opens_through_three_exporters("traces", true);
    for (path, spans) in &exported[0].1 {
        assert_eq!(spans.len(), 1, "{path}: {spans:#?}");
        let span = &spans[0];
        assert_eq!(span["name"], format!("file.open {path}"), "{span:#}");
        assert!(
            span.get("parent_span_id").is_none(),
            "an uncorrelated span has no parent: {span:#}"
        );
    }
    the_same(&exported);
}

#[test]
fn with_spans_every_kernel_log_record_points_at_its_events_span() {
    let dir = TempDir::new("kernel-logs-spans");
    let watched = dir.path().join("watched");
    fs::create_dir_all(&watched).expect("create the watched directory");
    let watched = watched.to_str().expect("UTF-8 path").to_owned();
    let (runbom, out) = start_kernel_to_file(
        runbom_bin!(),
        &dir,
        &format!("    file:\n      include: [\"{watched}/\"]"),
    );
    for i in 0..OPENS {
        fs::write(format!("{watched}/f{i}"), b"x").expect("write a watched file");
    }
    let log = runbom.stop_ok();
    assert_eq!(
        stop_summary(&log).get("failed"),
        Some(&0),
        "runbom gave up on data:\n{log}"
    );

    let logs = opens(
        &format!("otlpjson:{}", out.join("logs.jsonl").display()),
        &watched,
    );
    let traces = canon(
        "traces",
        &[format!("otlpjson:{}", out.join("traces.jsonl").display())],
    );
    let spans = traces["spans"].as_object().expect("spans by id");
    assert_eq!(logs.len(), OPENS, "every open has a log record\n{log}");
    let mut trace_ids = std::collections::BTreeSet::new();
    for (path, records) in &logs {
        assert_eq!(records.len(), 1, "{path}: {records:#?}");
        let record = &records[0];
        let span_id = record["span_id"].as_str().expect("a span id");
        let span = &spans[span_id];
        assert_eq!(
            attribute(span, "file.path").and_then(|v| v["string_value"].as_str()),
            Some(path.as_str()),
            "{path}: the record points at another event's span: {span:#}"
        );
        assert_eq!(span["trace_id"], record["trace_id"], "{path}");
        trace_ids.insert(record["trace_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        trace_ids.len(),
        1,
        "one trace for the process: {trace_ids:?}"
    );
}

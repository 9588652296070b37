//! Conversion shared by workers gives what the single task gives: the same spans and log
//! records (kernel span ids are random, so they are compared through what points at them), and
//! each process's records in the same order.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use runbom_correlate::{Correlator, Decided, Output, Settings};
use runbom_event::{Detail, HttpRequest, KernelEvent, ProcessInfo, TraceParent, semconv::scope};
use tokio::sync::mpsc;

use super::{KernelLogs, Outcomes, run};
use crate::Telemetry;

const S: u64 = 1_000_000_000;
/// Seconds from here: after the stage's own clock, so nothing is older than `window`.
const T0: u64 = 4_000_000_000 * S;

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

fn process(pid: u32, parent: u32, fork: Option<(u32, u64)>) -> Arc<ProcessInfo> {
    Arc::new(ProcessInfo {
        pid,
        ppid: parent,
        exe: format!("/usr/bin/p{pid}"),
        trace_id: [pid as u8; 16],
        fork_tid: fork.map_or(0, |f| f.0),
        fork_ns: fork.map_or(0, |f| T0 + f.1),
        ..ProcessInfo::default()
    })
}

fn event(p: &Arc<ProcessInfo>, tid: u32, at_ms: u64, detail: Detail) -> KernelEvent {
    KernelEvent {
        pid: p.pid,
        tid,
        cgroup_id: 1,
        start_ns: T0 + at_ms * 1_000_000,
        end_ns: T0 + at_ms * 1_000_000 + 1_000,
        process: p.clone(),
        detail,
    }
}

fn open(path: String) -> Detail {
    Detail::FileOpen {
        path,
        flags: 0,
        error: None,
    }
}

fn http(tp: (u8, u8)) -> Detail {
    let peer: SocketAddr = "127.0.0.1:18443".parse().expect("address");
    Detail::HttpRequest(Box::new(HttpRequest {
        capture: runbom_event::Capture::Openssl,
        method: "POST".into(),
        host: Some("127.0.0.1:18443".into()),
        target: "/v1/chat/completions".into(),
        peer: Some(peer),
        traceparent: Some(TraceParent {
            trace_id: [tp.0; 16],
            span_id: [tp.1; 8],
            sampled: true,
        }),
        user_agent: None,
        body_size: None,
        model: None,
        status: None,
        version: runbom_event::HttpVersion::Http1,
        grpc: None,
        genai: None,
        fd: None,
    }))
}

/// An agent (pid 100, threads 101 and 102) running two conversations (traces 1 and 2) and,
/// with `orphan`, an orphan root (trace 3) inside the first.
fn spans(orphan: bool) -> ExportTraceServiceRequest {
    let span = |trace: u8, id: u8, parent: Option<u8>, from: u64, to: u64, tid: i64| Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span {id}"),
        start_time_unix_nano: T0 + from * 1_000_000,
        end_time_unix_nano: T0 + to * 1_000_000,
        attributes: vec![kv("thread.id", Value::IntValue(tid))],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("process.pid", Value::IntValue(100))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: [
                    span(1, 0x10, None, 0, 3000, 101),
                    span(1, 0x11, Some(0x10), 100, 900, 101),
                    span(2, 0x20, None, 0, 3000, 102),
                    span(2, 0x21, Some(0x20), 1000, 2000, 102),
                ]
                .into_iter()
                .chain(orphan.then(|| span(3, 0x30, None, 1200, 1800, 101)))
                .collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// The agent's events on both threads (by traceparent, thread), its child 200's (ancestry),
/// and 40 unrelated processes'.
fn events() -> Vec<Vec<KernelEvent>> {
    let agent = process(100, 1, None);
    let child = process(200, 100, Some((101, 1500)));
    let strangers: Vec<_> = (300..340).map(|pid| process(pid, 1, None)).collect();
    let mut batches = Vec::new();
    for b in 0..6u64 {
        let mut batch = Vec::new();
        for i in 0..10u64 {
            let at = b * 500 + i * 50;
            batch.push(event(&agent, 101, at, open(format!("/a/{at}"))));
            batch.push(event(&agent, 102, at + 1, open(format!("/b/{at}"))));
            if at >= 1500 {
                batch.push(event(&child, 200, at + 2, open(format!("/c/{at}"))));
            }
        }
        batch.push(event(&agent, 101, b * 500 + 7, http((1, 0x11))));
        batch.push(event(&agent, 102, b * 500 + 9, http((2, 0x21))));
        for (k, p) in strangers.iter().enumerate() {
            for i in 0..60u64 {
                let at = b * 500 + i * 8 + k as u64;
                batch.push(event(p, p.pid, at, open(format!("/s/{}/{at}", p.pid))));
            }
            if b == 5 {
                batch.push(event(p, p.pid, 2999, Detail::Exit { code: Some(0) }));
            }
        }
        batches.push(batch);
    }
    batches
}

/// What the output carries, free of random ids: application spans as they are; every log
/// record with the kernel span it points at (that span's own id left out); for each
/// `(process.pid, Resource)`, its log records in the order they came.
#[derive(Debug, Default, PartialEq)]
struct View {
    spans: BTreeMap<String, usize>,
    records: BTreeMap<String, Vec<String>>,
    kernel_spans: usize,
}

impl View {
    fn add(&mut self, out: &Output) {
        let mut kernel: BTreeMap<Vec<u8>, String> = BTreeMap::new();
        for rs in &out.traces.resource_spans {
            for ss in &rs.scope_spans {
                let is_kernel = ss.scope.as_ref().is_some_and(|s| s.name == scope::KERNEL);
                for span in &ss.spans {
                    if is_kernel {
                        let mut s = span.clone();
                        s.span_id.clear();
                        kernel.insert(span.span_id.clone(), format!("{s:?}"));
                        self.kernel_spans += 1;
                    } else {
                        let key = format!("{:?}|{:?}|{span:?}", rs.resource, ss.scope);
                        *self.spans.entry(key).or_default() += 1;
                    }
                }
            }
        }
        for rl in &out.logs.resource_logs {
            let resource = format!("{:?}", rl.resource);
            for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                let mut r = record.clone();
                let span = kernel.remove(&record.span_id);
                if span.is_some() {
                    r.span_id.clear();
                }
                let pid = r.attributes.iter().find(|a| a.key == "process.pid");
                let group = format!("{pid:?}|{resource}");
                let line = format!("{r:?}|{}", span.unwrap_or_default());
                self.records.entry(group).or_default().push(line);
            }
        }
        assert!(
            kernel.is_empty(),
            "kernel spans without their log record: {kernel:?}"
        );
    }
}

fn merged(outs: impl IntoIterator<Item = Output>) -> View {
    let mut view = View::default();
    for out in outs {
        view.add(&out);
    }
    view
}

/// What the stage's workers do with a release: spans sent at once, events split by process,
/// cut into shares of at most `most`, each converted on its own.
fn sharded(
    mut d: Decided,
    workers: usize,
    most: usize,
    opts: &runbom_otlp::ConvertOptions,
) -> Vec<Output> {
    let mut converted = vec![Output {
        traces: ExportTraceServiceRequest {
            resource_spans: std::mem::take(&mut d.spans),
        },
        ..Output::default()
    }];
    for share in d.split(workers) {
        converted.extend(share.pieces(most).iter().map(|p| p.convert(opts)));
    }
    converted
}

fn settings() -> Settings {
    Settings {
        wait: Duration::from_secs(2),
        host_name: "node".into(),
        ..Settings::default()
    }
}

#[test]
fn shared_conversion_gives_the_single_tasks_output() {
    let mut c = Correlator::new(settings());
    let opts = c.convert_options().clone();
    let (mut single, mut shared) = (Vec::new(), Vec::new());
    let mut take = |d: Decided| {
        single.push(d.clone().convert(&opts));
        shared.extend(sharded(d, 3, 7, &opts));
    };
    let mut batches = events().into_iter();
    let now = |ms: u64| T0 + ms * 1_000_000;
    c.add_events(batches.next().expect("a batch"), now(600));
    take(c.ready_decided());
    c.add_spans(spans(true), now(3500));
    take(c.ready_decided());
    for (i, batch) in batches.enumerate() {
        c.add_events(batch, now(3600 + i as u64 * 100));
        take(c.ready_decided());
        take(c.poll_decided(now(3650 + i as u64 * 100)));
    }
    take(c.poll_decided(now(6000)));
    take(c.flush_decided());

    let (single, shared) = (merged(single), merged(shared));
    assert_eq!(single, shared);
    // The scenario exercises every path: placed by each method, and not placed.
    let all: String = single.records.values().flatten().cloned().collect();
    for method in ["traceparent", "thread", "ancestry"] {
        assert!(
            all.contains(&format!("StringValue(\"{method}\")")),
            "no {method} placement"
        );
    }
    assert_eq!(single.spans.len(), 5, "the application spans");
    assert!(
        single.records.len() > 40,
        "a group per process and Resource"
    );
}

/// The whole stage, one task against three workers, on the same input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_with_workers_sends_what_one_task_sends() {
    let mut views = Vec::new();
    for workers in [1, 3] {
        let (span_tx, span_rx) = mpsc::channel(8);
        let (event_tx, event_rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel(1024);
        let telemetry = Telemetry::default();
        let task = tokio::spawn(run(
            span_rx,
            event_rx,
            out_tx,
            KernelLogs::Downstream,
            Correlator::new(settings()),
            Outcomes::new(telemetry.metrics()),
            workers,
        ));
        span_tx
            // Without the orphan: whether it is stitched before the events on its thread are
            // placed depends on when the stage's timer fires (a decision, not conversion).
            .send(crate::Signal::Traces(spans(false)))
            .await
            .expect("stage takes spans");
        for batch in events() {
            event_tx.send(batch).await.expect("stage takes events");
        }
        drop((span_tx, event_tx));
        let mut outs = Vec::new();
        while let Some(signal) = out_rx.recv().await {
            outs.push(match signal.into_typed() {
                crate::Signal::Traces(traces) => Output {
                    traces,
                    ..Output::default()
                },
                crate::Signal::Logs(logs) => Output {
                    logs,
                    ..Output::default()
                },
                other => panic!("a traces pipeline got {other:?}"),
            });
        }
        task.await.expect("stage ends");
        let mut view = merged_across_requests(outs);
        // Two correlators release placed traces in their own (hash) order: compare the
        // records of each process as sets here (the order is the test above's).
        view.records.values_mut().for_each(|r| r.sort());
        views.push(view);
    }
    assert_eq!(views[0], views[1]);
    let records: usize = views[0].records.values().map(Vec::len).sum();
    assert_eq!(
        records,
        events().iter().map(Vec::len).sum::<usize>(),
        "every event once"
    );
}

/// Like [`merged`], for outputs whose kernel spans and log records arrive in separate
/// requests (the stage sends a converted share as a traces and a logs request).
fn merged_across_requests(outs: Vec<Output>) -> View {
    let mut all = Output::default();
    for out in outs {
        all.traces.resource_spans.extend(out.traces.resource_spans);
        all.logs.resource_logs.extend(out.logs.resource_logs);
    }
    merged([all])
}

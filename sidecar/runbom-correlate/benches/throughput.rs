//! Correlator throughput: a minute of a busy node replayed as fast as the correlator takes it.
//!
//! An agent process (8 threads, each running one conversation per second: a root and ten
//! 80 ms child spans, exported in 5-second SDK batches) does 2,000 file opens per second
//! spread over its threads; 20 other processes do 20,000 per second between them. Events come
//! in batches every 100 ms, `poll` runs every 250 ms, as in the stage. `thrpt` is kernel
//! events per second of wall time.

#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use runbom_correlate::{Correlator, Settings};
use runbom_event::{
    Detail, KernelEvent, ProcessInfo,
    semconv::{PROCESS_PID, THREAD_ID},
};

const MS: u64 = 1_000_000;
const SECONDS: u64 = 60;
const THREADS: u32 = 8;
const AGENT: u32 = 100;

fn int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
    }
}

/// Spans of thread `t`'s conversation in second `s`.
fn conversation(s: u64, t: u32) -> Vec<Span> {
    let base = s * 1000 * MS;
    let id = |n: u64| {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(s as u32).to_le_bytes());
        b[4] = t as u8;
        b[5] = n as u8;
        b[7] = 1;
        b.to_vec()
    };
    let mut trace = vec![0u8; 16];
    trace[..8].copy_from_slice(&s.to_le_bytes());
    trace[8] = t as u8;
    trace[15] = 1;
    let tid = vec![int(THREAD_ID, i64::from(AGENT + 1 + t))];
    let mut spans = vec![Span {
        trace_id: trace.clone(),
        span_id: id(0),
        start_time_unix_nano: base,
        end_time_unix_nano: base + 990 * MS,
        attributes: tid.clone(),
        ..Default::default()
    }];
    for n in 1..=10 {
        let start = base + (n - 1) * 95 * MS + 10 * MS;
        spans.push(Span {
            trace_id: trace.clone(),
            span_id: id(n),
            parent_span_id: id(0),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 80 * MS,
            attributes: tid.clone(),
            ..Default::default()
        });
    }
    spans
}

fn event(process: &Arc<ProcessInfo>, tid: u32, at: u64, n: u64) -> KernelEvent {
    KernelEvent {
        pid: process.pid,
        tid,
        cgroup_id: 1,
        start_ns: at,
        end_ns: at + 5_000,
        process: process.clone(),
        detail: Detail::FileOpen {
            path: format!("/srv/data/file-{n}.json"),
            flags: 0,
            error: None,
        },
    }
}

/// Replays the minute; returns how many kernel spans it made.
fn replay() -> usize {
    let mut c = Correlator::new(Settings::default());
    let agent = Arc::new(ProcessInfo {
        pid: AGENT,
        ppid: 1,
        exe: "/usr/bin/python3".into(),
        ..ProcessInfo::default()
    });
    let others: Vec<Arc<ProcessInfo>> = (0..20)
        .map(|i| {
            Arc::new(ProcessInfo {
                pid: 1000 + i,
                ppid: 1,
                exe: "/usr/bin/noisy".into(),
                ..ProcessInfo::default()
            })
        })
        .collect();
    let resource = Resource {
        attributes: vec![int(PROCESS_PID, AGENT.into())],
        ..Default::default()
    };
    let mut made = 0;
    let mut n = 0u64;
    let mut pending_spans = Vec::new();
    for tick in 0..(SECONDS * 10) {
        let now = tick * 100 * MS;
        let mut batch = Vec::with_capacity(2200);
        for i in 0..200u64 {
            let at = now + i * MS / 2;
            n += 1;
            batch.push(event(&agent, AGENT + 1 + (i as u32 % THREADS), at, n));
        }
        for i in 0..2000u64 {
            n += 1;
            let p = &others[(i % 20) as usize];
            batch.push(event(p, p.pid, now + i * 50_000, n));
        }
        c.add_events(batch, now + 100 * MS);
        if tick % 10 == 9 {
            let s = tick / 10;
            for t in 0..THREADS {
                pending_spans.extend(conversation(s, t));
            }
        }
        if tick % 50 == 49 {
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        spans: std::mem::take(&mut pending_spans),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
            };
            c.add_spans(request, now + 100 * MS);
        }
        for q in 0..4 {
            let out = c.poll(now + q * 25 * MS);
            made += out.traces.resource_spans.len();
        }
    }
    made + c.flush().traces.resource_spans.len()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("correlate");
    group.throughput(Throughput::Elements(SECONDS * 10 * 2200));
    group.bench_function("agent+noise/60s", |b| b.iter(|| black_box(replay())));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .sample_size(10);
    targets = bench
}
criterion_main!(benches);

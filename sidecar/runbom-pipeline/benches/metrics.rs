//! What the AI-BOM metrics cost: the `aibom` stage counts every span it releases and every
//! alert (`processor::aibom::metrics`), and `/metrics` collects and renders the SDK's state on
//! each scrape. Time is the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so other work
//! on a shared machine is not counted. The allocator is mimalloc, as in the `runbom` binary.
//!
//! - `aibom metrics / judge (peer)`: `Processor::push` + `release_all` of 64 benign
//!   reference-agent conversations (2 496 spans) against the reference agent's BOM, a new
//!   processor per iteration (`runbom-aibom`'s `processor` bench, `benign x64`): the work the
//!   counting rides on, measured in the same run;
//! - `aibom metrics / count`: `AibomMetrics::count_spans` of the judged request (one
//!   `AibomMetrics` for all iterations, as in `runbom run`: its series exist after the first);
//! - `aibom metrics / count annotated`: `AibomMetrics::count_annotated` of the same spans
//!   released by `Processor::push_annotated` (their verdicts beside the request, as the stage
//!   emits them);
//! - `scrape / render`: `Telemetry::render_prometheus` (SDK collect, OTLP conversion,
//!   Prometheus text) with the pipeline counters of the embedded defaults and the AI-BOM series
//!   of those conversations and an injected one.

// Criterion's macros generate undocumented items.
#![allow(missing_docs)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use runbom_aibom::{Processor, Settings};
use runbom_otlp::AnnotatedTraces;
use runbom_pipeline::{SignalKind, Telemetry, processor::aibom::metrics::AibomMetrics};
use runbom_testkit::agent_trace as common;
use runbom_testkit::cpu::thread_cpu;

fn benign_x64() -> ExportTraceServiceRequest {
    let mut req = ExportTraceServiceRequest::default();
    for seed in 0..64 {
        req.resource_spans
            .extend(common::benign(seed).request().resource_spans);
    }
    req
}

fn spans(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

/// The request as the stage releases it (the verdicts beside it).
fn annotated(req: ExportTraceServiceRequest) -> AnnotatedTraces {
    let bom = common::bom();
    let mut p = Processor::new(Settings::default());
    let mut out = p
        .push_annotated(req, Instant::now(), &bom)
        .traces
        .unwrap_or_default();
    if let Some(rest) = p.release_all(&bom).traces {
        out.append(AnnotatedTraces::plain(rest));
    }
    out
}

/// The request as the processor releases it (`aibom.*` attributes written).
fn judged(req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let bom = common::bom();
    let mut p = Processor::new(Settings::default());
    let mut out = p.push(req, Instant::now(), &bom);
    let mut judged = out.traces.take().unwrap_or_default();
    if let Some(rest) = p.release_all(&bom).traces {
        judged.resource_spans.extend(rest.resource_spans);
    }
    judged
}

fn aibom_metrics(c: &mut Criterion) {
    let input = benign_x64();
    let bom = common::bom();
    let mut group = c.benchmark_group("aibom metrics");
    group.throughput(Throughput::Elements(spans(&input)));
    group.bench_function("judge (peer)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let req = input.clone();
                let mut p = Processor::new(Settings::default());
                let start = thread_cpu();
                let out = black_box(p.push(req, Instant::now(), &bom));
                let rest = black_box(p.release_all(&bom));
                total += thread_cpu().saturating_sub(start);
                drop((out, rest, p));
            }
            total
        });
    });
    let judged = judged(input.clone());
    let telemetry = Telemetry::default();
    let metrics = AibomMetrics::new(telemetry.metrics());
    group.bench_function("count", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                metrics.count_spans(black_box(&judged));
            }
            thread_cpu().saturating_sub(start)
        });
    });
    let annotated = annotated(input.clone());
    group.bench_function("count annotated", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                metrics.count_annotated(black_box(&annotated));
            }
            thread_cpu().saturating_sub(start)
        });
    });
    group.finish();
}

fn scrape(c: &mut Criterion) {
    let telemetry = Telemetry::default();
    for (stage, name, signal) in [
        ("receiver", "otlp", SignalKind::Traces),
        ("receiver", "otlp", SignalKind::Logs),
        ("receiver", "otlp", SignalKind::Metrics),
        ("receiver", "ebpf", SignalKind::Traces),
        ("receiver", "ebpf", SignalKind::Logs),
        ("receiver", "aibom", SignalKind::Logs),
        ("exporter", "file", SignalKind::Traces),
        ("exporter", "file", SignalKind::Logs),
        ("exporter", "file", SignalKind::Metrics),
    ] {
        telemetry.stage(stage, name, signal).add_accepted(1);
    }
    let metrics = AibomMetrics::new(telemetry.metrics());
    metrics.count_spans(&judged(benign_x64()));
    let (injected, _) = common::injected(1);
    metrics.count_spans(&judged(injected.request()));
    let series = telemetry
        .render_prometheus()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    let mut group = c.benchmark_group("scrape");
    group.throughput(Throughput::Elements(series as u64));
    group.bench_function("render", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                black_box(telemetry.render_prometheus());
            }
            thread_cpu().saturating_sub(start)
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = aibom_metrics, scrape
}
criterion_main!(benches);

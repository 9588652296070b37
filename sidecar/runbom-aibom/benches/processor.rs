//! Cost of the AI-BOM processor per span: a request of complete traces is pushed, judged against
//! the reference agent's declared BOM, annotated, and passed on (with its alert when it drifts).
//! Time is the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so other work on a shared
//! machine is not counted; building and cloning the input, and freeing the output (the exporter
//! does that with or without the processor), are outside the measured time. The allocator is
//! mimalloc, as in the `runbom` binary.
//!
//! - `injected`: the reference agent's injected conversation (an alert with its chain);
//! - `benign x64`: 64 benign conversations in one request (no drift);
//! - `kernel-only x1024`: file.open and net.connect spans of processes no BOM declares
//!   (inventoried, not judged): the cost runbom pays on a busy node's other traffic.
//!
//! `aibom share` puts that cost next to what a pipeline does anyway, on the request
//! `runbom-loadgen` sends (100 GenAI spans of `support-agent`, no drift against
//! `sidecar/runbom-loadgen/bom.cdx.json`), with one processor for all iterations as in
//! `runbom run`; decoding and freeing are inside the measured time:
//! - `decode, drop`: the protobuf decode and free of the request (runbom without the processor,
//!   less gRPC);
//! - `decode, attributes, drop`: plus writing the contract's `aibom.*` attributes of a fixed
//!   verdict onto every span (what any implementation of contract §3 pays);
//! - `decode, attributes per resource, drop`: as the row before, but with the two values that
//!   are the same on every span of a resource (`aibom.bom.serial_number`, `aibom.agent.ref`)
//!   written once per resource: what that contract change would save;
//! - `decode, push, drop`: plus the processor as runbom's pipelines run it
//!   (`Processor::push_annotated`: the verdicts beside the request, for the exporter to write);
//! - `decode, push with 3 alerts per trace, drop`: the processor against the reference agent's
//!   BOM, which declares neither the load's models nor its tool (three alerts per trace of 5
//!   spans, made and freed inside the measured time); `decode, push with 3 alerts per trace,
//!   encode, drop`: the same with the spans and the alerts written as protobuf, as the
//!   exporters do (alerts held as their parts are written from them).
//! - `decode, encode, drop`, `decode, push, encode, drop` and `decode, push written, encode,
//!   drop`: with the request written as protobuf too (what the exporter does): without the
//!   processor, with it as above (each span's `aibom.*` attributes copied from its verdict's
//!   encoding), and with the verdicts written onto the spans (`Processor::push`) and encoded
//!   from there.
//! - `decode, attributes, 3 prepared alerts per trace, drop`: the floor of the row before in
//!   this data model: the contract's attributes of a fixed verdict on every span plus a copy of
//!   the alert records the processor made for one such request (what any implementation of
//!   contract §3 and §4 pays, judging and chain-building aside).
//!
//! `aibom kernel logs` is `Processor::judge_logs` on kernel log records no trace claimed, as
//! the correlation emits them (`runbom_otlp::convert`), with one processor for all iterations
//! (what it remembers of workloads carries over, as in `runbom run`); cloning the input and
//! freeing it are outside the measured time:
//! - `opens x1024`: one undeclared Python process opening the same file 1 024 times (the
//!   embedded defaults' flame-graph load);
//! - `mixed x1024`: 8 undeclared processes, each opening 96 files of its own, connecting 16
//!   times and running 16 programs (a busy node's other traffic);
//! - `…, built, judged, JSON` and `…, judged as events, JSON`: the same events' records
//!   from the events to OTLP/JSON (the `file` exporter's output), built as records, judged
//!   (`judge_logs`) and written from the request, against judged as the events
//!   (`judge_kernel_logs`) and written from them; freeing the records is inside the
//!   measured time, freeing the events outside.
//!
//! `aibom kernel logs written` is what an exporter does with a batch the processor judged as
//! the events (`judge_kernel_logs`, once, outside the measured time): `mixed x1024` with the
//! events of half its processes placed in an application's trace (two of them `inferred`, so
//! judged too), written as protobuf (`KernelLogs::write_protobuf`, what `otlp` sends) and as
//! OTLP/JSON (`write_json`, what `file` writes): the records' own attributes, the placed
//! ones' `runbom.correlation.*`, and each judged record's `aibom.*` list.

// Criterion's macros generate undocumented items.
#![allow(missing_docs)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use runbom_testkit::agent_trace as common;
use runbom_testkit::cpu::thread_cpu;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest,
};
use prost::Message as _;
use runbom_aibom::{
    DeclaredBom, Kind, Processor, Settings,
    endpoint::Endpoint,
    judge::{self, Verdict},
    otlp::{kv_bool, kv_int, kv_str},
};
use runbom_otlp::signal::Signal;

/// As `runbom run` sets it up: runbom's own receivers are never judged.
fn settings() -> Settings {
    let mut s = Settings::default();
    s.judge.ignore = ["127.0.0.1:4317", "127.0.0.1:4318"]
        .iter()
        .filter_map(|e| Endpoint::parse(e).ok())
        .collect();
    s
}

fn spans(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

fn bench_case(c: &mut Criterion, name: &str, req: &ExportTraceServiceRequest) {
    let bom = common::bom();
    let mut group = c.benchmark_group("aibom");
    group.throughput(Throughput::Elements(spans(req)));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let input = req.clone();
                let mut p = Processor::new(settings());
                let start = thread_cpu();
                let out = black_box(p.push(input, Instant::now(), &bom));
                let rest = black_box(p.release_all(&bom));
                total += thread_cpu().saturating_sub(start);
                // The exporter frees what passes on, with or without the processor.
                drop((out, rest, p));
            }
            total
        });
    });
    group.finish();
}

fn kernel_only() -> ExportTraceServiceRequest {
    let mut req = ExportTraceServiceRequest::default();
    for proc in 0..8u8 {
        let mut t = common::Trace::new(100 + proc);
        for i in 0..128 {
            let pid = 9000 + i64::from(proc);
            if i % 4 == 0 {
                t.kernel_span(
                    &[],
                    "net.connect",
                    pid,
                    "/usr/bin/curl",
                    vec![
                        kv_str("server.address", "198.51.100.7"),
                        kv_int("server.port", 443),
                    ],
                );
            } else {
                t.kernel_span(
                    &[],
                    "file.open",
                    pid,
                    "/usr/bin/make",
                    vec![kv_str("file.path", &format!("/srv/build/src/file{i}.c"))],
                );
            }
        }
        let mut r = t.request();
        // Not the agent's resource: these are other processes of the node.
        for rs in &mut r.resource_spans {
            rs.resource = None;
        }
        req.resource_spans.extend(r.resource_spans);
    }
    req
}

/// CPU time of `iters` runs of `f` on the request decoded from `bytes` (decode and drop
/// included).
fn decoded(
    bytes: &[u8],
    iters: u64,
    mut f: impl FnMut(ExportTraceServiceRequest) -> ExportTraceServiceRequest,
) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        let req = ExportTraceServiceRequest::decode(bytes).expect("the load decodes");
        drop(black_box(f(req)));
    }
    thread_cpu().saturating_sub(start)
}

fn share(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../runbom-loadgen/bom.cdx.json"
    );
    let bom = DeclaredBom::from_file(std::path::Path::new(path)).expect("the load's BOM loads");
    let req = runbom_loadgen::genai::request(100);
    let bytes = req.encode_to_vec();
    let mut group = c.benchmark_group("aibom share");
    group.throughput(Throughput::Elements(spans(&req)));
    group.bench_function("decode, drop", |b| {
        b.iter_custom(|iters| decoded(&bytes, iters, |r| r));
    });
    let verdict = Verdict {
        component: Some(("model:gpt-4o", Kind::Model)),
        declared: Some(true),
        agent: Some("agent:support-agent"),
        ..Verdict::default()
    };
    group.bench_function("decode, attributes, drop", |b| {
        b.iter_custom(|iters| {
            decoded(&bytes, iters, |mut r| {
                for span in r
                    .resource_spans
                    .iter_mut()
                    .flat_map(|rs| &mut rs.scope_spans)
                    .flat_map(|ss| &mut ss.spans)
                {
                    judge::write(&mut span.attributes, &verdict, &bom.serial_number);
                }
                r
            })
        });
    });
    // The same verdict with the two values every span of a resource shares
    // (`aibom.bom.serial_number`, `aibom.agent.ref`) written once per resource instead: what
    // moving them to the resource would save (a contract change, not made; the measurement is
    // in docs/benchmarks.md).
    group.bench_function("decode, attributes per resource, drop", |b| {
        b.iter_custom(|iters| {
            decoded(&bytes, iters, |mut r| {
                for rs in &mut r.resource_spans {
                    let resource = rs.resource.get_or_insert_default();
                    resource.attributes.reserve_exact(2);
                    resource
                        .attributes
                        .push(kv_str("aibom.bom.serial_number", &bom.serial_number));
                    resource
                        .attributes
                        .push(kv_str("aibom.agent.ref", "agent:support-agent"));
                    for span in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
                        let a = &mut span.attributes;
                        a.reserve_exact(4);
                        a.push(kv_str("aibom.component.ref", "model:gpt-4o"));
                        a.push(kv_str("aibom.component.kind", Kind::Model.as_str()));
                        a.push(kv_bool("aibom.declared", true));
                        a.push(kv_bool("aibom.drift", false));
                    }
                }
                r
            })
        });
    });
    let mut p = Processor::new(settings());
    group.bench_function("decode, push, drop", |b| {
        b.iter_custom(|iters| {
            decoded(&bytes, iters, |r| {
                let out = p.push_annotated(r, Instant::now(), &bom);
                assert!(out.alerts.is_none(), "the load does not drift");
                drop(black_box(out.traces));
                ExportTraceServiceRequest::default()
            })
        });
    });
    share_encoded(&mut group, &bytes, &bom);
    share_alerts(&mut group, &bytes, &verdict, &bom.serial_number);
    group.finish();
}

/// The rows of `aibom share` that write the request as protobuf, as the exporter does (into
/// a buffer kept between requests, as the exporter keeps one).
fn share_encoded(group: &mut BenchmarkGroup<'_, WallTime>, bytes: &[u8], bom: &DeclaredBom) {
    let mut out = Vec::new();
    let mut encode = |signal: Signal| {
        out.clear();
        signal.write_protobuf(&mut out);
        black_box(&out);
        drop(signal);
        ExportTraceServiceRequest::default()
    };
    group.bench_function("decode, encode, drop", |b| {
        b.iter_custom(|iters| decoded(bytes, iters, |r| encode(Signal::Traces(r))));
    });
    let mut p = Processor::new(settings());
    group.bench_function("decode, push, encode, drop", |b| {
        b.iter_custom(|iters| {
            decoded(bytes, iters, |r| {
                let out = p.push_annotated(r, Instant::now(), bom);
                encode(Signal::AnnotatedTraces(out.traces.unwrap_or_default()))
            })
        });
    });
    let mut p = Processor::new(settings());
    group.bench_function("decode, push written, encode, drop", |b| {
        b.iter_custom(|iters| {
            decoded(bytes, iters, |r| {
                let out = p.push(r, Instant::now(), bom);
                encode(Signal::Traces(out.traces.unwrap_or_default()))
            })
        });
    });
}

/// The rows of `aibom share` with alerts.
fn share_alerts(
    group: &mut BenchmarkGroup<'_, WallTime>,
    bytes: &[u8],
    verdict: &Verdict<'_>,
    serial: &str,
) {
    // Against the reference agent's BOM the load's models and tool are undeclared: three
    // alerts per trace (`AIBOM_BOM=builtin:reference-agent` in scripts/bench-pipeline.sh). Each
    // iteration gets new trace ids, as an agent's requests would, so no alert is deduplicated
    // away.
    let reference = common::bom();
    let mut round = 0u64;
    // New trace ids for each iteration.
    let mut renew = |r: &mut ExportTraceServiceRequest| {
        round += 1;
        for span in r
            .resource_spans
            .iter_mut()
            .flat_map(|rs| &mut rs.scope_spans)
            .flat_map(|ss| &mut ss.spans)
        {
            if let Some(head) = span.trace_id.get_mut(..8) {
                head.copy_from_slice(&round.to_be_bytes());
            }
        }
    };
    let mut p = Processor::new(settings());
    group.bench_function("decode, push with 3 alerts per trace, drop", |b| {
        b.iter_custom(|iters| {
            decoded(bytes, iters, |mut r| {
                renew(&mut r);
                let out = p.push_annotated(r, Instant::now(), &reference);
                assert!(out.alerts.is_some(), "the load drifts");
                drop(black_box(out.alerts));
                drop(black_box(out.traces));
                ExportTraceServiceRequest::default()
            })
        });
    });
    let mut p = Processor::new(settings());
    let mut out = Vec::new();
    group.bench_function("decode, push with 3 alerts per trace, encode, drop", |b| {
        b.iter_custom(|iters| {
            decoded(bytes, iters, |mut r| {
                renew(&mut r);
                let pushed = p.push_annotated(r, Instant::now(), &reference);
                let alerts = pushed.alerts.expect("the load drifts");
                for signal in [
                    Signal::AnnotatedTraces(pushed.traces.unwrap_or_default()),
                    Signal::SharedLogs(Box::new(alerts)),
                ] {
                    out.clear();
                    signal.write_protobuf(&mut out);
                    black_box(&out);
                }
                ExportTraceServiceRequest::default()
            })
        });
    });
    // The floor of that case in this data model, whatever judging costs: the contract's
    // attributes of a fixed verdict on every span and a copy of the alert records the processor
    // made for one request (three per trace, with their chains), made and freed.
    let prepared = Processor::new(settings())
        .push(
            ExportTraceServiceRequest::decode(bytes).expect("the load decodes"),
            Instant::now(),
            &reference,
        )
        .alerts
        .expect("the load drifts");
    group.bench_function(
        "decode, attributes, 3 prepared alerts per trace, drop",
        |b| {
            b.iter_custom(|iters| {
                decoded(bytes, iters, |mut r| {
                    for span in r
                        .resource_spans
                        .iter_mut()
                        .flat_map(|rs| &mut rs.scope_spans)
                        .flat_map(|ss| &mut ss.spans)
                    {
                        judge::write(&mut span.attributes, verdict, serial);
                    }
                    drop(black_box(prepared.clone()));
                    r
                })
            });
        },
    );
}

fn processor(c: &mut Criterion) {
    let (injected, _) = common::injected(1);
    bench_case(c, "injected", &injected.request());
    let mut benign = ExportTraceServiceRequest::default();
    for seed in 0..64 {
        benign
            .resource_spans
            .extend(common::benign(seed).request().resource_spans);
    }
    bench_case(c, "benign x64", &benign);
    bench_case(c, "kernel-only x1024", &kernel_only());
}

/// Kernel events of undeclared processes.
fn kernel_events(mixed: bool) -> Vec<runbom_event::KernelEvent> {
    use runbom_event::Detail;
    use runbom_testkit::shadow_run::{connect, event, process};
    let t0 = common::T0;
    let mut events = Vec::new();
    if mixed {
        for proc in 0..8u32 {
            let p = process(7000 + proc, 1, &format!("/usr/bin/worker{proc}"));
            for i in 0..128u32 {
                let at = t0 + u64::from(i) * 1_000;
                let detail = match i % 8 {
                    0 => connect(5432),
                    4 => Detail::Exec {
                        path: format!("/usr/bin/tool{i}"),
                        argv_truncated: false,
                    },
                    _ => Detail::FileOpen {
                        path: format!("/srv/data/{proc}/file{i}.csv"),
                        flags: 0,
                        error: None,
                    },
                };
                events.push(event(&p, at, detail));
            }
        }
    } else {
        let p = process(7100, 1, "/usr/bin/python3.12");
        for i in 0..1024u64 {
            events.push(event(
                &p,
                t0 + i * 1_000,
                Detail::FileOpen {
                    path: "/tmp/bench/watched.txt".into(),
                    flags: 0,
                    error: None,
                },
            ));
        }
    }
    events
}

fn kernel_options() -> runbom_otlp::ConvertOptions {
    runbom_otlp::ConvertOptions {
        host_name: "node".into(),
        uncorrelated_spans: false,
    }
}

/// Kernel log records of undeclared processes, converted as the correlation did before it
/// sent them as the events.
fn kernel_logs(mixed: bool) -> ExportLogsServiceRequest {
    runbom_otlp::convert(&kernel_events(mixed), &[], &kernel_options()).logs
}

/// The same records from the events to OTLP/JSON (what the `file` exporter writes) in both
/// ways: built, judged and written from the built request; judged and written as the events.
fn kernel_events_case(c: &mut Criterion, name: &str, mixed: bool) {
    use runbom_otlp::{KernelLogs, json::write::write_logs};
    let bom = common::bom();
    let logs = KernelLogs::new(kernel_events(mixed), std::sync::Arc::new(kernel_options()));
    let mut group = c.benchmark_group("aibom kernel logs");
    group.throughput(Throughput::Elements(logs.len() as u64));
    let mut out = Vec::new();
    let mut p = Processor::new(settings());
    group.bench_function(format!("{name}, built, judged, JSON"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let input = logs.clone();
                let start = thread_cpu();
                let mut request = input.to_request();
                p.judge_logs(&mut request, Instant::now(), &bom);
                out.clear();
                write_logs(&request, &mut out);
                drop(black_box(request));
                total += thread_cpu().saturating_sub(start);
                drop(black_box(input));
            }
            total
        });
    });
    let mut p = Processor::new(settings());
    group.bench_function(format!("{name}, judged as events, JSON"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut input = logs.clone();
                let start = thread_cpu();
                p.judge_kernel_logs(&mut input, Instant::now(), &bom);
                out.clear();
                input.write_json(&mut out);
                total += thread_cpu().saturating_sub(start);
                drop(black_box(input));
            }
            total
        });
    });
    group.finish();
}

fn kernel_logs_case(c: &mut Criterion, name: &str, req: &ExportLogsServiceRequest) {
    let bom = common::bom();
    let records: u64 = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum();
    let mut group = c.benchmark_group("aibom kernel logs");
    group.throughput(Throughput::Elements(records));
    let mut p = Processor::new(settings());
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut input = req.clone();
                let start = thread_cpu();
                p.judge_logs(&mut input, Instant::now(), &bom);
                total += thread_cpu().saturating_sub(start);
                drop(black_box(input));
            }
            total
        });
    });
    group.finish();
}

/// `mixed x1024` with processes 0–3 placed in an application's trace (0 and 1 `inferred`),
/// judged as the events once: the batch the correlate and `aibom` stages hand the exporter.
fn judged_kernel_logs() -> runbom_otlp::KernelLogs {
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use runbom_event::semconv::correlation;
    use runbom_otlp::{KernelLogs, Placement, placed_span_ids};
    use std::sync::Arc;
    let events = kernel_events(true);
    let resource = Arc::new(Resource {
        attributes: vec![kv_str("service.name", "support-agent")],
        ..Resource::default()
    });
    let placements: Vec<Option<Placement>> = events
        .iter()
        .map(|ev| {
            let proc = ev.process.pid - 7000;
            (proc < 4).then(|| Placement {
                trace_id: [0x11; 16],
                parent_span_id: [0x22; 8],
                resource: resource.clone(),
                method: if proc < 2 {
                    correlation::INFERRED
                } else {
                    correlation::THREAD
                },
                confidence: if proc < 2 {
                    correlation::LOW
                } else {
                    correlation::HIGH
                },
            })
        })
        .collect();
    let opts = Arc::new(kernel_options());
    let ids = placed_span_ids(&events, &placements, &opts);
    let mut logs = KernelLogs::placed(events, ids, placements, opts);
    Processor::new(settings()).judge_kernel_logs(&mut logs, Instant::now(), &common::bom());
    let judged = (0..logs.len()).filter(|&i| !logs.appended(i).is_empty());
    assert_eq!(
        judged.count(),
        768,
        "the unplaced and inferred records judged"
    );
    logs
}

fn kernel_written(c: &mut Criterion) {
    let logs = judged_kernel_logs();
    let mut group = c.benchmark_group("aibom kernel logs written");
    group.throughput(Throughput::Elements(logs.len() as u64));
    let mut out = Vec::with_capacity(4 << 20);
    for (name, write) in [
        (
            "mixed x1024, placed and judged, protobuf",
            runbom_otlp::KernelLogs::write_protobuf as fn(&runbom_otlp::KernelLogs, &mut Vec<u8>),
        ),
        (
            "mixed x1024, placed and judged, JSON",
            runbom_otlp::KernelLogs::write_json,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu();
                for _ in 0..iters {
                    out.clear();
                    write(black_box(&logs), &mut out);
                }
                thread_cpu().saturating_sub(start)
            });
        });
    }
    group.finish();
}

fn kernel(c: &mut Criterion) {
    kernel_logs_case(c, "opens x1024", &kernel_logs(false));
    kernel_logs_case(c, "mixed x1024", &kernel_logs(true));
    kernel_events_case(c, "opens x1024", false);
    kernel_events_case(c, "mixed x1024", true);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = processor, share, kernel, kernel_written
}
criterion_main!(benches);

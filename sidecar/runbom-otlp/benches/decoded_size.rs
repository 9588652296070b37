//! What the receivers' check of a request's decoded size costs beside decoding it: the
//! estimate ([`runbom_otlp::decoded_size`]) and the decoding, of the same request of `GenAI`
//! spans as `runbom-loadgen` sends them, about 1 MiB of protobuf (and the same request in
//! OTLP/JSON, about 2.5 MiB). Time is the benchmark thread's CPU time; the ratio estimate /
//! decode is what the check adds to a request's decoding.

// Criterion's macros generate undocumented items; the ratios printed are of sizes far below 2^52.
#![allow(missing_docs, clippy::cast_precision_loss)]

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use runbom_otlp::{decoded_size, json, signal::SignalKind};
use runbom_testkit::cpu::cpu_time;

/// Spans in the request: about 1 MiB of protobuf.
const SPANS: usize = 2_500;

fn bench(c: &mut Criterion) {
    let request = runbom_loadgen::genai::request(SPANS);
    let protobuf = request.encode_to_vec();
    let otlp_json = serde_json::to_vec(&request).expect("the request serialises");
    for (what, bytes, estimate) in [
        (
            "protobuf",
            &protobuf,
            decoded_size::protobuf(SignalKind::Traces, &protobuf),
        ),
        (
            "OTLP/JSON",
            &otlp_json,
            decoded_size::json(SignalKind::Traces, &otlp_json),
        ),
    ] {
        eprintln!(
            "{SPANS} spans, {what}: {} bytes, estimated {} decoded ({:.1} per byte)",
            bytes.len(),
            estimate.bytes,
            estimate.bytes as f64 / bytes.len() as f64
        );
    }

    let mut group = c.benchmark_group("decoded_size");
    group.throughput(Throughput::Bytes(protobuf.len() as u64));
    group.bench_function("genai_1mib/protobuf_estimate", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                black_box(decoded_size::protobuf(
                    SignalKind::Traces,
                    black_box(&protobuf),
                ));
            })
        });
    });
    group.bench_function("genai_1mib/protobuf_decode", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                black_box(
                    ExportTraceServiceRequest::decode(black_box(protobuf.as_slice())).is_ok(),
                );
            })
        });
    });
    group.throughput(Throughput::Bytes(otlp_json.len() as u64));
    group.bench_function("genai_1mib/json_estimate", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                black_box(decoded_size::json(
                    SignalKind::Traces,
                    black_box(&otlp_json),
                ));
            })
        });
    });
    group.bench_function("genai_1mib/json_decode", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                black_box(json::decode(SignalKind::Traces, black_box(&otlp_json)).is_ok());
            })
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);

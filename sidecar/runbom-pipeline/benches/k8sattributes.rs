//! Cost of the `k8sattributes` processor per request: 512 kernel-event resources (the ebpf
//! receiver's request size) of 64 processes in 16 pods (3 labels each, a Deployment owner),
//! each resource given its pod's attributes, next to what the pipeline pays for the same
//! request anyway: its protobuf encoding for export (`encode`). The cgroup of each pid is read
//! from a scratch `/proc` once and then cached, as in `runbom run`.
//!
//!     cargo bench -p runbom-pipeline --bench k8sattributes

// Criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::{
    collections::BTreeMap,
    hint::black_box,
    sync::{Arc, RwLock},
};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, resource::v1::Resource,
    trace::v1::ResourceSpans,
};
use prost::Message as _;
use runbom_aibom::otlp::{kv_int, kv_str};
use runbom_k8s::{ContainerMeta, Owner, PodIndex, PodMeta, Resolver};
use runbom_otlp::signal::Signal;
use runbom_pipeline::processor::k8sattributes::annotate;

const PODS: usize = 16;
const PIDS: usize = 64;
const RESOURCES: usize = 512;

fn id(i: usize) -> String {
    format!("{i:064x}")
}

fn uid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

fn setup() -> (Resolver, Signal, std::path::PathBuf) {
    let proc_root = std::env::temp_dir().join(format!("runbom-bench-k8s-{}", std::process::id()));
    let mut index = PodIndex::default();
    for p in 0..PODS {
        index.apply(PodMeta {
            uid: uid(p),
            name: format!("support-agent-7d9f8b6c5d-{p:05}"),
            namespace: "agents".into(),
            node: Some("node-1".into()),
            service_account: Some("support-agent".into()),
            labels: BTreeMap::from([
                ("app".into(), "support-agent".into()),
                ("pod-template-hash".into(), "7d9f8b6c5d".into()),
                ("team".into(), "support".into()),
            ]),
            owner: Some(Owner::Deployment {
                replicaset: "support-agent-7d9f8b6c5d".into(),
                name: "support-agent".into(),
            }),
            containers: vec![ContainerMeta {
                name: "agent".into(),
                image_name: Some("registry.example/support-agent".into()),
                image_tag: Some("1.4.2".into()),
                id: Some(id(p)),
            }],
        });
    }
    for pid in 0..PIDS {
        let p = pid % PODS;
        let dir = proc_root.join((1000 + pid).to_string());
        std::fs::create_dir_all(&dir).expect("scratch /proc");
        let uid_ = uid(p).replace('-', "_");
        std::fs::write(
            dir.join("cgroup"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{}.scope\n",
                id(p)
            ),
        )
        .expect("cgroup file");
    }
    let resolver = Resolver::with_proc_root(Arc::new(RwLock::new(index)), proc_root.clone());
    let resource_spans = (0..RESOURCES)
        .map(|i| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("service.name", "python3"),
                    kv_str("host.name", "node-1"),
                    kv_int("process.pid", (1000 + i % PIDS) as i64),
                    kv_str("process.executable.path", "/usr/bin/python3"),
                    kv_str("container.id", &id(i % PIDS % PODS)),
                ],
                ..Resource::default()
            }),
            ..ResourceSpans::default()
        })
        .collect();
    let signal = Signal::Traces(ExportTraceServiceRequest { resource_spans });
    (resolver, signal, proc_root)
}

fn bench(c: &mut Criterion) {
    let (resolver, signal, proc_root) = setup();
    let mut warm = signal.clone();
    let _ = annotate(&resolver, &mut warm); // the cgroup cache, as after the first requests
    let Signal::Traces(req) = &signal else {
        unreachable!()
    };
    let mut g = c.benchmark_group("k8sattributes x512 resources");
    g.throughput(Throughput::Elements(RESOURCES as u64));
    g.bench_function("annotate", |b| {
        b.iter_batched(
            || signal.clone(),
            |mut s| {
                black_box(annotate(&resolver, &mut s));
                s
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("encode (peer)", |b| {
        b.iter(|| black_box(req.encode_to_vec()));
    });
    g.finish();
    let _ = std::fs::remove_dir_all(proc_root);
}

criterion_group!(benches, bench);
criterion_main!(benches);

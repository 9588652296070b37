//! Kernel log records and spans written from the events (`Signal::KernelLogs`,
//! `Signal::KernelSpans`: what the ebpf receiver pushes, log records with the ids of their
//! events' spans or without spans) through real pipelines: merged by `batch`, built for a
//! processor that reads them (`k8sattributes`), written by the `file`, `otlp` and `otlphttp`
//! exporters (into runbom's own OTLP receivers, served in this test), through a persistent
//! queue, and skipped by `nop` and `debug`. Every record and span must arrive exactly once
//! wherever it goes, identical to what the typed path (`convert`, `convert_spans`) builds from
//! the same event, each log record pointing at the span whose id it was given.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, common::v1::InstrumentationScope,
    logs::v1::LogRecord, resource::v1::Resource,
};
use prost::Message;
use runbom_event::{Detail, KernelEvent, ProcessInfo};
use runbom_otlp::{
    ConvertOptions, KernelLogs, KernelSpans, convert, convert_spans, json, span_ids,
};
use runbom_pipeline::{
    GraphSettings, PipelineSpec, ProcessorSpec, Signal, SignalKind, Telemetry,
    exporter::{
        BoxExporter, DebugExporter, FileExporter, GrpcExporter, HttpExporter, NetworkSettings,
        RetryPolicy, Verbosity, nop::NopExporter,
    },
    extension::file_storage::{PersistentQueues, StorageSettings},
    graph::Graph,
    processor::{batch::BatchSettings, k8sattributes::K8sSpec},
    receiver::Limits,
    transport::tls::ClientTlsSettings,
};
use runbom_testkit::{
    TempDir,
    harness::Harness,
    shadow_run::{connect, event, process, request},
};
use tokio_util::sync::CancellationToken;

/// One log record or span where it arrived: its resource, scope and record, each as protobuf.
type Record = (Vec<u8>, Vec<u8>, Vec<u8>);

/// How many times each log record or span arrived.
fn records(requests: impl IntoIterator<Item = Signal>) -> BTreeMap<Record, usize> {
    let mut seen = BTreeMap::new();
    let mut count =
        |resource: &Option<Resource>, scope: &Option<InstrumentationScope>, items: Vec<Vec<u8>>| {
            let resource = resource.clone().unwrap_or_default().encode_to_vec();
            let scope = scope.clone().unwrap_or_default().encode_to_vec();
            for item in items {
                *seen
                    .entry((resource.clone(), scope.clone(), item))
                    .or_default() += 1;
            }
        };
    for signal in requests {
        match signal.into_typed() {
            Signal::Logs(request) => {
                for r in request.resource_logs {
                    for s in r.scope_logs {
                        let items = s.log_records.iter().map(Message::encode_to_vec).collect();
                        count(&r.resource, &s.scope, items);
                    }
                }
            }
            Signal::Traces(request) => {
                for r in request.resource_spans {
                    for s in r.scope_spans {
                        let items = s.spans.iter().map(Message::encode_to_vec).collect();
                        count(&r.resource, &s.scope, items);
                    }
                }
            }
            _ => panic!("a pipeline carried another signal"),
        }
    }
    seen
}

/// The requests of a `file` exporter's `logs.jsonl` or `traces.jsonl`.
fn file_requests(dir: &Path, kind: SignalKind) -> Vec<Signal> {
    let path = dir.join(format!("{}.jsonl", kind.as_str()));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            json::decode(kind, line.as_bytes())
                .unwrap_or_else(|e| panic!("{}: a line that is not OTLP/JSON: {e}", path.display()))
        })
        .collect()
}

/// `rounds` batches of events of five processes, every event kind the contract logs.
fn batches(rounds: u64) -> Vec<Vec<KernelEvent>> {
    let processes: Vec<_> = (0..5u8)
        .map(|i| {
            let p = process(7100 + u32::from(i), 1, &format!("/usr/bin/agent-{i}"));
            // A trace of its own, as the process table gives: receivers drop spans in the
            // all-zero trace.
            Arc::new(ProcessInfo {
                trace_id: [i + 1; 16],
                ..(*p).clone()
            })
        })
        .collect();
    let mut t = 1_800_000_000_000_000_000;
    (0..rounds)
        .map(|round| {
            (0..300)
                .map(|i| {
                    t += 1_000;
                    let p = &processes[(i + round as usize) % processes.len()];
                    let detail = match i % 5 {
                        0 => connect(18_443),
                        1 => request(18_443, "POST", "/v1/chat/completions", Some("gpt-4o")),
                        2 => Detail::FileOpen {
                            path: format!("/srv/data/{round}-{i}.csv"),
                            flags: 0,
                            error: (i % 2 == 0).then_some("ENOENT"),
                        },
                        3 => Detail::DnsQuery {
                            name: "api.openai.com".into(),
                            qtype: "AAAA",
                            server: "127.0.0.53:53".parse().expect("address"),
                        },
                        _ => Detail::Exit { code: Some(0) },
                    };
                    event(p, t, detail)
                })
                .collect()
        })
        .collect()
}

/// Events and their span ids: six batches, every other one with the ids of its events' spans
/// (as with `uncorrelated_spans`).
type Batches = Vec<(Vec<KernelEvent>, Vec<Option<[u8; 8]>>)>;

/// [`batches`] of six rounds, every other one with span ids, and the records the typed path
/// makes of them: `convert`'s, or with span ids given, those `KernelLogs` builds for a
/// processor that reads them (shown equal to `convert`'s, span ids aside, in `runbom-otlp`).
fn batches_with_span_ids(opts: &Arc<ConvertOptions>) -> (Batches, BTreeMap<Record, usize>) {
    let batches: Batches = batches(6)
        .into_iter()
        .enumerate()
        .map(|(i, events)| {
            let ids = if i % 2 == 0 {
                span_ids(&events)
            } else {
                Vec::new()
            };
            (events, ids)
        })
        .collect();
    let typed: Vec<Signal> = batches
        .iter()
        .map(|(events, ids)| {
            Signal::Logs(if ids.is_empty() {
                convert(events, &[], opts).logs
            } else {
                KernelLogs::with_spans(events.clone(), ids.clone(), opts.clone()).to_request()
            })
        })
        .collect();
    let want = records(typed);
    assert_eq!(want.len(), 6 * 300, "every event makes a distinct record");
    assert!(want.values().all(|&n| n == 1));
    let pointing = want
        .keys()
        .filter(|(_, _, r)| {
            let r = LogRecord::decode(&r[..]).expect("record");
            !r.span_id.is_empty() && !r.trace_id.is_empty()
        })
        .count();
    assert_eq!(
        pointing,
        3 * 300 * 4 / 5,
        "every record of a span points at it"
    );
    (batches, want)
}

fn network(endpoint: String) -> NetworkSettings {
    NetworkSettings {
        endpoint,
        headers: BTreeMap::new(),
        gzip: true,
        timeout: Duration::from_secs(10),
        tls: ClientTlsSettings {
            insecure: true,
            ..ClientTlsSettings::default()
        },
        retry: RetryPolicy::default(),
        retries: Arc::default(),
    }
}

fn spec(
    name: &str,
    signal: SignalKind,
    processors: Vec<ProcessorSpec>,
    exporters: &[&str],
) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        signal,
        receivers: vec!["ebpf".into()],
        processors,
        exporters: exporters.iter().map(|&e| e.to_owned()).collect(),
    }
}

/// `signals` (of `kind`, as the ebpf receiver pushes them) through a pipeline with `batch`
/// into the `file`, `otlp`, `otlphttp`, `nop` and `debug` exporters and a `file` behind a
/// persistent queue, and one with `k8sattributes` (which builds them) and `batch` into a
/// `file`: each must have got `want`, the OTLP receivers `want` twice.
async fn through_pipelines(kind: SignalKind, signals: Vec<Signal>, want: &BTreeMap<Record, usize>) {
    let dir = TempDir::new("kernel-records");
    let mut sink = Harness::new(&[kind], 1024, Duration::from_secs(10));
    // As a gateway behind runbom receives: runbom's own attributes are taken as they are.
    let gateway = Limits {
        trust_runbom_attributes: true,
        ..Limits::default()
    };
    let (grpc, _) = sink.start_grpc(gateway).await;
    let (http, _) = sink.start_http(gateway).await;

    let batch = ProcessorSpec::Batch(BatchSettings {
        send_batch_size: 700,
        send_batch_max_size: 0,
        timeout: Duration::from_millis(50),
    });
    let k8s = ProcessorSpec::K8sAttributes(K8sSpec {
        name: "k8sattributes".into(),
        // No cluster here: the processor reads every resource and finds no pod.
        auth: runbom_k8s::Auth::KubeConfig(Some(dir.path().join("no-kubeconfig"))),
        node: "node-1".into(),
        wait: None,
    });
    let specs = [
        spec(
            kind.as_str(),
            kind,
            vec![batch.clone()],
            &["file", "otlp", "otlphttp", "nop", "debug", "file/queued"],
        ),
        spec(
            &format!("{}/typed", kind.as_str()),
            kind,
            vec![k8s, batch],
            &["file/typed"],
        ),
    ];
    let mut queues = PersistentQueues::new();
    queues.insert(
        "file/queued".into(),
        StorageSettings {
            directory: dir.path().join("queue"),
            fsync: false,
            max_bytes: 64 << 20,
            consumers: 1,
        },
    );
    let out = |name: &str| dir.path().join(name.replace('/', "-"));
    let stop = CancellationToken::new();
    let mut graph = Graph::build_with_queues(
        &specs,
        (GraphSettings::default(), &queues),
        Arc::new(Telemetry::default()),
        &stop,
        |name, _, _| -> Result<BoxExporter, _> {
            Ok(match name {
                "otlp" => Box::new(GrpcExporter::new(network(format!("http://{grpc}")))?),
                "otlphttp" => Box::new(HttpExporter::new(network(format!("http://{http}")))?),
                "nop" => Box::new(NopExporter),
                "debug" => Box::new(DebugExporter {
                    verbosity: Verbosity::Basic,
                }),
                file => Box::new(FileExporter::new(&out(file))?),
            })
        },
    )
    .expect("the pipelines start");
    let ingest = graph
        .take_ingest("ebpf")
        .expect("the ebpf receiver's ingest");
    for signal in signals {
        ingest.push_waiting(signal).await;
    }
    drop(ingest);
    graph.drain(Duration::from_secs(30)).await;

    for file in ["file", "file/typed", "file/queued"] {
        let got = records(file_requests(&out(file), kind));
        assert!(
            got == *want,
            "{file}: the records differ from the typed path's"
        );
    }
    let mut received = Vec::new();
    let arrived = match kind {
        SignalKind::Logs => &mut sink.logs,
        _ => &mut sink.traces,
    };
    while let Ok(signal) = arrived.try_recv() {
        received.push(signal);
    }
    // Sent twice, by `otlp` and by `otlphttp`.
    let twice: BTreeMap<Record, usize> = want.keys().map(|k| (k.clone(), 2)).collect();
    let got = records(received);
    assert!(
        got == twice,
        "the OTLP receivers did not get every record once from each exporter"
    );
}

fn opts() -> Arc<ConvertOptions> {
    Arc::new(ConvertOptions {
        host_name: "node-1".into(),
        uncorrelated_spans: false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_log_records_arrive_once_everywhere_as_the_typed_path_builds_them() {
    let opts = opts();
    let (batches, want) = batches_with_span_ids(&opts);
    let signals = batches
        .into_iter()
        .map(|(events, ids)| Signal::KernelLogs(KernelLogs::with_spans(events, ids, opts.clone())))
        .collect();
    through_pipelines(SignalKind::Logs, signals, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_spans_arrive_once_everywhere_as_the_typed_path_builds_them() {
    let opts = opts();
    let (batches, _) = batches_with_span_ids(&opts);
    let typed = batches
        .iter()
        .map(|(events, ids)| Signal::Traces(convert_spans(events, ids, &opts)));
    let want = records(typed);
    assert_eq!(want.len(), 3 * 300 * 4 / 5, "a span per event but an exit");
    assert!(want.values().all(|&n| n == 1));
    let signals = batches
        .into_iter()
        .map(|(events, ids)| {
            let logs = KernelLogs::with_spans(events, ids, opts.clone());
            Signal::KernelSpans(KernelSpans::of(logs))
        })
        .collect();
    through_pipelines(SignalKind::Traces, signals, &want).await;
}

/// Kernel log records merged (as `batch` merges them) write the records of the requests
/// they were made of, in each process's order; mixed with built log records, both are built.
#[test]
fn merged_kernel_log_records_are_the_typed_requests_records() {
    let opts = opts();
    let [a, b, c]: [Vec<KernelEvent>; 3] = batches(3).try_into().expect("three batches");
    let typed = |events: &[KernelEvent]| convert(events, &[], &opts).logs;
    let mut merged = Signal::KernelLogs(KernelLogs::new(a.clone(), opts.clone()));
    merged
        .merge(Signal::KernelLogs(KernelLogs::new(b.clone(), opts.clone())))
        .expect("kernel log records merge");
    assert!(matches!(merged, Signal::KernelLogs(_)), "still events");
    assert_eq!(merged.item_count(), 600);
    merged
        .merge(Signal::Logs(typed(&c)))
        .expect("log records merge");
    assert!(matches!(merged, Signal::Logs(_)), "built once mixed");
    let want: Vec<Signal> = [&a, &b, &c]
        .into_iter()
        .map(|e| Signal::Logs(typed(e)))
        .collect();
    assert!(records([merged]) == records(want));

    // A process's records keep their order across the merged requests.
    let mut merged = Signal::KernelLogs(KernelLogs::new(a.clone(), opts.clone()));
    merged
        .merge(Signal::KernelLogs(KernelLogs::new(b.clone(), opts.clone())))
        .expect("kernel log records merge");
    let Signal::Logs(ExportLogsServiceRequest { resource_logs }) = merged.into_typed() else {
        unreachable!()
    };
    for r in &resource_logs {
        let times: Vec<u64> = r
            .scope_logs
            .iter()
            .flat_map(|s| &s.log_records)
            .map(|l| l.time_unix_nano)
            .collect();
        assert!(times.is_sorted(), "a process's records out of order");
    }
    assert_eq!(resource_logs.len(), 5, "one resource per process");
}

/// Kernel spans merged as `batch` merges them stay events while they meet kernel spans, and
/// are built once mixed with built spans: the spans of the requests they were made of.
#[test]
fn merged_kernel_spans_are_the_typed_requests_spans() {
    let opts = opts();
    let [a, b, c]: [Vec<KernelEvent>; 3] = batches(3).try_into().expect("three batches");
    let ids = [&a, &b, &c].map(|events| span_ids(events));
    let spans = |events: &[KernelEvent], ids: &[Option<[u8; 8]>]| {
        let logs = KernelLogs::with_spans(events.to_vec(), ids.to_vec(), opts.clone());
        Signal::KernelSpans(KernelSpans::of(logs))
    };
    let mut merged = spans(&a, &ids[0]);
    merged
        .merge(spans(&b, &ids[1]))
        .expect("kernel spans merge");
    assert!(matches!(merged, Signal::KernelSpans(_)), "still events");
    assert_eq!(merged.item_count(), 2 * 300 * 4 / 5);
    merged
        .merge(Signal::Traces(convert_spans(&c, &ids[2], &opts)))
        .expect("spans merge");
    assert!(matches!(merged, Signal::Traces(_)), "built once mixed");
    let want = [(&a, &ids[0]), (&b, &ids[1]), (&c, &ids[2])]
        .map(|(events, ids)| Signal::Traces(convert_spans(events, ids, &opts)));
    assert!(records([merged]) == records(want));

    let logs = Signal::KernelLogs(KernelLogs::new(a.clone(), opts.clone()));
    assert!(
        spans(&a, &ids[0]).merge(logs).is_err(),
        "spans take no log records"
    );
}

//! Kernel log records written from the events (`Signal::KernelLogs`, what the ebpf receiver
//! pushes, with the ids of its events' spans or without spans) through real pipelines: merged by `batch`, built into log records for
//! a processor that reads them (`k8sattributes`), written by the `file`, `otlp` and `otlphttp`
//! exporters (into runbom's own OTLP receivers, served in this test), through a persistent queue, and skipped by
//! `nop` and `debug`. Every record must arrive exactly once wherever it goes, identical to the
//! log record the typed path (`convert`) builds from the same event, and pointing at the span
//! whose id it was given.

use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, logs::v1::LogRecord,
};
use prost::Message as _;
use runbom_event::{Detail, KernelEvent};
use runbom_otlp::{ConvertOptions, KernelLogs, convert, json, span_ids};
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

/// One log record where it arrived: its resource, scope and record, each as protobuf.
type Record = (Vec<u8>, Vec<u8>, Vec<u8>);

/// How many times each record arrived.
fn records(requests: impl IntoIterator<Item = Signal>) -> BTreeMap<Record, usize> {
    let mut seen = BTreeMap::new();
    for signal in requests {
        let Signal::Logs(request) = signal.into_typed() else {
            panic!("a logs pipeline carried another signal")
        };
        for r in request.resource_logs {
            let resource = r.resource.unwrap_or_default().encode_to_vec();
            for s in r.scope_logs {
                let scope = s.scope.unwrap_or_default().encode_to_vec();
                for record in s.log_records {
                    let key = (resource.clone(), scope.clone(), record.encode_to_vec());
                    *seen.entry(key).or_default() += 1;
                }
            }
        }
    }
    seen
}

/// The requests of a `file` exporter's `logs.jsonl`.
fn file_requests(dir: &Path) -> Vec<Signal> {
    let text = std::fs::read_to_string(dir.join("logs.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    text.lines()
        .map(|line| {
            json::decode(SignalKind::Logs, line.as_bytes())
                .unwrap_or_else(|e| panic!("{}: a line that is not OTLP/JSON: {e}", dir.display()))
        })
        .collect()
}

/// `rounds` batches of events of five processes, every event kind the contract logs.
fn batches(rounds: u64) -> Vec<Vec<KernelEvent>> {
    let processes: Vec<_> = (0..5)
        .map(|i| process(7100 + i, 1, &format!("/usr/bin/agent-{i}")))
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

fn spec(name: &str, processors: Vec<ProcessorSpec>, exporters: &[&str]) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        signal: SignalKind::Logs,
        receivers: vec!["ebpf".into()],
        processors,
        exporters: exporters.iter().map(|&e| e.to_owned()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_log_records_arrive_once_everywhere_as_the_typed_path_builds_them() {
    let dir = TempDir::new("kernel-logs");
    let mut sink = Harness::new(&[SignalKind::Logs], 1024, Duration::from_secs(10));
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
            "logs",
            vec![batch.clone()],
            &["file", "otlp", "otlphttp", "nop", "debug", "file/queued"],
        ),
        spec("logs/typed", vec![k8s, batch], &["file/typed"]),
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

    let opts = Arc::new(ConvertOptions {
        host_name: "node-1".into(),
        uncorrelated_spans: false,
    });
    let (batches, want) = batches_with_span_ids(&opts);
    for (events, ids) in batches {
        let logs = Signal::KernelLogs(KernelLogs::with_spans(events, ids, opts.clone()));
        ingest.push_waiting(logs).await;
    }
    drop(ingest);
    graph.drain(Duration::from_secs(30)).await;

    for file in ["file", "file/typed", "file/queued"] {
        let got = records(file_requests(&out(file)));
        assert!(
            got == want,
            "{file}: the records differ from the typed path's"
        );
    }
    let mut received = Vec::new();
    while let Ok(signal) = sink.logs.try_recv() {
        received.push(signal);
    }
    // Sent twice, by `otlp` and by `otlphttp`.
    let twice: BTreeMap<Record, usize> = want.keys().map(|k| (k.clone(), 2)).collect();
    assert!(
        records(received) == twice,
        "the OTLP receivers did not get every record once from each exporter"
    );
}

/// Kernel log records merged (as `batch` merges them) write the records of the requests
/// they were made of, in each process's order; mixed with built log records, both are built.
#[test]
fn merged_kernel_log_records_are_the_typed_requests_records() {
    let opts = Arc::new(ConvertOptions {
        host_name: "node-1".into(),
        uncorrelated_spans: false,
    });
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

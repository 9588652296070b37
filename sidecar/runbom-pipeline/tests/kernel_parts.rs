//! Requests of kernel events larger than a receiver takes (4 MiB: gRPC's default, and what
//! runbom's own OTLP receivers take by default) sent by the `otlp` and `otlphttp` exporters:
//! the first written whole and cut on the wire, the next in parts written from the events,
//! sized by what the first took. Every log record and span must arrive once from each
//! exporter, no part refused.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use runbom_otlp::{ConvertOptions, KernelLogs, KernelSpans, span_ids};
use runbom_pipeline::{
    Signal, SignalKind,
    exporter::{GrpcExporter, HttpExporter, NetworkSettings, RetryPolicy},
    receiver::Limits,
    transport::tls::ClientTlsSettings,
};
use runbom_testkit::{harness::Harness, random_events::RandomEvents};

fn network(endpoint: String) -> NetworkSettings {
    NetworkSettings {
        endpoint,
        headers: BTreeMap::new(),
        gzip: false,
        timeout: Duration::from_secs(30),
        tls: ClientTlsSettings {
            insecure: true,
            ..ClientTlsSettings::default()
        },
        retry: RetryPolicy::default(),
        retries: Arc::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_kernel_requests_arrive_whole_in_parts() {
    let kinds = [SignalKind::Logs, SignalKind::Traces];
    let mut sink = Harness::new(&kinds, 1024, Duration::from_secs(30));
    let limits = Limits {
        trust_runbom_attributes: true,
        ..Limits::default()
    };
    let (grpc, _) = sink.start_grpc(limits).await;
    let (http, _) = sink.start_http(limits).await;
    let mut otlp = GrpcExporter::new(network(format!("http://{grpc}"))).expect("otlp");
    let mut otlphttp = HttpExporter::new(network(format!("http://{http}"))).expect("otlphttp");
    let opts = Arc::new(ConvertOptions {
        host_name: "node-1".into(),
        uncorrelated_spans: true,
    });
    let mut random = RandomEvents::new(5, 3);
    let mut want = BTreeMap::from([(SignalKind::Logs, 0), (SignalKind::Traces, 0)]);
    for round in 0..3 {
        let events = random.realistic(16_000);
        let ids = span_ids(&events);
        let logs = KernelLogs::with_spans(events, ids, opts.clone());
        let spans = Signal::KernelSpans(KernelSpans::of(logs.clone()));
        for signal in [Signal::KernelLogs(logs), spans] {
            assert!(
                signal.to_protobuf().len() > 4 << 20,
                "round {round}: a {:?} request larger than a receiver takes",
                signal.kind()
            );
            // Receivers take no span of the all-zero trace (the test kit's first process's).
            let taken = match &signal {
                Signal::KernelSpans(k) => k
                    .to_request()
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .filter(|s| s.trace_id.iter().any(|&b| b != 0))
                    .count(),
                other => other.item_count(),
            };
            *want.get_mut(&signal.kind()).expect("a kind") += taken;
            otlp.export(&signal).await.expect("otlp: every part taken");
            otlphttp
                .export(&signal)
                .await
                .expect("otlphttp: every part taken");
        }
    }
    let mut got = BTreeMap::from([(SignalKind::Logs, 0), (SignalKind::Traces, 0)]);
    for rx in [&mut sink.logs, &mut sink.traces] {
        while let Ok(signal) = rx.try_recv() {
            *got.get_mut(&signal.kind()).expect("a kind") += signal.item_count();
        }
    }
    let twice: BTreeMap<_, _> = want.iter().map(|(k, n)| (*k, 2 * n)).collect();
    assert_eq!(got, twice, "every record once from each exporter");
}

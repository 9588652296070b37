//! runbom's own encoders write what the references write, byte for byte: `encode` prost's
//! protobuf, `json::write` `serde_json`'s OTLP/JSON. On the test kit's sample requests, on
//! kernel events as `convert` turns them into requests, and on random requests of every shape.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest,
};
use prost::Message as _;
use runbom_otlp::{
    encode::{encode_logs, encode_traces},
    json::write::{write_logs, write_traces},
    signal::Signal,
};
use runbom_testkit::{random::RandomRequests, requests};

fn traces(r: &ExportTraceServiceRequest) {
    let mut out = Vec::new();
    encode_traces(r, &mut out);
    assert_eq!(out, r.encode_to_vec(), "{r:?}");
    // Appended after what the buffer held.
    let mut after = b"prefix".to_vec();
    encode_traces(r, &mut after);
    assert_eq!(&after[6..], &out[..]);
    assert_eq!(Signal::Traces(r.clone()).to_protobuf(), out);

    let mut json = Vec::new();
    write_traces(r, &mut json);
    same_json(&json, &serde_json::to_vec(r).expect("serializes"));
}

fn logs(r: &ExportLogsServiceRequest) {
    let mut out = Vec::new();
    encode_logs(r, &mut out);
    assert_eq!(out, r.encode_to_vec(), "{r:?}");
    assert_eq!(Signal::Logs(r.clone()).to_protobuf(), out);

    let mut json = Vec::new();
    write_logs(r, &mut json);
    same_json(&json, &serde_json::to_vec(r).expect("serializes"));
}

fn same_json(ours: &[u8], serde: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(ours),
        String::from_utf8_lossy(serde),
        "OTLP/JSON differs from serde_json's"
    );
}

#[test]
fn sample_requests_encode_as_prost_does() {
    traces(&requests::sample_traces());
    logs(&requests::sample_logs());
    traces(&ExportTraceServiceRequest::default());
    logs(&ExportLogsServiceRequest::default());
    let metrics = requests::sample_metrics();
    assert_eq!(
        Signal::Metrics(metrics.clone()).to_protobuf(),
        metrics.encode_to_vec()
    );
    let mut json = Vec::new();
    Signal::Metrics(metrics.clone())
        .write_json(&mut json)
        .expect("serializes");
    same_json(&json, &serde_json::to_vec(&metrics).expect("serializes"));
}

/// One event of each common kind, over two processes.
fn kernel_events() -> Vec<runbom_event::KernelEvent> {
    use runbom_event::Detail;
    use runbom_testkit::shadow_run::{event, process, request};
    let (a, b) = (
        process(40, 1, "/usr/bin/python3"),
        process(41, 40, "/bin/sh"),
    );
    vec![
        event(
            &a,
            1,
            Detail::Exec {
                path: "/usr/bin/python3".into(),
                argv_truncated: true,
            },
        ),
        event(
            &a,
            2,
            Detail::FileOpen {
                path: "/home/a/\"x\".json".into(),
                flags: 0o1101,
                error: None,
            },
        ),
        event(
            &b,
            3,
            Detail::FileOpen {
                path: "/etc/missing".into(),
                flags: 0,
                error: Some("ENOENT"),
            },
        ),
        event(
            &a,
            4,
            Detail::Connect {
                remote: "[2001:db8::1]:443".parse().expect("address"),
                local: Some("[2001:db8::2]:40000".parse().expect("address")),
                transport: Some(runbom_event::Transport::Tcp),
                error: None,
                fd: None,
            },
        ),
        event(
            &b,
            5,
            Detail::DnsQuery {
                name: "api.example.com".into(),
                qtype: "A",
                server: "127.0.0.53:53".parse().expect("address"),
            },
        ),
        event(
            &a,
            6,
            request(
                8080,
                "POST",
                "/v1/chat/completions?key=[REDACTED]",
                Some("gpt-4o-mini"),
            ),
        ),
        event(&b, 7, Detail::Exit { code: Some(3) }),
        event(&a, 8, Detail::Exit { code: None }),
    ]
}

#[test]
fn kernel_events_encode_as_prost_does() {
    let batch = runbom_otlp::convert(
        &kernel_events(),
        &[],
        &runbom_otlp::ConvertOptions {
            host_name: "node-1".into(),
            uncorrelated_spans: true,
        },
    );
    assert!(batch.span_count() > 0 && batch.log_count() > 0);
    traces(&batch.traces);
    logs(&batch.logs);
}

#[test]
fn random_requests_encode_as_prost_does() {
    let mut random = RandomRequests::new(20);
    for _ in 0..1500 {
        traces(&random.traces());
        logs(&random.logs());
    }
}

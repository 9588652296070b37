//! The cost of reading LLM exchanges in the pipeline: captured TLS exchanges, byte for byte
//! the ring records the kernel writes (request head, request body, response head with the
//! body's start, the body's rest), through `decode` → `Enricher::enrich` (pairing, and with
//! GenAI reading on, holding the response until whole and reading it) → `convert` → prost
//! encoding. The same corpus with GenAI reading off is the baseline measured in the same run.
//! Time is the thread's CPU time, so criterion's `thrpt` is `http.request` spans per
//! CPU-second. The exchange is a recorded api.openai.com chat completion with a tool call
//! (runbom-genai's fixture `openai-chat-tool-calls`).

#![allow(clippy::cast_precision_loss, missing_docs)]

use std::{hint::black_box, mem::size_of, path::Path, time::Duration};

mod measure;

use criterion::{Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use measure::ThreadCpu;
use prost::Message as _;
use runbom_common::{
    EventHeader, EventKind, HttpEvent, SockAddr,
    decode::{as_bytes, decode},
    http_source,
};
use runbom_kernel::{Enricher, clock::BootClock, proctable::ProcessTable};
use runbom_otlp::{ConvertOptions, convert};

/// Exchanges per batch (4 records each).
const EXCHANGES: usize = 256;

fn record(pid: u32, ssl: u64, t: u64, source: u16, data: &[u8]) -> Vec<u8> {
    let size = size_of::<HttpEvent>() + data.len();
    let ev = HttpEvent {
        header: EventHeader {
            kind: EventKind::HttpData as u32,
            size: size as u32,
            pid,
            tid: pid,
            time_ns: t,
            cgroup_id: 4242,
        },
        ssl,
        total_len: data.len() as u64,
        peer: SockAddr::default(),
        fd: -1,
        source,
        flags: 0,
        data_len: data.len() as u32,
    };
    let mut out = as_bytes(&ev).to_vec();
    out.extend_from_slice(data);
    out
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../runbom-genai/tests/fixtures/openai-chat-tool-calls");
    let request = std::fs::read(dir.join("request.json")).expect("request.json");
    let response = std::fs::read(dir.join("response.json")).expect("response.json");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nUser-Agent: OpenAI/Python 1.99.0\r\n\
         Content-Type: application/json\r\nAuthorization: Bearer [elided]\r\nContent-Length: {}\r\n\r\n",
        request.len()
    );
    let response_head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        response.len()
    );
    let split = response.len() / 3;
    let mut first = response_head.into_bytes();
    first.extend_from_slice(&response[..split]);
    let mut out = Vec::with_capacity(EXCHANGES * 4);
    for i in 0..EXCHANGES {
        let (pid, ssl) = (5000 + (i as u32 % 8), 0x7f00_0000_0000 + i as u64 * 64);
        let t = 1_000_000_000 + i as u64 * 1_000_000;
        out.push(record(pid, ssl, t, http_source::SSL_WRITE, head.as_bytes()));
        out.push(record(pid, ssl, t + 10, http_source::SSL_BODY, &request));
        out.push(record(pid, ssl, t + 500_000, http_source::SSL_READ, &first));
        out.push(record(
            pid,
            ssl,
            t + 600_000,
            http_source::SSL_RESPONSE,
            &response[split..],
        ));
    }
    out
}

fn pipeline(en: &mut Enricher, records: &[Vec<u8>], opts: &ConvertOptions) -> usize {
    let mut events = Vec::with_capacity(EXCHANGES);
    for rec in records {
        if let Ok(ev) = decode(rec) {
            events.extend(en.enrich(&ev));
            en.take_completed(&mut events);
        }
    }
    assert_eq!(events.len(), EXCHANGES, "every exchange completes");
    let batch = convert(&events, &[], opts);
    batch.traces.encode_to_vec().len() + batch.logs.encode_to_vec().len()
}

fn bench(c: &mut Criterion<ThreadCpu>) {
    let opts = ConvertOptions {
        host_name: "bench-node".into(),
        uncorrelated_spans: true,
    };
    let records = corpus();
    let mut group = c.benchmark_group("genai");
    group.throughput(Throughput::Elements(EXCHANGES as u64));
    for (name, genai) in [
        ("parsing off (baseline)", None),
        ("parsing on", Some(runbom_genai::Options::default())),
    ] {
        let mut en = Enricher::new(ProcessTable::empty(), BootClock::new()).with_genai(genai);
        group.bench_function(format!("llm exchanges/{name}"), |b| {
            b.iter(|| pipeline(&mut en, black_box(&records), &opts));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu { wall: WallTime })
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);

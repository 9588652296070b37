//! Benchmark (b): userspace throughput. Synthetic ring-buffer records, byte for byte what the
//! kernel writes, go through everything runbom's userspace does to a record before it leaves
//! the process: `decode` → `Enricher::enrich` → `runbom_otlp::convert` → protobuf of the trace
//! and log export requests (`runbom_otlp::encode`, as the `otlp` and `otlphttp` exporters and
//! the persistent queue write it; the same with prost's `encode_to_vec`, the path before it,
//! is measured beside it). The `file` exporter's OTLP/JSON is measured on its own: runbom's
//! writer next to `serde_json`, the path before it. Time is the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so criterion's `thrpt` is events per CPU-second
//! and time other processes of a shared machine take is not counted.
//!
//! The mixed corpus imitates an agent's activity (per 16 records: 10 `file.open` of which 2
//! failed, 3 `net.connect`, 1 `dns.query`, 1 `process.exec`, 1 `process.exit`) over 8
//! processes; a batch is 1024 records, runbom's reader batch size.
//!
//! The `kernel_logs` group writes the log export request of a batch of enriched events that
//! no component reads (the kernel path without correlation), as protobuf and as OTLP/JSON: the
//! typed path (`convert` into `opentelemetry-proto` types, `encode_logs` / `write_logs`, the
//! request dropped) next to `KernelLogs::write_protobuf` / `write_json`, which write the same
//! bytes from the events. The `kernel_spans` group does the same for the events' spans
//! (`convert_spans`, `encode_traces` / `write_traces` next to `KernelSpans`' writers).
//!
//! The `http` group runs the same LLM calls inside TLS over HTTP/1.1 (head, body and status
//! records per request) and over HTTP/2 (one connection: HPACK-encoded HEADERS and DATA written,
//! response HEADERS and DATA read, per request), counted per request.

// Event counts and synthetic field values are small: the casts lose nothing.
#![allow(clippy::cast_precision_loss, missing_docs)]

use std::{hint::black_box, mem::size_of, sync::Arc, time::Duration};

mod alloc;
mod measure;

// mimalloc as in the `runbom` binary, counting allocations (printed before the measurements).
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

use criterion::{Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use measure::ThreadCpu;
use prost::Message as _;
use runbom_common::{
    EventHeader, EventKind, ExecEvent, ExitEvent, FileOpenEvent, HTTP_H2_PREFACE, HttpEvent,
    PATH_MAX, SockAddr, SockEvent,
    decode::{as_bytes, decode},
    http_source,
};
use runbom_event::KernelEvent;
use runbom_kernel::{Enricher, clock::BootClock, proctable::ProcessTable};
use runbom_otlp::{
    ConvertOptions, KernelLogs, KernelSpans, OtlpBatch, convert,
    encode::{encode_logs, encode_traces},
    json::write::{write_logs, write_traces},
    signal::Signal,
};

const BATCH: usize = 1024;

const PIDS: u32 = 8;

fn header(kind: EventKind, size: usize, pid: u32, i: usize) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        size: size as u32,
        pid,
        tid: pid,
        time_ns: 1_000_000_000 + i as u64 * 10_000,
        cgroup_id: 4242,
    }
}

fn file_open(pid: u32, i: usize, failed: bool) -> Vec<u8> {
    let path = format!(
        "/home/agent/project/src/module_{:03}/data_{i:04}.json",
        i % 37
    );
    let mut ev = FileOpenEvent {
        header: header(EventKind::FileOpen, size_of::<FileOpenEvent>(), pid, i),
        end_ns: 1_000_000_000 + i as u64 * 10_000 + 2_500,
        flags: if i.is_multiple_of(3) {
            (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u32
        } else {
            (libc::O_RDONLY | libc::O_CLOEXEC) as u32
        },
        ret: if failed { -libc::ENOENT } else { 5 },
        path_len: path.len() as u32,
        _pad: 0,
        path: [0; PATH_MAX],
    };
    ev.path[..path.len()].copy_from_slice(path.as_bytes());
    as_bytes(&ev).to_vec()
}

fn connect(pid: u32, i: usize) -> Vec<u8> {
    let ev = SockEvent {
        header: header(EventKind::Connect, size_of::<SockEvent>(), pid, i),
        end_ns: 1_000_000_000 + i as u64 * 10_000 + 40_000,
        remote: SockAddr {
            family: libc::AF_INET as u16,
            port: 443,
            addr: [10, 0, (i % 7) as u8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        },
        local: SockAddr {
            family: libc::AF_INET as u16,
            port: 40_000 + (i % 20_000) as u16,
            addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        },
        fd: 7,
        ret: -libc::EINPROGRESS,
        sock_type: runbom_common::SOCK_TYPE_STREAM,
        _pad: [0; 6],
    };
    as_bytes(&ev).to_vec()
}

fn dns(pid: u32, i: usize) -> Vec<u8> {
    let mut payload = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["api", "example", "com"] {
        payload.push(label.len() as u8);
        payload.extend_from_slice(label.as_bytes());
    }
    payload.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut ev = runbom_common::DnsEvent {
        header: header(
            EventKind::DnsQuery,
            size_of::<runbom_common::DnsEvent>(),
            pid,
            i,
        ),
        server: SockAddr {
            family: libc::AF_INET as u16,
            port: 53,
            addr: [127, 0, 0, 53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        },
        payload_len: payload.len() as u32,
        _pad: 0,
        payload: [0; runbom_common::DNS_PAYLOAD_MAX],
    };
    ev.payload[..payload.len()].copy_from_slice(&payload);
    as_bytes(&ev).to_vec()
}

fn exec(pid: u32, i: usize) -> Vec<u8> {
    let filename = "/usr/bin/python3";
    let argv = b"python3\0-m\0pytest\0tests/test_api.py\0--maxfail=1\0";
    let mut ev = ExecEvent {
        header: header(EventKind::Exec, size_of::<ExecEvent>() + argv.len(), pid, i),
        end_ns: 1_000_000_000 + i as u64 * 10_000 + 300_000,
        uid: 1000,
        gid: 1000,
        argc: 5,
        argv_len: argv.len() as u32,
        filename_len: filename.len() as u32,
        flags: 0,
        filename: [0; PATH_MAX],
    };
    ev.filename[..filename.len()].copy_from_slice(filename.as_bytes());
    let mut rec = as_bytes(&ev).to_vec();
    rec.extend_from_slice(argv);
    rec
}

fn exit(pid: u32, i: usize) -> Vec<u8> {
    let ev = ExitEvent {
        header: header(EventKind::Exit, size_of::<ExitEvent>(), pid, i),
        exit_code: 0,
        exit_code_known: 1,
    };
    as_bytes(&ev).to_vec()
}

const MODEL_BODY: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Summarise the ticket"}],"temperature":0}"#;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// A TLS capture record (`ssl` 0x5000) of `source` carrying `data`.
fn tls_record(pid: u32, i: usize, source: u16, flags: u16, data: &[u8]) -> Vec<u8> {
    let ev = HttpEvent {
        header: header(
            EventKind::HttpData,
            size_of::<HttpEvent>() + data.len(),
            pid,
            i,
        ),
        ssl: 0x5000,
        total_len: data.len() as u64,
        peer: SockAddr::default(),
        fd: -1,
        source,
        flags,
        data_len: data.len() as u32,
    };
    let mut rec = as_bytes(&ev).to_vec();
    rec.extend_from_slice(data);
    rec
}

/// HTTP/1.1 LLM calls inside TLS, one connection: per request the head, the body and the
/// status line, as OpenSSL's probes capture them. Returns the records and the request count.
fn http1_tls() -> (Vec<Vec<u8>>, usize) {
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\ntraceparent: {TRACEPARENT}\r\nUser-Agent: OpenAI/Python 1.59.0\r\n\
         Authorization: Bearer sk-bench\r\n\r\n",
        MODEL_BODY.len()
    );
    let requests = BATCH / 3;
    let records = (0..requests)
        .flat_map(|i| {
            [
                tls_record(4000, 3 * i, http_source::SSL_WRITE, 0, head.as_bytes()),
                tls_record(4000, 3 * i + 1, http_source::SSL_BODY, 0, MODEL_BODY),
                tls_record(
                    4000,
                    3 * i + 2,
                    http_source::SSL_READ,
                    0,
                    b"HTTP/1.1 200 OK\r\nContent-Type: a",
                ),
            ]
        })
        .collect();
    (records, requests)
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The same calls over HTTP/2 inside TLS, one connection: its preface, then per request one
/// write (HEADERS, HPACK-encoded, and the body's DATA) and one read (the response's HEADERS and
/// DATA). Returns the records and the request count.
fn http2_tls() -> (Vec<Vec<u8>>, usize) {
    let mut client = loona_hpack::Encoder::new();
    let mut server = loona_hpack::Encoder::new();
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend(h2_frame(4, 0, 0, &[]));
    let mut records = vec![tls_record(
        4000,
        0,
        http_source::H2_SSL_WRITE,
        HTTP_H2_PREFACE,
        &preface,
    )];
    let requests = (BATCH - 1) / 2;
    let length = MODEL_BODY.len().to_string();
    for i in 0..requests {
        let stream = 2 * i as u32 + 1;
        let block = client.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"https"),
            (b":authority", b"api.openai.com"),
            (b":path", b"/v1/chat/completions"),
            (b"content-type", b"application/json"),
            (b"content-length", length.as_bytes()),
            (b"traceparent", TRACEPARENT.as_bytes()),
            (b"user-agent", b"OpenAI/Python 1.59.0"),
            (b"authorization", b"Bearer sk-bench"),
        ]);
        let mut write = h2_frame(1, 0x4, stream, &block);
        write.extend(h2_frame(0, 0x1, stream, MODEL_BODY));
        let block = server.encode([
            (&b":status"[..], &b"200"[..]),
            (b"content-type", b"application/json"),
        ]);
        let mut read = h2_frame(1, 0x4, stream, &block);
        read.extend(h2_frame(
            0,
            0x1,
            stream,
            br#"{"id":"chatcmpl-1","choices":[]}"#,
        ));
        records.push(tls_record(
            4000,
            2 * i + 1,
            http_source::H2_SSL_WRITE,
            0,
            &write,
        ));
        records.push(tls_record(
            4000,
            2 * i + 2,
            http_source::H2_SSL_READ,
            0,
            &read,
        ));
    }
    (records, requests)
}

/// The mixed corpus described in the module documentation.
fn mixed() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let pid = 4000 + (i as u32 % PIDS);
            match i % 16 {
                0..=7 => file_open(pid, i, false),
                8 | 9 => file_open(pid, i, true),
                10..=12 => connect(pid, i),
                13 => dns(pid, i),
                14 => exec(pid, i),
                _ => exit(pid, i),
            }
        })
        .collect()
}

fn opens_only() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| file_open(4000 + (i as u32 % PIDS), i, i % 5 == 0))
        .collect()
}

fn options() -> ConvertOptions {
    ConvertOptions {
        host_name: "bench-node".into(),
        uncorrelated_spans: true,
    }
}

fn enricher() -> Enricher {
    Enricher::new(ProcessTable::empty(), BootClock::new())
}

fn enrich_all(enricher: &mut Enricher, records: &[Vec<u8>]) -> Vec<KernelEvent> {
    let mut events = Vec::with_capacity(records.len());
    for rec in records {
        if let Ok(ev) = decode(rec) {
            events.extend(enricher.enrich(&ev));
        }
    }
    // Requests paired with their responses (HTTP inside TLS) leave through here.
    enricher.take_ready(&mut events);
    events
}

/// Everything, one batch: returns the encoded bytes so nothing is optimised away.
fn pipeline(enricher: &mut Enricher, records: &[Vec<u8>], opts: &ConvertOptions) -> usize {
    let events = enrich_all(enricher, records);
    encode(&convert(&events, &[], opts))
}

/// The same with prost's `encode_to_vec`: the path before `runbom_otlp::encode`.
fn pipeline_prost(enricher: &mut Enricher, records: &[Vec<u8>], opts: &ConvertOptions) -> usize {
    let events = enrich_all(enricher, records);
    encode_prost(&convert(&events, &[], opts))
}

/// Both requests as protobuf, as the exporters write them.
fn encode(batch: &OtlpBatch) -> usize {
    let mut out = Vec::new();
    encode_traces(&batch.traces, &mut out);
    let traces = out.len();
    out.clear();
    encode_logs(&batch.logs, &mut out);
    traces + out.len()
}

fn encode_prost(batch: &OtlpBatch) -> usize {
    batch.traces.encode_to_vec().len() + batch.logs.encode_to_vec().len()
}

/// Both requests as the `file` exporter's OTLP/JSON lines.
fn json(batch: &OtlpBatch) -> usize {
    let mut out = Vec::new();
    write_traces(&batch.traces, &mut out);
    write_logs(&batch.logs, &mut out);
    out.len()
}

fn json_serde(batch: &OtlpBatch) -> usize {
    serde_json::to_vec(&batch.traces).map_or(0, |v| v.len())
        + serde_json::to_vec(&batch.logs).map_or(0, |v| v.len())
}

/// Allocations per event of each step, on one batch (after a warm-up batch, so process-table
/// entries made on first sight are not counted).
fn print_allocations(opts: &ConvertOptions) {
    for (name, records) in [("mixed", mixed()), ("file_open", opens_only())] {
        let mut en = enricher();
        pipeline(&mut en, &records, opts);
        let n = records.len();
        let full = alloc::per_item(n, || {
            black_box(pipeline(&mut en, &records, opts));
        });
        let mut events = Vec::new();
        let enrich = alloc::per_item(n, || events = enrich_all(&mut en, &records));
        let mut batch = None;
        let convert = alloc::per_item(n, || batch = Some(convert(&events, &[], opts)));
        let batch = batch.unwrap_or_default();
        let encoded = alloc::per_item(n, || {
            black_box(encode(&batch));
        });
        let written = alloc::per_item(n, || {
            black_box(json(&batch));
        });
        let serialized = alloc::per_item(n, || {
            black_box(json_serde(&batch));
        });
        eprintln!(
            "allocations per event, {name}: {full:.1} in all (decode+enrich {enrich:.1}, \
             convert {convert:.1}, encode {encoded:.1}); OTLP/JSON {written:.1} (serde_json \
             {serialized:.1})"
        );
    }
}

fn bench(c: &mut Criterion<ThreadCpu>) {
    let opts = options();
    print_allocations(&opts);
    let mut group = c.benchmark_group("userspace");
    for (name, records) in [("mixed", mixed()), ("file_open", opens_only())] {
        group.throughput(Throughput::Elements(records.len() as u64));
        let mut en = enricher();
        group.bench_function(format!("{name}/decode+enrich+convert+encode"), |b| {
            b.iter(|| pipeline(&mut en, black_box(&records), &opts));
        });
        group.bench_function(
            format!("{name}/decode+enrich+convert+encode (prost)"),
            |b| {
                b.iter(|| pipeline_prost(&mut en, black_box(&records), &opts));
            },
        );
    }

    // Where the time goes, on the mixed corpus.
    let records = mixed();
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("mixed/decode", |b| {
        b.iter(|| {
            black_box(&records)
                .iter()
                .filter(|r| decode(r).is_ok())
                .count()
        });
    });
    let mut en = enricher();
    group.bench_function("mixed/decode+enrich", |b| {
        b.iter(|| enrich_all(&mut en, black_box(&records)).len());
    });
    let events = enrich_all(&mut enricher(), &records);
    group.bench_function("mixed/convert", |b| {
        b.iter(|| convert(black_box(&events), &[], &opts).log_count());
    });
    let batch = convert(&events, &[], &opts);
    group.bench_function("mixed/encode", |b| {
        b.iter(|| encode(black_box(&batch)));
    });
    group.bench_function("mixed/encode (prost)", |b| {
        b.iter(|| encode_prost(black_box(&batch)));
    });
    group.bench_function("mixed/json", |b| {
        b.iter(|| json(black_box(&batch)));
    });
    group.bench_function("mixed/json (serde_json)", |b| {
        b.iter(|| json_serde(black_box(&batch)));
    });
    // What a fan-out to a second pipeline or exporter copies: kernel log records as events
    // (`Signal::KernelLogs`), and the log request the typed path carries.
    let logs_only = ConvertOptions {
        uncorrelated_spans: false,
        ..opts.clone()
    };
    let as_events = Signal::KernelLogs(KernelLogs::new(events.clone(), Arc::new(logs_only)));
    group.bench_function("mixed/clone (kernel log records)", |b| {
        b.iter(|| black_box(&as_events).clone().item_count());
    });
    let typed_logs = as_events.clone().into_typed();
    group.bench_function("mixed/clone (log request)", |b| {
        b.iter(|| black_box(&typed_logs).clone().item_count());
    });
    group.finish();

    kernel_records(c, "kernel_logs", false, KernelLogs::new);
    kernel_records(c, "kernel_spans", true, |events, opts| {
        let ids = runbom_otlp::span_ids(&events);
        KernelSpans::of(KernelLogs::with_spans(events, ids, opts))
    });

    // HTTP inside TLS: the same LLM calls over HTTP/1.1 and HTTP/2, per request.
    let mut group = c.benchmark_group("http");
    for (name, (records, requests)) in [("http1_tls", http1_tls()), ("http2_tls", http2_tls())] {
        let mut en = enricher();
        assert_eq!(
            enrich_all(&mut en, &records).len(),
            requests,
            "{name}: one event per request"
        );
        group.throughput(Throughput::Elements(requests as u64));
        group.bench_function(format!("{name}/decode+enrich+convert+encode"), |b| {
            b.iter(|| pipeline(&mut en, black_box(&records), &opts));
        });
    }
    group.finish();
}

/// Kernel log records or spans, written as protobuf and OTLP/JSON: built as the request and
/// written (the typed path), or written from the events (the same bytes).
trait Written {
    fn typed_protobuf(&self, out: &mut Vec<u8>);
    fn write_protobuf(&self, out: &mut Vec<u8>);
    fn write_protobuf_measured(&self, out: &mut Vec<u8>);
    fn typed_json(&self, out: &mut Vec<u8>);
    fn write_json(&self, out: &mut Vec<u8>);
}

impl Written for KernelLogs {
    fn typed_protobuf(&self, out: &mut Vec<u8>) {
        encode_logs(&self.to_request(), out);
    }
    fn write_protobuf(&self, out: &mut Vec<u8>) {
        self.write_protobuf(out);
    }
    fn write_protobuf_measured(&self, out: &mut Vec<u8>) {
        self.write_protobuf_measured(out);
    }
    fn typed_json(&self, out: &mut Vec<u8>) {
        write_logs(&self.to_request(), out);
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json(out);
    }
}

impl Written for KernelSpans {
    fn typed_protobuf(&self, out: &mut Vec<u8>) {
        encode_traces(&self.to_request(), out);
    }
    fn write_protobuf(&self, out: &mut Vec<u8>) {
        self.write_protobuf(out);
    }
    fn write_protobuf_measured(&self, out: &mut Vec<u8>) {
        self.write_protobuf_measured(out);
    }
    fn typed_json(&self, out: &mut Vec<u8>) {
        write_traces(&self.to_request(), out);
    }
    fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json(out);
    }
}

/// The log records or spans (`make`) of events no component reads, for each corpus: the typed
/// path next to the writers from the events. Throughput is per event.
fn kernel_records<W: Written>(
    c: &mut Criterion<ThreadCpu>,
    group_name: &str,
    spans: bool,
    make: impl Fn(Vec<KernelEvent>, Arc<ConvertOptions>) -> W,
) {
    let opts = Arc::new(ConvertOptions {
        uncorrelated_spans: spans,
        ..options()
    });
    let mut group = c.benchmark_group(group_name);
    for (name, records) in [("mixed", mixed()), ("file_open", opens_only())] {
        let events = enrich_all(&mut enricher(), &records);
        let n = events.len();
        let written = make(events, opts.clone());
        let (mut typed, mut ours) = (Vec::new(), Vec::new());
        written.write_protobuf(&mut ours);
        written.typed_protobuf(&mut typed);
        assert!(ours == typed, "{name}: the same protobuf");
        // Room for the largest output, so that its growth is not counted.
        let mut out = Vec::with_capacity(4 << 20);
        let allocations = [
            alloc::per_item(n, || {
                out.clear();
                written.typed_protobuf(&mut out);
            }),
            alloc::per_item(n, || {
                out.clear();
                written.write_protobuf(&mut out);
            }),
            alloc::per_item(n, || {
                out.clear();
                written.typed_json(&mut out);
            }),
            alloc::per_item(n, || {
                out.clear();
                written.write_json(&mut out);
            }),
        ];
        eprintln!(
            "allocations per event, {group_name} {name}: protobuf {:.2} typed, {:.2} from the \
             events; OTLP/JSON {:.2} typed, {:.2} from the events",
            allocations[0], allocations[1], allocations[2], allocations[3]
        );
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{name}/protobuf: typed (convert, encode)"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&written).typed_protobuf(&mut out);
                out.len()
            });
        });
        group.bench_function(format!("{name}/protobuf: write_protobuf"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&written).write_protobuf(&mut out);
                out.len()
            });
        });
        group.bench_function(format!("{name}/protobuf: measured, then written"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&written).write_protobuf_measured(&mut out);
                out.len()
            });
        });
        group.bench_function(format!("{name}/json: typed (convert, write)"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&written).typed_json(&mut out);
                out.len()
            });
        });
        group.bench_function(format!("{name}/json: write_json"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&written).write_json(&mut out);
                out.len()
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu { wall: WallTime })
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);

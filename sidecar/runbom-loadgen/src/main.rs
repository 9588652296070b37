//! `runbom-loadgen`: drives an OTLP/gRPC receiver at saturation and reports what it took.
//!
//! One `ExportTraceServiceRequest` of GenAI-shaped spans (agent runs: `invoke_agent` →
//! `chat` → `execute_tool` → `chat`, plus an `embeddings` call, with `gen_ai.*` attributes and
//! events) is encoded once; `--concurrency` tasks then send those same bytes as fast as the
//! server answers, over `--connections` HTTP/2 connections, for `--warmup` + `--duration`
//! seconds. Only the measured window counts: requests/s, spans/s, p50/p99/max latency, errors
//! by gRPC code. With `--server-pid`, the server's CPU time (utime + stime from
//! `/proc/PID/stat`) over the window, spans per CPU-second and its peak RSS (`VmHWM`) are
//! reported too — the numbers `scripts/bench-pipeline.sh` compares.

// Counts and tick totals here stay far below 2^52; as f64 they are exact enough for a report.
#![allow(clippy::cast_precision_loss)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use runbom_pipeline::transport::codec::EncodedCodec;
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Saturating OTLP/gRPC trace load with latency and server CPU accounting.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The receiver, `host:port` (or `http://host:port`).
    #[arg(long, default_value = "127.0.0.1:4317")]
    endpoint: String,
    /// Requests in flight at once (gRPC streams).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Spans per request (a multiple of 5: one agent run is five spans).
    #[arg(long, default_value_t = 100)]
    spans: usize,
    /// gzip the requests (the server decompresses every one).
    #[arg(long)]
    gzip: bool,
    /// Give every request's traces new trace ids (by default each request repeats the same
    /// traces, which a processor that keeps per-trace state, like aibom's alert deduplication,
    /// would recognise).
    #[arg(long)]
    unique_traces: bool,
    /// The server's pid: report its CPU time over the window and its peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for this run in the report.
    #[arg(long, default_value = "server")]
    label: String,
    /// Print only one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.spans == 0 || args.spans % 5 != 0 {
        bail!("--spans must be a positive multiple of 5");
    }
    if args.concurrency == 0 || args.connections == 0 {
        bail!("--concurrency and --connections must be at least 1");
    }
    // The generator gets one core's worth of threads: on a small machine the server under
    // test needs the rest.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(run(&args))?;
    if args.json {
        println!("{report}");
    } else {
        print!("{}", human(&report));
        println!("{report}");
    }
    Ok(())
}

/// One finished request: when it started (since the run began), how long it took, its code.
struct Sample {
    start: Duration,
    latency: Duration,
    code: Code,
}

async fn run(args: &Args) -> Result<serde_json::Value> {
    let request = runbom_loadgen::genai::request(args.spans);
    let payload = Payload::new(&request, args.unique_traces);
    let uri = if args.endpoint.contains("://") {
        args.endpoint.clone()
    } else {
        format!("http://{}", args.endpoint)
    };
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let channel = Endpoint::from_shared(uri.clone())
            .context("invalid --endpoint")?
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {uri}"))?;
        channels.push(channel);
    }

    let began = Instant::now();
    let warmup = Duration::from_secs_f64(args.warmup);
    let window = Duration::from_secs_f64(args.duration);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(args.concurrency);
    for i in 0..args.concurrency {
        let channel = channels[i % channels.len()].clone();
        let (payload, stop, gzip) = (payload.clone(), stop.clone(), args.gzip);
        tasks.push(tokio::spawn(async move {
            sender(channel, payload, gzip, began, &stop).await
        }));
    }

    tokio::time::sleep_until((began + warmup).into()).await;
    let cpu_before = args.server_pid.map(server_cpu_seconds).transpose()?;
    let measured_from = began.elapsed();
    tokio::time::sleep_until((began + warmup + window).into()).await;
    let cpu_after = args.server_pid.map(server_cpu_seconds).transpose()?;
    let measured_to = began.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.context("sender task")?);
    }
    let in_window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= measured_from && s.start + s.latency <= measured_to)
        .collect();
    let seconds = measured_to.saturating_sub(measured_from).as_secs_f64();
    let ok = in_window.iter().filter(|s| s.code == Code::Ok).count();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for s in in_window.iter().filter(|s| s.code != Code::Ok) {
        *errors.entry(format!("{:?}", s.code)).or_default() += 1;
    }
    let mut latencies: Vec<Duration> = in_window.iter().map(|s| s.latency).collect();
    latencies.sort_unstable();
    let spans = ok * args.spans;
    let mut report = serde_json::json!({
        "label": args.label,
        "endpoint": args.endpoint,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "spans_per_request": args.spans,
        "request_bytes": payload.bytes.len(),
        "gzip": args.gzip,
        "unique_traces": args.unique_traces,
        "seconds": round3(seconds),
        "requests_ok": ok,
        "errors": errors,
        "requests_per_s": round3(ok as f64 / seconds),
        "spans_per_s": round3(spans as f64 / seconds),
        "latency_ms": {
            "p50": percentile_ms(&latencies, 0.50),
            "p99": percentile_ms(&latencies, 0.99),
            "max": percentile_ms(&latencies, 1.0),
        },
        "client_cpu_s": round3(own_cpu_seconds()),
    });
    if let (Some(pid), Some(before), Some(after)) = (args.server_pid, cpu_before, cpu_after) {
        let cpu = after - before;
        report["server"] = serde_json::json!({
            "pid": pid,
            "cpu_s": round3(cpu),
            "cpu_cores_busy": round3(cpu / seconds),
            "spans_per_cpu_s": if cpu > 0.0 { round3(spans as f64 / cpu) } else { 0.0 },
            "peak_rss_kib": proc_status_kib(pid, "VmHWM:"),
            "rss_kib": proc_status_kib(pid, "VmRSS:"),
        });
    }
    Ok(report)
}

/// The encoded request to send: the same bytes each time, or with new trace ids each time.
#[derive(Clone)]
struct Payload {
    bytes: Bytes,
    /// Where each span's trace id starts in `bytes` (`--unique-traces`; else empty).
    trace_ids: Arc<[usize]>,
    sent: Arc<AtomicU64>,
}

impl Payload {
    fn new(request: &ExportTraceServiceRequest, unique_traces: bool) -> Self {
        let bytes = Bytes::from(request.encode_to_vec());
        let mut trace_ids = Vec::new();
        if unique_traces {
            let ids: BTreeSet<&[u8]> = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .map(|s| s.trace_id.as_slice())
                .collect();
            // Random 16-byte ids occur in the encoding only as themselves.
            for id in ids {
                trace_ids.extend(
                    bytes
                        .windows(id.len())
                        .enumerate()
                        .filter(|(_, w)| *w == id)
                        .map(|(at, _)| at),
                );
            }
        }
        Self {
            bytes,
            trace_ids: trace_ids.into(),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The next request's bytes: with `--unique-traces`, the second half of every trace id is
    /// mixed with the request's number, so no two requests share a trace.
    fn next(&self) -> Bytes {
        if self.trace_ids.is_empty() {
            return self.bytes.clone();
        }
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let mut b = BytesMut::from(&self.bytes[..]);
        for &at in self.trace_ids.iter() {
            let half = &mut b[at + 8..at + 16];
            let mut v = [0; 8];
            v.copy_from_slice(half);
            half.copy_from_slice(&(u64::from_be_bytes(v) ^ n).to_be_bytes());
        }
        b.freeze()
    }
}

/// Sends the request again and again until `stop`; returns every sample.
async fn sender(
    channel: Channel,
    payload: Payload,
    gzip: bool,
    began: Instant,
    stop: &AtomicBool,
) -> Vec<Sample> {
    let mut client = tonic::client::Grpc::new(channel);
    if gzip {
        client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
    let mut samples = Vec::with_capacity(1 << 14);
    while !stop.load(Ordering::Relaxed) {
        let start = began.elapsed();
        let sent = Instant::now();
        let code = match client.ready().await {
            Err(_) => Code::Unavailable,
            Ok(()) => match client
                .unary(
                    tonic::Request::new(payload.next()),
                    path.clone(),
                    EncodedCodec::default(),
                )
                .await
            {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            },
        };
        samples.push(Sample {
            start,
            latency: sent.elapsed(),
            code,
        });
        if code != Code::Ok {
            // Do not spin on a server that is down or refusing.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    samples
}

/// `utime + stime` of `pid`, in seconds.
fn server_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the server running?)"))?;
    cpu_seconds_of_stat(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))
}

fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_seconds_of_stat(&s).ok())
        .unwrap_or_default()
}

/// Fields 14 and 15 of `/proc/PID/stat` (after the parenthesised command name).
fn cpu_seconds_of_stat(stat: &str) -> Result<f64> {
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no `)` in stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state): utime is field 14, stime field 15.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("stat too short")?
            .parse()
            .context("not a number")
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok((ticks(11)? + ticks(12)?) as f64 / hz)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    round3(sorted[i].as_secs_f64() * 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn human(r: &serde_json::Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} req/s, {} spans/s over {} s ({} requests of {} spans, {} bytes); latency p50 {} ms, p99 {} ms, max {} ms; errors {}",
        r["label"],
        r["requests_per_s"],
        r["spans_per_s"],
        r["seconds"],
        r["requests_ok"],
        r["spans_per_request"],
        r["request_bytes"],
        r["latency_ms"]["p50"],
        r["latency_ms"]["p99"],
        r["latency_ms"]["max"],
        r["errors"],
    );
    if let Some(s) = r.get("server") {
        let _ = writeln!(
            out,
            "  server pid {}: {} CPU-s ({} cores busy), {} spans per CPU-second, peak RSS {} KiB",
            s["pid"], s["cpu_s"], s["cpu_cores_busy"], s["spans_per_cpu_s"], s["peak_rss_kib"]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_ids(b: &Bytes) -> BTreeSet<Vec<u8>> {
        let r = ExportTraceServiceRequest::decode(b.clone()).expect("decodes");
        r.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.trace_id.clone())
            .collect()
    }

    #[test]
    fn unique_traces_change_only_the_trace_ids() {
        let request = runbom_loadgen::genai::request(100);
        let same = Payload::new(&request, false);
        assert_eq!(same.next(), same.next());
        let p = Payload::new(&request, true);
        assert_eq!(p.trace_ids.len(), 100, "one trace id per span");
        let (a, b) = (p.next(), p.next());
        assert_eq!(a.len(), p.bytes.len());
        let (ta, tb) = (trace_ids(&a), trace_ids(&b));
        assert_eq!(ta.len(), 20);
        assert!(ta.is_disjoint(&tb) && ta.is_disjoint(&trace_ids(&p.bytes)));
        let without_trace_ids = |mut r: ExportTraceServiceRequest| {
            for s in r
                .resource_spans
                .iter_mut()
                .flat_map(|r| &mut r.scope_spans)
                .flat_map(|s| &mut s.spans)
            {
                s.trace_id.clear();
            }
            r
        };
        assert_eq!(
            without_trace_ids(ExportTraceServiceRequest::decode(a).unwrap()),
            without_trace_ids(request),
            "everything else is as it was"
        );
    }

    #[test]
    fn reads_cpu_time_from_stat() {
        let stat = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let got = cpu_seconds_of_stat(stat).expect("parses");
        assert!((got - 300.0 / hz).abs() < 1e-9, "{got}");
    }
}

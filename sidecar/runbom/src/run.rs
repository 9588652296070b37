//! `runbom run`: probes → ring reader → batcher → exporters, each stage one owning task joined
//! by a bounded channel, stopped in order (reader first, then the batcher drains and flushes).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest,
};
use runbom_agent::{
    Enricher, KernelEvent, Probes,
    clock::BootClock,
    probes::LossCounters,
    proctable::ProcessTable,
    reader::{self, ReaderStats},
};
use runbom_otlp::{
    ConvertOptions, Exporter, OtlpBatch, convert,
    export::{
        DebugExporter, FileExporter, GrpcExporter, HttpExporter, NetworkSettings, RetryPolicy,
        Verbosity,
    },
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Compression, Config, DebugVerbosity, ExporterConfig, NetworkExporter};

/// Batches of kernel events buffered between the reader and the batcher.
const CHANNEL_BATCHES: usize = 64;
/// How often a progress line is logged while running.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// One exporter and the signals its pipelines give it.
pub(crate) struct Sink {
    name: String,
    exporter: Exporter,
    traces: bool,
    logs: bool,
    failed_batches: u64,
}

/// Builds every configured exporter (so that a bad endpoint fails before the probes load).
pub(crate) fn build_sinks(config: &Config) -> Result<Vec<Sink>> {
    let mut sinks = Vec::new();
    for (name, cfg) in &config.exporters {
        let (traces, logs) = config.signals_of(name);
        if !traces && !logs {
            warn!("exporter `{name}` is in no pipeline; it will receive nothing");
            continue;
        }
        let exporter = match cfg {
            ExporterConfig::Otlp(n) => Exporter::Grpc(GrpcExporter::new(network(n))?),
            ExporterConfig::OtlpHttp(n) => Exporter::Http(HttpExporter::new(network(n))?),
            ExporterConfig::File(f) => Exporter::File(FileExporter::new(&f.path)?),
            ExporterConfig::Debug(d) => Exporter::Debug(DebugExporter {
                verbosity: match d.verbosity {
                    DebugVerbosity::Basic => Verbosity::Basic,
                    DebugVerbosity::Detailed => Verbosity::Detailed,
                },
            }),
        };
        sinks.push(Sink {
            name: name.clone(),
            exporter,
            traces,
            logs,
            failed_batches: 0,
        });
    }
    Ok(sinks)
}

fn network(n: &NetworkExporter) -> NetworkSettings {
    NetworkSettings {
        endpoint: n.endpoint.clone(),
        headers: n.headers.clone(),
        gzip: n.compression == Compression::Gzip,
        timeout: n.timeout,
        retry: RetryPolicy {
            enabled: n.retry_on_failure.enabled,
            initial_interval: n.retry_on_failure.initial_interval,
            max_interval: n.retry_on_failure.max_interval,
            max_elapsed_time: n.retry_on_failure.max_elapsed_time,
        },
    }
}

pub async fn run(config: Config) -> Result<()> {
    let mut sinks = build_sinks(&config)?;
    let mut probes = Probes::load(&config.ebpf.probe_settings())?;
    let ring = probes.take_ring()?;
    let losses = probes.take_counters()?;
    let procs = ProcessTable::from_proc();
    info!(
        processes = procs.len(),
        exporters = ?sinks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "probes attached; watching (config: {})",
        config.source
    );

    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let stop = CancellationToken::new();
    let stats = Arc::new(ReaderStats::default());
    let reader = tokio::spawn(reader::run(
        ring,
        Enricher::new(procs, BootClock::new()),
        tx,
        stats.clone(),
        stop.clone(),
    ));
    let opts = ConvertOptions {
        host_name: host_name(),
        uncorrelated_spans: config.ebpf.uncorrelated_spans,
    };
    let batcher = tokio::spawn(batch_loop(
        rx,
        std::mem::take(&mut sinks),
        opts,
        config.batch.send_batch_size,
        config.batch.timeout,
        stats.clone(),
        losses,
    ));

    shutdown_signal().await;
    info!("stopping: draining the ring buffer and exporting what was captured");
    stop.cancel();
    reader
        .await
        .context("ring reader task")?
        .context("reading the ring buffer")?;
    let summary = batcher.await.context("batcher task")?;
    drop(probes);
    summary.print(&stats);
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot watch SIGTERM ({e}); stop runbom with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// What a run did, printed when it stops.
#[derive(Default)]
struct Summary {
    events: u64,
    spans: u64,
    logs: u64,
    failed: Vec<(String, u64)>,
    losses: runbom_agent::Losses,
}

impl Summary {
    fn print(&self, stats: &ReaderStats) {
        let decode_errors = stats.decode_errors.load(Ordering::Relaxed);
        info!(
            events = self.events,
            spans = self.spans,
            logs = self.logs,
            kernel_records = stats.records.load(Ordering::Relaxed),
            decode_errors,
            ring_full_drops = self.losses.ring_full,
            inflight_full_drops = self.losses.inflight_full,
            "runbom stopped"
        );
        for (name, n) in &self.failed {
            error!("exporter `{name}` failed to deliver {n} batches (see errors above)");
        }
        if self.losses.ring_full + self.losses.inflight_full > 0 {
            warn!(
                "the kernel dropped {} events because runbom could not keep up; raise receivers.ebpf.ring_buffer_bytes",
                self.losses.ring_full + self.losses.inflight_full
            );
        }
    }
}

async fn batch_loop(
    mut rx: mpsc::Receiver<Vec<KernelEvent>>,
    mut sinks: Vec<Sink>,
    opts: ConvertOptions,
    batch_size: usize,
    timeout: Duration,
    stats: Arc<ReaderStats>,
    losses: LossCounters,
) -> Summary {
    let mut summary = Summary::default();
    let mut pending: Vec<KernelEvent> = Vec::with_capacity(batch_size);
    let mut deadline = tokio::time::Instant::now() + timeout;
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(events) => {
                    if pending.is_empty() {
                        deadline = tokio::time::Instant::now() + timeout;
                    }
                    pending.extend(events);
                    while pending.len() >= batch_size {
                        let rest = pending.split_off(batch_size);
                        flush(&mut pending, &mut sinks, &opts, &mut summary).await;
                        pending = rest;
                    }
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline), if !pending.is_empty() => {
                flush(&mut pending, &mut sinks, &opts, &mut summary).await;
            }
            _ = progress.tick() => {
                let l = losses.read();
                info!(
                    events = summary.events,
                    kernel_records = stats.records.load(Ordering::Relaxed),
                    ring_full_drops = l.ring_full,
                    "progress"
                );
            }
        }
    }
    flush(&mut pending, &mut sinks, &opts, &mut summary).await;
    for sink in &mut sinks {
        if let Err(e) = sink.exporter.flush() {
            error!("{e}");
        }
        if sink.failed_batches > 0 {
            summary
                .failed
                .push((sink.name.clone(), sink.failed_batches));
        }
    }
    summary.losses = losses.read();
    summary
}

async fn flush(
    pending: &mut Vec<KernelEvent>,
    sinks: &mut [Sink],
    opts: &ConvertOptions,
    summary: &mut Summary,
) {
    if pending.is_empty() {
        return;
    }
    let batch = convert(pending, opts);
    summary.events += pending.len() as u64;
    summary.spans += batch.span_count() as u64;
    summary.logs += batch.log_count() as u64;
    pending.clear();
    for sink in sinks.iter_mut() {
        let result = if sink.traces && sink.logs {
            sink.exporter.export(&batch).await
        } else {
            let part = OtlpBatch {
                traces: if sink.traces {
                    batch.traces.clone()
                } else {
                    ExportTraceServiceRequest::default()
                },
                logs: if sink.logs {
                    batch.logs.clone()
                } else {
                    ExportLogsServiceRequest::default()
                },
            };
            sink.exporter.export(&part).await
        };
        if let Err(e) = result {
            sink.failed_batches += 1;
            error!("exporter `{}`: {e}", sink.name);
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned())
}

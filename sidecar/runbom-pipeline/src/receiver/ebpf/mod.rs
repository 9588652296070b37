//! The `ebpf` receiver: the node agent's kernel events, as OTLP spans and logs, into the same
//! pipelines as everything else. Its configuration is in [`config`].
//!
//! probes → ring reader (a thread of its own) → this receiver's task (groups events into
//! requests of at most `EVENTS_PER_REQUEST` or `MAX_WAIT`, converts, pushes). When the
//! pipelines refuse (full), the task waits and retries: the reader then stops draining, the
//! ring fills, and the kernel counts what it drops — which `/metrics` and the summary report.
//!
//! With a `correlate` processor configured, the task hands the events to it instead
//! (`docs/correlation.md`): it converts them once it knows where they belong. Without one,
//! conversion is shared by `workers` tasks, by process ([`shard`]). The events' log records
//! and spans are not built here at all: they go down the logs and traces pipelines as the
//! events ([`Signal::KernelLogs`], [`Signal::KernelSpans`]), which the exporters write straight
//! to the wire and a processor that reads records builds ([`crate::processor::typed`]). With
//! spans for the events (`uncorrelated_spans`, the default) their ids are chosen here, once,
//! and the kernel log records carry them.

use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use runbom_event::KernelEvent;
use runbom_kernel::{
    Enricher, ProbeSettings, Probes,
    clock::BootClock,
    openssl,
    proctable::ProcessTable,
    reader::{self, ReaderStats},
};
use runbom_otlp::{
    ConvertOptions, KernelLogs, KernelSpans,
    signal::{Signal, SignalKind},
    span_ids,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::ReceiverError;
use crate::{
    Ingest,
    component::{ReceiverContext, Started},
    node_agent::config::SidecarsConfig,
};

pub mod config;
mod drops;
mod events;
mod genai_metrics;
pub mod overload;
mod shard;
mod sidecars;

pub(crate) use events::EventCounter;
pub use shard::default_workers;

/// Most kernel events converted into one OTLP request.
const EVENTS_PER_REQUEST: usize = 1024;
/// Longest an event waits before its request is pushed.
const MAX_WAIT: Duration = Duration::from_millis(200);

/// Loads the probes and starts reading. Fails (before anything runs) with the probes' clear
/// errors: privileges, BTF, verifier. With a correlate processor (`ctx.kernel_events`), events
/// go there rather than being converted here.
///
/// What it keeps alive is the probes: dropping them detaches them (once the OpenSSL library
/// watcher, which shares them, has ended with the reader).
fn start(
    settings: &ProbeSettings,
    uncorrelated_spans: bool,
    workers: usize,
    sidecars: Option<&SidecarsConfig>,
    ctx: ReceiverContext<'_>,
) -> Result<Started, ReceiverError> {
    let ReceiverContext {
        ingest,
        kernel_events: correlate,
        telemetry,
        stop,
        authenticators: _,
    } = ctx;
    let mut probes = Probes::load(settings)?;
    let ring = probes.take_ring()?;
    let losses = Arc::new(probes.take_counters()?);
    let probes = Arc::new(Mutex::new(probes));
    let mut enricher = Enricher::new(ProcessTable::from_proc(), BootClock::new())
        .with_mcp_arguments(settings.mcp.capture_arguments)
        .with_genai(settings.http.genai);
    if settings.http.enabled && settings.http.openssl {
        let mut watcher = openssl::Watcher::new(probes.clone());
        let libraries = watcher.scan_all();
        info!(libraries, "OpenSSL libraries hooked");
        enricher = enricher
            .with_libssl_watch(openssl::spawn(watcher).map_err(ReceiverError::OpensslWatcher)?);
    }
    info!(
        processes = enricher.procs.len(),
        "probes attached; watching"
    );

    let stats = Arc::new(ReaderStats::default());
    register_counters(telemetry, &stats, &losses);

    let (tx, rx) = mpsc::channel(64);
    // On a thread of its own: the pipeline's workers all busy (encoding, writing), the ring is
    // still drained.
    let reader = reader::spawn(
        ring,
        enricher,
        tx,
        stats.clone(),
        settings.overload.drain_interval,
        stop.clone(),
    )
    .map_err(ReceiverError::Reader)?;
    tokio::spawn(drops::report_every_interval(losses.clone(), stop.clone()));
    let mut tasks = Vec::new();
    let rx = match sidecars {
        None => rx,
        Some(config) => {
            let l = losses.clone();
            let dropped = Arc::new(move || l.read().total());
            let (rx, server) = sidecars::start(config, rx, dropped, telemetry, stop)?;
            tasks.push(server);
            rx
        }
    };
    let opts = Arc::new(ConvertOptions {
        host_name: host_name(),
        uncorrelated_spans,
    });
    let counter = EventCounter::new(telemetry.metrics());
    let task = tokio::spawn(async move {
        deliver(rx, correlate, &ingest, &opts, &counter, workers).await;
        reader.join().await.map_err(ReceiverError::Reader)?;
        let l = losses.read();
        info!(
            kernel_records = stats.records.load(Ordering::Relaxed),
            events = stats.events.load(Ordering::Relaxed),
            decode_errors = stats.decode_errors.load(Ordering::Relaxed),
            http2_connections_lost = stats.h2_lost.load(Ordering::Relaxed),
            open_results_lost = stats.open_results_lost.load(Ordering::Relaxed),
            ring_full_drops = l.ring_full,
            inflight_full_drops = l.inflight_full,
            shed_drops = l.shed.iter().sum::<u64>(),
            shed = %drops::shed_summary(&l.shed),
            opens_in_scratch = losses.opens_in_scratch(),
            "ebpf receiver stopped"
        );
        if l.total() > 0 {
            warn!(
                "the kernel dropped {} events because runbom could not keep up ({} shed under overload: {}); raise receivers.ebpf.ring_buffer_bytes",
                l.total(),
                l.shed.iter().sum::<u64>(),
                drops::shed_summary(&l.shed)
            );
        }
        Ok(())
    });
    let probes: Arc<Mutex<Probes>> = probes;
    tasks.push(task);
    Ok(Started {
        tasks,
        keep: Some(Box::new(probes)),
    })
}

/// The kernel path's counters on `/metrics` (records, decode errors, HTTP/2 connections lost,
/// ring and in-flight drops).
fn register_counters(
    telemetry: &crate::Telemetry,
    stats: &Arc<ReaderStats>,
    losses: &Arc<runbom_kernel::probes::LossCounters>,
) {
    let (s, l) = (stats.clone(), losses.clone());
    telemetry.counter_fn(
        "runbom_kernel_records_total",
        "Records read from the kernel's ring buffer.",
        move || s.records.load(Ordering::Relaxed),
    );
    let s = stats.clone();
    telemetry.counter_fn(
        "runbom_kernel_decode_errors_total",
        "Kernel records that failed to decode.",
        move || s.decode_errors.load(Ordering::Relaxed),
    );
    let s = stats.clone();
    telemetry.counter_fn(
        "runbom_kernel_http2_connections_lost_total",
        "HTTP/2 connections runbom stopped following (bytes not captured where a frame header was due, or not HTTP/2).",
        move || s.h2_lost.load(Ordering::Relaxed),
    );
    let s = stats.clone();
    telemetry.counter_fn(
        "runbom_kernel_open_results_lost_total",
        "file.open events exported without their result (error.type EUNKNOWN): the kernel's record of the result was lost.",
        move || s.open_results_lost.load(Ordering::Relaxed),
    );
    telemetry.counter_fn(
        "runbom_kernel_ring_full_drops_total",
        "Kernel events dropped because the ring buffer was full.",
        move || l.read().ring_full,
    );
    let l = losses.clone();
    telemetry.counter_fn(
        "runbom_kernel_inflight_full_drops_total",
        "Kernel events lost because an in-flight map was full.",
        move || l.read().inflight_full,
    );
    drops::register_shed_counter(telemetry, losses.clone());
}

/// Hands kernel events on until `rx` closes: to the correlate processor when there is one
/// (`correlate`), else converted into requests by `workers` tasks (also the `node_agent`
/// receiver's path).
pub(crate) async fn deliver(
    rx: mpsc::Receiver<Vec<KernelEvent>>,
    correlate: Option<mpsc::Sender<Vec<KernelEvent>>>,
    ingest: &Ingest,
    opts: &Arc<ConvertOptions>,
    counter: &EventCounter,
    workers: usize,
) {
    match correlate {
        Some(correlator) => hand_over(rx, correlator, ingest, opts, counter, workers).await,
        None => forward(rx, ingest, opts, counter, workers).await,
    }
}

/// Converts and pushes events until the reader is done: in this task, or shared by process
/// among `workers` tasks.
async fn forward(
    rx: mpsc::Receiver<Vec<KernelEvent>>,
    ingest: &Ingest,
    opts: &Arc<ConvertOptions>,
    counter: &EventCounter,
    workers: usize,
) {
    if workers > 1 {
        shard::forward(rx, ingest, opts, counter, workers).await;
    } else {
        batch_and_push(rx, ingest, opts, |events| counter.count(events)).await;
    }
}

/// Groups events into requests and pushes them until `rx` closes; `count` sees each batch
/// as it arrives.
async fn batch_and_push(
    mut rx: mpsc::Receiver<Vec<KernelEvent>>,
    ingest: &Ingest,
    opts: &Arc<ConvertOptions>,
    count: impl Fn(&[KernelEvent]),
) {
    let mut pending: Vec<KernelEvent> = Vec::with_capacity(EVENTS_PER_REQUEST);
    let mut deadline = tokio::time::Instant::now() + MAX_WAIT;
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(events) => {
                    count(&events);
                    // A batch that would overflow the request begun sends that request as it
                    // is and becomes the next one whole: copied in, its rest would be copied
                    // again into a request of its own.
                    if !pending.is_empty() && pending.len() + events.len() > EVENTS_PER_REQUEST {
                        push(std::mem::take(&mut pending), ingest, opts).await;
                    }
                    if pending.is_empty() {
                        deadline = tokio::time::Instant::now() + MAX_WAIT;
                        // The reader's batch becomes the request as it is, not copied (unless
                        // it is a small one, shrunk to its size, and `pending` has more room).
                        if pending.capacity() <= events.capacity() {
                            pending = events;
                        } else {
                            pending.extend(events);
                        }
                    } else {
                        pending.extend(events);
                    }
                    while pending.len() >= EVENTS_PER_REQUEST {
                        let rest = pending.split_off(EVENTS_PER_REQUEST);
                        push(std::mem::replace(&mut pending, rest), ingest, opts).await;
                    }
                    // A request begun in a small batch's room (one shrunk to its size, or the
                    // rest of a split) is given a full request's room once, rather than
                    // growing into it by doubling.
                    if !pending.is_empty() && pending.capacity() < EVENTS_PER_REQUEST {
                        pending.reserve_exact(EVENTS_PER_REQUEST - pending.len());
                    }
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline), if !pending.is_empty() => {
                // Moved out at their size: the request travels on and is held in queues, and
                // `pending` keeps its room.
                let mut full = Vec::with_capacity(pending.len());
                full.append(&mut pending);
                push(full, ingest, opts).await;
            }
        }
    }
    push(pending, ingest, opts).await;
}

/// Hands every batch of events to the correlation stage (waiting for room: backpressure
/// reaches the ring). Should the stage be gone, events are converted here as without it.
async fn hand_over(
    mut rx: mpsc::Receiver<Vec<KernelEvent>>,
    correlator: mpsc::Sender<Vec<KernelEvent>>,
    ingest: &Ingest,
    opts: &Arc<ConvertOptions>,
    counter: &EventCounter,
    workers: usize,
) {
    while let Some(events) = rx.recv().await {
        counter.count(&events);
        if let Err(mpsc::error::SendError(events)) = correlator.send(events).await {
            warn!("the correlate processor stopped; kernel events go out uncorrelated");
            push(events, ingest, opts).await;
            forward(rx, ingest, opts, counter, workers).await;
            return;
        }
    }
}

/// Pushes `events` as OTLP, written from the events (nothing is built unless a processor reads
/// them): with spans for them, the spans first, then the log records, each pointing at its
/// event's span (ids chosen once for both).
async fn push(events: Vec<KernelEvent>, ingest: &Ingest, opts: &Arc<ConvertOptions>) {
    if events.is_empty() {
        return;
    }
    let ids = if opts.uncorrelated_spans {
        span_ids(&events)
    } else {
        Vec::new()
    };
    let logs = KernelLogs::with_spans(events, ids, opts.clone());
    let to_logs = ingest.accepts(SignalKind::Logs);
    // The events are copied only when both signals take them.
    let (spans, logs) = match (
        opts.uncorrelated_spans && ingest.accepts(SignalKind::Traces),
        to_logs,
    ) {
        (true, true) => (Some(KernelSpans::of(logs.clone())), Some(logs)),
        (true, false) => (Some(KernelSpans::of(logs)), None),
        (false, _) => (None, to_logs.then_some(logs)),
    };
    if let Some(spans) = spans.filter(|s| !s.is_empty()) {
        ingest.push_waiting(Signal::KernelSpans(spans)).await;
    }
    if let Some(logs) = logs {
        ingest.push_waiting(Signal::KernelLogs(logs)).await;
    }
}

pub use crate::host::host_name;

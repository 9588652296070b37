//! Builds the running pipelines from their description and stops them in order.
//!
//! Per pipeline: input channel → processors (one task each) → fan-out → one exporter task per
//! exporter, joined by bounded channels. Receivers hold the only senders of the input channels
//! (through their [`Ingest`]), so stopping is ordered by construction: when the receivers are
//! gone the inputs close, each stage drains what it holds and closes the next, and
//! [`Graph::drain`] returns once every exporter has delivered and flushed.
//!
//! An `aibom` processor also feeds logs pipelines: its drift alerts enter every logs pipeline
//! that lists the processor's name among its receivers, through an [`Ingest`] of its own (the
//! Collector's connector pattern). Its task holds that ingest, so the logs pipelines close
//! after the traces pipeline has drained into them.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use runbom_otlp::{
    ExportError, Exporter,
    signal::{Signal, SignalKind},
};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    Ingest, Telemetry, exporter,
    processor::{
        aibom::{self, AibomSpec},
        batch::{self, BatchSettings},
        memory_limiter::{self, MemoryGate, MemoryLimit},
    },
    receiver::sender::SenderPids,
};

/// One pipeline as configured (`service.pipelines.<name>`).
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    /// `traces`, `logs`, `metrics` or `traces/<name>`.
    pub name: String,
    pub signal: SignalKind,
    pub receivers: Vec<String>,
    pub processors: Vec<ProcessorSpec>,
    pub exporters: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum ProcessorSpec {
    Batch(BatchSettings),
    MemoryLimiter(MemoryLimit),
    Aibom(AibomSpec),
}

impl ProcessorSpec {
    /// Whether the processor needs to know which local process sent each request (the
    /// receivers of its pipeline then add `process.pid` to resources that lack it).
    #[must_use]
    pub fn needs_sender_pids(&self) -> bool {
        match self {
            Self::Batch(_) | Self::MemoryLimiter(_) | Self::Aibom(_) => false,
        }
    }
}

/// Sizes shared by all pipelines.
#[derive(Clone, Copy, Debug)]
pub struct GraphSettings {
    /// Requests buffered at each stage's input.
    pub channel_capacity: usize,
    /// Requests buffered per exporter (`sending_queue.queue_size`).
    pub exporter_queue: usize,
    /// Items (spans, log records, data points) buffered per exporter, whatever the requests'
    /// sizes: what bounds memory while a downstream is slow or away.
    pub exporter_queue_items: u32,
    /// How long a receiver waits for room before refusing with "retry later".
    pub accept_timeout: Duration,
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self {
            channel_capacity: 64,
            exporter_queue: 64,
            exporter_queue_items: DEFAULT_QUEUE_ITEMS,
            accept_timeout: Duration::from_secs(1),
        }
    }
}

/// Finished batches waiting for the fan-out.
const BATCHES_IN_FLIGHT: usize = 2;

/// Default item bound of an exporter queue: with GenAI-shaped spans (~2 KiB decoded) about
/// 100 MiB per exporter.
pub const DEFAULT_QUEUE_ITEMS: u32 = 50_000;

/// The running pipelines.
pub struct Graph {
    ingests: BTreeMap<String, Ingest>,
    tasks: Vec<JoinHandle<()>>,
    /// Cancelled when the exporters must stop retrying (see [`Graph::drain`]).
    give_up: CancellationToken,
    pub telemetry: Arc<Telemetry>,
}

impl Graph {
    /// Starts every pipeline. `make_exporter(name, signal, retries)` builds the exporter
    /// configured as `name` (one instance per pipeline that lists it).
    pub fn build(
        specs: &[PipelineSpec],
        settings: GraphSettings,
        telemetry: Arc<Telemetry>,
        stop: &CancellationToken,
        mut make_exporter: impl FnMut(&str, SignalKind, Arc<AtomicU64>) -> Result<Exporter, ExportError>,
    ) -> Result<Self, ExportError> {
        let mut routes: BTreeMap<String, Vec<(SignalKind, mpsc::Sender<Signal>)>> = BTreeMap::new();
        let mut tasks = Vec::new();
        let give_up = CancellationToken::new();
        let mut gate: Option<Arc<MemoryGate>> = None;
        let mut gated: Vec<String> = Vec::new();
        let mut attributed: Vec<String> = Vec::new();
        // Every pipeline's input first: an `aibom` processor's alerts go to logs pipelines
        // that may come after its own.
        let mut inputs = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.processors.iter().any(ProcessorSpec::needs_sender_pids) {
                attributed.extend(spec.receivers.iter().cloned());
            }
            let (input_tx, rx) = mpsc::channel(settings.channel_capacity);
            for r in &spec.receivers {
                routes
                    .entry(r.clone())
                    .or_default()
                    .push((spec.signal, input_tx.clone()));
            }
            inputs.push(rx);
        }
        let ingest = |name: &str, routes| new_ingest(name, routes, &telemetry, settings, stop);
        let mut connectors: BTreeMap<String, Option<Ingest>> = BTreeMap::new();
        for (spec, mut rx) in specs.iter().zip(inputs) {
            for p in &spec.processors {
                match p {
                    ProcessorSpec::Batch(s) => {
                        // Batches are large: hold few of them, so that memory is bounded by
                        // the exporter queues' item budget rather than by batch size.
                        let (tx, next) = mpsc::channel(BATCHES_IN_FLIGHT);
                        tasks.push(tokio::spawn(batch::run(rx, tx, *s)));
                        rx = next;
                    }
                    ProcessorSpec::MemoryLimiter(limit) => {
                        // One gate for the process: memory is shared by every pipeline.
                        if gate.is_none() {
                            let g = Arc::new(MemoryGate::default());
                            tasks.push(tokio::spawn(memory_limiter::run(
                                *limit,
                                g.clone(),
                                stop.clone(),
                            )));
                            gate = Some(g);
                        }
                        gated.extend(spec.receivers.iter().cloned());
                    }
                    ProcessorSpec::Aibom(a) => {
                        let alerts = connectors
                            .entry(a.name.clone())
                            .or_insert_with(|| {
                                register_aibom_counters(&telemetry, a);
                                routes.remove(&a.name).map(|r| ingest(&a.name, r))
                            })
                            .clone();
                        let (tx, next) = mpsc::channel(settings.channel_capacity);
                        tasks.push(tokio::spawn(aibom::run(rx, tx, a.clone(), alerts)));
                        rx = next;
                    }
                }
            }
            let mut outputs = Vec::new();
            for name in &spec.exporters {
                let counters = telemetry.stage("exporter", name, spec.signal);
                let exporter = make_exporter(name, spec.signal, counters.retry_counter())?;
                let (tx, queue) = exporter::QueueSender::new(
                    settings.exporter_queue,
                    settings.exporter_queue_items,
                );
                tasks.push(tokio::spawn(exporter::run(
                    name.clone(),
                    queue,
                    exporter,
                    counters,
                    give_up.clone(),
                )));
                outputs.push(tx);
            }
            tasks.push(tokio::spawn(exporter::fan_out(rx, outputs)));
        }
        let senders = Arc::new(SenderPids::default());
        let ingests = routes
            .into_iter()
            .map(|(name, routes)| {
                let mut ingest = ingest(&name, routes);
                if let Some(g) = &gate
                    && gated.contains(&name)
                {
                    ingest = ingest.with_memory_gate(g.clone());
                }
                if attributed.contains(&name) {
                    ingest = ingest.with_sender_pids(senders.clone());
                }
                (name, ingest)
            })
            .collect();
        Ok(Self {
            ingests,
            tasks,
            give_up,
            telemetry,
        })
    }

    /// The ingest of receiver `name` (taken: the graph keeps no sender of its own, so that
    /// dropping the receivers is what closes the pipelines).
    pub fn take_ingest(&mut self, name: &str) -> Option<Ingest> {
        self.ingests.remove(name)
    }

    /// Waits until every stage has drained. Call once the receivers have stopped.
    ///
    /// Exporters keep retrying for `grace`; after it, what they still hold is dropped and
    /// counted as failed, so that an unreachable downstream cannot hold up shutdown.
    pub async fn drain(mut self, grace: Duration) {
        self.ingests.clear();
        let give_up = self.give_up.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            give_up.cancel();
        });
        for task in self.tasks {
            let _ = task.await;
        }
        timer.abort();
    }
}

/// The door of receiver (or `aibom` processor) `name` into the pipelines that list it.
fn new_ingest(
    name: &str,
    routes: Vec<(SignalKind, mpsc::Sender<Signal>)>,
    telemetry: &Telemetry,
    settings: GraphSettings,
    stop: &CancellationToken,
) -> Ingest {
    let counters = routes
        .iter()
        .map(|(k, _)| (*k, telemetry.stage("receiver", name, *k)))
        .collect();
    Ingest::new(
        name.to_owned(),
        routes,
        counters,
        settings.accept_timeout,
        stop.clone(),
    )
}

/// Which counter of the `aibom` processor's stats a metric reads.
type StatRead = fn(&runbom_aibom::Stats) -> &std::sync::atomic::AtomicU64;

/// The `aibom` processor's counters on `/metrics` (once per configured processor).
fn register_aibom_counters(telemetry: &Telemetry, a: &AibomSpec) {
    use std::sync::atomic::Ordering::Relaxed;
    let watch = a
        .bom
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let failures = watch.reload_failures.clone();
    let reloads = watch.reloads.clone();
    drop(watch);
    telemetry.counter_fn(
        "runbom_aibom_bom_reload_failures_total",
        "Declared AI-BOM reloads refused (the last good BOM stayed in force).",
        move || failures.load(Relaxed),
    );
    telemetry.counter_fn(
        "runbom_aibom_bom_reloads_total",
        "Declared AI-BOM reloads that took effect.",
        move || reloads.load(Relaxed),
    );
    let counters: [(&'static str, &'static str, StatRead); 4] = [
        (
            "runbom_aibom_spans_with_drift_total",
            "Spans the AI-BOM processor flagged with drift.",
            |s| &s.spans_with_drift,
        ),
        ("runbom_aibom_alerts_total", "Drift alerts emitted.", |s| {
            &s.alerts
        }),
        (
            "runbom_aibom_alerts_dropped_total",
            "Drift alerts no logs pipeline took.",
            |s| &s.alerts_dropped,
        ),
        (
            "runbom_aibom_traces_released_early_total",
            "Traces released before their wait was over to stay within max_spans.",
            |s| &s.traces_released_early,
        ),
    ];
    for (name, help, read) in counters {
        let s = a.stats.clone();
        telemetry.counter_fn(name, help, move || read(&s).load(Relaxed));
    }
}

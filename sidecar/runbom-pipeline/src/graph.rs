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
//!
//! A `correlate` processor also takes kernel events (its sender is handed to the ebpf receiver
//! named in its spec, [`Graph::take_kernel_events`]) and pushes kernel log records into the
//! logs pipelines that list that receiver.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use runbom_correlate::Correlator;
use runbom_event::KernelEvent;
use runbom_otlp::signal::{Signal, SignalKind};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    Ingest, StageCounters, Telemetry,
    exporter::{BoxExporter, ExportError, stage, wal::Wal},
    extension::file_storage::{PersistentQueues, StorageSettings},
    ingest::Persisted,
    processor::{
        self,
        aibom::{self, AibomSpec, metrics::AibomMetrics},
        batch::{self, BatchSettings},
        correlate::{self, CorrelateSpec},
        k8sattributes::{self, K8sSpec},
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
    Correlate(Box<CorrelateSpec>),
    Aibom(AibomSpec),
    K8sAttributes(K8sSpec),
}

impl ProcessorSpec {
    /// Whether the processor needs to know which local process sent each request (the
    /// receivers of its pipeline then add `process.pid` to resources that lack it).
    #[must_use]
    pub fn needs_sender_pids(&self) -> bool {
        match self {
            Self::Batch(_) | Self::MemoryLimiter(_) | Self::Aibom(_) => false,
            Self::Correlate(_) | Self::K8sAttributes(_) => true,
        }
    }

    /// Whether the processor reads or edits records (it then takes kernel log records and
    /// spans built as OTLP, [`processor::typed`]); `batch` and `memory_limiter` take them as
    /// they are.
    #[must_use]
    pub fn reads_records(&self) -> bool {
        match self {
            Self::Batch(_) | Self::MemoryLimiter(_) => false,
            Self::Correlate(_) | Self::Aibom(_) | Self::K8sAttributes(_) => true,
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

/// Starts one exporter's task behind its queue; returns the queue's input. With `storage`,
/// the queue is a write-ahead log in its own directory under it, named after the exporter
/// and the pipeline, and what an earlier run left there is sent first.
fn start_exporter(
    (name, pipeline): (&str, &str),
    exporter: BoxExporter,
    counters: Arc<StageCounters>,
    (settings, storage): (GraphSettings, Option<&StorageSettings>),
    give_up: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<stage::QueueSender, ExportError> {
    if let Some(storage) = storage {
        let dir = storage
            .directory
            .join(format!("exporter_{name}_{pipeline}").replace(['/', '\\'], "_"));
        let (wal, replayed) =
            Wal::open(&dir, storage.fsync, storage.max_bytes).map_err(|source| {
                ExportError::Queue {
                    dir: dir.display().to_string(),
                    source,
                }
            })?;
        if replayed > 0 {
            tracing::info!(
                exporter = name,
                pipeline,
                "persistent queue: {replayed} requests from before are sent first"
            );
        }
        let wal = Arc::new(wal);
        tasks.push(tokio::spawn(stage::run_persistent(
            name.to_owned(),
            wal.clone(),
            exporter,
            counters.clone(),
            (give_up.clone(), storage.consumers),
        )));
        counters.watch_disk_queue(&wal);
        return Ok(stage::QueueSender::Persistent(Arc::new(
            stage::PersistentSender::new(wal, name.to_owned(), counters),
        )));
    }
    let (tx, queue) =
        stage::QueueSender::new(settings.exporter_queue, settings.exporter_queue_items);
    tx.report_to(&counters);
    tasks.push(tokio::spawn(stage::run(
        name.to_owned(),
        queue,
        exporter,
        counters,
        give_up.clone(),
    )));
    Ok(tx)
}

/// Starts the `memory_limiter`'s check task; returns the gate receivers consult.
fn start_memory_gate(
    limit: MemoryLimit,
    stop: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Arc<MemoryGate> {
    let gate = Arc::new(MemoryGate::default());
    tasks.push(tokio::spawn(memory_limiter::run(
        limit,
        gate.clone(),
        stop.clone(),
    )));
    gate
}

/// The senders' pid finder, its mismatches on `/metrics` when some pipeline uses it.
fn sender_pids(telemetry: &Telemetry, used: bool) -> Arc<SenderPids> {
    let senders = Arc::new(SenderPids::default());
    if used {
        let s = senders.clone();
        telemetry.counter_fn(
            "runbom_receiver_pid_mismatch_total",
            "Resources whose client-supplied process.pid was not the pid of the process owning \
             the connection (replaced by it; the client's kept as received.process.pid)",
            move || s.mismatches(),
        );
    }
    senders
}

/// Every receiver's [`Ingest`]: its routes and counters, the memory gate when one of its
/// pipelines has a `memory_limiter` (`gate`: the gate and the receivers it applies to), sender
/// pids when one of its pipelines correlates (`attributed`).
fn receiver_ingests(
    routes: BTreeMap<String, Vec<(SignalKind, mpsc::Sender<Signal>)>>,
    counters: &BTreeMap<String, Vec<(SignalKind, Arc<StageCounters>)>>,
    settings: GraphSettings,
    stop: &CancellationToken,
    gate: Option<&(Arc<MemoryGate>, Vec<String>)>,
    attributed: &[String],
    senders: &Arc<SenderPids>,
) -> BTreeMap<String, Ingest> {
    routes
        .into_iter()
        .map(|(name, routes)| {
            let mut ingest = Ingest::new(
                name.clone(),
                routes,
                counters.get(&name).cloned().unwrap_or_default(),
                settings.accept_timeout,
                stop.clone(),
            );
            if let Some((g, gated)) = gate
                && gated.contains(&name)
            {
                ingest = ingest.with_memory_gate(g.clone());
            }
            if attributed.contains(&name) {
                ingest = ingest.with_sender_pids(senders.clone());
            }
            (name, ingest)
        })
        .collect()
}

/// Each receiver's counters, one per route (pipeline) it feeds.
fn receiver_counters(
    routes: &BTreeMap<String, Vec<(SignalKind, mpsc::Sender<Signal>)>>,
    telemetry: &Telemetry,
) -> BTreeMap<String, Vec<(SignalKind, Arc<StageCounters>)>> {
    routes
        .iter()
        .map(|(name, routes)| {
            let counters = routes
                .iter()
                .map(|(k, _)| (*k, telemetry.stage("receiver", name, *k)))
                .collect();
            (name.clone(), counters)
        })
        .collect()
}

/// Where a correlate processor's log records go: the logs pipelines that list its ebpf
/// receiver (`None` when there is none).
/// They count as the receiver's accepted log records.
fn correlate_logs(
    spec: &CorrelateSpec,
    routes: &BTreeMap<String, Vec<(SignalKind, mpsc::Sender<Signal>)>>,
    counters: &BTreeMap<String, Vec<(SignalKind, Arc<StageCounters>)>>,
    settings: GraphSettings,
    stop: &CancellationToken,
) -> Option<Ingest> {
    let logs: Vec<_> = routes
        .get(&spec.source)
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k == SignalKind::Logs)
        .cloned()
        .collect();
    let counters = counters
        .get(&spec.source)
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k == SignalKind::Logs)
        .take(1)
        .cloned()
        .collect();
    (!logs.is_empty()).then(|| {
        Ingest::new(
            spec.source.clone(),
            logs,
            counters,
            settings.accept_timeout,
            stop.clone(),
        )
    })
}

/// Where a correlate processor's log records go (`logs`: the ebpf receiver's logs pipelines):
/// when an aibom processor follows it in its pipeline (`rest`), through that processor, which
/// judges those no trace claimed (shadow AI) and hands them on (`to_aibom`); else straight there.
fn kernel_logs_route(
    rest: &[ProcessorSpec],
    logs: Option<Ingest>,
    to_aibom: &mut Option<aibom::KernelLogs>,
) -> correlate::KernelLogs {
    if rest.iter().any(|p| matches!(p, ProcessorSpec::Aibom(_))) {
        *to_aibom = Some(aibom::KernelLogs(logs));
        correlate::KernelLogs::Downstream
    } else {
        correlate::KernelLogs::Pipelines(logs)
    }
}

/// Starts a `k8sattributes` stage reading `rx`; returns its output. One watch per processor
/// name, shared by the pipelines that list it.
fn k8s_stage(
    k: &K8sSpec,
    rx: mpsc::Receiver<Signal>,
    watches: &mut BTreeMap<String, k8sattributes::Watch>,
    (stop, telemetry): (&CancellationToken, &Telemetry),
    settings: GraphSettings,
    tasks: &mut Vec<JoinHandle<()>>,
) -> mpsc::Receiver<Signal> {
    let w = watches
        .entry(k.name.clone())
        .or_insert_with(|| k8sattributes::start(k, stop, telemetry))
        .clone();
    let (tx, next) = mpsc::channel(settings.channel_capacity);
    tasks.push(tokio::spawn(k8sattributes::run(rx, tx, w, k.wait)));
    next
}

/// For a pipeline with a persistent queue: its barrier (kept in `persisted` with the
/// pipeline's input) and the counter its fan-out ticks. `None` when it has no persistent
/// queue, or when a processor holds data between the receivers and the queue (then a receiver's
/// OK cannot wait for the disk; logged).
fn persisted_barrier(
    spec: &PipelineSpec,
    queues: &PersistentQueues,
    input: mpsc::Sender<Signal>,
    persisted: &mut Vec<(mpsc::Sender<Signal>, Arc<Persisted>)>,
) -> Option<tokio::sync::watch::Sender<u64>> {
    if !spec.exporters.iter().any(|e| queues.contains_key(e)) {
        return None;
    }
    if spec
        .processors
        .iter()
        .any(|p| !matches!(p, ProcessorSpec::MemoryLimiter(_)))
    {
        tracing::warn!(
            pipeline = %spec.name,
            "a processor holds data before the persistent queue: what it holds when runbom \
             is killed is lost (as in the Collector); leave `batch` out of this pipeline for \
             at-least-once delivery"
        );
        return None;
    }
    let (barrier, handed) = Persisted::new();
    persisted.push((input, barrier));
    Some(handed)
}

/// The running pipelines.
pub struct Graph {
    ingests: BTreeMap<String, Ingest>,
    /// The correlate processor's event input, and the receiver that is to feed it.
    kernel_events: Option<(String, mpsc::Sender<Vec<KernelEvent>>)>,
    tasks: Vec<JoinHandle<()>>,
    /// Cancelled when the exporters must stop retrying (see [`Graph::drain`]).
    give_up: CancellationToken,
    pub telemetry: Arc<Telemetry>,
    memory_gate: Option<Arc<MemoryGate>>,
}

impl Graph {
    /// Starts every pipeline. `make_exporter(name, signal, retries)` builds the exporter
    /// configured as `name` (one instance per pipeline that lists it).
    pub fn build(
        specs: &[PipelineSpec],
        settings: GraphSettings,
        telemetry: Arc<Telemetry>,
        stop: &CancellationToken,
        make_exporter: impl FnMut(&str, SignalKind, Arc<AtomicU64>) -> Result<BoxExporter, ExportError>,
    ) -> Result<Self, ExportError> {
        Self::build_with_queues(
            specs,
            (settings, &PersistentQueues::new()),
            telemetry,
            stop,
            make_exporter,
        )
    }

    /// [`Graph::build`], the exporters named in `queues` behind persistent queues. In a
    /// pipeline with such a queue and no processor that holds data (`batch`, `correlate`,
    /// `aibom`), a receiver answers a request only once it is written to the pipeline's
    /// persistent queues.
    #[allow(clippy::too_many_lines)] // one loop over the pipelines, stage by stage
    pub fn build_with_queues(
        specs: &[PipelineSpec],
        (settings, queues): (GraphSettings, &PersistentQueues),
        telemetry: Arc<Telemetry>,
        stop: &CancellationToken,
        mut make_exporter: impl FnMut(
            &str,
            SignalKind,
            Arc<AtomicU64>,
        ) -> Result<BoxExporter, ExportError>,
    ) -> Result<Self, ExportError> {
        let mut routes: BTreeMap<String, Vec<(SignalKind, mpsc::Sender<Signal>)>> = BTreeMap::new();
        let mut tasks = Vec::new();
        let give_up = CancellationToken::new();
        let mut gate: Option<Arc<MemoryGate>> = None;
        let mut gated: Vec<String> = Vec::new();
        let mut attributed: Vec<String> = Vec::new();
        let mut kernel_events = None;
        let mut persisted = Vec::new();
        // Every input first: correlate and aibom send logs into other pipelines' inputs.
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
            inputs.push((rx, input_tx));
        }
        let counters = receiver_counters(&routes, &telemetry);
        let mut connectors: BTreeMap<String, Option<Ingest>> = BTreeMap::new();
        let mut watches = BTreeMap::new();
        let aibom_metrics = Arc::new(AibomMetrics::new(telemetry.metrics()));
        for (spec, (mut rx, input_tx)) in specs.iter().zip(inputs) {
            let mut kl = None; // kernel logs through an aibom processor
            // Kernel log records and spans come only into logs and traces pipelines, from
            // receivers (and spans with their verdicts beside them only from an `aibom`
            // processor): built once, before the first processor that reads them.
            let mut typed = spec.signal == SignalKind::Metrics;
            for (at, p) in spec.processors.iter().enumerate() {
                if !typed && p.reads_records() {
                    let (tx, next) = mpsc::channel(settings.channel_capacity);
                    tasks.push(tokio::spawn(processor::typed(rx, tx)));
                    rx = next;
                    typed = true;
                }
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
                            gate = Some(start_memory_gate(*limit, stop, &mut tasks));
                        }
                        gated.extend(spec.receivers.iter().cloned());
                    }
                    ProcessorSpec::Correlate(c) => {
                        let (tx, next) = mpsc::channel(settings.channel_capacity);
                        let (events_tx, events_rx) = mpsc::channel(settings.channel_capacity);
                        let logs = correlate_logs(c, &routes, &counters, settings, stop);
                        let logs = kernel_logs_route(&spec.processors[at..], logs, &mut kl);
                        let correlator = Correlator::new(c.settings.clone());
                        correlate::register(&telemetry, &correlator.stats());
                        let o = correlate::Outcomes::new(telemetry.metrics());
                        tasks.push(tokio::spawn(correlate::run(
                            rx, events_rx, tx, logs, correlator, o, c.workers,
                        )));
                        kernel_events = Some((c.source.clone(), events_tx));
                        rx = next;
                    }
                    ProcessorSpec::Aibom(a) => {
                        let alerts = connectors
                            .entry(a.name.clone())
                            .or_insert_with(|| {
                                register_aibom_counters(&telemetry, a);
                                alerts_ingest(&a.name, &mut routes, &counters, settings, stop)
                            })
                            .clone();
                        let (tx, next) = mpsc::channel(settings.channel_capacity);
                        let logs = kl.take();
                        let m = aibom_metrics.clone();
                        tasks.push(tokio::spawn(aibom::run(rx, tx, a.clone(), alerts, logs, m)));
                        rx = next;
                        // Its spans' verdicts go beside them, for the exporters to write: a
                        // processor after it that reads spans takes them built.
                        typed = false;
                    }
                    ProcessorSpec::K8sAttributes(k) => {
                        let t = &telemetry;
                        rx = k8s_stage(k, rx, &mut watches, (stop, t), settings, &mut tasks);
                    }
                }
            }
            let mut outputs = Vec::new();
            for name in &spec.exporters {
                let counters = telemetry.stage("exporter", name, spec.signal);
                let exporter = make_exporter(name, spec.signal, counters.retry_counter())?;
                outputs.push(start_exporter(
                    (name, &spec.name),
                    exporter,
                    counters,
                    (settings, queues.get(name)),
                    &give_up,
                    &mut tasks,
                )?);
            }
            let handed = persisted_barrier(spec, queues, input_tx, &mut persisted);
            tasks.push(tokio::spawn(stage::fan_out(rx, outputs, handed)));
        }
        let memory_gate = gate.clone();
        let gate = gate.map(|g| (g, gated));
        let senders = sender_pids(&telemetry, !attributed.is_empty());
        let ingests = receiver_ingests(
            routes,
            &counters,
            settings,
            stop,
            gate.as_ref(),
            &attributed,
            &senders,
        )
        .into_iter()
        .map(|(name, ingest)| (name, ingest.with_persisted(&persisted)))
        .collect();
        Ok(Self {
            ingests,
            kernel_events,
            tasks,
            give_up,
            telemetry,
            memory_gate,
        })
    }

    /// The `memory_limiter`'s gate, when a pipeline has one.
    #[must_use]
    pub fn memory_gate(&self) -> Option<Arc<MemoryGate>> {
        self.memory_gate.clone()
    }

    /// The ingest of receiver `name` (taken: the graph keeps no sender of its own, so that
    /// dropping the receivers is what closes the pipelines).
    pub fn take_ingest(&mut self, name: &str) -> Option<Ingest> {
        self.ingests.remove(name)
    }

    /// The correlate processor's input for kernel events, for the ebpf receiver `receiver`
    /// (taken, like an ingest: the holder's drop is what lets the stage finish).
    pub fn take_kernel_events(&mut self, receiver: &str) -> Option<mpsc::Sender<Vec<KernelEvent>>> {
        if self.kernel_events.as_ref()?.0 != receiver {
            return None;
        }
        self.kernel_events.take().map(|(_, tx)| tx)
    }

    /// Waits until every stage has drained. Call once the receivers have stopped.
    ///
    /// Exporters keep retrying for `grace`; after it, what they still hold is dropped and
    /// counted as failed, so that an unreachable downstream cannot hold up shutdown.
    pub async fn drain(mut self, grace: Duration) {
        self.ingests.clear();
        self.kernel_events = None;
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

/// Which counter of the `aibom` processor's stats a metric reads.
type StatRead = fn(&runbom_aibom::Stats) -> &std::sync::atomic::AtomicU64;

/// The `Ingest` an `aibom` processor's drift alerts go through: into the logs pipelines that
/// list the processor's name among their receivers (`None` when none does).
fn alerts_ingest(
    name: &str,
    routes: &mut BTreeMap<String, Vec<(SignalKind, mpsc::Sender<Signal>)>>,
    counters: &BTreeMap<String, Vec<(SignalKind, Arc<StageCounters>)>>,
    settings: GraphSettings,
    stop: &CancellationToken,
) -> Option<Ingest> {
    let routes = routes.remove(name)?;
    let counters = counters.get(name).cloned().unwrap_or_default();
    Some(Ingest::new(
        name.to_owned(),
        routes,
        counters,
        settings.accept_timeout,
        stop.clone(),
    ))
}

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
    // `runbom_aibom_alerts_total` is `runbom.aibom.alerts`, by severity (`aibom::metrics`).
    let counters: [(&'static str, &'static str, StatRead); 7] = [
        (
            "runbom_aibom_spans_with_drift_total",
            "Spans the AI-BOM processor flagged with drift.",
            |s| &s.spans_with_drift,
        ),
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
        (
            "runbom_aibom_spans_late_total",
            "Spans judged in the context of a trace released before they arrived.",
            |s| &s.spans_late,
        ),
        (
            "runbom_aibom_shadow_workloads_total",
            "Undeclared workloads seen using an AI provider, model or model server.",
            |s| &s.shadow.workloads,
        ),
        (
            "runbom_aibom_shadow_calls_total",
            "AI uses (model calls, LLM API requests, model-server activity) of undeclared workloads.",
            |s| &s.shadow.calls,
        ),
        (
            "runbom_aibom_unclaimed_drift_total",
            "Declared agents' kernel events no trace claimed that sent to an undeclared endpoint or data source (alerted or counted).",
            |s| &s.unclaimed.drift,
        ),
    ];
    for (name, help, read) in counters {
        let s = a.stats.clone();
        telemetry.counter_fn(name, help, move || read(&s).load(Relaxed));
    }
}

//! runbom's own metrics, through the OpenTelemetry SDK ([`meter`]): rendered in the Prometheus
//! text format on `/metrics` ([`prometheus`]) and exported as OTLP by `service.telemetry`.
//!
//! Every stage (receiver, processor, exporter) of every pipeline registers one
//! [`StageCounters`], read by observable counters; other parts register counters read from
//! elsewhere (ring-buffer losses) with [`Telemetry::counter_fn`], or make instruments of their
//! own with [`Telemetry::meter`] (the global `runbom` meter when runbom runs).

pub mod bounded;
pub mod fresh;
pub mod meter;
pub mod prometheus;
pub mod series;

pub use meter::SelfMetrics;

use std::sync::{
    Arc, Mutex, OnceLock, PoisonError, Weak,
    atomic::{AtomicU64, Ordering},
};

use opentelemetry::{KeyValue, metrics::Meter};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use runbom_otlp::signal::SignalKind;
use tokio::sync::Semaphore;

/// Counters of one stage for one signal.
#[derive(Debug)]
pub struct StageCounters {
    /// `receiver`, `processor` or `exporter`.
    pub stage: &'static str,
    /// The configured name (`otlp`, `batch`, `otlphttp/backup`).
    pub name: String,
    pub signal: SignalKind,
    accepted: AtomicU64,
    refused: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    retried: Arc<AtomicU64>,
    dropped: AtomicU64,
    /// An exporter's queue: its item budget, read by `runbom.exporter.queue_size`.
    queue: OnceLock<(Weak<Semaphore>, u32)>,
    /// An exporter's persistent queue, read by `runbom.exporter.persistent_queue.*`.
    disk_queue: OnceLock<Weak<dyn DiskQueueLevel>>,
}

/// What the `runbom.exporter.persistent_queue.*` gauges read of a persistent queue.
pub trait DiskQueueLevel: Send + Sync {
    /// Items not yet delivered, and the bytes the queue holds on disk.
    fn level(&self) -> (u64, u64);
    /// The most bytes the queue holds on disk.
    fn capacity_bytes(&self) -> u64;
}

macro_rules! adders {
    ($($add:ident $get:ident $field:ident),*) => {
        $(
            pub fn $add(&self, n: u64) {
                self.$field.fetch_add(n, Ordering::Relaxed);
            }
            #[must_use]
            pub fn $get(&self) -> u64 {
                self.$field.load(Ordering::Relaxed)
            }
        )*
    };
}

impl StageCounters {
    adders!(
        add_accepted accepted accepted,
        add_refused refused refused,
        add_sent sent sent,
        add_failed failed failed,
        add_dropped dropped dropped
    );

    #[must_use]
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Reports an exporter queue's items (`capacity` minus the budget's free permits) on
    /// `runbom.exporter.queue_size` and its capacity on `runbom.exporter.queue_capacity`.
    pub fn watch_queue(&self, budget: &Arc<Semaphore>, capacity: u32) {
        let _ = self.queue.set((Arc::downgrade(budget), capacity));
    }

    /// Reports a persistent queue's items and bytes on `runbom.exporter.persistent_queue.*`.
    pub fn watch_disk_queue<Q: DiskQueueLevel + 'static>(&self, queue: &Arc<Q>) {
        let weak: Weak<dyn DiskQueueLevel> = Arc::downgrade(queue) as Weak<dyn DiskQueueLevel>;
        let _ = self.disk_queue.set(weak);
    }

    /// A persistent queue's items, bytes and capacity in bytes, while the queue exists.
    #[must_use]
    pub fn disk_queue(&self) -> Option<(u64, u64, u64)> {
        let q = self.disk_queue.get()?.upgrade()?;
        let (items, bytes) = q.level();
        Some((items, bytes, q.capacity_bytes()))
    }

    /// Items queued now and the queue's capacity, while the queue exists.
    #[must_use]
    pub fn queue(&self) -> Option<(u64, u64)> {
        let (budget, capacity) = self.queue.get()?;
        let free = budget.upgrade()?.available_permits() as u64;
        Some((
            u64::from(*capacity).saturating_sub(free),
            u64::from(*capacity),
        ))
    }

    /// The retry counter, to hand to an exporter's retry policy.
    #[must_use]
    pub fn retry_counter(&self) -> Arc<AtomicU64> {
        self.retried.clone()
    }
}

/// Stage counter families: stage kind, OpenTelemetry name, unit, help text, and how to read it.
/// On `/metrics` they keep their names of before the SDK (`runbom_receiver_accepted_items_total`).
type StageFamily = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    fn(&StageCounters) -> u64,
);

const STAGE_FAMILIES: [StageFamily; 6] = [
    (
        "receiver",
        "runbom.receiver.accepted_items",
        "{item}",
        "Items a receiver accepted into its pipelines.",
        StageCounters::accepted,
    ),
    (
        "receiver",
        "runbom.receiver.refused_items",
        "{item}",
        "Items a receiver refused (malformed, or the pipeline was full).",
        StageCounters::refused,
    ),
    (
        "exporter",
        "runbom.exporter.sent_items",
        "{item}",
        "Items an exporter delivered.",
        StageCounters::sent,
    ),
    (
        "exporter",
        "runbom.exporter.failed_items",
        "{item}",
        "Items an exporter gave up on after retries.",
        StageCounters::failed,
    ),
    (
        "exporter",
        "runbom.exporter.retries",
        "{retry}",
        "Export attempts that were retried.",
        StageCounters::retried,
    ),
    (
        "processor",
        "runbom.processor.dropped_items",
        "{item}",
        "Items a processor dropped.",
        StageCounters::dropped,
    ),
];

/// The exporter queue gauges (the Collector's `otelcol_exporter_queue_size` and
/// `_capacity`): name, help, and which of (items, capacity) it shows.
type QueueGauge = (&'static str, &'static str, fn((u64, u64)) -> u64);

const QUEUE_GAUGES: [QueueGauge; 2] = [
    (
        "runbom.exporter.queue_size",
        "Items in an exporter's queue now.",
        |(items, _)| items,
    ),
    (
        "runbom.exporter.queue_capacity",
        "Most items an exporter's queue holds.",
        |(_, capacity)| capacity,
    ),
];

/// The persistent queue gauges: name, unit, help, and which of (items, bytes, capacity) it
/// shows.
type DiskQueueGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn((u64, u64, u64)) -> u64,
);

const DISK_QUEUE_GAUGES: [DiskQueueGauge; 3] = [
    (
        "runbom.exporter.persistent_queue.size",
        "{item}",
        "Items in an exporter's persistent queue (sending_queue.storage) not yet delivered.",
        |(items, _, _)| items,
    ),
    (
        "runbom.exporter.persistent_queue.bytes",
        "By",
        "Bytes an exporter's persistent queue holds on disk.",
        |(_, bytes, _)| bytes,
    ),
    (
        "runbom.exporter.persistent_queue.capacity_bytes",
        "By",
        "Most bytes an exporter's persistent queue holds on disk (file_storage max_size_mib).",
        |(_, _, capacity)| capacity,
    ),
];

type Stages = Arc<Mutex<Vec<Arc<StageCounters>>>>;

/// A gauge of every exporter stage for which `read` has a value, by `exporter` and `signal`.
fn exporter_gauge(
    metrics: &SelfMetrics,
    stages: &Stages,
    (name, unit, help): (&'static str, &'static str, &'static str),
    read: impl Fn(&StageCounters) -> Option<u64> + Send + Sync + 'static,
) {
    let weak = Arc::downgrade(stages);
    metrics.limit_series(name, series::STAGE_SERIES);
    metrics
        .meter()
        .u64_observable_gauge(name)
        .with_unit(unit)
        .with_description(help)
        .with_callback(move |observer| {
            let Some(stages) = weak.upgrade() else { return };
            let stages = stages.lock().unwrap_or_else(PoisonError::into_inner);
            for c in stages.iter() {
                if let Some(value) = read(c) {
                    observer.observe(
                        value,
                        &[
                            KeyValue::new("exporter", c.name.clone()),
                            KeyValue::new("signal", c.signal.as_str()),
                        ],
                    );
                }
            }
        })
        .build();
}

/// The registry of runbom's own metrics.
pub struct Telemetry {
    stages: Stages,
    metrics: Arc<SelfMetrics>,
}

impl Default for Telemetry {
    /// A registry on a provider of its own (tests; [`Telemetry::global`] is runbom's).
    fn default() -> Self {
        Self::new(Arc::new(SelfMetrics::private()))
    }
}

impl Telemetry {
    /// The registry on the process's global meter provider: what runbom itself uses.
    #[must_use]
    pub fn global() -> Self {
        Self::new(SelfMetrics::global())
    }

    /// The registry on a given provider (runbom's, built with its OTLP reader:
    /// [`SelfMetrics::global_with`]).
    #[must_use]
    pub fn new(metrics: Arc<SelfMetrics>) -> Self {
        let stages: Stages = Arc::default();
        for (stage, name, unit, help, read) in STAGE_FAMILIES {
            let weak = Arc::downgrade(&stages);
            metrics.limit_series(name, series::STAGE_SERIES);
            metrics
                .meter()
                .u64_observable_counter(name)
                .with_unit(unit)
                .with_description(help)
                .with_callback(move |observer| {
                    let Some(stages) = weak.upgrade() else { return };
                    let stages = stages.lock().unwrap_or_else(PoisonError::into_inner);
                    for c in stages.iter().filter(|c| c.stage == stage) {
                        observer.observe(
                            read(c),
                            &[
                                KeyValue::new(stage, c.name.clone()),
                                KeyValue::new("signal", c.signal.as_str()),
                            ],
                        );
                    }
                })
                .build();
        }
        for (name, help, pick) in QUEUE_GAUGES {
            exporter_gauge(&metrics, &stages, (name, "{item}", help), move |c| {
                c.queue().map(pick)
            });
        }
        for (name, unit, help, pick) in DISK_QUEUE_GAUGES {
            exporter_gauge(&metrics, &stages, (name, unit, help), move |c| {
                c.disk_queue().map(pick)
            });
        }
        Self { stages, metrics }
    }

    /// The meter to make instruments with (`opentelemetry::global::meter("runbom")` when this is
    /// the [`global`](Self::global) registry).
    #[must_use]
    pub fn meter(&self) -> &Meter {
        self.metrics.meter()
    }

    /// The provider and reader behind this registry.
    #[must_use]
    pub fn metrics(&self) -> &Arc<SelfMetrics> {
        &self.metrics
    }

    /// Registers the counters of a stage.
    pub fn stage(&self, stage: &'static str, name: &str, signal: SignalKind) -> Arc<StageCounters> {
        let c = Arc::new(StageCounters {
            stage,
            name: name.to_owned(),
            signal,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: Arc::new(AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
            queue: OnceLock::new(),
            disk_queue: OnceLock::new(),
        });
        let mut stages = self.stages.lock().unwrap_or_else(PoisonError::into_inner);
        stages.push(c.clone());
        let of_kind = stages.iter().filter(|s| s.stage == stage).count();
        if of_kind == series::STAGE_SERIES + 1 {
            tracing::warn!(
                "more than {} {stage} stages (components × signals): runbom's {stage} metrics \
                 show the rest as one series with {}=true",
                series::STAGE_SERIES,
                series::OVERFLOW
            );
        }
        c
    }

    /// Registers a value read from elsewhere (e.g. the kernel's loss counters) under its
    /// Prometheus name: `runbom_<area>_<what>_total` is the monotonic counter
    /// `runbom.<area>.<what>`, a name without `_total` a gauge (`_bytes`: unit `By`). On
    /// `/metrics` the name stays as given.
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        let (otel, counter) = otel_name(name);
        self.metrics.limit_series(&otel, series::UNLABELLED);
        let unit = if name.ends_with("_bytes") {
            "By"
        } else {
            "{item}"
        };
        let meter = self.meter();
        if counter {
            meter
                .u64_observable_counter(otel)
                .with_unit(unit)
                .with_description(help)
                .with_callback(move |o| o.observe(read(), &[]))
                .build();
        } else {
            meter
                .u64_observable_gauge(otel)
                .with_unit(unit)
                .with_description(help)
                .with_callback(move |o| o.observe(read(), &[]))
                .build();
        }
    }

    /// All stages' counters, for summaries and tests.
    #[must_use]
    pub fn stages(&self) -> Vec<Arc<StageCounters>> {
        self.stages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every metric now, as OTLP (what the `service.telemetry` metrics export sends).
    #[must_use]
    pub fn collect(&self) -> ExportMetricsServiceRequest {
        self.metrics.collect()
    }

    /// The Prometheus text exposition of every metric (what `/metrics` shows).
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        prometheus::render(&self.collect())
    }
}

/// The OpenTelemetry name of a Prometheus-style name, and whether it is a counter:
/// `runbom_kernel_ring_full_drops_total` → (`runbom.kernel.ring_full_drops`, true).
#[must_use]
pub fn otel_name(prometheus: &str) -> (String, bool) {
    let (base, counter) = match prometheus.strip_suffix("_total") {
        Some(b) => (b, true),
        None => (prometheus, false),
    };
    let mut parts = base.splitn(3, '_');
    let name = match (parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(area), Some(what)) => format!("{ns}.{area}.{what}"),
        _ => base.to_owned(),
    };
    (name, counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let t = Telemetry::default();
        let r = t.stage("receiver", "otlp", SignalKind::Traces);
        r.add_accepted(3);
        t.counter_fn(
            "runbom_kernel_ring_full_drops_total",
            "Records the kernel dropped.",
            || 7,
        );
        let text = t.render_prometheus();
        assert!(
            text.contains(
                "runbom_receiver_accepted_items_total{receiver=\"otlp\",signal=\"traces\"} 3"
            ),
            "{text}"
        );
        assert!(
            text.contains("runbom_kernel_ring_full_drops_total 7"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE runbom_kernel_ring_full_drops_total counter"),
            "{text}"
        );
    }

    #[test]
    fn instruments_of_the_global_meter_are_exported() {
        let t = Telemetry::global();
        opentelemetry::global::meter("runbom")
            .u64_counter("runbom.test.global_instrument")
            .with_unit("{thing}")
            .build()
            .add(2, &[KeyValue::new("k", "v")]);
        let text = t.render_prometheus();
        assert!(
            text.contains("runbom_test_global_instrument_total{k=\"v\"} 2"),
            "{text}"
        );
        let otlp = t.collect();
        assert!(
            otlp.resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == "runbom.test.global_instrument" && m.unit == "{thing}")
        );
    }

    #[test]
    fn gauges_keep_their_names() {
        let t = Telemetry::default();
        t.counter_fn("runbom_correlate_buffered_bytes", "Bytes held.", || 9);
        let text = t.render_prometheus();
        assert!(
            text.contains(
                "# TYPE runbom_correlate_buffered_bytes gauge\nrunbom_correlate_buffered_bytes 9"
            ),
            "{text}"
        );
    }

    #[test]
    fn prometheus_names_map_to_dotted_names() {
        assert_eq!(
            otel_name("runbom_kernel_ring_full_drops_total"),
            ("runbom.kernel.ring_full_drops".into(), true)
        );
        assert_eq!(
            otel_name("runbom_correlate_buffered_events"),
            ("runbom.correlate.buffered_events".into(), false)
        );
    }
}

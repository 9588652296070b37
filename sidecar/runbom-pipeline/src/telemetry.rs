//! runbom's own counters, rendered in the Prometheus text format on `/metrics`.
//!
//! Every stage (receiver, processor, exporter) of every pipeline registers one
//! [`StageCounters`]; other parts register read-only gauges (ring-buffer losses).

use std::{
    fmt::Write as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use runbom_otlp::signal::SignalKind;

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

    /// The retry counter, to hand to an exporter's retry policy.
    #[must_use]
    pub fn retry_counter(&self) -> Arc<AtomicU64> {
        self.retried.clone()
    }
}

type Gauge = Box<dyn Fn() -> u64 + Send + Sync>;

/// One counter metric and its current values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

/// Stage counter families: stage kind, metric name, help text, and how to read it.
type StageFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StageCounters) -> u64,
);

const STAGE_FAMILIES: [StageFamily; 6] = [
    (
        "receiver",
        "runbom_receiver_accepted_items_total",
        "Items a receiver accepted into its pipelines.",
        StageCounters::accepted,
    ),
    (
        "receiver",
        "runbom_receiver_refused_items_total",
        "Items a receiver refused (malformed, or the pipeline was full).",
        StageCounters::refused,
    ),
    (
        "exporter",
        "runbom_exporter_sent_items_total",
        "Items an exporter delivered.",
        StageCounters::sent,
    ),
    (
        "exporter",
        "runbom_exporter_failed_items_total",
        "Items an exporter gave up on after retries.",
        StageCounters::failed,
    ),
    (
        "exporter",
        "runbom_exporter_retries_total",
        "Export attempts that were retried.",
        StageCounters::retried,
    ),
    (
        "processor",
        "runbom_processor_dropped_items_total",
        "Items a processor dropped.",
        StageCounters::dropped,
    ),
];

/// The registry of everything `/metrics` shows.
#[derive(Default)]
pub struct Telemetry {
    stages: Mutex<Vec<Arc<StageCounters>>>,
    gauges: Mutex<Vec<(&'static str, &'static str, Gauge)>>,
}

impl Telemetry {
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
        });
        self.stages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(c.clone());
        c
    }

    /// Registers a counter read from elsewhere (e.g. the kernel's loss counters).
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.gauges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, help, Box::new(read)));
    }

    /// All stages' counters, for summaries and tests.
    #[must_use]
    pub fn stages(&self) -> Vec<Arc<StageCounters>> {
        self.stages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every counter now, grouped by metric: what `/metrics` and the OTLP self-export show.
    #[must_use]
    pub fn snapshot(&self) -> Vec<Family> {
        let stages = self.stages();
        let mut families: Vec<Family> = STAGE_FAMILIES
            .iter()
            .map(|(stage, name, help, read)| Family {
                name,
                help,
                samples: stages
                    .iter()
                    .filter(|c| c.stage == *stage)
                    .map(|c| Sample {
                        labels: vec![
                            (stage, c.name.clone()),
                            ("signal", c.signal.as_str().into()),
                        ],
                        value: read(c),
                    })
                    .collect(),
            })
            .collect();
        for (name, help, read) in self
            .gauges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            families.push(Family {
                name,
                help,
                samples: vec![Sample {
                    labels: Vec::new(),
                    value: read(),
                }],
            });
        }
        families
    }

    /// The Prometheus text exposition of every counter.
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        for f in self.snapshot() {
            let _ = writeln!(out, "# HELP {0} {1}\n# TYPE {0} counter", f.name, f.help);
            for sample in &f.samples {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                let labels = if labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", labels.join(","))
                };
                let _ = writeln!(out, "{}{labels} {}", f.name, sample.value);
            }
        }
        out
    }
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
    }
}

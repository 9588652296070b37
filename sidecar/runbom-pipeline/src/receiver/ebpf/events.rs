//! `runbom.kernel.events` (`{event}`): the events the ebpf receiver read from the kernel, by
//! `runbom.event` (`process.exec`, `net.connect`, `http.request`, ...: contract §1); and the
//! GenAI figures of the LLM exchanges among them ([`GenAiMetrics`]).

use std::sync::Arc;

use opentelemetry::KeyValue;
use runbom_event::{KernelEvent, semconv::RUNBOM_EVENT};

use super::genai_metrics::GenAiMetrics;
use crate::telemetry::{SelfMetrics, fresh::FreshCounter, series::NAMED_SERIES};

/// The counter's name.
pub const EVENTS: &str = "runbom.kernel.events";

#[derive(Clone)]
pub struct EventCounter(FreshCounter, Arc<GenAiMetrics>);

impl EventCounter {
    #[must_use]
    pub fn new(metrics: &SelfMetrics) -> Self {
        // One series per event name (contract §1): a fixed set.
        metrics.limit_series(EVENTS, NAMED_SERIES);
        Self(
            metrics.fresh(
                metrics
                    .meter()
                    .u64_counter(EVENTS)
                    .with_unit("{event}")
                    .with_description("Kernel events read by the ebpf receiver, by event name.")
                    .build(),
            ),
            Arc::new(GenAiMetrics::new(metrics.meter())),
        )
    }

    /// Counts a batch (runs of one kind are added at once).
    pub fn count(&self, events: &[KernelEvent]) {
        self.1.record(events);
        let mut run: Option<(&'static str, u64)> = None;
        for e in events {
            let name = e.detail.event_name();
            match &mut run {
                Some((n, c)) if *n == name => *c += 1,
                _ => {
                    if let Some((n, c)) = run.take() {
                        self.0.add(c, &[KeyValue::new(RUNBOM_EVENT, n)]);
                    }
                    run = Some((name, 1));
                }
            }
        }
        if let Some((n, c)) = run {
            self.0.add(c, &[KeyValue::new(RUNBOM_EVENT, n)]);
        }
    }
}

//! `runbom.correlate.outcomes` (`{event}`): the kernel events the stage emitted, by
//! `runbom.correlation.method` and `runbom.correlation.confidence` (contract §2), counted from
//! the placements the events leave with: every event has a log record, which carries both
//! when the event was placed (method and confidence `none` when no application span claimed
//! it).

use opentelemetry::KeyValue;
use runbom_otlp::Placement;

use crate::telemetry::{SelfMetrics, fresh::FreshCounter, series::NAMED_SERIES};
use runbom_event::semconv::{
    RUNBOM_CORRELATION_CONFIDENCE, RUNBOM_CORRELATION_METHOD, correlation,
};

/// The counter's name. Its series: every correlation method and confidence (`none` included),
/// well within [`NAMED_SERIES`].
pub const OUTCOMES: &str = "runbom.correlate.outcomes";

/// The outcome counter of the `correlate` processors.
#[derive(Clone)]
pub struct Outcomes(FreshCounter);

impl Outcomes {
    #[must_use]
    pub fn new(metrics: &SelfMetrics) -> Self {
        metrics.limit_series(OUTCOMES, NAMED_SERIES);
        Self(
            metrics.fresh(
                metrics
                    .meter()
                    .u64_counter(OUTCOMES)
                    .with_unit("{event}")
                    .with_description(
                        "Kernel events emitted by the correlate processor, by correlation method \
                     and confidence (`none`: no application span claimed them).",
                    )
                    .build(),
            ),
        )
    }

    /// Counts each kernel event once, by where the correlator put it (every event becomes one
    /// log record, which carries the method and confidence of its placement; `none` without
    /// one), before conversion: the records need not be searched for them. Tallied first, so
    /// that the counter is touched once per method and confidence, not once per event.
    pub fn count(&self, placements: &[Option<Placement>]) {
        let mut tally: Vec<((&str, &str), u64)> = Vec::new();
        for placement in placements {
            let key = placement
                .as_ref()
                .map_or((correlation::NONE, correlation::NONE), |p| {
                    (p.method, p.confidence)
                });
            match tally.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => tally.push((key, 1)),
            }
        }
        for ((method, confidence), n) in tally {
            self.add(n, method, confidence);
        }
    }

    fn add(&self, n: u64, method: &str, confidence: &str) {
        // Both come from runbom's own converter: a fixed, small set of values.
        self.0.add(
            n,
            &[
                KeyValue::new(RUNBOM_CORRELATION_METHOD, method.to_owned()),
                KeyValue::new(RUNBOM_CORRELATION_CONFIDENCE, confidence.to_owned()),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use runbom_event::semconv::correlation::{
        ANCESTRY, HIGH, INFERRED, LOW, MEDIUM, NONE, PROCESS, THREAD, TRACEPARENT,
    };

    use super::*;
    use crate::telemetry::series::overflowing;

    #[test]
    fn every_method_and_confidence_fits_the_limit() {
        let metrics = SelfMetrics::private();
        let outcomes = Outcomes::new(&metrics);
        for method in [TRACEPARENT, THREAD, PROCESS, ANCESTRY, INFERRED, NONE] {
            for confidence in [HIGH, MEDIUM, LOW, NONE] {
                outcomes.add(1, method, confidence);
            }
        }
        metrics.release_pending();
        assert_eq!(overflowing(&metrics.collect()), Vec::<String>::new());
    }
}

//! Bounded attribute values: a metric attribute whose values come from outside (an agent's
//! name, an undeclared endpoint) keeps the first `limit` distinct values it sees; every later
//! value is reported as [`OTHER`] and counted on `runbom.metrics.folded_values`
//! (`metric`, `attribute`), so a hostile or chatty workload cannot grow runbom's series without
//! bound and what was folded is visible.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

use opentelemetry::{
    KeyValue, StringValue,
    metrics::{Counter, Meter},
};

/// The value that stands for every value past the limit.
pub const OTHER: &str = "other";

/// The counter of folded values.
pub const FOLDED: &str = "runbom.metrics.folded_values";

/// The distinct values of one attribute of one metric.
#[derive(Debug)]
pub struct Bounded {
    limit: usize,
    seen: Mutex<HashSet<String>>,
    folded: Counter<u64>,
    labels: [KeyValue; 2],
}

impl Bounded {
    /// Keeps at most `limit` distinct values of `attribute` on `metric`.
    #[must_use]
    pub fn new(meter: &Meter, metric: &'static str, attribute: &'static str, limit: usize) -> Self {
        Self {
            limit,
            seen: Mutex::new(HashSet::new()),
            folded: folded_counter(meter),
            labels: [
                KeyValue::new("metric", metric),
                KeyValue::new("attribute", attribute),
            ],
        }
    }

    /// `value` when it is one of the first `limit` values seen, else [`OTHER`] (counted).
    pub fn value(&self, value: &str) -> StringValue {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(value) {
            return StringValue::from(value.to_owned());
        }
        if seen.len() < self.limit {
            seen.insert(value.to_owned());
            return StringValue::from(value.to_owned());
        }
        drop(seen);
        self.folded.add(1, &self.labels);
        StringValue::from(OTHER)
    }

    /// How many distinct values are kept.
    #[must_use]
    pub fn distinct(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// `runbom.metrics.folded_values`: observations whose attribute value was folded into
/// [`OTHER`].
/// Its series: one per bounded metric attribute (a fixed set, well within
/// [`super::series::NAMED_SERIES`]; the limit is set by [`super::SelfMetrics`]).
#[must_use]
pub fn folded_counter(meter: &Meter) -> Counter<u64> {
    meter
        .u64_counter(FOLDED)
        .with_unit("{value}")
        .with_description(
            "Metric observations whose attribute value was reported as `other` because the \
             attribute had reached its limit of distinct values.",
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::SelfMetrics;

    #[test]
    fn values_past_the_limit_fold_into_other_and_are_counted() {
        let metrics = SelfMetrics::private();
        let b = Bounded::new(metrics.meter(), "m", "a", 2);
        assert_eq!(b.value("x").as_str(), "x");
        assert_eq!(b.value("y").as_str(), "y");
        assert_eq!(b.value("x").as_str(), "x");
        assert_eq!(b.value("z").as_str(), OTHER);
        assert_eq!(b.value("w").as_str(), OTHER);
        assert_eq!(b.distinct(), 2);
        let text = crate::telemetry::prometheus::render(&metrics.collect());
        assert!(
            text.contains("runbom_metrics_folded_values_total{attribute=\"a\",metric=\"m\"} 2"),
            "{text}"
        );
    }
}

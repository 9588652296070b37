//! How many series (attribute sets) each of runbom's own instruments may have: the SDK's
//! cardinality limit, set per instrument to what its attributes can take.
//!
//! The SDK reserves room for its default limit (2 000 series) in every instrument of every
//! reader whether it is used or not — about 135 KiB an instrument, most of runbom's idle heap
//! of metrics. An instrument registers its limit here before it is built
//! ([`super::SelfMetrics::limit_series`]); one that does not keeps the SDK's default (those
//! whose attribute values come from the data and are bounded by
//! [`Bounded`](super::bounded::Bounded), such as the AI-BOM and GenAI metrics). A limit is the
//! most attribute sets the instrument's attributes can form in normal use, with room to spare:
//! past it the SDK reports further sets as one series with `otel.metric.overflow=true`, which
//! [`super::Telemetry::stage`] warns about for the stage families, the only ones whose sets
//! come from the configuration.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest, common::v1::KeyValue,
};
use opentelemetry_sdk::metrics::{Instrument, Stream};

/// Instruments without attributes (every [`super::Telemetry::counter_fn`]): one series.
pub const UNLABELLED: usize = 1;

/// The stage families and exporter gauges: one series per configured component and signal of
/// a stage kind (receivers, processors or exporters). A configuration with more is warned
/// about.
pub const STAGE_SERIES: usize = 256;

/// Instruments whose attributes are runbom's own names (event kinds, correlation methods and
/// confidences, the metric and attribute of a folded value): a fixed set of a few dozen.
pub const NAMED_SERIES: usize = 64;

/// The attribute that marks the series the SDK folds every set past the limit into.
pub const OVERFLOW: &str = "otel.metric.overflow";

/// Series limits by instrument name.
#[derive(Debug, Default)]
pub struct SeriesLimits(RwLock<HashMap<String, usize>>);

impl SeriesLimits {
    /// `name` may have at most `series` series (0 is taken as 1).
    pub fn set(&self, name: &str, series: usize) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), series.max(1));
    }

    /// The SDK view that applies the limits (instruments without one are left to the default
    /// view: a matching view would also drop a histogram's own bucket boundaries).
    pub fn view(
        self: &Arc<Self>,
    ) -> impl Fn(&Instrument) -> Option<Stream> + Send + Sync + 'static {
        let limits = self.clone();
        move |instrument| {
            let series = *limits
                .0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(instrument.name())?;
            Stream::builder()
                .with_cardinality_limit(series)
                .build()
                .ok()
        }
    }
}

/// The metrics of `request` that have a series folded past their limit.
#[must_use]
pub fn overflowing(request: &ExportMetricsServiceRequest) -> Vec<String> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let folded = |a: &[KeyValue]| a.iter().any(|kv| kv.key == OVERFLOW);
    let mut names: Vec<String> = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.iter().any(|p| folded(&p.attributes)),
            Some(Data::Gauge(g)) => g.data_points.iter().any(|p| folded(&p.attributes)),
            Some(Data::Histogram(h)) => h.data_points.iter().any(|p| folded(&p.attributes)),
            _ => false,
        })
        .map(|m| m.name.clone())
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;
    use runbom_otlp::signal::SignalKind;

    use super::*;
    use crate::telemetry::{SelfMetrics, Telemetry};

    #[test]
    fn a_limit_folds_the_sets_past_it_and_others_keep_the_default() {
        let metrics = SelfMetrics::private();
        metrics.limit_series("t.limited", 2);
        let limited = metrics.meter().u64_counter("t.limited").build();
        let free = metrics.meter().u64_counter("t.free").build();
        for v in ["a", "b", "c"] {
            limited.add(1, &[KeyValue::new("k", v)]);
            free.add(1, &[KeyValue::new("k", v)]);
        }
        assert_eq!(overflowing(&metrics.collect()), ["t.limited"]);
    }

    #[test]
    fn the_stage_families_and_unlabelled_counters_fit_their_limits() {
        let t = Telemetry::default();
        for stage in ["receiver", "processor", "exporter"] {
            for i in 0..STAGE_SERIES / 4 {
                for signal in [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs] {
                    let c = t.stage(stage, &format!("{stage}/{i}"), signal);
                    c.add_accepted(1);
                    c.add_sent(1);
                    c.add_refused(1);
                    c.add_failed(1);
                    c.add_dropped(1);
                }
            }
        }
        t.counter_fn(
            "runbom_test_read_total",
            "A counter read from elsewhere.",
            || 3,
        );
        t.counter_fn("runbom_test_level", "A gauge read from elsewhere.", || 3);
        let request = t.collect();
        assert_eq!(overflowing(&request), Vec::<String>::new());
        let text = super::super::prometheus::render(&request);
        assert!(text.contains("runbom_test_read_total 3"), "{text}");
        assert!(
            text.contains(
                "runbom_exporter_sent_items_total{exporter=\"exporter/63\",signal=\"logs\"} 1"
            ),
            "{text}"
        );
    }
}

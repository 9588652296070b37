//! runbom's own metrics through the OpenTelemetry SDK: one `SdkMeterProvider` with a manual
//! reader that `/metrics` ([`super::prometheus`]) and the OTLP self-export collect from, on
//! demand. Cumulative temporality, so every collection sees totals since start.
//!
//! [`SelfMetrics::global`] installs the provider as the process's global one: instruments made
//! anywhere with `opentelemetry::global::meter("runbom")` (after it is installed) are exported
//! with runbom's own. Tests that run several pipelines in one process use
//! [`SelfMetrics::private`] instead, so their counters do not mix.

use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Meter},
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
        data::ResourceMetrics, reader::MetricReader,
    },
};
use runbom_event::semconv::{HOST_NAME, PROCESS_PID, SERVICE_NAME, SERVICE_VERSION};

use super::{
    fresh::{FreshCounter, Registry},
    series::SeriesLimits,
};

/// The name of runbom's meter (its instrumentation scope).
pub const METER: &str = "runbom";

/// A meter provider and the reader runbom collects its metrics from.
#[derive(Debug)]
pub struct SelfMetrics {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    meter: Meter,
    fresh: Arc<Registry>,
    limits: Arc<SeriesLimits>,
}

/// The reader is owned by the provider; this shares it with whoever collects.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

static GLOBAL: OnceLock<Arc<SelfMetrics>> = OnceLock::new();

impl SelfMetrics {
    /// The process-wide provider, installed as OpenTelemetry's global meter provider on first
    /// use (install it before any component makes its instruments).
    #[must_use]
    pub fn global() -> Arc<Self> {
        Self::global_with(|_| None::<ManualReader>)
    }

    /// [`Self::global`] with one more reader (the periodic OTLP export of `service.telemetry`),
    /// made from the provider's fresh-counter registry: a reader that exports must release the
    /// increments [`FreshCounter`]s hold after each export, as a collection does. Only the
    /// first call installs; later ones return the provider as it is.
    #[must_use]
    pub fn global_with<R: MetricReader>(
        reader: impl FnOnce(Arc<Registry>) -> Option<R>,
    ) -> Arc<Self> {
        GLOBAL
            .get_or_init(|| {
                let fresh = Arc::new(Registry::default());
                let limits = Arc::new(SeriesLimits::default());
                let (provider, manual) = build(reader(fresh.clone()), &limits);
                opentelemetry::global::set_meter_provider(provider.clone());
                Arc::new(Self {
                    meter: opentelemetry::global::meter(METER),
                    provider,
                    reader: manual,
                    fresh,
                    limits,
                })
            })
            .clone()
    }

    /// A provider of its own, not the global one (tests that run several pipelines at once).
    #[must_use]
    pub fn private() -> Self {
        let limits = Arc::new(SeriesLimits::default());
        let (provider, reader) = build(None::<ManualReader>, &limits);
        Self {
            meter: opentelemetry::metrics::MeterProvider::meter(&provider, METER),
            provider,
            reader,
            fresh: Arc::default(),
            limits,
        }
    }

    /// The meter to make instruments with.
    #[must_use]
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// The instrument `name` may have at most `series` series ([`super::series`]): call it
    /// before the instrument is built.
    pub fn limit_series(&self, name: &str, series: usize) {
        self.limits.set(name, series);
    }

    /// A counter whose new series show 0 first ([`FreshCounter`]).
    #[must_use]
    pub fn fresh(&self, counter: Counter<u64>) -> FreshCounter {
        self.fresh.wrap(counter)
    }

    /// Everything registered on the provider now, as an OTLP request (cumulative sums, gauges
    /// and histograms; runbom's resource). Empty when the provider was shut down. Then the
    /// increments [`FreshCounter`]s held for this collection go to their counters.
    #[must_use]
    pub fn collect(&self) -> ExportMetricsServiceRequest {
        let mut rm = ResourceMetrics::default();
        let request = match self.reader.collect(&mut rm) {
            Ok(()) => ExportMetricsServiceRequest::from(&rm),
            Err(e) => {
                tracing::debug!("collecting runbom's metrics: {e}");
                ExportMetricsServiceRequest::default()
            }
        };
        self.fresh.release();
        request
    }

    /// Hands the increments [`FreshCounter`]s hold to their counters now (before a last
    /// export, which must show everything).
    pub fn release_pending(&self) {
        self.fresh.release();
    }

    /// Flushes and stops the provider (its instruments record nothing more).
    pub fn shutdown(&self) -> OTelSdkResult {
        self.provider.shutdown()
    }
}

fn build<R: MetricReader>(
    extra: Option<R>,
    limits: &Arc<SeriesLimits>,
) -> (SdkMeterProvider, Arc<ManualReader>) {
    let reader = Arc::new(ManualReader::builder().build());
    limits.set(super::bounded::FOLDED, super::series::NAMED_SERIES);
    let mut provider = SdkMeterProvider::builder()
        .with_resource(resource())
        .with_view(limits.view())
        .with_reader(SharedReader(reader.clone()));
    if let Some(extra) = extra {
        provider = provider.with_reader(extra);
    }
    (provider.build(), reader)
}

/// runbom's own resource: `service.name=runbom`, its version, the host and its pid.
#[must_use]
pub fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new(SERVICE_NAME, "runbom"),
            KeyValue::new(SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
            KeyValue::new(HOST_NAME, crate::host::host_name()),
            KeyValue::new(PROCESS_PID, i64::from(std::process::id())),
        ])
        .build()
}

//! runbom's own telemetry (`service.telemetry`) through the OpenTelemetry SDK, exported by
//! `opentelemetry-otlp` (`service.name=runbom`):
//!
//! - **logs**: every `tracing` event also becomes an OTLP log record
//!   (`opentelemetry-appender-tracing`), carrying the trace and span of the work it was logged in;
//! - **traces**: `tracing` spans of runbom's own work (start-up, BOM loads, shutdown) become OTLP
//!   spans (`tracing-opentelemetry`);
//! - **metrics**: a periodic reader on runbom's meter provider (the one `/metrics` reads too).
//!
//! The batch processors and the periodic reader run on runbom's tokio runtime (the SDK's
//! async-runtime variants): the gRPC and HTTP clients need it, and no extra thread is started.
//! Their queues are bounded by the SDK (2,048 records or spans); what does not fit is dropped,
//! never waited for, so logging never blocks the data path.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{
    Compression, LogExporter, MetricExporter, SpanExporter, WithExportConfig as _,
    WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    logs::{SdkLoggerProvider, log_processor_with_async_runtime::BatchLogProcessor},
    metrics::{
        Temporality, data::ResourceMetrics, exporter::PushMetricExporter,
        periodic_reader_with_async_runtime::PeriodicReader,
    },
    runtime::Tokio,
    trace::{SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor},
};
use runbom_pipeline::{
    config::{SelfOtlp, SelfProtocol, Telemetry as TelemetryConfig},
    exporter::{GrpcChannel, NetworkSettings, RetryPolicy},
    telemetry::{SelfMetrics, fresh::Registry, meter::resource},
    transport::tls::ClientTlsSettings,
};
use tracing::Subscriber;
use tracing_subscriber::{Layer, registry::LookupSpan};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The scope of runbom's own log records and spans.
const SCOPE: &str = "runbom";

/// Crates whose own diagnostics must not become OTLP log records or spans: the exporters'
/// clients log while exporting, which would feed the exporter its own activity.
const NOT_EXPORTED: &[&str] = &[
    "opentelemetry",
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
];

/// The log and tracer providers of `service.telemetry` (none when not configured).
#[derive(Default)]
pub struct SelfTelemetry {
    logs: Option<SdkLoggerProvider>,
    traces: Option<SdkTracerProvider>,
}

impl SelfTelemetry {
    /// Builds the providers `service.telemetry.logs` / `.traces` ask for. Call inside the tokio
    /// runtime: their batch processors are tasks on it.
    pub fn start(config: &TelemetryConfig) -> anyhow::Result<Self> {
        let logs = config
            .logs_otlp()
            .map(|otlp| -> anyhow::Result<_> {
                let exporter = log_exporter(otlp).context("service.telemetry.logs")?;
                Ok(SdkLoggerProvider::builder()
                    .with_resource(resource())
                    .with_log_processor(BatchLogProcessor::builder(exporter, Tokio).build())
                    .build())
            })
            .transpose()?;
        let traces = config
            .traces_otlp()
            .map(|otlp| -> anyhow::Result<_> {
                let exporter = span_exporter(otlp).context("service.telemetry.traces")?;
                Ok(SdkTracerProvider::builder()
                    .with_resource(resource())
                    .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
                    .build())
            })
            .transpose()?;
        Ok(Self { logs, traces })
    }

    /// The `tracing` layers that hand events and spans to the providers (`None` rather than
    /// an empty list: an empty `Vec` layer tells `tracing` that no one is interested in
    /// anything, which silences stderr too).
    pub fn layers<S>(&self) -> Option<Vec<Box<dyn Layer<S> + Send + Sync>>>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let mut layers: Vec<Box<dyn Layer<S> + Send + Sync>> = Vec::new();
        if let Some(traces) = &self.traces {
            let tracer = traces.tracer(SCOPE);
            layers.push(Box::new(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(exported()),
            ));
        }
        if let Some(logs) = &self.logs {
            layers.push(Box::new(
                opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(logs)
                    .with_filter(exported()),
            ));
        }
        (!layers.is_empty()).then_some(layers)
    }

    /// Exports what the providers still hold and stops them (at most `limit` each).
    pub async fn shutdown(self, limit: Duration) {
        // The SDK waits for its batch tasks synchronously: off the runtime's worker threads.
        let stopped = tokio::task::spawn_blocking(move || {
            if let Some(traces) = self.traces {
                report("traces", traces.shutdown_with_timeout(limit));
            }
            if let Some(logs) = self.logs {
                report("logs", logs.shutdown_with_timeout(limit));
            }
        });
        let _ = tokio::time::timeout(limit * 2, stopped).await;
    }
}

/// Not through `tracing`: the log provider may be the one that failed.
fn report(what: &str, result: OTelSdkResult) {
    if let Err(e) = result {
        eprintln!("runbom: service.telemetry.{what}: {e}");
    }
}

/// Events and spans of runbom's own crates and its libraries, not the exporters' clients.
fn exported() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|meta| is_exported(meta.target()))
}

/// Whether events of `target` (a module path) are exported: not those of [`NOT_EXPORTED`]
/// crates (`opentelemetry_sdk`, `hyper_util::client` included).
fn is_exported(target: &str) -> bool {
    !NOT_EXPORTED.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    })
}

/// runbom's meter provider, with the periodic OTLP export of `service.telemetry.metrics` when
/// configured. Call inside the tokio runtime (the reader is a task on it).
pub fn metrics(config: &TelemetryConfig) -> anyhow::Result<Arc<SelfMetrics>> {
    let Some((otlp, interval)) = config.metrics_otlp() else {
        return Ok(SelfMetrics::global());
    };
    let exporter = metric_exporter(otlp).context("service.telemetry.metrics")?;
    Ok(SelfMetrics::global_with(|fresh| {
        Some(
            PeriodicReader::builder(Releasing { exporter, fresh }, Tokio)
                .with_interval(interval)
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
        )
    }))
}

/// The OTLP metric exporter, releasing the increments held for new series after each export
/// (`runbom_pipeline::telemetry::fresh`), as `/metrics` does after each scrape.
#[derive(Debug)]
struct Releasing {
    exporter: MetricExporter,
    fresh: Arc<Registry>,
}

impl PushMetricExporter for Releasing {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.exporter.export(metrics).await;
        self.fresh.release();
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// The gRPC destination: runbom's own channel (TLS as the SDK configuration says: `https://`
/// or a bare `host:port` without `insecure` is TLS checked against the system's CAs).
fn grpc_channel(o: &SelfOtlp) -> anyhow::Result<GrpcChannel> {
    let settings = NetworkSettings {
        endpoint: o.endpoint.clone(),
        headers: o.headers.clone(),
        gzip: true,
        timeout: EXPORT_TIMEOUT,
        tls: ClientTlsSettings {
            insecure: o.insecure,
            ..ClientTlsSettings::default()
        },
        retry: RetryPolicy::default(),
        retries: Arc::default(),
    };
    Ok(GrpcChannel::new(&settings)?)
}

/// The OTLP/HTTP URL of a signal: the endpoint is the base URL.
fn http_url(o: &SelfOtlp, path: &str) -> String {
    format!("{}{path}", o.endpoint.trim_end_matches('/'))
}

fn metadata(o: &SelfOtlp) -> anyhow::Result<tonic::metadata::MetadataMap> {
    let mut map = tonic::metadata::MetadataMap::new();
    for (k, v) in &o.headers {
        let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
            .with_context(|| format!("exporter.otlp.headers: `{k}` is not a header name"))?;
        // The value is a credential as often as not: never quoted in the error.
        let value = v
            .parse()
            .with_context(|| format!("exporter.otlp.headers.{k}: not a valid header value"))?;
        map.insert(key, value);
    }
    Ok(map)
}

fn headers(o: &SelfOtlp) -> HashMap<String, String> {
    o.headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An HTTP client for OTLP/HTTP: TLS with the system's CAs for `https://`, plain for `http://`.
fn http_client(
    base: &str,
) -> anyhow::Result<
    opentelemetry_http::hyper::HyperClient<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    >,
> {
    let tls = ClientTlsSettings::default()
        .load()
        .with_context(|| format!("exporter.otlp.endpoint {base}: the system's CAs"))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(opentelemetry_http::hyper::HyperClient::new(
        connector,
        EXPORT_TIMEOUT,
        None,
    ))
}

/// One builder per signal with the same settings.
macro_rules! build_exporter {
    ($builder:expr, $o:expr, $path:literal) => {{
        let o: &SelfOtlp = $o;
        match o.protocol {
            SelfProtocol::Grpc => $builder
                .with_tonic()
                .with_channel(grpc_channel(o)?.channel)
                .with_timeout(EXPORT_TIMEOUT)
                .with_compression(Compression::Gzip)
                .with_metadata(metadata(o)?)
                .build()?,
            SelfProtocol::HttpProtobuf => $builder
                .with_http()
                .with_http_client(http_client(&o.endpoint)?)
                .with_endpoint(http_url(o, $path))
                .with_timeout(EXPORT_TIMEOUT)
                .with_compression(Compression::Gzip)
                .with_headers(headers(o))
                .build()?,
        }
    }};
}

fn log_exporter(o: &SelfOtlp) -> anyhow::Result<LogExporter> {
    Ok(build_exporter!(LogExporter::builder(), o, "/v1/logs"))
}

fn span_exporter(o: &SelfOtlp) -> anyhow::Result<SpanExporter> {
    Ok(build_exporter!(SpanExporter::builder(), o, "/v1/traces"))
}

fn metric_exporter(o: &SelfOtlp) -> anyhow::Result<MetricExporter> {
    Ok(build_exporter!(
        MetricExporter::builder().with_temporality(Temporality::Cumulative),
        o,
        "/v1/metrics"
    ))
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    use runbom_pipeline::Telemetry;

    use super::*;

    #[test]
    fn counters_become_cumulative_sums() {
        let t = Telemetry::default();
        let c = t.stage("receiver", "otlp", runbom_pipeline::SignalKind::Traces);
        c.add_accepted(5);
        let req = t.collect();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let accepted = metrics
            .iter()
            .find(|m| m.name == "runbom.receiver.accepted_items")
            .expect("accepted counter");
        let Some(Data::Sum(sum)) = &accepted.data else {
            panic!("not a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(5))
        );
    }

    #[test]
    fn an_http_endpoint_is_the_base_url() {
        let o: SelfOtlp = serde_json::from_value(serde_json::json!({
            "protocol": "http/protobuf", "endpoint": "http://c:4318/"
        }))
        .expect("SelfOtlp");
        assert_eq!(http_url(&o, "/v1/logs"), "http://c:4318/v1/logs");
    }

    #[test]
    fn the_exporters_clients_are_not_exported() {
        let keep = is_exported;
        assert!(keep("runbom"));
        assert!(keep("runbom_pipeline::exporter"));
        assert!(keep("hypervisor"));
        assert!(!keep("h2::codec"));
        assert!(!keep("hyper_util::client"));
        assert!(!keep("opentelemetry_sdk"));
        assert!(!keep("tonic"));
    }
}

//! The `service` section: the pipelines (which components each signal goes through) and
//! runbom's own telemetry (`service.telemetry`).

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, de::IgnoredAny};

use crate::SignalKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    /// The extensions to start (the Collector's `service.extensions`).
    pub extensions: Vec<String>,
    pub pipelines: Pipelines,
    pub telemetry: Telemetry,
    /// How long runbom may take to drain its pipelines after SIGTERM (Kubernetes kills a pod
    /// 30 s after SIGTERM by default).
    #[serde(with = "super::duration")]
    pub shutdown_timeout: Duration,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            extensions: Vec::new(),
            pipelines: Pipelines::default(),
            telemetry: Telemetry::default(),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

/// Pipelines by name: `traces`, `logs`, `metrics`, or `<signal>/<name>`.
pub type Pipelines = BTreeMap<String, Pipeline>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    pub logs: TelemetryLogs,
    pub metrics: TelemetryMetrics,
    pub traces: TelemetryTraces,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryMetrics {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`none` to turn it off).
    pub address: String,
    /// Accepted for compatibility (`basic`, `normal`, `detailed`, `none`), and ignored.
    #[serde(default, rename = "level")]
    _level: IgnoredAny,
    /// The Collector's metric readers: `periodic` with an `otlp` exporter sends runbom's
    /// counters as OTLP metrics; `pull` with a `prometheus` exporter sets the address above.
    pub readers: Vec<MetricReader>,
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8888".into(),
            _level: IgnoredAny,
            readers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    pub periodic: Option<PeriodicReader>,
    pub pull: Option<PullReader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicReader {
    /// Milliseconds between exports (the Collector's unit); default 60000.
    #[serde(default = "default_periodic_ms")]
    pub interval: u64,
    pub exporter: SelfExporter,
}

fn default_periodic_ms() -> u64 {
    60_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    pub exporter: PullExporter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: PrometheusEndpoint,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusEndpoint {
    pub host: String,
    pub port: u16,
}

/// Where runbom sends its own telemetry: `otlp: {protocol, endpoint}` as in the Collector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfExporter {
    pub otlp: SelfOtlp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfOtlp {
    pub protocol: SelfProtocol,
    pub endpoint: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `grpc` to an endpoint without `http://` / `https://`: plain text rather than TLS.
    #[serde(default)]
    pub insecure: bool,
}

/// How runbom sends its own telemetry (the SDK configuration's names).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum SelfProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryLogs {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a `tracing` filter directive).
    pub level: String,
    /// The Collector's log processors: `batch` (or `simple`) with an `otlp` exporter sends
    /// runbom's own log records as OTLP logs (`service.name=runbom`).
    pub processors: Vec<SelfProcessor>,
}

/// `service.telemetry.traces`: spans of runbom's own work (start-up, BOM loads, shutdown).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryTraces {
    /// As for logs: `batch` (or `simple`) with an `otlp` exporter.
    pub processors: Vec<SelfProcessor>,
}

impl Default for TelemetryLogs {
    fn default() -> Self {
        Self {
            level: "info".into(),
            processors: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfProcessor {
    pub batch: Option<SelfExport>,
    pub simple: Option<SelfExport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfExport {
    pub exporter: SelfExporter,
}

/// The first `batch`/`simple` processor's OTLP destination (both export in batches: a
/// synchronous export inside runbom's async runtime could stall it).
fn first_otlp(processors: &[SelfProcessor]) -> Option<&SelfOtlp> {
    processors
        .iter()
        .find_map(|p| p.batch.as_ref().or(p.simple.as_ref()))
        .map(|e| &e.exporter.otlp)
}

impl Telemetry {
    /// The OTLP destination for runbom's counters and the export interval, if configured.
    #[must_use]
    pub fn metrics_otlp(&self) -> Option<(&SelfOtlp, Duration)> {
        self.metrics.readers.iter().find_map(|r| {
            r.periodic
                .as_ref()
                .map(|p| (&p.exporter.otlp, Duration::from_millis(p.interval.max(100))))
        })
    }

    /// The OTLP destination for runbom's own log records, if configured.
    #[must_use]
    pub fn logs_otlp(&self) -> Option<&SelfOtlp> {
        first_otlp(&self.logs.processors)
    }

    /// The OTLP destination for spans of runbom's own work, if configured.
    #[must_use]
    pub fn traces_otlp(&self) -> Option<&SelfOtlp> {
        first_otlp(&self.traces.processors)
    }

    /// Where `/metrics` is served: a `pull` reader's prometheus endpoint, else `address`.
    #[must_use]
    pub fn admin_address(&self) -> String {
        self.metrics
            .readers
            .iter()
            .find_map(|r| r.pull.as_ref())
            .map_or_else(
                || self.metrics.address.clone(),
                |p| {
                    format!(
                        "{}:{}",
                        p.exporter.prometheus.host, p.exporter.prometheus.port
                    )
                },
            )
    }
}

/// `traces/agents` carries traces.
#[must_use]
pub fn pipeline_signal(name: &str) -> Option<SignalKind> {
    match component_type(name) {
        "traces" => Some(SignalKind::Traces),
        "logs" => Some(SignalKind::Logs),
        "metrics" => Some(SignalKind::Metrics),
        _ => None,
    }
}

/// `otlp/backup` is an exporter of type `otlp`.
#[must_use]
pub fn component_type(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

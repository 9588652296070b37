//! runbom's own telemetry as OTLP (`service.name=runbom`): its metrics (collected from its
//! OpenTelemetry meter provider: cumulative sums, gauges, histograms) on a timer, and its
//! diagnostics (`tracing` events) as log records.
//!
//! Both go through runbom's own exporters rather than a second OpenTelemetry SDK stack: one
//! OTLP implementation to test, no extra runtime threads, and the same retry behaviour.
//! Diagnostics never block the code that logs them: records go through a bounded channel and
//! are counted when it is full.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber},
    resource::v1::Resource,
};
use runbom_otlp::signal::Signal;
use runbom_pipeline::transport::tls::ClientTlsSettings;
use runbom_pipeline::{
    Telemetry,
    exporter::{
        BoxExporter, ExportError, GrpcExporter, HttpExporter, NetworkSettings, RetryPolicy,
    },
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{Layer, layer::Context};

use runbom_event::semconv::{HOST_NAME, PROCESS_PID, SERVICE_NAME, SERVICE_VERSION};
use runbom_pipeline::config::SelfOtlp;

/// Diagnostics buffered before they are dropped (and counted).
const LOG_QUEUE: usize = 4096;

/// Starts what `service.telemetry` asks for: the periodic counter export and the log export.
pub fn start(
    config: &runbom_pipeline::config::Telemetry,
    telemetry: &Arc<Telemetry>,
    log_records: Option<LogRecords>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use anyhow::Context as _;
    let mut tasks = Vec::new();
    if let Some((otlp, interval)) = config.metrics_otlp() {
        let exporter = exporter(otlp).context("service.telemetry.metrics")?;
        tasks.push(tokio::spawn(export_metrics(
            telemetry.clone(),
            exporter,
            interval,
            stop.clone(),
        )));
    }
    if let (Some(records), Some(otlp)) = (log_records, config.logs_otlp()) {
        let exporter = exporter(otlp).context("service.telemetry.logs")?;
        tasks.push(tokio::spawn(export_logs(records, exporter, stop.clone())));
    }
    Ok(tasks)
}

/// Builds the exporter for `service.telemetry.*` (`protocol: grpc` or `http/protobuf`).
pub fn exporter(o: &SelfOtlp) -> Result<BoxExporter, ExportError> {
    let settings = NetworkSettings {
        endpoint: o.endpoint.clone(),
        headers: o.headers.clone(),
        gzip: true,
        timeout: Duration::from_secs(10),
        // The SDK configuration's rule: the scheme decides; without one, `insecure` does (gRPC).
        // TLS checks the server against the system's CAs.
        tls: ClientTlsSettings {
            insecure: o.insecure,
            ..ClientTlsSettings::default()
        },
        // runbom's own telemetry must not hold up its shutdown for long.
        retry: RetryPolicy {
            enabled: true,
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(2),
            max_elapsed_time: Duration::from_secs(5),
        },
        retries: Arc::default(),
    };
    match o.protocol.as_str() {
        "grpc" => Ok(Box::new(GrpcExporter::new(settings)?)),
        "http/protobuf" => Ok(Box::new(HttpExporter::new(settings)?)),
        other => Err(ExportError::Endpoint {
            exporter: "service.telemetry",
            endpoint: o.endpoint.clone(),
            reason: format!("protocol `{other}` is not supported (use grpc or http/protobuf)"),
        }),
    }
}

/// runbom's own resource, built once per exporter task.
fn resource() -> Resource {
    let host = runbom_pipeline::receiver::ebpf::host_name();
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    };
    Resource {
        attributes: vec![
            kv(SERVICE_NAME, Value::StringValue("runbom".into())),
            kv(
                SERVICE_VERSION,
                Value::StringValue(env!("CARGO_PKG_VERSION").into()),
            ),
            kv(HOST_NAME, Value::StringValue(host)),
            kv(PROCESS_PID, Value::IntValue(i64::from(std::process::id()))),
        ],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "runbom".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sends runbom's metrics (everything on its meter provider, collected from the SDK) every
/// `interval` until `stop`, then once more.
pub async fn export_metrics(
    telemetry: Arc<Telemetry>,
    mut exporter: BoxExporter,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = stop.cancelled() => true,
        };
        if stopping {
            // The last export shows everything, also what new series still hold back.
            telemetry.metrics().release_pending();
        }
        let request = telemetry.collect();
        if let Err(e) = exporter.export(&Signal::Metrics(request)).await {
            tracing::warn!("service.telemetry.metrics: {e}");
        }
        if stopping {
            return;
        }
    }
}

/// runbom's own log records on their way to [`export_logs`], and how many were dropped
/// because the queue was full.
pub struct LogRecords {
    pub rx: mpsc::Receiver<LogRecord>,
    pub dropped: Arc<AtomicU64>,
}

/// A `tracing` layer that turns events into OTLP log records for [`export_logs`].
pub struct LogLayer {
    tx: mpsc::Sender<LogRecord>,
    dropped: Arc<AtomicU64>,
}

impl LogLayer {
    /// The layer and the receiving end for [`export_logs`].
    #[must_use]
    pub fn new() -> (Self, LogRecords) {
        let (tx, rx) = mpsc::channel(LOG_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Self {
                tx,
                dropped: dropped.clone(),
            },
            LogRecords { rx, dropped },
        )
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    attributes: Vec<KeyValue>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.attributes.push(KeyValue {
                key: field.name().into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(format!("{value:?}"))),
                }),
            });
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.attributes.push(KeyValue {
                key: field.name().into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(value.into())),
                }),
            });
        }
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let (severity, text) = match level {
            Level::ERROR => (SeverityNumber::Error, "ERROR"),
            Level::WARN => (SeverityNumber::Warn, "WARN"),
            Level::INFO => (SeverityNumber::Info, "INFO"),
            Level::DEBUG => (SeverityNumber::Debug, "DEBUG"),
            Level::TRACE => (SeverityNumber::Trace, "TRACE"),
        };
        let now = now_ns();
        let record = LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: severity as i32,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(fields.message)),
            }),
            attributes: fields.attributes,
            ..Default::default()
        };
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends runbom's own log records in batches until the layer is gone or `stop` (then flushes).
pub async fn export_logs(records: LogRecords, mut exporter: BoxExporter, stop: CancellationToken) {
    let LogRecords { mut rx, dropped } = records;
    let resource = resource();
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stopping = tokio::select! {
            got = rx.recv() => match got {
                Some(r) => {
                    batch.push(r);
                    if batch.len() < 512 {
                        continue;
                    }
                    false
                }
                None => true,
            },
            _ = tick.tick() => false,
            () = stop.cancelled() => true,
        };
        if stopping {
            while let Ok(r) = rx.try_recv() {
                batch.push(r);
            }
        }
        if !batch.is_empty() {
            let request = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records: std::mem::take(&mut batch),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            };
            // Not logged through `tracing`: that would feed this exporter its own failures.
            if let Err(e) = exporter.export(&Signal::Logs(request)).await {
                eprintln!("runbom: service.telemetry.logs: {e}");
            }
        }
        if stopping {
            let lost = dropped.load(Ordering::Relaxed);
            if lost > 0 {
                eprintln!("runbom: service.telemetry.logs: {lost} records dropped (queue full)");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

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
}

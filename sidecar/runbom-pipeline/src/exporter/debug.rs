//! Debug exporter: what is exported, on standard output, for a person to read.

use std::io::Write as _;

use std::sync::{Arc, atomic::AtomicU64};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use runbom_otlp::signal::Signal;
use serde::Deserialize;

use super::{
    error::ExportError,
    export::{BoxExporter, ExportFuture, Exporter},
};
use crate::component::ExporterConfig;

/// The `debug` exporter's section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    #[serde(default)]
    pub verbosity: Verbosity,
}

impl ExporterConfig for DebugExporterConfig {
    fn build(&self, _retries: Arc<AtomicU64>) -> Result<BoxExporter, ExportError> {
        Ok(Box::new(DebugExporter {
            verbosity: self.verbosity,
        }))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One summary line per batch.
    #[default]
    Basic,
    /// One line per span and log record, with attributes.
    Detailed,
}

pub struct DebugExporter {
    pub verbosity: Verbosity,
}

fn value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> String {
    kvs.iter()
        .map(|kv| format!("{}={}", kv.key, value(kv.value.as_ref())))
        .collect::<Vec<_>>()
        .join(" ")
}

impl DebugExporter {
    pub fn export(&self, signal: &Signal) {
        let mut out = std::io::stdout().lock();
        // Standard output going away (a closed pipe) is not worth failing the pipeline for.
        let _ = writeln!(
            out,
            "runbom debug: {} {}",
            signal.item_count(),
            signal.kind().item()
        );
        if self.verbosity == Verbosity::Basic {
            return;
        }
        let typed;
        let signal = if signal.is_held() {
            typed = signal.clone().into_typed();
            &typed
        } else {
            signal
        };
        match signal {
            Signal::Traces(r) => {
                for span in r
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                {
                    let _ = writeln!(
                        out,
                        "  span {} trace={} span={} {}",
                        span.name,
                        hex::encode(&span.trace_id),
                        hex::encode(&span.span_id),
                        attrs(&span.attributes)
                    );
                }
            }
            Signal::Logs(r) => {
                for log in r
                    .resource_logs
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                {
                    let _ = writeln!(
                        out,
                        "  log {} {}: {}",
                        log.event_name,
                        log.severity_text,
                        value(log.body.as_ref())
                    );
                }
            }
            Signal::Metrics(r) => {
                for m in r
                    .resource_metrics
                    .iter()
                    .flat_map(|r| &r.scope_metrics)
                    .flat_map(|s| &s.metrics)
                {
                    let _ = writeln!(out, "  metric {}", m.name);
                }
            }
            // built into `Signal::Logs` and `Signal::Traces` above
            Signal::KernelLogs(_)
            | Signal::KernelSpans(_)
            | Signal::AnnotatedTraces(_)
            | Signal::SharedLogs(_) => {}
        }
    }
}

impl Exporter for DebugExporter {
    fn send<'a>(&'a mut self, signal: &'a Signal) -> ExportFuture<'a> {
        Self::export(self, signal);
        Box::pin(std::future::ready(Ok(())))
    }
}

//! Exporters: where OTLP batches go. Each is driven by one owning task (see `runbom::run`),
//! so none needs to be `Sync`.

mod debug;
mod file;
mod grpc;
mod http;
mod retry;

use std::{collections::BTreeMap, time::Duration};

pub use debug::{DebugExporter, Verbosity};
pub use file::FileExporter;
pub use grpc::GrpcExporter;
pub use http::HttpExporter;
pub use retry::RetryPolicy;

use crate::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{exporter}: invalid endpoint {endpoint:?}: {reason}")]
    Endpoint {
        exporter: &'static str,
        endpoint: String,
        reason: String,
    },
    #[error("{exporter}: invalid header {name:?}: {reason}")]
    Header {
        exporter: &'static str,
        name: String,
        reason: String,
    },
    #[error("otlp (gRPC) export to {endpoint} failed: {status}")]
    Grpc {
        endpoint: String,
        status: Box<tonic::Status>,
    },
    #[error("otlphttp export to {url} failed: HTTP {status}: {body}")]
    HttpStatus {
        url: String,
        status: u16,
        body: String,
    },
    #[error("otlphttp export to {url} failed: {reason}")]
    HttpTransport { url: String, reason: String },
    #[error("file exporter: {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExportError {
    /// Whether the OTLP specification says this failure may be retried.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Grpc { status, .. } => matches!(
                status.code(),
                tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::OutOfRange
                    | tonic::Code::Unavailable
                    | tonic::Code::DataLoss
            ),
            Self::HttpStatus { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            Self::HttpTransport { .. } => true,
            Self::Endpoint { .. } | Self::Header { .. } | Self::File { .. } => false,
        }
    }
}

/// Settings shared by the network exporters.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    pub endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub gzip: bool,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Counts export attempts that were retried (shared with runbom's telemetry).
    pub retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// One configured exporter.
pub enum Exporter {
    Grpc(GrpcExporter),
    Http(HttpExporter),
    File(FileExporter),
    Debug(DebugExporter),
    /// Accepts everything and sends it nowhere (the Collector's `nop`).
    Nop,
}

impl Exporter {
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Grpc(_) => "otlp",
            Self::Http(_) => "otlphttp",
            Self::File(_) => "file",
            Self::Debug(_) => "debug",
            Self::Nop => "nop",
        }
    }

    /// Sends one request (retrying as the exporter's policy allows).
    pub async fn export(&mut self, signal: &Signal) -> Result<(), ExportError> {
        if signal.is_empty() {
            return Ok(());
        }
        match self {
            Self::Grpc(e) => e.export(signal).await,
            Self::Http(e) => e.export(signal).await,
            Self::File(e) => e.export(signal),
            Self::Debug(e) => {
                e.export(signal);
                Ok(())
            }
            Self::Nop => Ok(()),
        }
    }

    /// Makes sure everything exported so far is durable (the file exporter flushes).
    pub fn flush(&mut self) -> Result<(), ExportError> {
        match self {
            Self::File(e) => e.flush(),
            _ => Ok(()),
        }
    }
}

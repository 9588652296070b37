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
pub use grpc::{EncodedCodec, GrpcExporter};
pub use http::HttpExporter;
pub use retry::RetryPolicy;

use crate::{signal::Signal, tls::ClientTlsSettings};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{exporter}: invalid endpoint {endpoint:?}: {reason}")]
    Endpoint {
        exporter: &'static str,
        endpoint: String,
        reason: String,
    },
    /// The `tls` settings could not be loaded (the reason is part of the message, not a
    /// `source`, so that it is printed once whichever way the error is shown).
    #[error("{exporter} to {endpoint}: tls: {error}")]
    Tls {
        exporter: &'static str,
        endpoint: String,
        error: crate::tls::TlsError,
    },
    #[error("{exporter}: invalid header {name:?}: {reason}")]
    Header {
        exporter: &'static str,
        name: String,
        reason: String,
    },
    #[error("otlp (gRPC) export to {endpoint} failed: {}", grpc_reason(status))]
    Grpc {
        endpoint: String,
        status: Box<tonic::Status>,
    },
    #[error("otlphttp export to {url} failed: HTTP {status}: {body}")]
    HttpStatus {
        url: String,
        status: u16,
        body: String,
        /// The `Retry-After` the server sent, in seconds form.
        retry_after: Option<Duration>,
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
    /// How long the server asked the client to wait: gRPC's `RetryInfo`, HTTP's `Retry-After`.
    #[must_use]
    pub fn retry_delay(&self) -> Option<Duration> {
        match self {
            Self::Grpc { status, .. } => crate::rpc::retry_delay(status),
            Self::HttpStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the OTLP specification says this failure may be retried.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Grpc { status, .. } => match status.code() {
                tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::OutOfRange
                | tonic::Code::Unavailable
                | tonic::Code::DataLoss => true,
                // Only a server that says when to come back may be retried.
                tonic::Code::ResourceExhausted => crate::rpc::retry_delay(status).is_some(),
                _ => false,
            },
            Self::HttpStatus { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            Self::HttpTransport { .. } => true,
            Self::Endpoint { .. } | Self::Tls { .. } | Self::Header { .. } | Self::File { .. } => {
                false
            }
        }
    }
}

/// An error and its causes, `: `-separated (hyper's and tonic's own messages, such as "client
/// error (Connect)", leave the reason, e.g. an unknown certificate issuer, to the sources).
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    append_sources(&mut text, error.source());
    text
}

fn append_sources(text: &mut String, mut source: Option<&dyn std::error::Error>) {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
}

/// What to change when a TLS handshake failed the way `reason` says; `plain_text` tells how
/// to turn TLS off for this exporter.
pub(crate) fn tls_hint(reason: &str, plain_text: &str) -> Option<String> {
    if reason.contains("InvalidContentType") {
        Some(format!("the server does not speak TLS; {plain_text}"))
    } else if reason.contains("UnknownIssuer") {
        Some(
            "no CA in tls.ca_file (or, without it, the system's CAs) signed the server's \
             certificate"
                .into(),
        )
    } else if reason.contains("CertificateRequired") {
        Some("the server requires a client certificate: set tls.cert_file and tls.key_file".into())
    } else {
        None
    }
}

/// `Unavailable: tcp connect error: Connection refused (os error 111)`: the code, the message
/// and what caused it, without tonic's metadata dump.
fn grpc_reason(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status_causes(status))
}

/// A status's message and what caused it.
pub(crate) fn status_causes(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    append_sources(&mut text, std::error::Error::source(status));
    text
}

/// Settings shared by the network exporters.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    pub endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub gzip: bool,
    pub timeout: Duration,
    /// The `tls` section; whether TLS is used also depends on the endpoint's scheme.
    pub tls: ClientTlsSettings,
    pub retry: RetryPolicy,
    /// Counts export attempts that were retried (shared with runbom's telemetry).
    pub retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// One configured exporter.
pub enum Exporter {
    // The network exporters are boxed: they are large (clients, settings) and long-lived.
    Grpc(Box<GrpcExporter>),
    Http(Box<HttpExporter>),
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

//! What can go wrong building an exporter or exporting, and whether OTLP allows a retry.

use std::time::Duration;

use runbom_event::redact;

/// What can go wrong exporting. Messages show an endpoint through [`redact::url`]: endpoints may
/// carry credentials (`https://user:token@host`, `?api-key=…`), which runbom never logs.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{exporter}: invalid endpoint {:?}: {reason}", redact::url(endpoint))]
    Endpoint {
        exporter: &'static str,
        endpoint: String,
        reason: String,
    },
    /// The `tls` settings could not be loaded (the reason is part of the message, not a
    /// `source`, so that it is printed once whichever way the error is shown).
    #[error("{exporter} to {}: tls: {error}", redact::url(endpoint))]
    Tls {
        exporter: &'static str,
        endpoint: String,
        error: crate::transport::tls::TlsError,
    },
    #[error("{exporter}: invalid header {name:?}: {reason}")]
    Header {
        exporter: &'static str,
        name: String,
        reason: String,
    },
    #[error(
        "otlp (gRPC) export to {} failed: {}",
        redact::url(endpoint),
        grpc_reason(status)
    )]
    Grpc {
        endpoint: String,
        status: Box<tonic::Status>,
    },
    #[error(
        "otlphttp export to {} failed: HTTP {status}: {body}",
        redact::url(url)
    )]
    HttpStatus {
        url: String,
        status: u16,
        body: String,
        /// The `Retry-After` the server sent, in seconds form.
        retry_after: Option<Duration>,
    },
    #[error("otlphttp export to {} failed: {reason}", redact::url(url))]
    HttpTransport { url: String, reason: String },
    #[error("file exporter: {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A persistent queue (`sending_queue.storage`) that cannot be opened.
    #[error("persistent queue in {dir}: {source}")]
    Queue {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExportError {
    /// How long the server asked the client to wait: gRPC's `RetryInfo`, HTTP's `Retry-After`.
    #[must_use]
    pub fn retry_delay(&self) -> Option<Duration> {
        match self {
            Self::Grpc { status, .. } => crate::transport::rpc::retry_delay(status),
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
                tonic::Code::ResourceExhausted => {
                    crate::transport::rpc::retry_delay(status).is_some()
                }
                _ => false,
            },
            Self::HttpStatus { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            Self::HttpTransport { .. } => true,
            Self::Endpoint { .. }
            | Self::Tls { .. }
            | Self::Header { .. }
            | Self::File { .. }
            | Self::Queue { .. } => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_show_no_credential_of_an_endpoint() {
        let url = "https://alice:s3cret-pass@collector:4318/v1/traces?api-key=k3y-value#x";
        let errors = [
            ExportError::HttpTransport {
                url: url.into(),
                reason: "connection refused".into(),
            },
            ExportError::Grpc {
                endpoint: url.into(),
                status: Box::new(tonic::Status::unavailable("down")),
            },
            ExportError::Endpoint {
                exporter: "otlphttp",
                endpoint: url.into(),
                reason: "bad".into(),
            },
        ];
        for e in errors {
            let shown = e.to_string();
            assert!(shown.contains("collector:4318/v1/traces"), "{shown}");
            for secret in ["s3cret-pass", "k3y-value"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }
}

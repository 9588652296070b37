//! Receivers: `otlp` ([`otlp`]: gRPC, [`serve_grpc`], and HTTP, [`serve_http`]) and `ebpf`
//! ([`ebpf`]: the kernel's events).
//!
//! Both transports do the same thing once a request is decoded: drop the items the OTLP spec
//! calls invalid (answered as an OTLP partial success), then hand the rest
//! to the pipelines through [`Ingest`]. How each outcome is answered:
//!
//! | outcome                                  | gRPC                         | HTTP                       |
//! |------------------------------------------|------------------------------|----------------------------|
//! | accepted (maybe partially)               | OK + `partial_success`       | 200 + `partial_success`    |
//! | malformed payload                        | `INVALID_ARGUMENT`           | 400                        |
//! | larger than [`Limits::max_request_bytes`]| `RESOURCE_EXHAUSTED`         | 413                        |
//! | [`Refusal::Unavailable`] (full, stopping)| `UNAVAILABLE` + `RetryInfo`  | 503 + `Retry-After`        |
//! | [`Refusal::NotConfigured`]               | `UNIMPLEMENTED`              | 404                        |
//!
//! Error answers carry a `google.rpc.Status` naming the reason.

pub mod ebpf;
mod error;
mod grpc;
mod http;
mod json;
pub mod otlp;
pub mod sender;
mod tls;
mod validate;

use std::{net::SocketAddr, time::Duration};

pub use error::ReceiverError;
pub use grpc::serve_grpc;
pub use http::serve_http;
use prost::Message as _;
use runbom_otlp::signal::Signal;
use validate::PartialSuccess;

use crate::ingest::{Ingest, Refusal};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits a receiver enforces on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request accepted, in bytes, both as received and after decompression.
    /// Defaults to 4 MiB, gRPC's customary maximum message size.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Drops the invalid items of a decoded request, counts them, and pushes the rest.
///
/// A request whose every item was invalid, or that was empty, is answered without being
/// pushed. The receiver's counters see the rejected items as refused. `client` is the peer's
/// address, for the sender's `process.pid` when the pipelines want it.
pub(crate) async fn accept(
    ingest: &Ingest,
    mut signal: Signal,
    client: Option<SocketAddr>,
) -> Result<PartialSuccess, Refusal> {
    let kind = signal.kind();
    if !ingest.accepts(kind) {
        return Err(Refusal::NotConfigured(kind));
    }
    if let (Some(senders), Some(client)) = (ingest.sender_pids(), client) {
        sender::attribute(senders, &mut signal, client).await;
    }
    let partial = validate::drop_invalid(&mut signal);
    if partial.rejected > 0 {
        ingest.count_rejected(kind, partial.rejected);
    }
    if !signal.is_empty() {
        ingest.push(signal).await?;
    }
    Ok(partial)
}

/// The `google.rpc.Status` an error answer carries, with a `google.rpc.RetryInfo` detail
/// when the client should retry after a delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ErrorStatus {
    pub code: tonic::Code,
    pub message: String,
    pub retry_after: Option<Duration>,
}

use runbom_otlp::rpc::RETRY_INFO_TYPE;

impl ErrorStatus {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The `google.rpc.RetryInfo` message, protobuf-encoded, if there is a retry delay.
    pub fn retry_info(&self) -> Option<Vec<u8>> {
        self.retry_after.map(|d| {
            pb::RetryInfo {
                retry_delay: Some(pb::Duration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: d.subsec_nanos() as i32,
                }),
            }
            .encode_to_vec()
        })
    }

    /// The protobuf-encoded `google.rpc.Status`.
    pub fn to_protobuf(&self) -> Vec<u8> {
        pb::Status {
            code: self.code as i32,
            message: self.message.clone(),
            details: self
                .retry_info()
                .map(|value| pb::Any {
                    type_url: RETRY_INFO_TYPE.into(),
                    value,
                })
                .into_iter()
                .collect(),
        }
        .encode_to_vec()
    }

    /// The `google.rpc.Status` in the protobuf JSON mapping.
    pub fn to_json(&self) -> Vec<u8> {
        let mut status = serde_json::json!({
            "code": self.code as i32,
            "message": self.message,
        });
        if let Some(d) = self.retry_after {
            let delay = if d.subsec_nanos() == 0 {
                format!("{}s", d.as_secs())
            } else {
                format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
            };
            status["details"] =
                serde_json::json!([{ "@type": RETRY_INFO_TYPE, "retryDelay": delay }]);
        }
        status.to_string().into_bytes()
    }
}

impl From<&Refusal> for ErrorStatus {
    fn from(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::Unavailable {
                retry_after,
                reason,
            } => Self {
                code: tonic::Code::Unavailable,
                message: reason.clone(),
                retry_after: Some(*retry_after),
            },
            Refusal::NotConfigured(_) => Self::new(tonic::Code::Unimplemented, refusal.to_string()),
        }
    }
}

use runbom_otlp::rpc as pb;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_retry_info() {
        let status = ErrorStatus {
            code: tonic::Code::Unavailable,
            message: "full".into(),
            retry_after: Some(Duration::from_millis(1500)),
        };
        let decoded = pb::Status::decode(status.to_protobuf().as_slice())
            .expect("the encoded google.rpc.Status should decode");
        assert_eq!(decoded.code, 14, "UNAVAILABLE is code 14");
        assert_eq!(decoded.details.len(), 1, "one RetryInfo detail");
        assert_eq!(decoded.details[0].type_url, RETRY_INFO_TYPE);
        let info = pb::RetryInfo::decode(decoded.details[0].value.as_slice())
            .expect("the RetryInfo detail should decode");
        assert_eq!(
            info.retry_delay,
            Some(pb::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        let json: serde_json::Value =
            serde_json::from_slice(&status.to_json()).expect("the JSON status should parse");
        assert_eq!(json["details"][0]["retryDelay"], "1.500000000s", "{json}");
    }
}

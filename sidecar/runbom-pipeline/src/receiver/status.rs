//! The `google.rpc.Status` the OTLP receivers answer errors with.

use std::time::Duration;

use crate::transport::rpc::{self as pb, RETRY_INFO_TYPE};
use prost::Message as _;

use crate::ingest::Refusal;

/// The `google.rpc.Status` an error answer carries, with a `google.rpc.RetryInfo` detail
/// when the client should retry after a delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ErrorStatus {
    pub code: tonic::Code,
    pub message: String,
    pub retry_after: Option<Duration>,
}

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

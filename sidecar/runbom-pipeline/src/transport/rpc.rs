//! The few `google.rpc` / `google.protobuf` messages OTLP error handling needs (their full
//! definitions live in crates that are not in the tree): receivers send them, exporters read
//! the retry delay a server asks for.

use std::time::Duration as StdDuration;

use prost::Message as _;

/// `type_url` of a `google.rpc.RetryInfo` packed in a `google.protobuf.Any`.
pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<Duration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The delay a gRPC error asks the client to wait, from a `google.rpc.RetryInfo` in the
/// status details.
#[must_use]
pub fn retry_delay(status: &tonic::Status) -> Option<StdDuration> {
    let details = Status::decode(status.details()).ok()?;
    let info = details
        .details
        .iter()
        .find(|d| d.type_url == RETRY_INFO_TYPE)
        .and_then(|d| RetryInfo::decode(d.value.as_slice()).ok())?;
    let d = info.retry_delay?;
    Some(
        StdDuration::from_secs(u64::try_from(d.seconds).ok()?)
            + StdDuration::from_nanos(u64::try_from(d.nanos).ok()?),
    )
}

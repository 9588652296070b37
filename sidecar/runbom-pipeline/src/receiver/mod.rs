//! Receivers: `otlp` ([`otlp`]: gRPC, [`serve_grpc`], and HTTP, [`serve_http`]) and `ebpf`
//! ([`ebpf`]: the kernel's events).
//!
//! Both transports do the same thing once a request is decoded: drop the items the OTLP spec
//! calls invalid (answered as an OTLP partial success), move what the client sent in runbom's
//! own namespaces under `received.` ([`provenance`]), then hand the rest to the pipelines
//! through [`Ingest`]. Before decoding, both refuse a request that would take too much memory
//! decoded ([`decoded_limit`]), and one that the requests being decoded beside it leave no
//! room for ([`inflight`]). How each outcome is answered:
//!
//! | outcome                                      | gRPC                        | HTTP                    |
//! |----------------------------------------------|-----------------------------|-------------------------|
//! | accepted (maybe partially)                   | OK + `partial_success`      | 200 + `partial_success` |
//! | malformed payload                            | `INVALID_ARGUMENT`          | 400                     |
//! | larger than [`Limits::max_request_bytes`]    | `RESOURCE_EXHAUSTED`        | 413                     |
//! | larger decoded than [`decoded_limit`] allows | `RESOURCE_EXHAUSTED`        | 413                     |
//! | no room beside the requests being decoded    | `UNAVAILABLE` + `RetryInfo` | 503 + `Retry-After`     |
//! | [`Refusal::Unavailable`] (full, stopping)    | `UNAVAILABLE` + `RetryInfo` | 503 + `Retry-After`     |
//! | [`Refusal::NotConfigured`]                   | `UNIMPLEMENTED`             | 404                     |
//!
//! Error answers carry a `google.rpc.Status` naming the reason.
//!
//! [`Ingest`]: crate::ingest::Ingest
//! [`Refusal::Unavailable`]: crate::ingest::Refusal::Unavailable
//! [`Refusal::NotConfigured`]: crate::ingest::Refusal::NotConfigured

mod accept;
mod conn;
pub mod decoded_limit;
pub mod ebpf;
mod error;
mod grpc;
mod grpc_export;
mod http;
mod inflight;
mod json;
pub mod node_agent;
pub mod otlp;
mod pings;
mod provenance;
pub mod sender;
mod status;
mod tls;
mod validate;

pub use accept::{Limits, PingPolicy};

/// What a receiver does to a decoded request before a pipeline sees it: what the client sent
/// in runbom's namespaces moved under `received.`, the items OTLP calls invalid dropped.
/// Returns how many were dropped. For the fuzz targets.
#[cfg(feature = "fuzzing")]
pub fn screen(signal: &mut runbom_otlp::signal::Signal) -> u64 {
    provenance::quarantine(signal);
    validate::drop_invalid(signal).rejected
}
pub use error::ReceiverError;
pub use grpc::serve_grpc;
pub use http::serve_http;

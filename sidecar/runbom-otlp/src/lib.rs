//! Kernel events as OTLP ([`convert`](mod@convert)), the OTLP request types ([`signal`]), TLS
//! settings ([`tls`]) and the gRPC pieces receivers and exporters share ([`rpc`], [`codec`]).

pub mod codec;
pub mod convert;
pub mod json;
pub mod rpc;
pub mod signal;
pub mod tls;

pub use convert::{ConvertOptions, OtlpBatch, Placement, convert};

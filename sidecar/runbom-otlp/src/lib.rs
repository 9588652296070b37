//! Kernel events as OTLP ([`convert`]) and the exporters that send them ([`export`]).

pub mod convert;
pub mod export;
pub mod json;
pub mod rpc;
pub mod signal;
pub mod tls;

pub use convert::{ConvertOptions, OtlpBatch, Placement, convert};
pub use export::{ExportError, Exporter};

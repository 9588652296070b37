//! Exporters: where OTLP batches go, and the exporter stage that feeds them ([`stage`]).
//! Each exporter is driven by one owning task, so none needs to be `Sync`.
//!
//! One file per exporter type holds its configuration, its checks and its constructor;
//! [`crate::components`] lists the types. `otlp` and `otlphttp` share [`network`]'s section.

mod buffer;
pub mod debug;
mod error;
mod export;
pub mod file;
pub mod network;
pub mod nop;
pub mod otlp;
pub mod otlphttp;
pub mod queue;
pub mod retry;
pub mod stage;
pub mod wal;

pub use debug::{DebugExporter, Verbosity};
pub use error::ExportError;
pub use export::{BoxExporter, ExportFuture, Exporter};
pub use file::FileExporter;
pub use network::NetworkSettings;
pub use otlp::{GrpcChannel, GrpcExporter};
pub use otlphttp::HttpExporter;
pub use retry::RetryPolicy;

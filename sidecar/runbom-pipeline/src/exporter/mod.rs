//! Exporters: where OTLP batches go, and the exporter stage that feeds them ([`stage`]).
//! Each exporter is driven by one owning task, so none needs to be `Sync`.
//!
//! One file per exporter type holds its configuration, its checks and its constructor;
//! [`crate::components`] lists the types. `otlp` and `otlphttp` share [`network`]'s section.

pub mod debug;
mod error;
pub mod file;
pub mod network;
pub mod nop;
pub mod otlp;
pub mod otlphttp;
pub mod retry;
pub mod stage;

use std::{future::Future, pin::Pin};

pub use debug::{DebugExporter, Verbosity};
pub use error::ExportError;
pub(crate) use error::{causes, status_causes, tls_hint};
pub use file::FileExporter;
pub use network::NetworkSettings;
pub use otlp::GrpcExporter;
pub use otlphttp::HttpExporter;
pub use retry::RetryPolicy;
use runbom_otlp::signal::Signal;

/// What an exporter's `export` returns: a future that may hold the exporter.
pub type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ExportError>> + Send + 'a>>;

/// One configured exporter, as its stage drives it.
pub trait Exporter: Send {
    /// Sends one request that is not empty (retrying as the exporter's policy allows).
    fn send<'a>(&'a mut self, signal: &'a Signal) -> ExportFuture<'a>;

    /// Makes sure everything exported so far is durable (the file exporter flushes).
    fn flush(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    /// Sends one request; an empty one is not sent.
    fn export<'a>(&'a mut self, signal: &'a Signal) -> ExportFuture<'a> {
        if signal.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        self.send(signal)
    }
}

/// An exporter of any type.
pub type BoxExporter = Box<dyn Exporter>;

//! What every exporter implements, whatever its type.

use std::{future::Future, pin::Pin};

use runbom_otlp::signal::Signal;

use super::error::ExportError;

/// What an exporter's `export` returns: a future that may hold the exporter.
pub type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ExportError>> + Send + 'a>>;

/// One configured exporter, as its stage drives it.
pub trait Exporter: Send {
    /// Sends one request that is not empty (retrying as the exporter's policy allows).
    fn send<'a>(&'a mut self, signal: &'a Signal) -> ExportFuture<'a>;

    /// Another handle on this exporter, sharing its connection, so that a persistent queue
    /// can have several requests out at once (`sending_queue.num_consumers`); `None` where
    /// requests go one at a time (a file keeps their order).
    fn another(&self) -> Option<BoxExporter> {
        None
    }

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

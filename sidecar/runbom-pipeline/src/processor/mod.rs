//! Processors: stages between a pipeline's receivers and its exporters. Each folder holds the
//! processor, its section of the configuration (`config.rs`) and the conversion into the
//! settings its stage takes.

pub mod aibom;
pub mod batch;
pub mod correlate;
mod error;
pub mod k8sattributes;
pub mod memory_limiter;

pub use error::ProcessorError;

use runbom_otlp::signal::Signal;
use tokio::sync::mpsc;

/// The stage in front of a pipeline's first processor that reads or edits records: kernel log
/// records and spans still held as events ([`Signal::KernelLogs`], [`Signal::KernelSpans`],
/// which `batch` and the exporters take as they are) are built into OTLP log records and spans
/// here, once, so that no processor has to know of them. Runs until `rx` closes.
pub async fn typed(mut rx: mpsc::Receiver<Signal>, tx: mpsc::Sender<Signal>) {
    while let Some(signal) = rx.recv().await {
        if tx.send(signal.into_typed()).await.is_err() {
            return;
        }
    }
}

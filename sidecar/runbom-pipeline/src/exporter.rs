//! Exporter stage: one task per exporter per pipeline, fed by a bounded queue (the
//! Collector's `sending_queue`). A full queue holds the pipeline back, and so the receivers:
//! nothing is dropped silently. Retries happen inside the exporter, per its policy.

use std::sync::Arc;

use runbom_otlp::{Exporter, signal::Signal};
use tokio::sync::mpsc;
use tracing::error;

use crate::telemetry::StageCounters;

/// Exports everything `rx` yields until it closes, then flushes.
pub async fn run(
    name: String,
    mut rx: mpsc::Receiver<Signal>,
    mut exporter: Exporter,
    counters: Arc<StageCounters>,
) {
    while let Some(signal) = rx.recv().await {
        let items = signal.item_count() as u64;
        match exporter.export(&signal).await {
            Ok(()) => counters.add_sent(items),
            Err(e) => {
                counters.add_failed(items);
                error!(exporter = %name, "dropping {items} {}: {e}", signal.kind().item());
            }
        }
    }
    if let Err(e) = exporter.flush() {
        error!(exporter = %name, "{e}");
    }
}

/// Copies every request to each output (the pipeline's exporters); runs until `rx` closes.
pub async fn fan_out(mut rx: mpsc::Receiver<Signal>, outputs: Vec<mpsc::Sender<Signal>>) {
    while let Some(signal) = rx.recv().await {
        let Some((last, rest)) = outputs.split_last() else {
            continue;
        };
        for tx in rest {
            let _ = tx.send(signal.clone()).await;
        }
        let _ = last.send(signal).await;
    }
}

//! Exporter stage: one task per exporter per pipeline, fed by a bounded queue (the
//! Collector's `sending_queue`). A full queue holds the pipeline back, and so the receivers:
//! nothing is dropped silently. Retries happen inside the exporter, per its policy.

use std::sync::Arc;

use runbom_otlp::{Exporter, signal::Signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::telemetry::StageCounters;

/// Exports everything `rx` yields until it closes, then flushes.
/// Once `give_up` is cancelled (shutdown's grace period is over), what is still queued or
/// being retried is dropped and counted as failed instead of retried.
pub async fn run(
    name: String,
    mut rx: mpsc::Receiver<Signal>,
    mut exporter: Exporter,
    counters: Arc<StageCounters>,
    give_up: CancellationToken,
) {
    while let Some(signal) = rx.recv().await {
        let items = signal.item_count() as u64;
        let outcome = tokio::select! {
            r = exporter.export(&signal), if !give_up.is_cancelled() => r.map_err(|e| e.to_string()),
            () = give_up.cancelled() => Err("runbom is shutting down and its grace period is over".into()),
        };
        match outcome {
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

//! The exporter stage: one task per exporter per pipeline, fed by a bounded queue (the
//! Collector's `sending_queue`). A full queue holds the pipeline back, and so the receivers:
//! nothing is dropped silently. Retries happen inside the exporter, per its policy.
//!
//! The queue is bounded twice: in requests (the channel) and in items (spans, log records,
//! data points), so that memory held for a slow downstream does not depend on how large the
//! batches are.

use std::sync::Arc;

use runbom_otlp::signal::Signal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::export::BoxExporter;
use crate::telemetry::StageCounters;

/// Exports everything `rx` yields until it closes, then flushes.
/// Once `give_up` is cancelled (shutdown's grace period is over), what is still queued or
/// being retried is dropped and counted as failed instead of retried.
pub async fn run(
    name: String,
    mut rx: mpsc::Receiver<Queued>,
    mut exporter: BoxExporter,
    counters: Arc<StageCounters>,
    give_up: CancellationToken,
) {
    // The permit returns the request's items to the queue's budget once it is done with.
    // What the end of the grace period dropped: one line for all of it, not one per request.
    let mut dropped_at_end: Option<(u64, &'static str)> = None;
    while let Some((signal, _permit)) = rx.recv().await {
        let items = signal.item_count() as u64;
        let outcome = tokio::select! {
            r = exporter.export(&signal), if !give_up.is_cancelled() => r.map_err(Some),
            () = give_up.cancelled() => Err(None),
        };
        match outcome {
            Ok(()) => counters.add_sent(items),
            Err(e) => {
                counters.add_failed(items);
                if let Some(e) = e {
                    error!(exporter = %name, "dropping {items} {}: {e}", signal.kind().item());
                } else {
                    dropped_at_end.get_or_insert((0, signal.kind().item())).0 += items;
                }
            }
        }
    }
    if let Some((items, what)) = dropped_at_end {
        error!(
            exporter = %name,
            "dropped {items} {what} at shutdown: not delivered within service.shutdown_timeout"
        );
    }
    if let Err(e) = exporter.flush() {
        error!(exporter = %name, "{e}");
    }
}

/// A request in an exporter's queue with its share of the queue's item budget.
pub type Queued = (Signal, OwnedSemaphorePermit);

/// The input side of one exporter's queue.
#[derive(Clone)]
pub struct QueueSender {
    tx: mpsc::Sender<Queued>,
    items: Arc<Semaphore>,
    capacity: u32,
}

impl QueueSender {
    /// A queue of at most `requests` requests and `items` items.
    #[must_use]
    pub fn new(requests: usize, items: u32) -> (Self, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(requests.max(1));
        let capacity = items.max(1);
        let items = Arc::new(Semaphore::new(capacity as usize));
        (
            Self {
                tx,
                items,
                capacity,
            },
            rx,
        )
    }

    /// Reports this queue's items on `counters` (the exporter's).
    pub fn report_to(&self, counters: &crate::StageCounters) {
        counters.watch_queue(&self.items, self.capacity);
    }

    /// Waits for room, then queues `signal`. A request larger than the whole budget waits for
    /// an empty queue and goes alone.
    async fn send(&self, signal: Signal) {
        let wanted = u32::try_from(signal.item_count())
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        let Ok(permit) = self.items.clone().acquire_many_owned(wanted).await else {
            return;
        };
        let _ = self.tx.send((signal, permit)).await;
    }
}

/// Copies every request to each output (the pipeline's exporters); runs until `rx` closes.
pub async fn fan_out(mut rx: mpsc::Receiver<Signal>, outputs: Vec<QueueSender>) {
    while let Some(signal) = rx.recv().await {
        let Some((last, rest)) = outputs.split_last() else {
            continue;
        };
        for out in rest {
            out.send(signal.clone()).await;
        }
        last.send(signal).await;
    }
}

//! The exporter stage: one task per exporter per pipeline, fed by a bounded queue (the
//! Collector's `sending_queue`). A full queue holds the pipeline back, and so the receivers:
//! nothing is dropped silently. Retries happen inside the exporter, per its policy.
//!
//! The queue is bounded twice: in requests (the channel) and in items (spans, log records,
//! data points), so that memory held for a slow downstream does not depend on how large the
//! batches are. With `sending_queue.storage` it is a write-ahead log on disk instead
//! ([`super::wal`], [`run_persistent`]), bounded in bytes.

use std::sync::Arc;

use runbom_otlp::signal::Signal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{export::BoxExporter, wal::Wal};
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

/// The input side of one exporter's queue: in memory, or on disk.
#[derive(Clone)]
pub enum QueueSender {
    Memory(MemoryQueue),
    Persistent(Arc<PersistentSender>),
}

/// The input side of an in-memory queue.
#[derive(Clone)]
pub struct MemoryQueue {
    tx: mpsc::Sender<Queued>,
    items: Arc<Semaphore>,
    capacity: u32,
}

/// The input side of a persistent queue; the last one dropped closes the queue.
pub struct PersistentSender {
    wal: Arc<Wal>,
    name: String,
    counters: Arc<StageCounters>,
}

impl Drop for PersistentSender {
    fn drop(&mut self) {
        self.wal.close();
    }
}

impl PersistentSender {
    #[must_use]
    pub fn new(wal: Arc<Wal>, name: String, counters: Arc<StageCounters>) -> Self {
        Self {
            wal,
            name,
            counters,
        }
    }

    /// Appends `signal` to the log once there is room. A request that cannot be written is
    /// dropped, counted and logged.
    async fn send(&self, signal: Signal) {
        let wal = self.wal.clone();
        let items = signal.item_count() as u64;
        let what = signal.kind().item();
        let written = tokio::task::spawn_blocking(move || wal.append(&signal)).await;
        if let Err(e) = written.map_err(std::io::Error::other).and_then(|r| r) {
            self.counters.add_failed(items);
            error!(
                exporter = %self.name,
                "dropping {items} {what}: cannot write to the persistent queue in {}: {e}",
                self.wal.dir().display()
            );
        }
    }
}

impl QueueSender {
    /// An in-memory queue of at most `requests` requests and `items` items.
    #[must_use]
    pub fn new(requests: usize, items: u32) -> (Self, mpsc::Receiver<Queued>) {
        let (queue, rx) = MemoryQueue::new(requests, items);
        (Self::Memory(queue), rx)
    }

    async fn send(&self, signal: Signal) {
        match self {
            Self::Memory(q) => q.send(signal).await,
            Self::Persistent(q) => q.send(signal).await,
        }
    }

    /// Reports an in-memory queue's items on `counters` (the exporter's); a persistent queue
    /// has no such gauge yet.
    pub fn report_to(&self, counters: &crate::StageCounters) {
        if let Self::Memory(q) = self {
            q.report_to(counters);
        }
    }
}

impl MemoryQueue {
    /// A queue of at most `requests` requests and `items` items.
    fn new(requests: usize, items: u32) -> (Self, mpsc::Receiver<Queued>) {
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
/// With `handed`, counts there every request handed to all outputs (so that a receiver can
/// wait until its request is in the persistent queues, [`crate::ingest::Persisted`]).
pub async fn fan_out(
    mut rx: mpsc::Receiver<Signal>,
    outputs: Vec<QueueSender>,
    handed: Option<watch::Sender<u64>>,
) {
    while let Some(signal) = rx.recv().await {
        if let Some((last, rest)) = outputs.split_last() {
            for out in rest {
                out.send(signal.clone()).await;
            }
            last.send(signal).await;
        }
        if let Some(h) = &handed {
            h.send_modify(|n| *n += 1);
        }
    }
}

/// Exports what the persistent queue `wal` holds, oldest first, with up to `consumers`
/// requests out at once (one when the exporter has no [`another`](super::export::Exporter::another)
/// handle), acknowledging each once its export has ended (delivered, or dropped as [`run`]
/// drops), until the queue is closed and empty. Once `give_up` is cancelled, what is left
/// (and what was out) stays on disk for the next start (not dropped, not counted as failed).
pub async fn run_persistent(
    name: String,
    wal: Arc<Wal>,
    exporter: BoxExporter,
    counters: Arc<StageCounters>,
    (give_up, consumers): (CancellationToken, usize),
) {
    let mut idle = vec![exporter];
    while idle.len() < consumers {
        match idle[0].another() {
            Some(another) => idle.push(another),
            None => break,
        }
    }
    let mut flusher = None;
    let mut out = tokio::task::JoinSet::new();
    // The read in progress is kept across turns: a record read is never dropped half-way.
    let mut reading = None;
    let mut drained = false;
    loop {
        if reading.is_none() && !drained && !idle.is_empty() {
            let wal = wal.clone();
            reading = Some(Box::pin(async move { wal.next().await }));
        }
        if drained && out.is_empty() {
            break;
        }
        tokio::select! {
            () = give_up.cancelled() => break,
            next = async {
                match reading.as_mut() {
                    Some(read) => read.await,
                    None => std::future::pending().await,
                }
            }, if reading.is_some() => {
                reading = None;
                let (signal, pos) = match next {
                    Ok(Some(next)) => next,
                    Ok(None) => {
                        drained = true;
                        continue;
                    }
                    Err(e) => {
                        error!(exporter = %name, "cannot read the persistent queue in {}: {e}", wal.dir().display());
                        drained = true;
                        continue;
                    }
                };
                let Some(mut exporter) = idle.pop() else { continue };
                out.spawn(async move {
                    let outcome = exporter.export(&signal).await;
                    (exporter, signal, pos, outcome)
                });
            }
            Some(ended) = out.join_next(), if !out.is_empty() => {
                let Ok((exporter, signal, pos, outcome)) = ended else {
                    error!(exporter = %name, "an export task failed; its request is sent again after a restart");
                    continue;
                };
                idle.push(exporter);
                let items = signal.item_count() as u64;
                match outcome {
                    Ok(()) => counters.add_sent(items),
                    Err(e) => {
                        counters.add_failed(items);
                        error!(exporter = %name, "dropping {items} {}: {e}", signal.kind().item());
                    }
                }
                let w = wal.clone();
                let acked = tokio::task::spawn_blocking(move || w.ack(pos, items)).await;
                if let Err(e) = acked.map_err(std::io::Error::other).and_then(|r| r) {
                    error!(exporter = %name, "cannot record a delivery in the persistent queue (it will be sent again after a restart): {e}");
                }
            }
        }
    }
    // Exports still out at the end of the grace period stay on disk.
    out.abort_all();
    while let Some(ended) = out.join_next().await {
        if let Ok((exporter, ..)) = ended {
            idle.push(exporter);
        }
    }
    let kept = wal.pending();
    if kept > 0 {
        tracing::warn!(
            exporter = %name,
            "{kept} requests not delivered are kept in {} and sent after the next start",
            wal.dir().display()
        );
    }
    for exporter in &mut idle {
        if let Err(e) = exporter.flush() {
            flusher.get_or_insert(e);
        }
    }
    if let Some(e) = flusher {
        error!(exporter = %name, "{e}");
    }
}

//! The `batch` processor: merges requests until they hold `send_batch_size` items (spans, log
//! records, data points) or the oldest has waited `timeout`, like the Collector's.

pub mod config;

use std::time::Duration;

use runbom_otlp::signal::Signal;
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// Send once a batch holds at least this many items.
    pub send_batch_size: usize,
    /// Never merge past this many items (0: no limit); a larger request passes as it is.
    pub send_batch_max_size: usize,
    /// Send a partial batch once its oldest request has waited this long.
    pub timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

/// Runs until `rx` closes, then sends what it holds and returns (closing `tx`).
pub async fn run(mut rx: mpsc::Receiver<Signal>, tx: mpsc::Sender<Signal>, s: BatchSettings) {
    let mut pending: Option<(Signal, usize)> = None;
    // One timer for the stage, moved when a batch starts: a timer made afresh in every turn of
    // the loop is registered and removed again for every request.
    let flush = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(flush);
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some(signal) = got else { break };
                let n = signal.item_count();
                pending = match pending.take() {
                    None => {
                        flush.as_mut().reset(tokio::time::Instant::now() + s.timeout);
                        Some((signal, n))
                    }
                    Some((held, held_n)) if s.send_batch_max_size > 0
                        && held_n + n > s.send_batch_max_size =>
                    {
                        if tx.send(held).await.is_err() {
                            return;
                        }
                        flush.as_mut().reset(tokio::time::Instant::now() + s.timeout);
                        Some((signal, n))
                    }
                    Some((mut held, held_n)) => {
                        // A batch that grows is given its full room at once, not moved at
                        // every doubling.
                        held.reserve(s.send_batch_size.max(held_n + n) - held_n);
                        match held.merge(signal) {
                            Ok(()) => Some((held, held_n + n)),
                            Err(other) => {
                                // A pipeline carries one signal; a stray one is sent on its own.
                                if tx.send(other).await.is_err() {
                                    return;
                                }
                                Some((held, held_n))
                            }
                        }
                    }
                };
                if pending.as_ref().is_some_and(|(_, n)| *n >= s.send_batch_size)
                    && let Some((held, _)) = pending.take()
                    && tx.send(held).await.is_err()
                {
                    return;
                }
            }
            () = &mut flush, if pending.is_some() => {
                if let Some((held, _)) = pending.take()
                    && tx.send(held).await.is_err()
                {
                    return;
                }
            }
        }
    }
    if let Some((held, _)) = pending {
        let _ = tx.send(held).await;
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        trace::v1::{ResourceSpans, ScopeSpans, Span},
    };

    use super::*;

    fn spans(n: usize) -> Signal {
        Signal::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); n],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    /// The batch stage running with these settings: its input, its output, its task.
    fn start(
        send_batch_size: usize,
        send_batch_max_size: usize,
        timeout: Duration,
    ) -> (
        mpsc::Sender<Signal>,
        mpsc::Receiver<Signal>,
        tokio::task::JoinHandle<()>,
    ) {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, out_rx) = mpsc::channel(16);
        let settings = BatchSettings {
            send_batch_size,
            send_batch_max_size,
            timeout,
        };
        (in_tx, out_rx, tokio::spawn(run(in_rx, out_tx, settings)))
    }

    #[tokio::test]
    async fn batches_by_count_then_timeout_then_close() {
        let (in_tx, mut out_rx, task) = start(10, 0, Duration::from_millis(100));
        for _ in 0..3 {
            in_tx.send(spans(4)).await.unwrap();
        }
        // 12 items reached the size: one batch of all three requests.
        assert_eq!(out_rx.recv().await.unwrap().item_count(), 12);
        in_tx.send(spans(2)).await.unwrap();
        // Below the size: sent when the timeout expires.
        assert_eq!(out_rx.recv().await.unwrap().item_count(), 2);
        in_tx.send(spans(1)).await.unwrap();
        drop(in_tx);
        // Closing the input flushes what is held.
        assert_eq!(out_rx.recv().await.unwrap().item_count(), 1);
        task.await.unwrap();
        assert!(out_rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn max_size_is_not_exceeded_by_merging() {
        let (in_tx, mut out_rx, task) = start(100, 5, Duration::from_secs(10));
        in_tx.send(spans(3)).await.unwrap();
        in_tx.send(spans(3)).await.unwrap();
        drop(in_tx);
        assert_eq!(out_rx.recv().await.unwrap().item_count(), 3);
        assert_eq!(out_rx.recv().await.unwrap().item_count(), 3);
        task.await.unwrap();
    }
}

//! Conversion across cores: when one task cannot convert the reader's events fast enough,
//! `workers` tasks share them by process (`pid`, the thread group id). Each worker groups its
//! events into requests, converts and pushes them as the single task would; all the events of
//! one process go to the same worker, in the order they were read, so a process's events keep
//! their order (what a reader of one program run's activity relies on). Workers run on the
//! runtime's threads: more workers than runtime threads add nothing.

use std::sync::Arc;

use runbom_event::KernelEvent;
use runbom_otlp::ConvertOptions;
use tokio::{sync::mpsc, task::JoinSet};
use tracing::warn;

use super::EventCounter;
use crate::Ingest;

/// Batches waiting per worker: with the reader's batches of up to 1024 events split over the
/// workers, a few batches are enough to keep each worker busy while the next is split.
const WORKER_QUEUE: usize = 4;

/// The default number of workers: one per CPU this process may run on.
#[must_use]
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The worker that converts `pid`'s events.
fn worker_of(pid: u32, workers: usize) -> usize {
    // A u32 always fits in usize on the targets runbom builds for (64-bit Linux).
    pid as usize % workers
}

/// Splits every batch of `rx` by process over `workers` workers until `rx` closes, then waits
/// for the workers to push what they hold. A full worker queue makes this wait (backpressure
/// reaches the reader, then the ring).
pub(super) async fn forward(
    mut rx: mpsc::Receiver<Vec<KernelEvent>>,
    ingest: &Ingest,
    opts: &Arc<ConvertOptions>,
    counter: &EventCounter,
    workers: usize,
) {
    let mut queues = Vec::with_capacity(workers);
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        queues.push(tx);
        let (ingest, opts) = (ingest.clone(), opts.clone());
        tasks.spawn(async move { super::batch_and_push(rx, &ingest, &opts, |_| {}).await });
    }
    let mut parts: Vec<Vec<KernelEvent>> = (0..workers).map(|_| Vec::new()).collect();
    while let Some(events) = rx.recv().await {
        counter.count(&events);
        // A batch of one worker's processes (often one busy process) goes to it as it is. An
        // event of the first event's process needs no division to tell.
        let one_worker = events.first().map(|e| (e.pid, worker_of(e.pid, workers)));
        if let Some((pid, first)) = one_worker
            && events
                .iter()
                .all(|e| e.pid == pid || worker_of(e.pid, workers) == first)
        {
            if queues[first].send(events).await.is_err() {
                warn!("an ebpf conversion worker stopped; its share of events is lost");
            }
            continue;
        }
        for event in events {
            parts[worker_of(event.pid, workers)].push(event);
        }
        for (part, queue) in parts.iter_mut().zip(&queues) {
            if part.is_empty() {
                continue;
            }
            let share = std::mem::take(part);
            if queue.send(share).await.is_err() {
                // Only a worker that panicked is gone; its panic is reported below.
                warn!("an ebpf conversion worker stopped; its share of events is lost");
            }
        }
    }
    drop(queues);
    while let Some(ended) = tasks.join_next().await {
        if let Err(e) = ended {
            warn!("an ebpf conversion worker failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc, time::Duration};

    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use runbom_event::{Detail, KernelEvent, ProcessInfo};
    use runbom_otlp::ConvertOptions;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{EventCounter, forward};
    use crate::{Ingest, Signal, SignalKind, Telemetry};

    fn event(process: &Arc<ProcessInfo>, seq: u64) -> KernelEvent {
        KernelEvent {
            pid: process.pid,
            tid: process.pid,
            cgroup_id: 1,
            start_ns: seq,
            end_ns: seq,
            process: process.clone(),
            detail: Detail::Exit { code: Some(0) },
        }
    }

    /// Every event arrives exactly once, and each process's events in the order read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_once_in_process_order() {
        let telemetry = Telemetry::default();
        let (tx, mut out) = mpsc::channel(1024);
        let ingest = Ingest::new(
            "ebpf".into(),
            vec![(SignalKind::Logs, tx)],
            vec![(
                SignalKind::Logs,
                telemetry.stage("receiver", "ebpf", SignalKind::Logs),
            )],
            Duration::from_secs(5),
            CancellationToken::new(),
        );
        let counter = EventCounter::new(telemetry.metrics());
        let opts = Arc::new(ConvertOptions {
            host_name: "node".into(),
            uncorrelated_spans: false,
        });
        let processes: Vec<Arc<ProcessInfo>> = (100..107)
            .map(|pid| {
                Arc::new(ProcessInfo {
                    pid,
                    exe: "/bin/true".into(),
                    ..ProcessInfo::default()
                })
            })
            .collect();
        let (events_tx, events_rx) = mpsc::channel(4);
        let sending = tokio::spawn(async move {
            let mut seq = 0u64;
            for round in 0..20 {
                let batch: Vec<KernelEvent> = (0..700)
                    .map(|i| {
                        seq += 1;
                        event(&processes[(i * 5 + round) % processes.len()], seq)
                    })
                    .collect();
                events_tx.send(batch).await.expect("forward is reading");
            }
            seq
        });
        forward(events_rx, &ingest, &opts, &counter, 3).await;
        let sent = sending.await.expect("sender finished");
        drop(ingest);

        let mut last: HashMap<i64, u64> = HashMap::new();
        let mut received = 0;
        while let Some(signal) = out.recv().await {
            let Signal::Logs(request) = signal.into_typed() else {
                panic!("only logs were asked for")
            };
            for resource in request.resource_logs {
                let pid = resource
                    .resource
                    .expect("a resource per process")
                    .attributes
                    .iter()
                    .find(|a| a.key == "process.pid")
                    .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                        Value::IntValue(v) => Some(*v),
                        _ => None,
                    })
                    .expect("process.pid on the resource");
                for record in resource.scope_logs.iter().flat_map(|s| &s.log_records) {
                    let seq = record.time_unix_nano;
                    let previous = last.insert(pid, seq).unwrap_or(0);
                    assert!(
                        seq > previous,
                        "process {pid}: event {seq} came after event {previous}"
                    );
                    received += 1;
                }
            }
        }
        assert_eq!(received, sent, "every event exactly once");
        assert_eq!(last.len(), 7, "every process's events arrived");
    }
}

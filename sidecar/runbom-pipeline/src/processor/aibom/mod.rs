//! The `aibom` processor of a traces pipeline: holds spans per trace for `wait`, judges each
//! trace against the declared AI-BOM (`runbom_aibom`), passes the annotated spans on, and hands
//! the drift alerts to the logs pipelines that list the processor's name among their receivers
//! (like a Collector connector: `service.pipelines.logs.receivers: [otlp, aibom]`).

pub mod config;
pub mod metrics;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use runbom_aibom::{
    AnnotatedRelease, BomWatch, DeclaredBom, Processor, Released, Settings, Stats, bom::BomError,
};
use runbom_otlp::{AnnotatedTraces, signal::Signal};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tracing::{error, warn};

use self::metrics::AibomMetrics;
use crate::Ingest;

/// One configured `aibom` processor.
#[derive(Clone, Debug)]
pub struct AibomSpec {
    /// The configured name (`aibom`, `aibom/strict`): also the receiver name of its alerts.
    pub name: String,
    pub settings: Settings,
    /// The declared BOM, loaded before start; shared by the pipelines that list the processor.
    pub bom: Arc<Mutex<BomWatch>>,
    /// How often the BOM file is checked for changes.
    pub reload_interval: Duration,
    pub stats: Arc<Stats>,
}

/// A `correlate` processor before this one sends its kernel log records down the pipeline:
/// they are judged here and go on to the ebpf receiver's logs pipelines (`None`: there are
/// none).
pub struct KernelLogs(pub Option<Ingest>);

/// Runs until `rx` closes, then releases every trace it holds and returns. `kernel_logs`:
/// when a `correlate` processor before it sends its kernel log records down the pipeline, the
/// logs pipelines of the ebpf receiver; the records no trace claimed are judged (shadow AI)
/// and handed on there.
pub async fn run(
    mut rx: mpsc::Receiver<Signal>,
    tx: mpsc::Sender<Signal>,
    spec: AibomSpec,
    alerts: Option<Ingest>,
    kernel_logs: Option<KernelLogs>,
    metrics: Arc<AibomMetrics>,
) {
    let mut processor = Processor::with_stats(spec.settings.clone(), spec.stats.clone());
    let mut bom = current(&spec.bom);
    if alerts.is_none() {
        warn!(
            processor = %spec.name,
            "no logs pipeline lists `{}` as a receiver: drift alerts are counted but not exported",
            spec.name
        );
    }
    let mut reading: Option<oneshot::Receiver<BomRead>> = None;
    let mut reload = tokio::time::interval(spec.reload_interval.max(Duration::from_millis(100)));
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = processor.next_deadline().map(Instant::from_std);
        let out = tokio::select! {
            got = rx.recv() => match got {
                Some(Signal::Traces(req)) => {
                    annotated(processor.push_annotated(req, std::time::Instant::now(), &bom))
                }
                Some(Signal::Logs(mut req)) if kernel_logs.is_some() => {
                    processor.judge_logs(&mut req, std::time::Instant::now(), &bom);
                    if let Some(KernelLogs(Some(ingest))) = &kernel_logs {
                        ingest.push_waiting(Signal::Logs(req)).await;
                    }
                    continue;
                }
                // Still the events: judged as they are, written from them downstream.
                Some(Signal::KernelLogs(mut logs)) if kernel_logs.is_some() => {
                    processor.judge_kernel_logs(&mut logs, std::time::Instant::now(), &bom);
                    if let Some(KernelLogs(Some(ingest))) = &kernel_logs {
                        ingest.push_waiting(Signal::KernelLogs(logs)).await;
                    }
                    continue;
                }
                Some(other) => {
                    // A traces pipeline carries traces; anything else passes as it is.
                    if tx.send(other).await.is_err() {
                        return;
                    }
                    continue;
                }
                None => break,
            },
            () = sleep_until(due), if due.is_some() => {
                plain(processor.release_due(std::time::Instant::now(), &bom))
            }
            _ = reload.tick() => {
                if let Some(reloaded) = reload_bom(&spec, &mut reading).await {
                    bom = reloaded;
                }
                save_baseline(&spec);
                continue;
            }
        };
        if !emit(out, &tx, alerts.as_ref(), &spec, &metrics).await {
            return;
        }
    }
    let out = plain(processor.release_all(&bom));
    emit(out, &tx, alerts.as_ref(), &spec, &metrics).await;
    save_baseline(&spec);
}

/// How long a BOM read may take before the stage stops waiting for it: it keeps the last good
/// BOM and starts no other read until that one ends.
const BOM_READ_TIMEOUT: Duration = Duration::from_secs(5);

use runbom_aibom::reload::BomRead;

/// Re-reads the BOM file when it changed, on a thread of its own (a read that hangs holds
/// neither the stage, nor the runtime, nor runbom's exit), waiting at most
/// [`BOM_READ_TIMEOUT`]. The BOM now in force, when it was looked at.
async fn reload_bom(
    spec: &AibomSpec,
    reading: &mut Option<oneshot::Receiver<BomRead>>,
) -> Option<Arc<DeclaredBom>> {
    if let Some(rx) = reading {
        // A read that outlived its timeout: no second one until it ends (its result is stale).
        if matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            return None;
        }
        *reading = None;
    }
    let path = {
        let mut watch = lock(&spec.bom);
        if !watch.changed() {
            return None;
        }
        watch.path().to_owned()
    };
    let (tx, mut rx) = oneshot::channel();
    let reader = {
        let path = path.clone();
        std::thread::Builder::new()
            .name("runbom-bom-read".into())
            .spawn(move || {
                let _ = tx.send(BomWatch::read(&path));
            })
    };
    let read = match reader {
        Err(error) => Err(BomError::Read {
            source_name: path.display().to_string(),
            error,
        }),
        Ok(_) => match tokio::time::timeout(BOM_READ_TIMEOUT, &mut rx).await {
            Ok(Ok(read)) => Ok(read),
            Ok(Err(_)) => Err(BomError::Read {
                source_name: path.display().to_string(),
                error: std::io::Error::other("the reading thread ended without an answer"),
            }),
            Err(_) => {
                *reading = Some(rx);
                Err(BomError::Timeout {
                    source_name: path.display().to_string(),
                    seconds: BOM_READ_TIMEOUT.as_secs(),
                })
            }
        },
    };
    let mut watch = lock(&spec.bom);
    // A broken file is logged and counted by the watch; the last good BOM stays.
    match read {
        Ok(read) => {
            let _ = watch.apply(read);
        }
        Err(e) => watch.failed(e),
    }
    Some(watch.current().clone())
}

fn lock(bom: &Mutex<BomWatch>) -> std::sync::MutexGuard<'_, BomWatch> {
    bom.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes the learned baseline when it changed (small, and only while it learns).
fn save_baseline(spec: &AibomSpec) {
    let Some(b) = &spec.settings.baseline else {
        return;
    };
    let mut b = b.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(e) = b.save() {
        error!(processor = %spec.name, "the learned baseline is not saved: {e}");
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

fn current(bom: &Mutex<BomWatch>) -> Arc<DeclaredBom> {
    lock(bom).current().clone()
}

/// What a release lets go on: the spans, with their verdicts beside them or written onto them,
/// and the alerts (held as their parts, or built).
struct Emitted {
    traces: Option<AnnotatedTraces>,
    alerts: Option<Signal>,
}

fn annotated(out: AnnotatedRelease) -> Emitted {
    Emitted {
        traces: out.traces,
        alerts: out.alerts.map(|a| Signal::SharedLogs(Box::new(a))),
    }
}

/// Spans released with their verdicts written onto them, as a release with none beside them.
fn plain(out: Released) -> Emitted {
    Emitted {
        traces: out.traces.map(AnnotatedTraces::plain),
        alerts: out.alerts.map(Signal::Logs),
    }
}

/// Passes the released spans on (their verdicts written onto them, or beside them for the
/// exporters to write) and the alerts to the logs pipelines; false once the next stage is
/// gone.
async fn emit(
    out: Emitted,
    tx: &mpsc::Sender<Signal>,
    alerts: Option<&Ingest>,
    spec: &AibomSpec,
    metrics: &AibomMetrics,
) -> bool {
    if let Some(traces) = &out.traces {
        metrics.count_annotated(traces);
    }
    if let Some(logs) = out.alerts {
        match &logs {
            Signal::SharedLogs(shared) => metrics.count_shared_alerts(shared),
            Signal::Logs(req) => metrics.count_alerts(req),
            _ => {}
        }
        let n = logs.item_count();
        match alerts {
            Some(ingest) => {
                if let Err(e) = ingest.push(logs).await {
                    spec.stats
                        .alerts_dropped
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    error!(processor = %spec.name, "dropping {n} drift alert(s): {e}");
                }
            }
            None => {
                spec.stats
                    .alerts_dropped
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    match out.traces {
        Some(traces) => tx.send(Signal::AnnotatedTraces(traces)).await.is_ok(),
        None => true,
    }
}

//! The correlate stage's conversion across cores: the one correlator decides where every
//! kernel event goes, then hands the events, placed, to `workers` tasks that turn them into
//! OTLP spans and log records and send them on. Events are shared by process
//! ([`runbom_correlate::worker_of`]): all of a process's events go to the same worker, in the
//! order the correlator released them, so a process's events keep their order, as on the
//! single-task path. Application spans do not wait for conversion: the stage sends them itself.

use runbom_correlate::{Decided, Share};
use runbom_otlp::{ConvertOptions, signal::Signal};
use tokio::{sync::mpsc, task::JoinSet};
use tracing::warn;

use super::{KernelLogs, Outcomes, send};

/// Shares waiting per worker: enough to keep a worker busy while the stage decides the next.
const WORKER_QUEUE: usize = 4;

/// Most events converted as one share: a large release (every stranger's events leave at the
/// same tick) is cut so that the workers start early and requests stay of a batch's size.
const SHARE_EVENTS: usize = 1024;

/// The default number of workers: one per runtime thread (`min(2, CPUs)`).
#[must_use]
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// Where the stage's decided output goes: converted here (one worker) or shared by process.
pub(super) enum Convert {
    /// Converted in the stage's own task, as one request per release.
    Inline(ConvertOptions),
    Workers {
        queues: Vec<mpsc::Sender<Share>>,
        tasks: JoinSet<()>,
    },
}

impl Convert {
    /// `workers` tasks (one: in the stage's task) converting with `opts` and sending to `tx`
    /// and `logs`.
    pub(super) fn start(
        workers: usize,
        opts: &ConvertOptions,
        tx: &mpsc::Sender<Signal>,
        logs: &KernelLogs,
        outcomes: &Outcomes,
    ) -> Self {
        if workers <= 1 {
            return Self::Inline(opts.clone());
        }
        let mut queues = Vec::with_capacity(workers);
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let (queue, mut shares) = mpsc::channel::<Share>(WORKER_QUEUE);
            queues.push(queue);
            let (opts, tx, logs, outcomes) =
                (opts.clone(), tx.clone(), logs.clone(), outcomes.clone());
            tasks.spawn(async move {
                while let Some(share) = shares.recv().await {
                    let out = share.convert(&opts);
                    outcomes.count(&out);
                    if !send(out, &tx, &logs).await {
                        return;
                    }
                }
            });
        }
        Self::Workers { queues, tasks }
    }

    /// Sends `decided` on: its spans at once, its events converted (here, or by the workers).
    /// False once downstream is gone.
    pub(super) async fn send(
        &mut self,
        mut decided: Decided,
        tx: &mpsc::Sender<Signal>,
        logs: &KernelLogs,
        outcomes: &Outcomes,
    ) -> bool {
        if decided.is_empty() {
            return true;
        }
        let queues = match self {
            Self::Inline(opts) => {
                let out = decided.convert(opts);
                outcomes.count(&out);
                return send(out, tx, logs).await;
            }
            Self::Workers { queues, .. } => queues,
        };
        let spans = std::mem::take(&mut decided.spans);
        if !spans.is_empty() {
            let request =
                opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                    resource_spans: spans,
                };
            if tx.send(Signal::Traces(request)).await.is_err() {
                return false;
            }
        }
        for (share, queue) in decided.split(queues.len()).into_iter().zip(queues.iter()) {
            for piece in share.pieces(SHARE_EVENTS) {
                if queue.send(piece).await.is_err() {
                    // A worker stops only when downstream is gone (or it panicked: reported
                    // when the stage ends).
                    return false;
                }
            }
        }
        true
    }

    /// Lets the workers convert and send what they were given, and waits for them.
    pub(super) async fn finish(self) {
        let Self::Workers { queues, mut tasks } = self else {
            return;
        };
        drop(queues);
        while let Some(ended) = tasks.join_next().await {
            if let Err(e) = ended {
                warn!("a correlate conversion worker failed: {e}");
            }
        }
    }
}

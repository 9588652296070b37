//! The correlate stage's conversion across cores: the one correlator decides where every
//! kernel event goes, then hands the events, placed, to `workers` tasks that turn them into
//! OTLP spans (and log records still held as the events, [`runbom_otlp::KernelLogs`]) and give
//! them back. Events are shared by process
//! ([`runbom_correlate::worker_of`]): all of a process's events go to the same worker, in the
//! order the correlator released them, so a process's events keep their order, as on the
//! single-task path. The stage waits for a release's shares and sends the release as one
//! request, its application spans together with their kernel children, as the single-task path
//! does: a processor downstream (`aibom`) judges a tool call with the kernel events under it
//! (an MCP call, the files its server opened), so the spans must not arrive before them.

use std::sync::Arc;

use runbom_correlate::{Converted, Decided, Share};
use runbom_otlp::{ConvertOptions, KernelLogs, signal::Signal};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};
use tracing::warn;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::{KernelLogs as Route, Outcomes, send};

/// Shares waiting per worker: enough to keep a worker busy while the stage decides the next.
const WORKER_QUEUE: usize = 4;

/// Most events converted as one piece: a large release (every stranger's events leave at the
/// same tick) is cut so that the workers start early and share it evenly.
const SHARE_EVENTS: usize = 1024;

/// The default number of workers: one per runtime thread (`min(2, CPUs)`).
#[must_use]
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// A share to convert, and where its conversion goes back to the stage.
type Job = (Share, oneshot::Sender<Converted>);

/// Where the stage's decided output goes: converted here (one worker) or shared by process.
pub(super) enum Convert {
    /// Converted in the stage's own task, as one request per release.
    Inline(Arc<ConvertOptions>),
    Workers {
        opts: Arc<ConvertOptions>,
        queues: Vec<mpsc::Sender<Job>>,
        tasks: JoinSet<()>,
    },
}

impl Convert {
    /// `workers` tasks (one: in the stage's task) converting with `opts`.
    pub(super) fn start(workers: usize, opts: &ConvertOptions) -> Self {
        let opts = Arc::new(opts.clone());
        if workers <= 1 {
            return Self::Inline(opts);
        }
        let mut queues = Vec::with_capacity(workers);
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            let (queue, mut jobs) = mpsc::channel::<Job>(WORKER_QUEUE);
            queues.push(queue);
            let opts = Arc::clone(&opts);
            tasks.spawn(async move {
                while let Some((share, back)) = jobs.recv().await {
                    // The stage stops waiting only when it ends.
                    let _ = back.send(share.into_kernel(&opts));
                }
            });
        }
        Self::Workers {
            opts,
            queues,
            tasks,
        }
    }

    /// Sends `decided` on as one request: its spans and its events, converted (here, or by the
    /// workers in parallel). False once downstream is gone.
    pub(super) async fn send(
        &mut self,
        mut decided: Decided,
        tx: &mpsc::Sender<Signal>,
        logs: &Route,
        outcomes: &Outcomes,
    ) -> bool {
        if decided.is_empty() {
            return true;
        }
        outcomes.count(&decided.placements);
        let out = match self {
            Self::Inline(opts) => decided.into_kernel(opts),
            Self::Workers { opts, queues, .. } => {
                let spans = std::mem::take(&mut decided.spans);
                let mut converted = Vec::new();
                for (share, queue) in decided.split(queues.len()).into_iter().zip(queues.iter()) {
                    for piece in share.pieces(SHARE_EVENTS) {
                        let (back, result) = oneshot::channel();
                        if queue.send((piece, back)).await.is_err() {
                            // A worker stops only when it panicked (reported when the stage
                            // ends).
                            return false;
                        }
                        converted.push(result);
                    }
                }
                let mut out = Converted {
                    traces: ExportTraceServiceRequest {
                        resource_spans: spans,
                    },
                    logs: KernelLogs::new(Vec::new(), opts.clone()),
                };
                for result in converted {
                    let Ok(part) = result.await else {
                        return false;
                    };
                    out.traces.resource_spans.extend(part.traces.resource_spans);
                    out.logs.append(part.logs);
                }
                out
            }
        };
        send(out, tx, logs).await
    }

    /// Lets the workers convert and send what they were given, and waits for them.
    pub(super) async fn finish(self) {
        let Self::Workers {
            queues, mut tasks, ..
        } = self
        else {
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

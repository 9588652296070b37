//! The door between a receiver and the pipelines that listen to it.
//!
//! A receiver hands every accepted request to [`Ingest::push`]; the request goes to each
//! pipeline of its signal that lists the receiver. `push` waits for room in the pipelines'
//! bounded channels (backpressure reaches the client) but only up to `accept_timeout`: past it
//! the request is refused with [`Refusal::Unavailable`], which receivers answer with
//! `UNAVAILABLE` / HTTP 503 and a retry hint. Memory stays bounded by the channel capacities.

use std::{sync::Arc, time::Duration};

use runbom_otlp::signal::{Signal, SignalKind};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    processor::memory_limiter::MemoryGate, receiver::sender::SenderPids, telemetry::StageCounters,
};

/// Why a request was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The pipeline is full or shutting down: the client should retry after the delay.
    #[error("{reason}; retry after {retry_after:?}")]
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
    /// No pipeline takes this signal from this receiver.
    #[error("this receiver is in no {} pipeline", .0.as_str())]
    NotConfigured(SignalKind),
}

/// Handle a receiver uses to push what it accepted. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    receiver: String,
    routes: Vec<(SignalKind, mpsc::Sender<Signal>)>,
    counters: Vec<(SignalKind, Arc<StageCounters>)>,
    accept_timeout: Duration,
    stop: CancellationToken,
    gate: Option<Arc<MemoryGate>>,
    senders: Option<Arc<SenderPids>>,
    /// Routes whose pipeline writes to persistent queues: a push waits until it is written.
    persisted: Vec<(mpsc::Sender<Signal>, Arc<Persisted>)>,
}

/// What lets a push into a pipeline with persistent queues (and nothing between its input and
/// its exporters that holds data) wait until its request is on disk, so that a client's OK
/// means the data survives `kill -9`. The pipeline's fan-out counts the requests it has
/// written (in channel order); a push takes its place in that order as it sends.
pub struct Persisted {
    /// Requests sent into the pipeline so far; held across the send so that order and count
    /// agree.
    sent: Mutex<u64>,
    written: watch::Receiver<u64>,
}

impl Persisted {
    /// The barrier, and what the pipeline's fan-out counts written requests with.
    #[must_use]
    pub fn new() -> (Arc<Self>, watch::Sender<u64>) {
        let (tx, written) = watch::channel(0);
        (
            Arc::new(Self {
                sent: Mutex::new(0),
                written,
            }),
            tx,
        )
    }
}

impl Ingest {
    /// `routes`: the input channel of every pipeline that lists this receiver.
    #[must_use]
    pub fn new(
        receiver: String,
        routes: Vec<(SignalKind, mpsc::Sender<Signal>)>,
        counters: Vec<(SignalKind, Arc<StageCounters>)>,
        accept_timeout: Duration,
        stop: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                receiver,
                routes,
                counters,
                accept_timeout,
                stop,
                gate: None,
                senders: None,
                persisted: Vec::new(),
            }),
        }
    }

    /// Refuse data while `gate` says memory is over its limit (the `memory_limiter`).
    #[must_use]
    pub fn with_memory_gate(self, gate: Arc<MemoryGate>) -> Self {
        self.configure("memory gate", |inner| inner.gate = Some(gate))
    }

    /// Add the sending process's `process.pid` to resources that lack one (a pipeline that
    /// correlates needs it).
    #[must_use]
    pub fn with_sender_pids(self, senders: Arc<SenderPids>) -> Self {
        self.configure("sender attribution", |inner| inner.senders = Some(senders))
    }

    /// Wait, on the routes into `pipelines` (their input channel and barrier), until the
    /// request is in their persistent queues.
    #[must_use]
    pub fn with_persisted(self, pipelines: &[(mpsc::Sender<Signal>, Arc<Persisted>)]) -> Self {
        let mine: Vec<_> = pipelines
            .iter()
            .filter(|(tx, _)| self.inner.routes.iter().any(|(_, r)| r.same_channel(tx)))
            .cloned()
            .collect();
        if mine.is_empty() {
            return self;
        }
        self.configure("persisted routes", |inner| inner.persisted = mine)
    }

    /// Sets `what` while this Ingest is not shared yet (logged and ignored after).
    fn configure(mut self, what: &str, set: impl FnOnce(&mut Inner)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            set(inner);
        } else {
            tracing::error!("{what} set on an Ingest already shared; ignored");
        }
        self
    }

    /// Where to look up senders' pids, when this receiver's pipelines want them.
    #[must_use]
    pub fn sender_pids(&self) -> Option<&Arc<SenderPids>> {
        self.inner.senders.as_ref()
    }

    /// The receiver's configured name (`otlp`, `otlp/2`, `ebpf`).
    #[must_use]
    pub fn receiver(&self) -> &str {
        &self.inner.receiver
    }

    /// Whether any pipeline takes `kind` from this receiver.
    #[must_use]
    pub fn accepts(&self, kind: SignalKind) -> bool {
        self.inner.routes.iter().any(|(k, _)| *k == kind)
    }

    /// Cancelled when runbom is shutting down: receivers stop accepting connections. What they
    /// push until they are gone is still delivered (the pipelines drain before runbom exits).
    #[must_use]
    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stop
    }

    fn counters(&self, kind: SignalKind) -> Option<&StageCounters> {
        self.inner
            .counters
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| c.as_ref())
    }

    /// Counts items a receiver rejected itself (malformed, partial success).
    pub fn count_rejected(&self, kind: SignalKind, items: u64) {
        if let Some(c) = self.counters(kind) {
            c.add_refused(items);
        }
    }

    /// Hands `signal` to every pipeline of its kind that lists this receiver (into one with
    /// persistent queues, returns once it is written there).
    pub async fn push(&self, signal: Signal) -> Result<(), Refusal> {
        self.push_as(signal, true).await
    }

    async fn push_as(&self, signal: Signal, wait_written: bool) -> Result<(), Refusal> {
        self.push_or_return(signal, wait_written)
            .await
            .map_err(|(refusal, _)| refusal)
    }

    /// Pushes and counts; a refused request comes back when no pipeline took it (so that
    /// [`Ingest::push_waiting`] can offer it again without having copied it beforehand).
    async fn push_or_return(
        &self,
        signal: Signal,
        wait_written: bool,
    ) -> Result<(), (Refusal, Option<Signal>)> {
        let kind = signal.kind();
        let items = signal.item_count() as u64;
        let result = self.deliver(kind, signal, wait_written).await;
        if let Some(c) = self.counters(kind) {
            match result {
                Ok(()) => c.add_accepted(items),
                Err(_) => c.add_refused(items),
            }
        }
        result
    }

    /// Pushes `signal`, waiting for room as long as it takes: for data no client can retry
    /// (kernel events, and what the correlation makes of them). Returns once accepted, or
    /// at once when no pipeline takes its signal. It does not wait for persistent queues to
    /// write it: nobody is answered, and a retry after a slow write would be a duplicate.
    pub async fn push_waiting(&self, mut signal: Signal) {
        loop {
            match self.push_or_return(signal, false).await {
                Ok(()) | Err((Refusal::NotConfigured(_), _) | (_, None)) => return,
                Err((
                    Refusal::Unavailable {
                        retry_after,
                        reason,
                    },
                    Some(back),
                )) => {
                    tracing::warn!(
                        receiver = %self.inner.receiver,
                        "{reason}; holding kernel events for {retry_after:?}"
                    );
                    tokio::time::sleep(retry_after.min(Duration::from_secs(1))).await;
                    signal = back;
                }
            }
        }
    }

    async fn deliver(
        &self,
        kind: SignalKind,
        signal: Signal,
        wait_written: bool,
    ) -> Result<(), (Refusal, Option<Signal>)> {
        if self.inner.gate.as_ref().is_some_and(|g| g.refusing()) {
            return Err((
                Refusal::Unavailable {
                    retry_after: Duration::from_secs(5),
                    reason: "runbom is over its memory limit".into(),
                },
                Some(signal),
            ));
        }
        let targets: Vec<&mpsc::Sender<Signal>> = self
            .inner
            .routes
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, tx)| tx)
            .collect();
        let Some((last, rest)) = targets.split_last() else {
            return Err((Refusal::NotConfigured(kind), Some(signal)));
        };
        let full = || Refusal::Unavailable {
            retry_after: Duration::from_secs(1),
            reason: format!("the {} pipeline is full", kind.as_str()),
        };
        let deadline = tokio::time::Instant::now() + self.inner.accept_timeout;
        // Every pipeline but the last gets a copy; the last the request itself.
        for tx in rest {
            if let Err((refusal, _)) = self
                .send(tx, signal.clone(), (deadline, wait_written), &full)
                .await
            {
                return Err((refusal, Some(signal)));
            }
        }
        self.send(last, signal, (deadline, wait_written), &full)
            .await
    }

    /// Sends into one pipeline; into one with persistent queues, also waits (until
    /// `deadline`) for the request to be written there. A request not written in time is
    /// refused although it will be written: the client's retry makes a duplicate, never a
    /// loss (at least once). A request that found no room comes back with the refusal.
    async fn send(
        &self,
        tx: &mpsc::Sender<Signal>,
        signal: Signal,
        (deadline, wait_written): (tokio::time::Instant, bool),
        full: &impl Fn() -> Refusal,
    ) -> Result<(), (Refusal, Option<Signal>)> {
        let persisted = self
            .inner
            .persisted
            .iter()
            .find(|(p, _)| wait_written && p.same_channel(tx))
            .map(|(_, p)| p);
        // Room is reserved before the request is handed over, so that a refused request is
        // still ours to return.
        let room = async || match tokio::time::timeout_at(deadline, tx.reserve()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(full()),
        };
        let Some(persisted) = persisted else {
            return match room().await {
                Ok(permit) => {
                    permit.send(signal);
                    Ok(())
                }
                Err(refusal) => Err((refusal, Some(signal))),
            };
        };
        let place = {
            let mut sent = persisted.sent.lock().await;
            match room().await {
                Ok(permit) => permit.send(signal),
                Err(refusal) => return Err((refusal, Some(signal))),
            }
            *sent += 1;
            *sent
        };
        let mut written = persisted.written.clone();
        let not_written = || {
            (
                Refusal::Unavailable {
                    retry_after: Duration::from_secs(1),
                    reason: "the persistent queue did not take the request in time".into(),
                },
                None,
            )
        };
        tokio::time::timeout_at(deadline, written.wait_for(|n| *n >= place))
            .await
            .map_err(|_| not_written())?
            .map_err(|_| not_written())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

    use super::*;
    use crate::Telemetry;

    fn ingest(capacity: usize) -> (Ingest, mpsc::Receiver<Signal>) {
        let (tx, rx) = mpsc::channel(capacity);
        let telemetry = Telemetry::default();
        let counters = telemetry.stage("receiver", "otlp", SignalKind::Logs);
        let ingest = Ingest::new(
            "otlp".into(),
            vec![(SignalKind::Logs, tx)],
            vec![(SignalKind::Logs, counters)],
            Duration::from_millis(100),
            CancellationToken::new(),
        );
        (ingest, rx)
    }

    fn logs() -> Signal {
        Signal::Logs(ExportLogsServiceRequest::default())
    }

    #[tokio::test]
    async fn refuses_while_the_memory_gate_is_closed() {
        let gate = Arc::new(MemoryGate::default());
        let (ingest, mut rx) = ingest(4);
        let ingest = ingest.with_memory_gate(gate.clone());
        gate.set_refusing(true);
        let refused = ingest.push(logs()).await;
        assert!(
            matches!(refused, Err(Refusal::Unavailable { .. })),
            "over the memory limit the push must be refused: {refused:?}"
        );
        gate.set_refusing(false);
        ingest
            .push(logs())
            .await
            .expect("accepted again under the limit");
        assert!(
            rx.recv().await.is_some(),
            "the accepted request reached the pipeline"
        );
    }

    #[tokio::test]
    async fn a_full_pipeline_refuses_after_the_timeout_and_keeps_what_it_accepted() {
        let (ingest, mut rx) = ingest(1);
        ingest.push(logs()).await.expect("room for one");
        let refused = ingest.push(logs()).await;
        assert!(
            matches!(refused, Err(Refusal::Unavailable { .. })),
            "{refused:?}"
        );
        assert!(
            rx.recv().await.is_some(),
            "the first request is still there"
        );
        assert!(
            matches!(
                ingest.push(Signal::empty(SignalKind::Traces)).await,
                Err(Refusal::NotConfigured(SignalKind::Traces))
            ),
            "a signal with no pipeline is refused as not configured"
        );
    }
}

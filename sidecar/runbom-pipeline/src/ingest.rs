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

    /// Pushes and counts; a refused request comes back unless it was handed over (so that
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

    /// Into every pipeline of `kind` or into none: room is reserved in all of them before the
    /// request is handed to any. Only a request handed over whose persistent-queue write is
    /// late is refused without coming back.
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
        if targets.is_empty() {
            return Err((Refusal::NotConfigured(kind), Some(signal)));
        }
        let full = || Refusal::Unavailable {
            retry_after: Duration::from_secs(1),
            reason: format!("the {} pipeline is full", kind.as_str()),
        };
        let deadline = tokio::time::Instant::now() + self.inner.accept_timeout;
        // The barriers of the pipelines with persistent queues among the targets, locked in
        // one order (their addresses) by every receiver: held from before room is reserved
        // until the request is sent, so that the order of sends and the count agree.
        let mut barriers: Vec<&Arc<Persisted>> = self
            .inner
            .persisted
            .iter()
            .filter(|(p, _)| wait_written && targets.iter().any(|tx| p.same_channel(tx)))
            .map(|(_, p)| p)
            .collect();
        barriers.sort_by_key(|p| Arc::as_ptr(p));
        let mut counts = Vec::with_capacity(barriers.len());
        for p in &barriers {
            counts.push(p.sent.lock().await);
        }
        // Room in every pipeline first, then the request into all of them: a refusal leaves
        // nothing behind, so the retry (the client's, or `push_waiting`'s) duplicates nothing.
        let mut permits = Vec::with_capacity(targets.len());
        for tx in &targets {
            match tokio::time::timeout_at(deadline, tx.reserve()).await {
                Ok(Ok(permit)) => permits.push(permit),
                Ok(Err(_)) | Err(_) => return Err((full(), Some(signal))),
            }
        }
        let last = permits.pop().expect("one target at least");
        for permit in permits {
            permit.send(signal.clone());
        }
        last.send(signal);
        let places: Vec<(watch::Receiver<u64>, u64)> = barriers
            .iter()
            .zip(counts.iter_mut())
            .map(|(p, sent)| {
                **sent += 1;
                (p.written.clone(), **sent)
            })
            .collect();
        drop(counts);
        // A request not written in time is refused although it will be written: the client's
        // retry makes a duplicate, never a loss (at least once).
        for (mut written, place) in places {
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
        }
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

    /// One receiver feeding two logs pipelines with room for `capacity` requests each.
    fn ingest_into_two(capacity: usize) -> (Ingest, [mpsc::Receiver<Signal>; 2]) {
        let (tx1, rx1) = mpsc::channel(capacity);
        let (tx2, rx2) = mpsc::channel(capacity);
        let telemetry = Telemetry::default();
        let counters = telemetry.stage("receiver", "otlp", SignalKind::Logs);
        let ingest = Ingest::new(
            "otlp".into(),
            vec![(SignalKind::Logs, tx1), (SignalKind::Logs, tx2)],
            vec![(SignalKind::Logs, counters)],
            Duration::from_millis(100),
            CancellationToken::new(),
        );
        (ingest, [rx1, rx2])
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

    #[tokio::test]
    async fn a_request_refused_by_one_pipeline_reaches_none_and_its_retry_each_once() {
        let (ingest, [mut first, mut second]) = ingest_into_two(1);
        ingest.push(logs()).await.expect("room in both");
        assert!(second.recv().await.is_some(), "the second pipeline took it");
        // Room in the first pipeline only: the request must not go into it alone, or the
        // retry would put it there twice.
        let refused = ingest.push(logs()).await;
        assert!(
            matches!(refused, Err(Refusal::Unavailable { .. })),
            "{refused:?}"
        );
        assert!(first.recv().await.is_some(), "the first request");
        assert!(
            first.try_recv().is_err(),
            "a refused request left nothing in the pipeline that had room"
        );
        // Kernel events wait for room instead: each pipeline gets the request exactly once.
        let (ingest, [mut first, mut second]) = ingest_into_two(1);
        ingest.push(logs()).await.expect("room in both");
        assert!(first.recv().await.is_some());
        let waiting = tokio::spawn({
            let ingest = ingest.clone();
            async move { ingest.push_waiting(logs()).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(second.recv().await.is_some(), "the first request");
        // (A copy left in the first pipeline by a refused try used to fill it: the retry
        // then waited for room there forever.)
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("push_waiting returns once both pipelines took the request")
            .expect("push_waiting");
        assert!(
            first.recv().await.is_some(),
            "delivered to the first pipeline"
        );
        assert!(
            second.recv().await.is_some(),
            "delivered to the second pipeline"
        );
        assert!(first.try_recv().is_err(), "once");
        assert!(second.try_recv().is_err(), "once");
    }
}

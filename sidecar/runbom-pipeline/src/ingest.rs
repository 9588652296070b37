//! The door between a receiver and the pipelines that listen to it.
//!
//! A receiver hands every accepted request to [`Ingest::push`]; the request goes to each
//! pipeline of its signal that lists the receiver. `push` waits for room in the pipelines'
//! bounded channels (backpressure reaches the client) but only up to `accept_timeout`: past it
//! the request is refused with [`Refusal::Unavailable`], which receivers answer with
//! `UNAVAILABLE` / HTTP 503 and a retry hint. Memory stays bounded by the channel capacities.

use std::{sync::Arc, time::Duration};

use runbom_otlp::signal::{Signal, SignalKind};
use tokio::sync::mpsc;
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

    /// Hands `signal` to every pipeline of its kind that lists this receiver.
    pub async fn push(&self, signal: Signal) -> Result<(), Refusal> {
        let kind = signal.kind();
        let items = signal.item_count() as u64;
        let result = self.deliver(kind, signal).await;
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
    /// at once when no pipeline takes its signal.
    pub async fn push_waiting(&self, signal: Signal) {
        loop {
            match self.push(signal.clone()).await {
                Ok(()) | Err(Refusal::NotConfigured(_)) => return,
                Err(Refusal::Unavailable {
                    retry_after,
                    reason,
                }) => {
                    tracing::warn!(
                        receiver = %self.inner.receiver,
                        "{reason}; holding kernel events for {retry_after:?}"
                    );
                    tokio::time::sleep(retry_after.min(Duration::from_secs(1))).await;
                }
            }
        }
    }

    async fn deliver(&self, kind: SignalKind, signal: Signal) -> Result<(), Refusal> {
        if self.inner.gate.as_ref().is_some_and(|g| g.refusing()) {
            return Err(Refusal::Unavailable {
                retry_after: Duration::from_secs(5),
                reason: "runbom is over its memory limit".into(),
            });
        }
        let targets: Vec<&mpsc::Sender<Signal>> = self
            .inner
            .routes
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, tx)| tx)
            .collect();
        let Some((last, rest)) = targets.split_last() else {
            return Err(Refusal::NotConfigured(kind));
        };
        let full = || Refusal::Unavailable {
            retry_after: Duration::from_secs(1),
            reason: format!("the {} pipeline is full", kind.as_str()),
        };
        let deadline = tokio::time::Instant::now() + self.inner.accept_timeout;
        for tx in rest {
            tokio::time::timeout_at(deadline, tx.send(signal.clone()))
                .await
                .map_err(|_| full())?
                .map_err(|_| full())?;
        }
        tokio::time::timeout_at(deadline, last.send(signal))
            .await
            .map_err(|_| full())?
            .map_err(|_| full())
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

//! What both OTLP transports do once a request is decoded, and the limits they enforce.

use std::{net::SocketAddr, time::Duration};

use runbom_otlp::signal::Signal;

use super::{provenance, sender, validate, validate::PartialSuccess};
use crate::ingest::{Ingest, Refusal};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits a receiver enforces on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request accepted, in bytes, both as received and after decompression.
    /// Defaults to 4 MiB, gRPC's customary maximum message size.
    pub max_request_bytes: usize,
    /// Keep what clients send under `runbom.*`/`aibom.*` as it is (a gateway receiving from
    /// runbom node agents); otherwise it is moved under `received.` ([`super::provenance`]).
    pub trust_runbom_attributes: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 4 * 1024 * 1024,
            trust_runbom_attributes: false,
        }
    }
}

/// Drops the invalid items of a decoded request, counts them, moves the client's names of
/// runbom's namespaces under `received.`, and pushes the rest.
///
/// A request whose every item was invalid, or that was empty, is answered without being
/// pushed. The receiver's counters see the rejected items as refused. `client` is the peer's
/// address, for the sender's `process.pid` when the pipelines want it.
pub(crate) async fn accept(
    ingest: &Ingest,
    mut signal: Signal,
    client: Option<SocketAddr>,
    limits: Limits,
) -> Result<PartialSuccess, Refusal> {
    let kind = signal.kind();
    if !ingest.accepts(kind) {
        return Err(Refusal::NotConfigured(kind));
    }
    // Before the sender's pid: a client's `runbom.*`/`aibom.*` never reach a pipeline.
    if !limits.trust_runbom_attributes {
        provenance::quarantine(&mut signal);
    }
    if let (Some(senders), Some(client)) = (ingest.sender_pids(), client) {
        sender::attribute(senders, &mut signal, client).await;
    }
    let partial = validate::drop_invalid(&mut signal);
    if partial.rejected > 0 {
        ingest.count_rejected(kind, partial.rejected);
    }
    if !signal.is_empty() {
        ingest.push(signal).await?;
    }
    Ok(partial)
}

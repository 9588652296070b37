//! What both OTLP transports do once a request is decoded, and the limits they enforce.

use std::time::Duration;

use runbom_otlp::signal::Signal;

pub use super::pings::PingPolicy;
use super::{provenance, sender, sender::Peer, validate, validate::PartialSuccess};
use crate::ingest::{Ingest, Refusal};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Limits a receiver enforces on every request and connection, so that no client, however
/// slow or hostile, holds more than a bounded share of memory or file descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request accepted, in bytes, both as received and after decompression.
    /// Defaults to 4 MiB, gRPC's customary maximum message size.
    pub max_request_bytes: usize,
    /// gRPC: the HTTP/2 streams a connection may have open at once (the Collector's
    /// `max_concurrent_streams`; default 100), announced in SETTINGS as at most
    /// `max_requests_per_connection` ([`Limits::streams_announced`]).
    pub max_concurrent_streams: u32,
    /// gRPC: the requests of one connection read and handled at once, so a connection buffers
    /// at most this many requests' bodies; a client's further requests wait at the client.
    pub max_requests_per_connection: usize,
    /// The bytes the requests the server is decoding may hold together, each counted as its
    /// estimated decoded size plus its body ([`super::inflight`]); a request with no room is
    /// refused with a retry hint. Defaults to 256 MiB.
    pub max_decoding_bytes: u64,
    /// How long a request may take to arrive whole (headers and body); a slower one is
    /// answered 408 / `DEADLINE_EXCEEDED` and its memory freed.
    pub read_timeout: Duration,
    /// gRPC: HTTP/2 pings after this much silence (`keepalive.server_parameters.time`)...
    pub keepalive_time: Option<Duration>,
    /// ... and the connection closed when one is not answered within this
    /// (`keepalive.server_parameters.timeout`, default 20 s).
    pub keepalive_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// A connection on which no byte moved for this long is closed (HTTP: `idle_timeout`,
    /// gRPC: `keepalive.server_parameters.max_connection_idle`).
    pub idle_timeout: Duration,
    /// gRPC: a connection this old is asked to go away (GOAWAY) ...
    pub max_connection_age: Option<Duration>,
    /// ... and closed this long after that.
    pub max_connection_age_grace: Option<Duration>,
    /// gRPC: `keepalive.enforcement_policy`, the pings a client may send
    /// ([`super::pings`]; default grpc-go's, as in the Collector); `None`: every ping is
    /// answered. The HTTP server (HTTP/1.1) has no pings.
    pub ping_policy: Option<PingPolicy>,
    /// Keep what clients send under `runbom.*`/`aibom.*` as it is (a gateway receiving from
    /// runbom node agents); otherwise it is moved under `received.` ([`super::provenance`]).
    pub trust_runbom_attributes: bool,
}

impl Limits {
    /// The streams a gRPC connection is allowed open at once, announced in SETTINGS: no more
    /// than it reads at once. A stream the server does not read yet still takes DATA into its
    /// flow-control window, and with it into the connection's: streams waiting for a turn
    /// could hold the whole connection window, and the requests being read would then wait for
    /// bytes that cannot come until `read_timeout` (32 exports of 3 MiB at once on one
    /// connection stalled so in every run: `tests/gathered_writes.rs`).
    #[must_use]
    pub fn streams_announced(&self) -> u32 {
        let read = u32::try_from(self.max_requests_per_connection).unwrap_or(u32::MAX);
        self.max_concurrent_streams.min(read)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 100,
            max_requests_per_connection: 8,
            max_decoding_bytes: super::inflight::DEFAULT_MAX_DECODING_BYTES,
            read_timeout: Duration::from_secs(30),
            keepalive_time: Some(Duration::from_hours(2)),
            keepalive_timeout: Duration::from_secs(20),
            max_connections: 4096,
            idle_timeout: Duration::from_mins(2),
            max_connection_age: None,
            max_connection_age_grace: None,
            ping_policy: Some(PingPolicy::default()),
            trust_runbom_attributes: false,
        }
    }
}

/// Drops the invalid items of a decoded request, counts them, moves the client's names of
/// runbom's namespaces under `received.`, and pushes the rest.
///
/// A request whose every item was invalid, or that was empty, is answered without being
/// pushed. The receiver's counters see the rejected items as refused. `client` is the
/// connection the request came on, for the sender's `process.pid` when the pipelines want it.
pub(crate) async fn accept(
    ingest: &Ingest,
    mut signal: Signal,
    client: Option<Peer>,
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
        let from = sender::attribute(senders, &mut signal, client).await;
        // A gateway that trusts its upstream runbom instances keeps the identity they verified;
        // a local client whose process runbom may not read (beside an unprivileged sidecar)
        // keeps its claim, as a process of the same machine.
        if from == sender::Sender::Remote && !limits.trust_runbom_attributes {
            sender::unverified(&mut signal);
        }
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

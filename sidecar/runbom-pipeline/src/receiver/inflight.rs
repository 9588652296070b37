//! The memory the requests a server is decoding may hold together.
//!
//! [`super::decoded_limit`] bounds what one request may take decoded; nothing there bounds
//! their sum, and a server reads up to `max_connections` × `max_requests_per_connection`
//! requests at once. 4 MiB of OTLP/JSON `{"name":""}` spans is within the per-request limit
//! (about 90 bytes per byte received) and peaks near 280 MB while it is decoded, so a few
//! dozen in parallel would exhaust memory before the `memory_limiter`, which acts on memory
//! already in use, sees them.
//!
//! So each server has a [`DecodingBudget`] ([`Limits::max_decoding_bytes`], default
//! [`DEFAULT_MAX_DECODING_BYTES`]), as it has its other limits: an `otlp` receiver with both
//! protocols has two. Before decoding, a request takes its estimated decoded
//! size plus its body's length from it, and gives them back when its data has been handed to
//! the pipelines or refused: the [`DecodingPermit`] is dropped on every path (answered,
//! malformed, refused by the pipelines, client gone). A request the budget cannot cover is
//! refused at once, undecoded, as the `memory_limiter` refuses: [`Refusal::Unavailable`], which
//! is gRPC `UNAVAILABLE` with a `RetryInfo` and HTTP 503 with `Retry-After`; its items count
//! as refused.
//!
//! A request whose need alone exceeds the budget takes the whole budget: it is decoded when
//! nothing else is, so every request within the per-request limits can still pass. What the
//! requests being decoded are estimated to hold is thus at most the larger of the budget and
//! one request's estimate.
//!
//! Taking a share and giving it back is two atomic operations on one counter: 14 ns (79 ns
//! with two threads contending), against 9.8 ms to decode a 1 MB request of `GenAI` spans.
//!
//! The default, 256 MiB, sits between the numbers of [`super::decoded_limit`]: the largest
//! request admitted estimates at 64 MiB in protobuf (4 MiB × 16 + 64 KiB, peaking at up to
//! twice that) and 384 MiB in OTLP/JSON (4 MiB × 96, peaking below that), while requests of
//! real clients estimate at 3 to 11 bytes per byte received: with their bodies, 256 MiB lets
//! 5 to 16 requests of 4 MiB, or 20 to 60 of 1 MiB, be decoded at once, each in milliseconds.
//! Whatever the clients send, what decoding holds then stays under about twice the budget
//! for protobuf and under the larger of the budget and one request's estimate for OTLP/JSON
//! (16 floods of 4 MiB sent at once: 0.34 GB and 0.28 GB of heap at the peak, where they took
//! 1.25 GB and 3.8 GB decoded all at once).
//!
//! [`Limits::max_decoding_bytes`]: super::Limits::max_decoding_bytes

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use runbom_otlp::{decoded_size::Estimate, signal::SignalKind};

use crate::ingest::{Ingest, Refusal};

/// What [`super::Limits::max_decoding_bytes`] defaults to.
pub const DEFAULT_MAX_DECODING_BYTES: u64 = 256 << 20;

/// How long a client refused for want of budget is asked to wait: requests are decoded in
/// milliseconds, so the budget is soon free again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The bytes a server's requests being decoded may hold together, and what they hold now.
#[derive(Debug)]
pub(crate) struct DecodingBudget {
    capacity: u64,
    held: AtomicU64,
}

/// A request's share of a [`DecodingBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct DecodingPermit {
    budget: Arc<DecodingBudget>,
    bytes: u64,
}

impl Drop for DecodingPermit {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl DecodingBudget {
    /// A budget of `capacity` bytes, none held.
    pub(crate) fn new(capacity: u64) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            held: AtomicU64::new(0),
        })
    }

    /// Takes `need` bytes, at most the whole budget, if they are free; otherwise returns what
    /// is held.
    fn take(self: &Arc<Self>, need: u64) -> Result<DecodingPermit, u64> {
        let bytes = need.min(self.capacity);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let after = held.saturating_add(bytes);
                (after <= self.capacity).then_some(after)
            })
            .map(|_| DecodingPermit {
                budget: Arc::clone(self),
                bytes,
            })
    }

    /// Admits a request of `kind`, `received` bytes long, `estimate`d at its decoded size, for
    /// decoding; or refuses it, counting its items as refused by `ingest`'s receiver.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ingest: &Ingest,
        kind: SignalKind,
        estimate: Estimate,
        received: usize,
    ) -> Result<DecodingPermit, Refusal> {
        let need = estimate.bytes.saturating_add(received as u64);
        self.take(need).map_err(|held| {
            ingest.count_rejected(kind, estimate.items);
            tracing::debug!(
                receiver = ingest.receiver(),
                estimate = estimate.bytes,
                received,
                in_flight = held,
                budget = self.capacity,
                "OTLP request refused: requests being decoded already hold the budget"
            );
            Refusal::Unavailable {
                retry_after: RETRY_AFTER,
                reason: format!(
                    "requests being decoded hold {held} of this receiver's {} bytes; this one \
                     needs {need}",
                    self.capacity
                ),
            }
        })
    }

    /// The bytes held by requests being decoded now.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permit_holds_its_share_until_dropped() {
        let budget = DecodingBudget::new(100);
        let first = budget.take(60).expect("60 of 100 are free");
        assert_eq!(budget.held(), 60);
        assert_eq!(budget.take(41).err(), Some(60), "41 more do not fit");
        let second = budget.take(40).expect("40 more fit exactly");
        assert_eq!(budget.held(), 100);
        drop(first);
        assert_eq!(budget.held(), 40, "the first share is given back");
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_request_larger_than_the_budget_takes_all_of_it_alone() {
        let budget = DecodingBudget::new(100);
        let small = budget.take(1).expect("free");
        assert_eq!(
            budget.take(1_000).err(),
            Some(1),
            "not beside another request"
        );
        drop(small);
        let large = budget
            .take(1_000)
            .expect("alone, it takes the whole budget");
        assert_eq!(budget.held(), 100);
        assert!(budget.take(1).is_err(), "and nothing fits beside it");
        drop(large);
        assert_eq!(budget.held(), 0);
    }
}

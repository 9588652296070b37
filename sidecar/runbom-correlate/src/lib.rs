//! Correlation (`docs/telemetry-contract.md` §2): places kernel events under the application
//! spans that caused them and stitches traces whose context propagation broke. Pure and
//! synchronous: the caller feeds spans and events with the current time and polls for what is
//! ready; see `docs/correlation.md` for the rules.

mod agentless;
mod buffer;
mod connections;
mod correlator;
mod placed;
mod procs;
mod spans;
mod stats;
mod traces;

#[cfg(test)]
mod tests;

use std::time::Duration;

use runbom_event::semconv::correlation;

pub use buffer::event_bytes;
pub use correlator::{Correlator, Decided, Output};
pub use placed::{Converted, Share, worker_of};
pub use stats::Stats;

/// The correlator's maps keyed by pids, threads and span or trace ids: looked up several times
/// per kernel event, so hashed with foldhash's fast hasher (seeded per process) rather than
/// the standard library's default (`SipHash`).
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type IdSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The `correlate` processor's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long an event waits for an exact match before weaker methods apply, how long spans
    /// of a trace without its root (or a root without container) are held for stitching, and
    /// after how long events of processes unrelated to any sender leave.
    pub wait: Duration,
    /// How long application spans stay indexed and events of senders wait for their span.
    pub window: Duration,
    /// Most kernel events held.
    pub max_buffered_events: usize,
    /// Most bytes of kernel events held (accounted, see [`event_bytes`]).
    pub max_buffered_bytes: usize,
    /// Most application spans held for stitching; past it the oldest traces go on unstitched,
    /// so that memory stays bounded when a sender floods runbom with traces whose roots come
    /// late (not configurable: sized for ~15k spans/s over `wait`).
    pub max_held_spans: usize,
    /// Adopt orphan root spans into the trace they ran in.
    pub stitch: bool,
    /// Emit events no application trace claimed as spans too (they are always logs).
    pub uncorrelated_spans: bool,
    /// `host.name` of uncorrelated events' Resource.
    pub host_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(6),
            window: Duration::from_secs(30),
            max_buffered_events: 200_000,
            max_buffered_bytes: 64 << 20,
            max_held_spans: 100_000,
            stitch: true,
            uncorrelated_spans: false,
            host_name: "unknown".into(),
        }
    }
}

/// `runbom.correlation.method` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Traceparent,
    Thread,
    Process,
    Ancestry,
}

impl Method {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Traceparent => correlation::TRACEPARENT,
            Self::Thread => correlation::THREAD,
            Self::Process => correlation::PROCESS,
            Self::Ancestry => correlation::ANCESTRY,
        }
    }
}

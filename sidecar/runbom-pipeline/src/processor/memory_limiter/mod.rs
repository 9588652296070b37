//! The `memory_limiter` processor: while runbom's resident memory is above the limit, receivers
//! refuse new data (`UNAVAILABLE` / 503 with a retry hint) instead of growing without bound.
//! Like the Collector's, it is a gate at the pipeline's entrance, checked on a timer.

pub mod config;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use tracing::warn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub check_interval: Duration,
    /// Refuse data above this resident size.
    pub limit_bytes: u64,
}

/// Shared state: whether data is refused now.
#[derive(Debug, Default)]
pub struct MemoryGate {
    refusing: AtomicBool,
    rss: AtomicU64,
}

impl MemoryGate {
    #[must_use]
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// The resident size measured last.
    #[must_use]
    pub fn rss_bytes(&self) -> u64 {
        self.rss.load(Ordering::Relaxed)
    }

    /// Sets the state directly (tests of the refusal path).
    pub fn set_refusing(&self, on: bool) {
        self.refusing.store(on, Ordering::Relaxed);
    }
}

/// Resident set size of this process, from `/proc/self/statm`.
#[must_use]
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Checks memory every `check_interval` until `stop`.
pub async fn run(limit: MemoryLimit, gate: Arc<MemoryGate>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(limit.check_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(rss) = rss_bytes() else { continue };
        gate.rss.store(rss, Ordering::Relaxed);
        let over = rss > limit.limit_bytes;
        if over != gate.refusing.swap(over, Ordering::Relaxed) {
            if over {
                warn!(
                    rss,
                    limit = limit.limit_bytes,
                    "memory limit reached: refusing data until memory is freed"
                );
            } else {
                warn!(rss, "memory back under the limit: accepting data again");
            }
        }
    }
}

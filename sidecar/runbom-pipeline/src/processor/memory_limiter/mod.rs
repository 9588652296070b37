//! The `memory_limiter` processor: while runbom's resident memory is above the soft limit
//! (`limit - spike`), receivers refuse new data (`UNAVAILABLE` / 503 with a retry hint, and
//! `/readyz` says not ready) instead of growing without bound. Like the Collector's, it is a
//! gate at the pipeline's entrance, checked on a timer; where the Collector forces a garbage
//! collection above the soft limit (and for a few checks after it, while the spike's batches go
//! out), runbom asks its allocator to return freed memory to the system ([`set_release`]), so
//! that memory goes back down after a spike.

pub mod config;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;
use tracing::warn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub check_interval: Duration,
    /// The hard limit (`limit_mib`).
    pub limit_bytes: u64,
    /// Refuse data above this resident size (`limit_mib - spike_limit_mib`).
    pub soft_limit_bytes: u64,
}

/// How the allocator returns freed memory to the system (set once by the binary, which owns
/// the allocator).
static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Sets how freed memory is returned to the system above the soft limit.
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
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

/// How many checks after memory was last above the soft limit freed memory is still handed
/// back: what a spike held is mostly freed after the refusal ended (when its batches go out),
/// and the allocator would otherwise keep it.
const RELEASES_AFTER_SPIKE: u32 = 10;

/// Checks memory every `check_interval` until `stop`.
pub async fn run(limit: MemoryLimit, gate: Arc<MemoryGate>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(limit.check_interval);
    let mut releases_left = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(mut rss) = rss_bytes() else { continue };
        if rss > limit.soft_limit_bytes {
            releases_left = RELEASES_AFTER_SPIKE;
        }
        if releases_left > 0
            && let Some(release) = RELEASE.get()
        {
            releases_left -= 1;
            release();
            rss = rss_bytes().unwrap_or(rss);
        }
        gate.rss.store(rss, Ordering::Relaxed);
        let over = rss > limit.soft_limit_bytes;
        if over != gate.refusing.swap(over, Ordering::Relaxed) {
            if over {
                warn!(
                    rss,
                    soft_limit = limit.soft_limit_bytes,
                    limit = limit.limit_bytes,
                    "memory above the soft limit: refusing data until memory is freed"
                );
            } else {
                warn!(
                    rss,
                    "memory back under the soft limit: accepting data again"
                );
            }
        }
    }
}

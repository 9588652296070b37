//! Counters a stage exports on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Method;

#[derive(Debug, Default)]
pub struct Stats {
    by_method: [AtomicU64; 4],
    uncorrelated: AtomicU64,
    evicted: AtomicU64,
    stitched: AtomicU64,
    buffered_events: AtomicU64,
    buffered_bytes: AtomicU64,
}

fn slot(m: Method) -> usize {
    match m {
        Method::Traceparent => 0,
        Method::Thread => 1,
        Method::Process => 2,
        Method::Ancestry => 3,
    }
}

impl Stats {
    /// Events placed by `m`.
    #[must_use]
    pub fn correlated(&self, m: Method) -> u64 {
        self.by_method[slot(m)].load(Ordering::Relaxed)
    }
    /// Events that left without a place (window over, early release, or evicted).
    #[must_use]
    pub fn uncorrelated(&self) -> u64 {
        self.uncorrelated.load(Ordering::Relaxed)
    }
    /// Events that left early because the buffer was full (also counted as uncorrelated).
    #[must_use]
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
    /// Application spans moved into another trace.
    #[must_use]
    pub fn stitched(&self) -> u64 {
        self.stitched.load(Ordering::Relaxed)
    }
    #[must_use]
    pub fn buffered_events(&self) -> u64 {
        self.buffered_events.load(Ordering::Relaxed)
    }
    #[must_use]
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn add_correlated(&self, m: Method) {
        self.by_method[slot(m)].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_uncorrelated(&self, n: u64) {
        self.uncorrelated.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_evicted(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_stitched(&self, n: u64) {
        self.stitched.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn set_buffered(&self, events: usize, bytes: usize) {
        self.buffered_events.store(events as u64, Ordering::Relaxed);
        self.buffered_bytes.store(bytes as u64, Ordering::Relaxed);
    }
}

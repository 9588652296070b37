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

/// Declares a reader per plain counter: `pub fn name(&self) -> u64`, reading the field of
/// that name.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)+) => {
        $(
            $(#[doc = $doc])*
            #[must_use]
            pub fn $name(&self) -> u64 {
                self.$name.load(Ordering::Relaxed)
            }
        )+
    };
}

impl Stats {
    /// Events placed by `m`.
    #[must_use]
    pub fn correlated(&self, m: Method) -> u64 {
        self.by_method[slot(m)].load(Ordering::Relaxed)
    }
    counters! {
        /// Events that left without a place (window over, early release, or evicted).
        uncorrelated,
        /// Events that left early because the buffer was full (also counted as uncorrelated).
        evicted,
        /// Application spans moved into another trace.
        stitched,
        /// Events held now.
        buffered_events,
        /// Bytes the events held now account for.
        buffered_bytes,
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

//! A global allocator that tracks the heap bytes a test binary holds, and their peak, so that a
//! test can say how much memory a step took at most. The system allocator underneath.
//!
//! ```ignore
//! #[global_allocator]
//! static HEAP: runbom_testkit::heap::Tracking = runbom_testkit::heap::Tracking;
//!
//! let peak = runbom_testkit::heap::peak_during(|| decode(&body));
//! ```
//!
//! The counts are the whole process's: a binary that measures runs its tests one at a time
//! ([`one_at_a_time`]).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::sync::{Mutex, MutexGuard};

/// The system allocator, tracking the bytes held.
pub struct Tracking;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let held = HELD.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(held, Ordering::Relaxed);
}

fn shrank(by: usize) {
    HELD.fetch_sub(by, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// `GlobalAlloc`'s contract; the counters only read the layouts.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            // Counted as the new block allocated before the old one is freed: the peak a
            // moving reallocation reaches.
            grew(new_size);
            shrank(layout.size());
        }
        moved
    }
}

/// Heap bytes held now (0 unless the binary's global allocator is [`Tracking`]).
#[must_use]
pub fn held() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// Runs `f` and returns what it returned and the most heap bytes held meanwhile beyond what
/// was held when it started.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = held();
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

/// Starts a measurement of the peak: returns the bytes held now, from which
/// [`peak_since`] counts.
#[must_use]
pub fn start_peak() -> usize {
    let before = held();
    PEAK.store(before, Ordering::Relaxed);
    before
}

/// The most heap bytes held since [`start_peak`] returned `before`, beyond `before`.
#[must_use]
pub fn peak_since(before: usize) -> usize {
    PEAK.load(Ordering::Relaxed).saturating_sub(before)
}

/// Held by a test for as long as it measures, so that the binary's tests measure one at a
/// time (a test that panicked still lets the next one run). Async, so that a test holds it
/// across its awaits.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

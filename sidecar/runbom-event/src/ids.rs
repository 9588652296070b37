//! Trace and span ids for what runbom creates itself (kernel spans, per-process traces).

/// A random trace id.
#[must_use]
pub fn new_trace_id() -> [u8; 16] {
    rand_bytes()
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    // A process-wide xorshift generator seeded from the clock and pid is enough for ids that
    // only need to be unique, not secret.
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        s = t ^ (u64::from(std::process::id()) << 32) | 1;
    }
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        chunk.copy_from_slice(&s.to_le_bytes()[..chunk.len()]);
    }
    STATE.store(s, Ordering::Relaxed);
    out
}

/// A random, non-zero span id.
#[must_use]
pub fn new_span_id() -> [u8; 8] {
    rand_bytes()
}

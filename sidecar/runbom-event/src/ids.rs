//! Trace and span ids for what runbom creates itself (kernel spans, per-process traces).

/// A random trace id.
#[must_use]
pub fn new_trace_id() -> [u8; 16] {
    rand_bytes()
}

/// This runbom process's instance id (`runbom.instance.id`, contract §6): 16 random bytes in
/// hex, drawn once per process start (from `/dev/urandom`, else the id generator).
#[must_use]
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use std::io::Read as _;
        let mut bytes = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if read.is_err() {
            bytes = rand_bytes();
        }
        bytes.iter().fold(String::with_capacity(32), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
    })
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

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
    // An xorshift generator per thread, seeded from the clock, the pid and the thread's
    // number, is enough for ids that only need to be unique, not secret. Per thread, because
    // threads sharing one state would read it at the same time and draw the same ids.
    use std::{
        cell::Cell,
        sync::atomic::{AtomicU64, Ordering},
    };
    static THREADS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        let mut s = state.get();
        if s == 0 {
            s = seed(THREADS.fetch_add(1, Ordering::Relaxed));
        }
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            chunk.copy_from_slice(&s.to_le_bytes()[..chunk.len()]);
        }
        state.set(s);
        out
    })
}

/// A non-zero starting state for thread number `thread`: the clock, the pid and the thread
/// number mixed by splitmix64, so threads started in the same nanosecond still differ.
fn seed(thread: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut z = (t ^ (u64::from(std::process::id()) << 32))
        .wrapping_add(thread.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// A random, non-zero span id.
#[must_use]
pub fn new_span_id() -> [u8; 8] {
    rand_bytes()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{new_span_id, new_trace_id};

    /// Threads converting at once (the ebpf receiver's workers) never draw the same id.
    #[test]
    fn ids_of_threads_drawing_at_once_differ() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..20_000).map(|_| new_span_id()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for id in t.join().expect("thread finished") {
                assert!(seen.insert(id), "span id {id:?} drawn twice");
                assert_ne!(id, [0; 8], "span ids are never zero");
            }
        }
        assert_ne!(new_trace_id(), new_trace_id());
    }
}

//! CPU time of the calling thread, what the benchmarks measure (time other processes of a
//! shared machine take is not counted).

use std::time::Duration;

/// CPU time the calling thread has used (user + system; `CLOCK_THREAD_CPUTIME_ID`).
#[must_use]
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(ts.tv_sec.unsigned_abs(), ts.tv_nsec.unsigned_abs() as u32)
}

/// The calling thread's CPU time over `iters` runs of `run` (for criterion's `iter_custom`).
pub fn cpu_time(iters: u64, mut run: impl FnMut()) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        run();
    }
    thread_cpu().saturating_sub(start)
}

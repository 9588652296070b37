//! The benchmarks' criterion measurement: the benchmark thread's CPU time, so `thrpt` is items
//! per CPU-second and time other processes of a shared machine take is not counted.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use runbom_testkit::cpu::thread_cpu;

/// CPU time of the calling thread, as a criterion measurement.
pub struct ThreadCpu {
    /// Borrowed for its duration formatter.
    pub wall: WallTime,
}

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

//! Kernel clock readings (`CLOCK_BOOTTIME`, what `bpf_ktime_get_boot_ns` returns) to Unix time,
//! so kernel spans line up with application spans.

/// Converts `CLOCK_BOOTTIME` nanoseconds to Unix nanoseconds with an offset measured once.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    offset_ns: i128,
}

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and timespec pointer.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl BootClock {
    /// Measures the offset, keeping the sample whose two boot-clock readings were closest
    /// (least disturbed by preemption).
    #[must_use]
    pub fn new() -> Self {
        let mut best = (i128::MAX, 0);
        for _ in 0..5 {
            let before = read(libc::CLOCK_BOOTTIME);
            let real = read(libc::CLOCK_REALTIME);
            let after = read(libc::CLOCK_BOOTTIME);
            let width = after - before;
            if width < best.0 {
                best = (width, real - i128::midpoint(before, after));
            }
        }
        Self { offset_ns: best.1 }
    }

    /// Unix time in nanoseconds for a `CLOCK_BOOTTIME` reading (0 stays 0: "not observed").
    #[must_use]
    pub fn to_unix_ns(&self, boot_ns: u64) -> u64 {
        if boot_ns == 0 {
            return 0;
        }
        (i128::from(boot_ns) + self.offset_ns).max(0) as u64
    }

    /// The current `CLOCK_BOOTTIME` reading, for tests and benchmarks.
    #[must_use]
    pub fn now_boot_ns() -> u64 {
        read(libc::CLOCK_BOOTTIME) as u64
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_maps_to_now() {
        let clock = BootClock::new();
        let unix = clock.to_unix_ns(BootClock::now_boot_ns());
        let real = read(libc::CLOCK_REALTIME) as u64;
        assert!(real.abs_diff(unix) < 50_000_000, "{real} vs {unix}");
        assert_eq!(clock.to_unix_ns(0), 0);
    }
}

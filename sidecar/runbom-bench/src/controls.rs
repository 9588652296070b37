//! `mixed`'s control conditions: what else than runbom's own work could make the syscall-heavy
//! workload slower, each measured in the same rounds as the workload with and without runbom.
//!
//! - `stopped`: runbom stopped (SIGSTOP) while the bursts run: its probes attached, its
//!   userspace idle (no reading, no enrichment, no library rescans after each exec). The ring
//!   may fill meanwhile; what is lost then is not counted in the totals.
//! - `no-tls`: runbom with `receivers.ebpf.http.openssl: false`: no OpenSSL or Go uprobes and
//!   no library watcher (its `/proc/PID/maps` reads after each exec).
//! - `burner`: no runbom; a thread of this benchmark spends the share of a CPU runbom spent
//!   during the previous bursts with it (0.5 before the first), walking 8 MiB of memory: is
//!   the cost plain contention for the machine (the other vCPU, caches, the host)?
//! - `bare`: no runbom; an empty reference program on every tracepoint runbom attaches (one per
//!   runbom program): what any probe with runbom's coverage pays to be called.
//! - `reference`: no runbom; the reference probes doing runbom's work on opens and connects
//!   (`ref-record`: a ring record per open and connect, their results at the exits, read by a
//!   consumer), the empty program on the other tracepoints.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::ValueEnum;

use crate::reference::Reference;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Control {
    Stopped,
    NoTls,
    Burner,
    Bare,
    Reference,
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stopped => "runbom stopped",
            Self::NoTls => "runbom, no TLS uprobes",
            Self::Burner => "CPU burner",
            Self::Bare => "ref-bare on runbom's tracepoints",
            Self::Reference => "reference probes",
        })
    }
}

/// The embedded defaults' text with the OpenSSL/Go uprobes and the library watcher off.
pub fn without_tls(config: &str) -> String {
    config.replacen("  ebpf: {}", "  ebpf:\n    http:\n      openssl: false", 1)
}

/// CPU time of every thread of `pid` so far (`/proc/PID/task/*/schedstat`, nanoseconds).
pub fn cpu_of(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// A thread spending `share` of a CPU walking 8 MiB of memory, in 1 ms periods, until dropped.
pub struct Burner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const PERIOD: Duration = Duration::from_millis(1);

impl Burner {
    pub fn start(share: f64) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let busy = PERIOD.mul_f64(share.clamp(0.0, 1.0));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("burner".into())
                .spawn(move || burn(&stop, busy))?
        };
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

fn burn(stop: &AtomicBool, busy: Duration) {
    let mut memory = vec![0_u64; (8 << 20) / 8];
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        while start.elapsed() < busy {
            // One cache line per step.
            for _ in 0..256 {
                memory[at] = memory[at].wrapping_add(1);
                at = (at + 8) % memory.len();
            }
        }
        std::hint::black_box(&memory);
        std::thread::sleep(PERIOD.saturating_sub(busy));
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reference programs doing runbom's work on opens and connects, by tracepoint.
const REFERENCE_WORK: &[(&str, &str)] = &[
    ("sys_enter_openat", "reference_open_enter"),
    ("sys_exit_openat", "reference_ret_exit"),
    ("sys_enter_socket", "reference_socket_enter"),
    ("sys_exit_socket", "reference_socket_exit"),
    ("sys_enter_connect", "reference_connect_enter"),
    ("sys_exit_connect", "reference_ret_exit"),
];

/// Loads the reference programs and attaches them as `control` (`Bare` or `Reference`) says to
/// every tracepoint runbom attaches with its embedded defaults; detached when dropped.
pub fn reference_probes(control: Control) -> Result<Reference> {
    let mut reference = Reference::load(4 << 20, &[], None)?;
    for (category, tracepoint) in runbom_kernel::probes::attached_tracepoints(true) {
        let program = match control {
            Control::Reference => REFERENCE_WORK
                .iter()
                .find(|(t, _)| *t == tracepoint)
                .map_or("reference_bare", |(_, p)| p),
            _ => "reference_bare",
        };
        reference.attach_one(program, category, tracepoint)?;
    }
    Ok(reference)
}

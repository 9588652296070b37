//! `mixed`'s control conditions: what else than runbom's own work could make the syscall-heavy
//! workload slower, each measured in the same rounds as the workload with and without runbom.
//!
//! - `stopped`: runbom stopped (SIGSTOP) while the bursts run: its probes attached, its
//!   userspace idle (no reading, no enrichment, no library rescans after each exec). The ring
//!   may fill meanwhile; what is lost then is not counted in the totals.
//! - `no-tls`: runbom with `receivers.ebpf.http.openssl: false`: no OpenSSL or Go uprobes and
//!   no library watcher (its `/proc/PID/maps` reads after each exec).
//! - `burner`: no runbom; a child process spends the share of a CPU runbom spent
//!   during the previous bursts with it (0.5 before the first), walking 8 MiB of memory: is
//!   the cost plain contention for the machine (the other vCPU, caches, the host)?
//! - `bare`: no runbom; an empty reference program on every tracepoint runbom attaches (one per
//!   runbom program): what any probe with runbom's coverage pays to be called.
//! - `bare-raw`: as `bare`, with raw tracepoint programs: an empty one on each non-syscall
//!   tracepoint, and one on `sys_enter` and one on `sys_exit` (every syscall passes them) that
//!   return unless runbom traces the syscall: what a port to raw tracepoints would pay.
//! - `reference`: no runbom; the reference probes doing runbom's work on opens and connects
//!   (`ref-record`: a ring record per open and connect, their results at the exits, read by a
//!   consumer), the empty program on the other tracepoints.

use std::{
    fmt,
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
    BareRaw,
    Reference,
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stopped => "runbom stopped",
            Self::NoTls => "runbom, no TLS uprobes",
            Self::Burner => "CPU burner",
            Self::Bare => "ref-bare on runbom's tracepoints",
            Self::BareRaw => "ref-bare as raw tracepoints",
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

/// A child process spending `share` of a CPU walking 8 MiB of memory, in 1 ms periods, until
/// dropped (killed and reaped then: its CPU time is not the workload's, and it shares no memory
/// with the workload, as runbom does not).
pub struct Burner {
    pid: libc::pid_t,
}

const PERIOD: Duration = Duration::from_millis(1);

impl Burner {
    pub fn start(share: f64) -> Result<Self> {
        let busy = PERIOD.mul_f64(share.clamp(0.0, 1.0));
        // Allocated before the fork: the child only walks it, sleeps and reads the clock.
        let mut memory = vec![0_u64; (8 << 20) / 8];
        // SAFETY: the child calls nothing that takes a lock (no allocation, no stdio): plain
        // memory writes, `clock_gettime` and `nanosleep`, until it is killed.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(std::io::Error::last_os_error().into()),
            0 => burn(&mut memory, busy),
            pid => Ok(Self { pid }),
        }
    }
}

fn burn(memory: &mut [u64], busy: Duration) -> ! {
    let mut at = 0;
    loop {
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
        // SAFETY: our own child, killed and reaped once.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
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

/// Loads the reference programs and attaches them as `control` (`Bare`, `BareRaw` or
/// `Reference`) says to every tracepoint runbom attaches with its embedded defaults, one program
/// per runbom program (a tracepoint takes a program once: a second copy of the object serves
/// the tracepoints runbom attaches two programs to); detached when dropped.
pub fn reference_probes(control: Control) -> Result<Vec<Reference>> {
    if control == Control::BareRaw {
        return raw_probes().map(|r| vec![r]);
    }
    let mut copies: Vec<(Reference, Vec<&str>)> = Vec::new();
    for (category, tracepoint) in runbom_kernel::probes::attached_tracepoints(true) {
        let program = match control {
            Control::Reference => REFERENCE_WORK
                .iter()
                .find(|(t, _)| *t == tracepoint)
                .map_or("reference_bare", |(_, p)| p),
            _ => "reference_bare",
        };
        let free = copies
            .iter()
            .position(|(_, used)| !used.contains(&tracepoint));
        let at = if let Some(at) = free {
            at
        } else {
            copies.push((Reference::load(4 << 20, &[], None)?, Vec::new()));
            copies.len() - 1
        };
        let (reference, used) = &mut copies[at];
        reference.attach_one(program, category, tracepoint)?;
        used.push(tracepoint);
    }
    Ok(copies.into_iter().map(|(r, _)| r).collect())
}

/// `bare-raw`: the raw `sys_enter` and `sys_exit` programs, and the empty raw program on every
/// other tracepoint runbom attaches (each once).
fn raw_probes() -> Result<Reference> {
    let mut reference = Reference::load(4 << 20, &[], None)?;
    reference.attach_one("reference_raw_enter_traced", "", "sys_enter")?;
    reference.attach_one("reference_raw_exit_traced", "", "sys_exit")?;
    let mut done: Vec<&str> = Vec::new();
    for (category, tracepoint) in runbom_kernel::probes::attached_tracepoints(true) {
        if category != "syscalls" && !done.contains(&tracepoint) {
            reference.attach_one("reference_raw_bare", category, tracepoint)?;
            done.push(tracepoint);
        }
    }
    Ok(reference)
}

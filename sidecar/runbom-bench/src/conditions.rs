//! The `syscalls` benchmark's conditions and workloads: the runbom builds it measures, its
//! options, and one loop per workload (an `openat`, a `connect`, a `write`, a `read`, a spawn
//! of `/bin/true` repeated),
//! shared by the end-to-end measurement (`syscalls.rs`) and the time inside the programs
//! (`inprogram.rs`).

use std::{ffi::CString, path::PathBuf, time::Duration};

use crate::{reference::Variant, workload};

pub(crate) const RUNBOM: &str = "runbom";
pub(crate) const RUNBOM_PAUSED: &str = "runbom (paused)";
pub(crate) const BASE: &str = "runbom base";
pub(crate) const BASE_PAUSED: &str = "runbom base (paused)";

/// A runbom binary measured, with the names of its two conditions.
pub struct Build {
    pub running: &'static str,
    pub paused: &'static str,
    pub bin: PathBuf,
}

pub(crate) fn builds(opts: &Options) -> Vec<Build> {
    let mut builds = vec![Build {
        running: RUNBOM,
        paused: RUNBOM_PAUSED,
        bin: opts.runbom.clone(),
    }];
    if let Some(bin) = &opts.baseline {
        builds.push(Build {
            running: BASE,
            paused: BASE_PAUSED,
            bin: bin.clone(),
        });
    }
    builds
}

pub struct Options {
    pub runbom: PathBuf,
    pub dir: PathBuf,
    pub open_iterations: u64,
    pub connect_iterations: u64,
    pub write_iterations: u64,
    pub exec_iterations: u64,
    pub reps: usize,
    pub rounds: usize,
    pub loop_cpu: Option<usize>,
    pub service_cpu: Option<usize>,
    /// Passes with the kernel's run-time statistics on.
    pub stat_passes: usize,
    /// A second runbom binary measured in the same run (`runbom base`).
    pub baseline: Option<PathBuf>,
}

pub(crate) enum Kind {
    Open(CString),
    /// A path relative to a directory (descriptor, path).
    OpenAt(libc::c_int, CString),
    Connect(libc::sockaddr_in),
    Write,
    Read,
    /// `getppid`, a syscall no tracer here hooks.
    Getppid,
    /// Spawns of `/bin/true`: their CPU (the children's with the loop thread's) and the
    /// programs every fork, exec and exit runs.
    Exec,
}

pub struct Workload {
    pub name: &'static str,
    pub(crate) what: &'static str,
    pub(crate) kind: Kind,
    pub iterations: u64,
    /// Reference variants measured for this workload.
    pub variants: &'static [Variant],
    /// Measure runbom with its reader stopped too (only where runbom writes records).
    pub paused: bool,
    /// `(runbom condition, reference condition)` pairs judged against the 1.1x target.
    pub(crate) compare: &'static [(&'static str, &'static str)],
}

/// One repetition: nanoseconds per iteration of the loop thread's CPU time and of wall time.
pub struct Measurement {
    pub(crate) cpu: f64,
    pub(crate) wall: f64,
}

impl Workload {
    pub fn warm_up(&self) -> u64 {
        (self.iterations / 20).max(1)
    }

    pub fn is_open(&self) -> bool {
        matches!(self.kind, Kind::Open(_) | Kind::OpenAt(..))
    }

    pub fn is_exec(&self) -> bool {
        matches!(self.kind, Kind::Exec)
    }

    /// [`Workload::compare`] for every build: the baseline's conditions judged like runbom's.
    pub fn comparisons(&self, builds: &[Build]) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        for b in builds {
            for (ours, theirs) in self.compare {
                let ours = match *ours {
                    RUNBOM => b.running,
                    RUNBOM_PAUSED => b.paused,
                    other => other,
                };
                out.push((ours.to_owned(), *theirs));
            }
        }
        out
    }

    pub fn run(&self) -> Measurement {
        let warm = self.warm_up();
        let cpu0;
        let wall = match &self.kind {
            Kind::Open(path) => {
                workload::open_close(path, warm);
                cpu0 = workload::thread_cpu();
                workload::open_close(path, self.iterations).0
            }
            Kind::OpenAt(dir, path) => {
                workload::open_close_at(*dir, path, warm);
                cpu0 = workload::thread_cpu();
                workload::open_close_at(*dir, path, self.iterations).0
            }
            Kind::Connect(addr) => {
                workload::connect_loop(addr, warm);
                cpu0 = workload::thread_cpu();
                workload::connect_loop(addr, self.iterations)
            }
            Kind::Write => {
                workload::write_loop(warm);
                cpu0 = workload::thread_cpu();
                workload::write_loop(self.iterations)
            }
            Kind::Read => {
                workload::read_loop(warm);
                cpu0 = workload::thread_cpu();
                workload::read_loop(self.iterations)
            }
            Kind::Getppid => {
                workload::getppid_loop(warm);
                cpu0 = workload::thread_cpu();
                workload::getppid_loop(self.iterations)
            }
            Kind::Exec => {
                let spawned = |n| workload::exec_loop(n).expect("spawning /bin/true");
                spawned(warm);
                cpu0 = workload::thread_cpu() + workload::children_cpu();
                spawned(self.iterations)
            }
        };
        let mut cpu_now = workload::thread_cpu();
        if matches!(self.kind, Kind::Exec) {
            cpu_now += workload::children_cpu();
        }
        let cpu = cpu_now.saturating_sub(cpu0);
        let n = self.iterations as f64;
        Measurement {
            cpu: cpu.as_nanos() as f64 / n,
            wall: wall.as_nanos() as f64 / n,
        }
    }
}

/// The idle gap runbom's measurements get while `Runbom::quiesce` waits for it, given to every
/// other measurement too: an idle vCPU comes back slower (caches, host scheduling), and only
/// equal treatment keeps that out of the differences.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

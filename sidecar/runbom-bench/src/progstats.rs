//! The kernel's own accounting of BPF program run time (`BPF_ENABLE_STATS`): how long each
//! program runs per invocation, which splits a probe's added cost into time inside the programs
//! and everything around them (tracepoint dispatch, waking the ring's reader).

use std::{collections::BTreeMap, os::fd::OwnedFd};

use anyhow::Result;

/// Keeps run-time statistics on while held (they cost a few ns per program run): the kernel
/// turns them off when the descriptor closes.
pub struct Enabled {
    _fd: OwnedFd,
}

pub fn enable() -> Result<Enabled> {
    Ok(Enabled {
        _fd: aya::sys::enable_stats(aya::sys::Stats::RunTime)?,
    })
}

/// Run time and count of every loaded program, by program id.
#[derive(Default)]
pub struct Snapshot(BTreeMap<u32, (String, u64, u64)>);

pub fn snapshot() -> Snapshot {
    Snapshot(
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| {
                (
                    p.id(),
                    (
                        p.name_as_str().unwrap_or("?").to_owned(),
                        p.run_time().as_nanos() as u64,
                        p.run_count(),
                    ),
                )
            })
            .collect(),
    )
}

/// A program that ran between two snapshots.
pub struct Ran {
    pub id: u32,
    /// The kernel's name (truncated to 15 bytes).
    pub name: String,
    pub ns: u64,
    pub runs: u64,
}

/// Programs that ran between `before` and `after`.
pub fn ran(before: &Snapshot, after: &Snapshot) -> Vec<Ran> {
    after
        .0
        .iter()
        .filter_map(|(id, (name, ns, runs))| {
            let (b_ns, b_runs) = before.0.get(id).map_or((0, 0), |(_, n, r)| (*n, *r));
            (*runs > b_runs).then(|| Ran {
                id: *id,
                name: name.clone(),
                ns: ns - b_ns,
                runs: runs - b_runs,
            })
        })
        .collect()
}

/// Ids of the BPF programs process `pid` holds open (`prog_id:` in `/proc/<pid>/fdinfo/*`): to
/// tell its programs from other tracers' on a shared machine.
pub fn held_by(pid: u32) -> std::collections::BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return std::collections::BTreeSet::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse().ok())
        })
        .collect()
}

//! Benchmark (a)'s time inside the programs: passes of every workload with the kernel's
//! program run-time statistics on (`progstats`), for each runbom build and each reference
//! variant. Passes alternate which side comes first and are compared pass by pass (a ratio per
//! pass, then the median and spread over passes), because a single pass moves with whatever
//! else the machine does at that moment. Only the condition's own programs are counted: the
//! runbom child's (the programs it loaded) or the reference's.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use anyhow::Result;

use crate::{
    conditions::{Build, Options, Workload, settle},
    progstats,
    reference::{OPEN_RECORD_PAUSED, Reference},
    runbom::{Runbom, Settings, Summary},
    stats::Samples,
};

/// runbom's program names, to undo the kernel's 15-byte truncation in reports.
const RUNBOM_PROGRAMS: &[&str] = &[
    "sys_enter_open",
    "sys_exit_open",
    "sys_enter_openat",
    "sys_exit_openat",
    "sys_enter_socket",
    "sys_exit_socket",
    "sys_enter_connect",
    "sys_exit_connect",
    "http_sys_enter_write",
    "http_sys_exit_write",
    "h2_sys_enter_read",
    "h2_sys_exit_read",
    "sys_enter_execve",
    "sys_enter_execveat",
    "sched_process_exec",
    "sched_process_exit",
    "sys_enter_exit_group",
];

fn full_name(kernel_name: &str, reference: &BTreeMap<u32, String>, id: u32) -> String {
    if let Some(n) = reference.get(&id) {
        return n.clone();
    }
    // A name shorter than the kernel keeps is whole (`sys_enter_open` is not `sys_enter_openat`).
    if kernel_name.len() < 15 {
        return kernel_name.to_owned();
    }
    let matches: Vec<&str> = RUNBOM_PROGRAMS
        .iter()
        .copied()
        .filter(|n| n.starts_with(kernel_name))
        .collect();
    let Some(shortest) = matches.iter().map(|n| n.len()).min() else {
        return kernel_name.to_owned();
    };
    // Names the kernel cannot tell apart (`sched_process_exec` and `_exit`) are reported
    // together, their runs and time added.
    matches
        .into_iter()
        .filter(|n| n.len() == shortest)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// A program of the loop's `openat` (runbom's entry and exit, or any reference program): what
/// the watched-open aim compares, without the `close` hooks other features add (nor the `open`
/// programs other processes' calls run now and then).
fn is_open_program(name: &str) -> bool {
    name == "sys_enter_openat" || name == "sys_exit_openat" || name.starts_with("reference_")
}

/// The programs of a spawn's fork, exec and exit (either build's): what an exec costs in
/// programs, without the opens, reads and closes of the spawned program.
const EXEC_PROGRAMS: &[&str] = &[
    "sys_enter_execve",
    "sys_enter_execveat",
    "sys_exit_execve",
    "sys_exit_execveat",
    "sched_process_exec + sched_process_exit",
    "task_newtask",
    "sys_enter_exit_group",
];

/// Whether a program (by full name) is one of a workload's own.
type IsOwn = fn(&str) -> bool;

/// The workload's own programs ([`is_open_program`], [`EXEC_PROGRAMS`]) and what to call them;
/// `None` for workloads judged on all programs only.
fn own_programs(w: &Workload) -> Option<(&'static str, IsOwn)> {
    if w.is_open() {
        Some(("open programs", is_open_program))
    } else if w.is_exec() {
        Some(("fork, exec and exit programs", |n| {
            EXEC_PROGRAMS.contains(&n)
        }))
    } else {
        None
    }
}

/// Per pass: `pass → value`.
type PerPass = BTreeMap<usize, f64>;

#[derive(Default)]
struct Program {
    runs_per_iter: Samples,
    ns_per_run: Samples,
    ns_per_iter: Samples,
}

/// Everything the passes measured.
#[derive(Default)]
pub struct InProgram {
    /// `(workload, condition)` → ns per iteration inside all of the condition's programs.
    all: BTreeMap<(String, String), PerPass>,
    /// The same, the workload's own programs only ([`own_programs`]).
    open: BTreeMap<(String, String), PerPass>,
    /// `(workload, condition, own programs only)` → program runs per iteration.
    runs: BTreeMap<(String, String, bool), PerPass>,
    /// Workload → what its own programs are called.
    own_label: BTreeMap<String, &'static str>,
    programs: BTreeMap<(String, String, String), Program>,
    /// `(workload, condition)` in the order first measured.
    order: Vec<(String, String)>,
    /// runbom's closing summaries, by condition name of the build.
    pub summaries: Vec<(&'static str, Summary)>,
}

impl InProgram {
    fn add(
        &mut self,
        pass: usize,
        w: &Workload,
        condition: &str,
        ran: &[(String, progstats::Ran)],
    ) {
        let n = (w.iterations + w.warm_up()) as f64;
        let key = (w.name.to_owned(), condition.to_owned());
        if !self.order.contains(&key) {
            self.order.push(key.clone());
        }
        let mut merged: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (name, r) in ran {
            let m = merged.entry(name).or_default();
            m.0 += r.runs;
            m.1 += r.ns;
        }
        let own = own_programs(w);
        if let Some((label, _)) = own {
            self.own_label.insert(key.0.clone(), label);
        }
        let (mut all, mut open, mut runs, mut own_runs) = (0.0, 0.0, 0.0, 0.0);
        for (name, (r_runs, r_ns)) in merged {
            let per_iter = r_runs as f64 / n;
            // Programs run by the rest of the machine (exec, exit, ...) now and then.
            if per_iter < 0.05 {
                continue;
            }
            let ns = r_ns as f64 / n;
            all += ns;
            runs += per_iter;
            if own.is_some_and(|(_, is_own)| is_own(name)) {
                open += ns;
                own_runs += per_iter;
            }
            let p = self
                .programs
                .entry((key.0.clone(), key.1.clone(), name.to_owned()))
                .or_default();
            p.runs_per_iter.push(per_iter);
            p.ns_per_run.push(r_ns as f64 / r_runs as f64);
            p.ns_per_iter.push(ns);
        }
        for (own, n) in [(false, runs), (true, own_runs)] {
            self.runs
                .entry((key.0.clone(), key.1.clone(), own))
                .or_default()
                .insert(pass, n);
        }
        self.all.entry(key.clone()).or_default().insert(pass, all);
        self.open.entry(key).or_default().insert(pass, open);
    }

    fn get(&self, open_only: bool, w: &str, condition: &str) -> Option<&PerPass> {
        let map = if open_only { &self.open } else { &self.all };
        map.get(&(w.to_owned(), condition.to_owned()))
    }
}

/// Programs that ran between two snapshots, among `ids`, with their full names.
fn ran_among(
    before: &progstats::Snapshot,
    after: &progstats::Snapshot,
    ids: &BTreeSet<u32>,
    names: &BTreeMap<u32, String>,
) -> Vec<(String, progstats::Ran)> {
    progstats::ran(before, after)
        .into_iter()
        .filter(|r| ids.contains(&r.id))
        .map(|r| (full_name(&r.name, names, r.id), r))
        .collect()
}

/// `stat_passes` passes of every workload, each build's and each reference variant's.
pub fn measure(
    opts: &Options,
    settings: &Settings,
    builds: &[Build],
    workloads: &[Workload],
    reference: &mut Reference,
) -> Result<InProgram> {
    let _stats = progstats::enable()?;
    let names = reference.program_ids();
    let reference_ids: BTreeSet<u32> = names.keys().copied().collect();
    let mut out = InProgram::default();
    for pass in 0..opts.stat_passes {
        eprintln!(
            "[bench] syscalls: time inside the programs, pass {}/{}",
            pass + 1,
            opts.stat_passes
        );
        let runbom_first = pass % 2 == 0;
        for phase in 0..2 {
            if (phase == 0) != runbom_first {
                for w in workloads {
                    for v in w.variants {
                        reference.attach(v)?;
                        settle();
                        let before = progstats::snapshot();
                        w.run();
                        let after = progstats::snapshot();
                        reference.detach()?;
                        reference.quiesce();
                        let ran = ran_among(&before, &after, &reference_ids, &names);
                        out.add(pass, w, v.name, &ran);
                    }
                }
                continue;
            }
            // Builds in turn, their order alternating by pass.
            for i in 0..builds.len() {
                let b = &builds[(i + pass) % builds.len()];
                let rb = Runbom::start(&b.bin, &opts.dir, settings, opts.service_cpu)?;
                // The programs this runbom holds: on a shared machine another tracer may load
                // its own while this one starts.
                let ours = progstats::held_by(rb.pid());
                for w in workloads {
                    rb.quiesce();
                    let before = progstats::snapshot();
                    w.run();
                    let ran = ran_among(&before, &progstats::snapshot(), &ours, &names);
                    out.add(pass, w, b.running, &ran);
                    if w.paused {
                        rb.quiesce();
                        rb.pause();
                        let before = progstats::snapshot();
                        w.run();
                        let after = progstats::snapshot();
                        rb.resume();
                        out.add(
                            pass,
                            w,
                            b.paused,
                            &ran_among(&before, &after, &ours, &names),
                        );
                    }
                }
                rb.quiesce();
                out.summaries.push((b.running, rb.stop()?));
            }
        }
    }
    Ok(out)
}

/// `a / b` pass by pass: (median, min, max) over the passes that measured both.
fn ratios(a: &PerPass, b: &PerPass) -> Option<(f64, f64, f64)> {
    let mut s = Samples::default();
    for (pass, x) in a {
        if let Some(y) = b.get(pass).filter(|y| **y > 0.0) {
            s.push(x / y);
        }
    }
    (!s.is_empty()).then(|| (s.median(), s.min(), s.max()))
}

/// `a - b` pass by pass: (median, min, max).
fn differences(a: &PerPass, b: &PerPass) -> Option<(f64, f64, f64)> {
    let mut s = Samples::default();
    for (pass, x) in a {
        if let Some(y) = b.get(pass) {
            s.push(x - y);
        }
    }
    (!s.is_empty()).then(|| (s.median(), s.min(), s.max()))
}

fn samples(p: &PerPass) -> Samples {
    let mut s = Samples::default();
    for v in p.values() {
        s.push(*v);
    }
    s
}

/// The comparisons judged against the 1.1x target, pass by pass; each build against the
/// other; each `ref-record+<piece>` variant against `ref-record (paused)`.
pub fn verdicts(workloads: &[Workload], builds: &[Build], m: &InProgram) -> String {
    let mut out = String::from(
        "\nSame comparisons, time inside the programs (kernel run-time statistics; the ratio of \
         each pass, then the median and range over passes):\n",
    );
    for w in workloads {
        for open_only in [true, false] {
            let scope = match own_programs(w) {
                Some((label, _)) if open_only => label,
                None if open_only => continue,
                _ => "all programs",
            };
            for (ours, theirs) in w.comparisons(builds) {
                let (Some(a), Some(b)) = (
                    m.get(open_only, w.name, &ours),
                    m.get(open_only, w.name, theirs),
                ) else {
                    continue;
                };
                let Some((ratio, lo, hi)) = ratios(a, b) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "- {} ({scope}): {ours} {:.0} ns, {theirs} {:.0} ns: {ratio:.2}x ({lo:.2}..{hi:.2} over {} passes; target 1.1x: {})",
                    w.name,
                    samples(a).median(),
                    samples(b).median(),
                    a.len(),
                    if ratio <= 1.1 { "met" } else { "missed" }
                );
            }
            if let [this, base, ..] = builds {
                for (x, y) in [(this.paused, base.paused), (this.running, base.running)] {
                    let (Some(a), Some(b)) =
                        (m.get(open_only, w.name, x), m.get(open_only, w.name, y))
                    else {
                        continue;
                    };
                    if let Some((ratio, lo, hi)) = ratios(a, b) {
                        let _ = writeln!(
                            out,
                            "- {} ({scope}): {x} / {y}: {ratio:.2}x ({lo:.2}..{hi:.2})",
                            w.name
                        );
                    }
                }
            }
        }
        let Some(record) = m.get(false, w.name, OPEN_RECORD_PAUSED.name) else {
            continue;
        };
        for v in w
            .variants
            .iter()
            .filter(|v| v.name.starts_with("ref-record+"))
        {
            if let Some((d, lo, hi)) = m
                .get(false, w.name, v.name)
                .and_then(|p| differences(p, record))
            {
                let _ = writeln!(
                    out,
                    "- {}: {} − {}: {d:+.0} ns ({lo:+.0}..{hi:+.0}): what that piece costs",
                    w.name, v.name, OPEN_RECORD_PAUSED.name
                );
            }
        }
    }
    out
}

/// The per-program table: medians over passes (and the range of ns per iteration).
pub fn table(m: &InProgram) -> String {
    let mut out = String::from(
        "| workload | condition | program | runs/iteration | ns/run | ns/iteration (median) | min..max |\n\
         |---|---|---|---:|---:|---:|---:|\n",
    );
    for (w, condition) in &m.order {
        for ((pw, pc, name), p) in &m.programs {
            if pw != w || pc != condition {
                continue;
            }
            let _ = writeln!(
                out,
                "| {w} | {condition} | {name} | {:.2} | {:.0} | {:.0} | {:.0}..{:.0} |",
                p.runs_per_iter.median(),
                p.ns_per_run.median(),
                p.ns_per_iter.median(),
                p.ns_per_iter.min(),
                p.ns_per_iter.max(),
            );
        }
        let own = m.own_label.get(w).copied().unwrap_or("open programs");
        for (open_only, label) in [(true, own), (false, "all programs")] {
            let Some(t) = m.get(open_only, w, condition) else {
                continue;
            };
            if open_only && m.get(false, w, condition) == Some(t) {
                continue;
            }
            let s = samples(t);
            let runs = m
                .runs
                .get(&(w.clone(), condition.clone(), open_only))
                .map_or_else(String::new, |r| format!("{:.2}", samples(r).median()));
            let _ = writeln!(
                out,
                "| {w} | {condition} | **{label}** | {runs} | | **{:.0}** | {:.0}..{:.0} |",
                s.median(),
                s.min(),
                s.max()
            );
        }
    }
    out
}

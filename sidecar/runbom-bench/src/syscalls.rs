//! Benchmark (a): what a traced syscall costs with runbom attached, next to reference probes
//! measured in the same run.
//!
//! Every loop runs in this process, pinned to the last CPU; runbom and the reference consumer
//! are pinned to CPU 0, so their userspace work does not land on the measured CPU (the kernel
//! side of a probe runs inside the syscall, on the measured CPU, and is measured). The cost is
//! the loop thread's CPU time per iteration (`CLOCK_THREAD_CPUTIME_ID`: system time, the probes
//! and the interrupts that hit the thread included; time other processes of this shared machine
//! take from the CPU excluded); wall time is reported next to it.
//!
//! Each round starts runbom afresh and measures every workload `reps` times with runbom's reader
//! running and `reps` times with runbom stopped (SIGSTOP) during the loop, then stops runbom and
//! measures the baseline and every reference variant `reps` times, attaching and detaching the
//! reference around each repetition. Rounds alternate which half comes first. Results are
//! medians over all repetitions of all rounds.

use std::{
    collections::BTreeMap,
    ffi::CString,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    progstats,
    reference::{
        CONNECT_BARE, CONNECT_RECORD, CONNECT_RECORD_NOWAKE, CONNECT_RECORD_PAUSED, OPEN_BARE,
        OPEN_LPM, OPEN_READ, OPEN_RECORD, OPEN_RECORD_NOWAKE, OPEN_RECORD_PAUSED, READ_BARE,
        Reference, Variant, WRITE_BARE, WRITE_BARE_ENTER, WRITE_READ, wait_for_quiet_kernel,
    },
    runbom::{Runbom, Settings, Summary},
    stats::Samples,
    workload::{self, RefusedPort},
};

/// runbom's default excludes; the benchmark adds its own filtered-out directory. The include is
/// the benchmark's directory rather than `/`, so that the rest of a shared machine's opens do
/// not flow through runbom while it is measured (the trie holds the same excludes either way).
const DEFAULT_EXCLUDES: &[&str] = &[
    "/proc/",
    "/sys/",
    "/dev/",
    "/usr/lib/",
    "/lib/",
    "/usr/share/",
];

const RUNBOM: &str = "runbom";
const RUNBOM_PAUSED: &str = "runbom (paused)";

pub struct Options {
    pub runbom: PathBuf,
    pub dir: PathBuf,
    pub open_iterations: u64,
    pub connect_iterations: u64,
    pub write_iterations: u64,
    pub reps: usize,
    pub rounds: usize,
    pub loop_cpu: Option<usize>,
    pub service_cpu: Option<usize>,
}

enum Kind {
    Open(CString),
    Connect(libc::sockaddr_in),
    Write,
    Read,
}

struct Workload {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    iterations: u64,
    /// Reference variants measured for this workload.
    variants: &'static [Variant],
    /// Measure runbom with its reader stopped too (only where runbom writes records).
    paused: bool,
    /// `(runbom condition, reference condition)` pairs judged against the 1.1x target.
    compare: &'static [(&'static str, &'static str)],
}

/// One repetition: nanoseconds per iteration of the loop thread's CPU time and of wall time.
struct Measurement {
    cpu: f64,
    wall: f64,
}

impl Workload {
    fn warm_up(&self) -> u64 {
        (self.iterations / 20).max(1)
    }

    fn run(&self) -> Measurement {
        let warm = self.warm_up();
        let cpu0;
        let wall = match &self.kind {
            Kind::Open(path) => {
                workload::open_close(path, warm);
                cpu0 = workload::thread_cpu();
                workload::open_close(path, self.iterations).0
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
        };
        let cpu = workload::thread_cpu().saturating_sub(cpu0);
        let n = self.iterations as f64;
        Measurement {
            cpu: cpu.as_nanos() as f64 / n,
            wall: wall.as_nanos() as f64 / n,
        }
    }
}

#[derive(Default)]
struct Cell {
    cpu: Samples,
    wall: Samples,
    /// CPU ns/iter per round, for differences paired with the same round's baseline.
    rounds: BTreeMap<usize, Samples>,
}

type Table = BTreeMap<(usize, String), Cell>;

fn record(table: &mut Table, round: usize, workload: usize, condition: &str, m: &Measurement) {
    let cell = table.entry((workload, condition.to_owned())).or_default();
    cell.cpu.push(m.cpu);
    cell.wall.push(m.wall);
    cell.rounds.entry(round).or_default().push(m.cpu);
}

/// What a condition adds to the baseline: the median over rounds of (the condition's median
/// minus the baseline's median in the same round). Pairing by round cancels slow drifts of a
/// shared machine's load between rounds.
fn added(cell: &Cell, base: &Cell) -> f64 {
    let mut diffs = Samples::default();
    for (round, s) in &cell.rounds {
        if let Some(b) = base.rounds.get(round) {
            diffs.push(s.median() - b.median());
        }
    }
    diffs.median()
}

struct Files {
    watched: CString,
    skipped: CString,
    skipped_prefix: String,
    /// The directory holding both: runbom's include.
    base_prefix: String,
}

fn files(dir: &Path) -> Result<Files> {
    let base = dir.join("files");
    let watched_dir = base.join("watched");
    let skipped_dir = base.join("skipped");
    std::fs::create_dir_all(&watched_dir)?;
    std::fs::create_dir_all(&skipped_dir)?;
    let watched = watched_dir.join("file");
    let skipped = skipped_dir.join("file");
    std::fs::write(&watched, b"x")?;
    std::fs::write(&skipped, b"x")?;
    let cpath = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes());
    let files = Files {
        watched: cpath(&watched)?,
        skipped: cpath(&skipped)?,
        skipped_prefix: format!("{}/", skipped_dir.display()),
        base_prefix: format!("{}/", base.display()),
    };
    for p in [&files.watched, &files.skipped] {
        workload::check_open(p).with_context(|| format!("opening {p:?}"))?;
    }
    Ok(files)
}

fn workloads(opts: &Options, files: &Files, port: &RefusedPort) -> [Workload; 5] {
    [
        Workload {
            name: "open watched",
            what: "openat+close of a path runbom reports",
            kind: Kind::Open(files.watched.clone()),
            iterations: opts.open_iterations,
            variants: &[
                OPEN_BARE,
                OPEN_RECORD,
                OPEN_RECORD_PAUSED,
                OPEN_RECORD_NOWAKE,
            ],
            paused: true,
            compare: &[
                (RUNBOM_PAUSED, OPEN_RECORD_PAUSED.name),
                (RUNBOM, OPEN_RECORD.name),
            ],
        },
        Workload {
            name: "open filtered",
            what: "openat+close of a path under an excluded prefix",
            kind: Kind::Open(files.skipped.clone()),
            iterations: opts.open_iterations,
            variants: &[OPEN_BARE, OPEN_READ, OPEN_LPM],
            paused: false,
            compare: &[(RUNBOM, OPEN_BARE.name), (RUNBOM, OPEN_LPM.name)],
        },
        Workload {
            name: "connect",
            what: "socket+connect to a refused 127.0.0.1 port+close",
            kind: Kind::Connect(port.addr),
            iterations: opts.connect_iterations,
            variants: &[
                CONNECT_BARE,
                CONNECT_RECORD,
                CONNECT_RECORD_PAUSED,
                CONNECT_RECORD_NOWAKE,
            ],
            paused: true,
            compare: &[
                (RUNBOM_PAUSED, CONNECT_RECORD_PAUSED.name),
                (RUNBOM, CONNECT_RECORD.name),
            ],
        },
        Workload {
            name: "write",
            what: "write of 64 non-HTTP bytes to /dev/null (HTTP hooks at entry and exit)",
            kind: Kind::Write,
            iterations: opts.write_iterations,
            variants: &[WRITE_BARE_ENTER, WRITE_BARE, WRITE_READ],
            paused: false,
            compare: &[(RUNBOM, WRITE_READ.name), (RUNBOM, WRITE_BARE.name)],
        },
        Workload {
            name: "read",
            what: "read of 64 bytes from /dev/zero (HTTP/2 read hooks at entry and exit)",
            kind: Kind::Read,
            iterations: opts.write_iterations,
            variants: &[READ_BARE],
            paused: false,
            compare: &[(RUNBOM, READ_BARE.name)],
        },
    ]
}

/// runbom's program names, to undo the kernel's 15-byte truncation in reports.
const RUNBOM_PROGRAMS: &[&str] = &[
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
];

fn full_name(kernel_name: &str, reference: &BTreeMap<u32, String>, id: u32) -> String {
    if let Some(n) = reference.get(&id) {
        return n.clone();
    }
    RUNBOM_PROGRAMS
        .iter()
        .filter(|n| n.starts_with(kernel_name))
        .min_by_key(|n| n.len())
        .map_or_else(|| kernel_name.to_owned(), |n| (*n).to_owned())
}

/// One pass of every workload with the kernel's program run-time statistics on: time spent
/// inside each program per iteration, for runbom and for each reference variant.
fn breakdown(
    opts: &Options,
    settings: &Settings,
    workloads: &[Workload],
    reference: &mut Reference,
) -> Result<(String, InProgram)> {
    let _stats = progstats::enable()?;
    let mut totals = BTreeMap::new();
    let names = reference.program_ids();
    let mut out = String::from(
        "| workload | condition | program | runs/iteration | ns/run | ns/iteration |\n\
         |---|---|---|---:|---:|---:|\n",
    );
    let mut rows = |w: &Workload, condition: &str, ran: Vec<progstats::Ran>| {
        let n = (w.iterations + w.warm_up()) as f64;
        let mut total = 0.0;
        for r in ran {
            let per_iter = r.runs as f64 / n;
            // Programs run by the rest of the machine (exec, exit, ...) now and then.
            if per_iter < 0.05 {
                continue;
            }
            total += r.ns as f64 / n;
            let _ = writeln!(
                out,
                "| {} | {condition} | {} | {per_iter:.2} | {:.0} | {:.0} |",
                w.name,
                full_name(&r.name, &names, r.id),
                r.ns as f64 / r.runs as f64,
                r.ns as f64 / n,
            );
        }
        let _ = writeln!(
            out,
            "| {} | {condition} | **all programs** | | | **{total:.0}** |",
            w.name
        );
        totals.insert((w.name.to_owned(), condition.to_owned()), total);
    };
    let rb = Runbom::start(&opts.runbom, &opts.dir, settings, opts.service_cpu)?;
    for w in workloads {
        rb.quiesce();
        let before = progstats::snapshot();
        w.run();
        rows(w, RUNBOM, progstats::ran(&before, &progstats::snapshot()));
        if w.paused {
            rb.quiesce();
            rb.pause();
            let before = progstats::snapshot();
            w.run();
            let after = progstats::snapshot();
            rb.resume();
            rows(w, RUNBOM_PAUSED, progstats::ran(&before, &after));
        }
    }
    rb.quiesce();
    rb.stop()?;
    for w in workloads {
        for v in w.variants {
            reference.attach(v)?;
            let before = progstats::snapshot();
            w.run();
            let after = progstats::snapshot();
            reference.detach()?;
            reference.quiesce();
            rows(w, v.name, progstats::ran(&before, &after));
        }
    }
    Ok((out, totals))
}

/// `(workload, condition)` → ns per iteration inside the programs.
type InProgram = BTreeMap<(String, String), f64>;

/// Everything measured in one run.
struct Results {
    breakdown: String,
    /// `(workload, condition)` → ns per iteration inside the programs.
    in_program: InProgram,
    table: Table,
    summaries: Vec<Summary>,
    /// Rounds during which another tracer's programs were loaded.
    disturbed: Vec<String>,
    ref_records: u64,
}

/// runbom phase of a round: every workload, reader running and reader stopped.
fn measure_runbom(
    round: usize,
    opts: &Options,
    settings: &Settings,
    workloads: &[Workload],
    table: &mut Table,
) -> Result<Summary> {
    let rb = Runbom::start(&opts.runbom, &opts.dir, settings, opts.service_cpu)?;
    for (i, w) in workloads.iter().enumerate() {
        for _ in 0..opts.reps {
            rb.quiesce();
            record(table, round, i, RUNBOM, &w.run());
            if w.paused {
                rb.quiesce();
                rb.pause();
                let m = w.run();
                rb.resume();
                record(table, round, i, RUNBOM_PAUSED, &m);
            }
        }
    }
    rb.quiesce();
    rb.stop()
}

/// The idle gap runbom's measurements get while `Runbom::quiesce` waits for it, given to every
/// other measurement too: an idle vCPU comes back slower (caches, host scheduling), and only
/// equal treatment keeps that out of the differences.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

/// Reference phase of a round: baseline and every variant, interleaved per repetition.
fn measure_reference(
    round: usize,
    opts: &Options,
    reference: &mut Reference,
    workloads: &[Workload],
    table: &mut Table,
) -> Result<()> {
    for _ in 0..opts.reps {
        for (i, w) in workloads.iter().enumerate() {
            settle();
            record(table, round, i, "baseline", &w.run());
            for v in w.variants {
                reference.attach(v)?;
                settle();
                let m = w.run();
                reference.detach()?;
                reference.quiesce();
                record(table, round, i, v.name, &m);
            }
        }
    }
    Ok(())
}

fn measure(
    opts: &Options,
    workloads: &[Workload],
    includes: &[&str],
    excludes: &[&str],
) -> Result<Results> {
    // Large enough that runbom's ring holds a whole paused repetition.
    let ring_bytes = 64 << 20;
    let prefixes: Vec<(&str, bool)> = includes
        .iter()
        .map(|p| (*p, true))
        .chain(excludes.iter().map(|p| (*p, false)))
        .collect();
    let mut reference = Reference::load(ring_bytes, &prefixes, opts.service_cpu)?;
    let settings = Settings {
        ring_bytes: Some(ring_bytes),
        include: includes,
        exclude: excludes,
        file_dir: None,
        http_plaintext: true,
        mcp: true,
    };
    let mut results = Results {
        breakdown: String::new(),
        in_program: BTreeMap::new(),
        table: Table::new(),
        summaries: Vec::new(),
        disturbed: Vec::new(),
        ref_records: 0,
    };
    for round in 0..opts.rounds {
        eprintln!("[bench] syscalls: round {}/{}", round + 1, opts.rounds);
        let runbom_first = round % 2 == 0;
        for phase in 0..2 {
            let foreign = wait_for_quiet_kernel(Duration::from_secs(30));
            if !foreign.is_empty() {
                eprintln!(
                    "[bench] other tracepoint programs are loaded (another runbom?): {}; measuring anyway",
                    foreign.join(" ")
                );
                results.disturbed.push(format!(
                    "round {} phase {}: {}",
                    round + 1,
                    phase + 1,
                    foreign.join(" ")
                ));
            }
            if (phase == 0) == runbom_first {
                let summary =
                    measure_runbom(round, opts, &settings, workloads, &mut results.table)?;
                results.summaries.push(summary);
            } else {
                measure_reference(round, opts, &mut reference, workloads, &mut results.table)?;
            }
        }
    }
    eprintln!("[bench] syscalls: time inside the programs (kernel run-time statistics)");
    (results.breakdown, results.in_program) =
        breakdown(opts, &settings, workloads, &mut reference)?;
    results.ref_records = reference.records();
    Ok(results)
}

pub fn run(opts: &Options) -> Result<String> {
    let files = files(&opts.dir)?;
    let mut excludes: Vec<&str> = DEFAULT_EXCLUDES.to_vec();
    excludes.push(&files.skipped_prefix);
    let port = RefusedPort::new().context("reserving a refused loopback port")?;
    port.check()?;
    if let Some(cpu) = opts.loop_cpu {
        workload::pin_current_thread(cpu)?;
    }
    let workloads = workloads(opts, &files, &port);
    let includes = [files.base_prefix.as_str()];
    let results = measure(opts, &workloads, &includes, &excludes)?;

    let summaries = &results.summaries;
    if summaries.iter().any(|s| !s.contains_key("ring_full_drops")) {
        bail!("runbom's summary has no ring_full_drops field: {summaries:?}");
    }
    let total = |key: &str| -> u64 {
        summaries
            .iter()
            .map(|s| s.get(key).copied().unwrap_or(0))
            .sum()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### (a) Cost per traced syscall\n\n\
         {} rounds x {} repetitions per condition; {} iterations per repetition (open), {} (connect), {} (write); \
         loop pinned to CPU {}, runbom and the reference consumer to CPU {}. \
         runbom exported {} events over these runs with ring_full_drops={} and inflight_full_drops={} \
         (both must be 0: a dropped event costs the kernel less than a delivered one); \
         the reference consumer read {} records.\n",
        opts.rounds,
        opts.reps,
        opts.open_iterations,
        opts.connect_iterations,
        opts.write_iterations,
        cpu_name(opts.loop_cpu),
        cpu_name(opts.service_cpu),
        total("events"),
        total("ring_full_drops"),
        total("inflight_full_drops"),
        results.ref_records,
    );
    if results.disturbed.is_empty() {
        out.push_str("No other tracepoint program was loaded during the measurements.\n\n");
    } else {
        let _ = writeln!(
            out,
            "WARNING: other tracepoint programs were loaded during part of the run (they run in \
             every measured syscall, baseline included): {}\n",
            results.disturbed.join("; ")
        );
    }
    out.push_str(&report(&workloads, &results.table));
    out.push_str(&in_program_verdicts(&workloads, &results.in_program));
    let _ = writeln!(
        out,
        "\nTime inside the programs (one pass per condition, kernel run-time statistics on; \
         reader and consumer running):\n\n{}",
        results.breakdown
    );
    Ok(out)
}

fn cpu_name(cpu: Option<usize>) -> String {
    cpu.map_or_else(|| "(not pinned)".into(), |c| c.to_string())
}

fn report(workloads: &[Workload], table: &Table) -> String {
    let mut out = String::from(
        "| workload | condition | CPU ns/iter (median) | min..max | added ns (paired median) | slowdown | wall ns/iter (median) |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    let mut verdicts = Vec::new();
    for (i, w) in workloads.iter().enumerate() {
        let get = |c: &str| table.get(&(i, c.to_owned()));
        let Some(base) = get("baseline") else {
            continue;
        };
        let base_med = base.cpu.median();
        let mut conditions: Vec<&str> = vec!["baseline"];
        conditions.extend(w.variants.iter().map(|v| v.name));
        conditions.push(RUNBOM);
        if w.paused {
            conditions.push(RUNBOM_PAUSED);
        }
        for c in conditions {
            let Some(cell) = get(c) else { continue };
            let med = cell.cpu.median();
            let extra = added(cell, base);
            let shown = if c == "baseline" {
                String::new()
            } else {
                format!("{extra:+.0}")
            };
            let _ = writeln!(
                out,
                "| {} | {c} | {med:.0} | {:.0}..{:.0} | {shown} | {:.2}x | {:.0} |",
                w.name,
                cell.cpu.min(),
                cell.cpu.max(),
                1.0 + extra / base_med,
                cell.wall.median(),
            );
        }
        for (ours, theirs) in w.compare {
            let (Some(ours_cell), Some(ref_cell)) = (get(ours), get(theirs)) else {
                continue;
            };
            let ours_added = added(ours_cell, base);
            let ref_added = added(ref_cell, base);
            let ratio = ours_added / ref_added;
            verdicts.push(format!(
                "- {} ({}): {ours} adds {ours_added:.0} ns, {theirs} adds {ref_added:.0} ns: {ratio:.2}x (target 1.1x: {})",
                w.name,
                w.what,
                if ref_added <= 0.0 {
                    "n/a"
                } else if ratio <= 1.1 {
                    "met"
                } else {
                    "missed"
                }
            ));
        }
    }
    let _ = writeln!(out, "\n{}", verdicts.join("\n"));
    out
}

/// The target judged on time inside the programs (no preemption, no scheduling noise: the
/// kernel's own accounting over every run of the pass).
fn in_program_verdicts(workloads: &[Workload], totals: &InProgram) -> String {
    let mut out = String::from(
        "\nSame comparisons, time inside the programs (kernel run-time statistics, below):\n",
    );
    for w in workloads {
        for (ours, theirs) in w.compare {
            let get = |c: &str| totals.get(&(w.name.to_owned(), (*c).to_owned())).copied();
            let (Some(a), Some(b)) = (get(ours), get(theirs)) else {
                continue;
            };
            let ratio = a / b;
            let _ = writeln!(
                out,
                "- {}: {ours} {a:.0} ns, {theirs} {b:.0} ns: {ratio:.2}x (target 1.1x: {})",
                w.name,
                if ratio <= 1.1 { "met" } else { "missed" }
            );
        }
    }
    out
}

/// Which reference programs each variant attaches (for the report).
pub fn legend() -> String {
    let mut out = String::from("Reference variants (program@syscalls tracepoint):\n");
    for (what, v) in [
        ("open", OPEN_BARE),
        ("open", OPEN_READ),
        ("open", OPEN_LPM),
        ("open", OPEN_RECORD),
        ("open", OPEN_RECORD_PAUSED),
        ("open", OPEN_RECORD_NOWAKE),
        ("connect", CONNECT_BARE),
        ("connect", CONNECT_RECORD),
        ("connect", CONNECT_RECORD_PAUSED),
        ("connect", CONNECT_RECORD_NOWAKE),
        ("write", WRITE_BARE_ENTER),
        ("write", WRITE_BARE),
        ("write", WRITE_READ),
    ] {
        let parts: Vec<String> = v.attach.iter().map(|(p, t)| format!("{p}@{t}")).collect();
        let _ = writeln!(
            out,
            "- {what} {}: {}{}",
            v.name,
            parts.join(", "),
            if v.paused {
                " (consumer stopped during the loop)"
            } else {
                ""
            }
        );
    }
    out
}

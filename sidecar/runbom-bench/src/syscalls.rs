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
//! medians over all repetitions of all rounds. With `--baseline-runbom`, a second build is
//! measured in the same rounds (its half right after the first's, in alternating order), and
//! time inside the programs is compared build against build pass by pass (`inprogram`).
//!
//! Only the fast path is meant to be measured: runbom's ring is large enough that a paused
//! repetition never fills it, and the report says how many opens took the pressure path
//! (classified in scratch) or were shed in runbom's runs, which must be none.

use std::{
    collections::BTreeMap, ffi::CString, fmt::Write as _, os::fd::AsRawFd as _, path::Path,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    conditions::{
        Build, Kind, Measurement, Options, RUNBOM, RUNBOM_PAUSED, Workload, builds, settle,
    },
    inprogram,
    reference::{
        CONNECT_BARE, CONNECT_RECORD, CONNECT_RECORD_NOWAKE, CONNECT_RECORD_PAUSED, EXEC_BARE,
        EXEC_BARE_RAW, GETPPID_BARE, GETPPID_BARE_RAW, GETPPID_RAW_UNTRACED, OPEN_BARE,
        OPEN_BARE_RAW, OPEN_LPM, OPEN_READ, OPEN_RECORD, OPEN_RECORD_LPM_PAUSED,
        OPEN_RECORD_NOWAKE, OPEN_RECORD_PAUSED, OPEN_RECORD_QUERY_PAUSED, OPEN_RECORD_SLOT_PAUSED,
        READ_BARE, Reference, WRITE_BARE, WRITE_BARE_ENTER, WRITE_READ, wait_for_quiet_kernel,
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
    /// That directory, open: `by_head` is relative to it.
    base_dir: std::fs::File,
    /// A watched path the kernel's first-level table decides from its first two bytes
    /// (`HEAD_RULE`, a two-byte include no other rule starts with), as the embedded defaults'
    /// include of `/` decides `/tmp`, `/home` or `/root` paths; the same length as `watched`.
    by_head: CString,
}

/// The include that makes `Files::by_head` decided by its first two bytes: no other rule starts
/// with them, and no other process opens a relative path starting with them.
const HEAD_RULE: &str = "RB";

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
    let watched = cpath(&watched)?;
    // As long as `watched`, so that both read as many path bytes.
    let head_dir = format!(
        "{HEAD_RULE}{}",
        "-watched-by-its-head".repeat(watched.as_bytes().len() / 20 + 1)
    );
    let head_dir = &head_dir[..watched.as_bytes().len().saturating_sub(5).max(3)];
    std::fs::create_dir_all(base.join(head_dir))?;
    std::fs::write(base.join(head_dir).join("file"), b"x")?;
    let files = Files {
        watched,
        skipped: cpath(&skipped)?,
        skipped_prefix: format!("{}/", skipped_dir.display()),
        base_prefix: format!("{}/", base.display()),
        base_dir: std::fs::File::open(&base)?,
        by_head: CString::new(format!("{head_dir}/file"))?,
    };
    for p in [&files.watched, &files.skipped] {
        workload::check_open(p).with_context(|| format!("opening {p:?}"))?;
    }
    let (_, ok) = workload::open_close_at(files.base_dir.as_raw_fd(), &files.by_head, 1);
    if ok != 1 {
        bail!("cannot open {:?} in {}", files.by_head, base.display());
    }
    Ok(files)
}

fn workloads(opts: &Options, files: &Files, port: &RefusedPort) -> [Workload; 8] {
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
                OPEN_RECORD_LPM_PAUSED,
                OPEN_RECORD_QUERY_PAUSED,
                OPEN_RECORD_SLOT_PAUSED,
            ],
            paused: true,
            compare: &[
                (RUNBOM_PAUSED, OPEN_RECORD_PAUSED.name),
                (RUNBOM, OPEN_RECORD.name),
            ],
        },
        Workload {
            name: "open watched (head)",
            what: "openat+close of a path runbom reports, decided by its first two bytes",
            kind: Kind::OpenAt(files.base_dir.as_raw_fd(), files.by_head.clone()),
            iterations: opts.open_iterations,
            variants: &[OPEN_RECORD, OPEN_RECORD_PAUSED],
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
            variants: &[OPEN_BARE, OPEN_BARE_RAW, OPEN_READ, OPEN_LPM],
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
        Workload {
            name: "getppid",
            what: "getppid, which no tracer hooks (classic against raw tracepoint dispatch)",
            kind: Kind::Getppid,
            iterations: opts.write_iterations,
            variants: &[GETPPID_BARE, GETPPID_BARE_RAW, GETPPID_RAW_UNTRACED],
            paused: false,
            compare: &[],
        },
        Workload {
            name: "exec",
            what: "spawn of /bin/true, waited for (its CPU counted; a fork, an exec, an exit)",
            kind: Kind::Exec,
            iterations: opts.exec_iterations,
            variants: &[EXEC_BARE, EXEC_BARE_RAW],
            paused: true,
            compare: &[],
        },
    ]
}

/// Everything measured in one run.
struct Results {
    in_program: inprogram::InProgram,
    table: Table,
    /// runbom's closing summaries, by the build's condition name.
    summaries: Vec<(&'static str, Summary)>,
    /// Rounds during which another tracer's programs were loaded.
    disturbed: Vec<String>,
    ref_records: u64,
}

/// runbom phase of a round: every workload, reader running and reader stopped.
fn measure_runbom(
    round: usize,
    opts: &Options,
    settings: &Settings,
    build: &Build,
    workloads: &[Workload],
    table: &mut Table,
) -> Result<Summary> {
    let rb = Runbom::start(&build.bin, &opts.dir, settings, opts.service_cpu)?;
    for (i, w) in workloads.iter().enumerate() {
        for _ in 0..opts.reps {
            rb.quiesce();
            record(table, round, i, build.running, &w.run());
            if w.paused {
                rb.quiesce();
                rb.pause();
                let m = w.run();
                rb.resume();
                record(table, round, i, build.paused, &m);
            }
        }
    }
    rb.quiesce();
    rb.stop()
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
    builds: &[Build],
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
        in_program: inprogram::InProgram::default(),
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
                for i in 0..builds.len() {
                    let b = &builds[(i + round) % builds.len()];
                    let summary =
                        measure_runbom(round, opts, &settings, b, workloads, &mut results.table)?;
                    results.summaries.push((b.running, summary));
                }
            } else {
                measure_reference(round, opts, &mut reference, workloads, &mut results.table)?;
            }
        }
    }
    results.in_program = inprogram::measure(opts, &settings, builds, workloads, &mut reference)?;
    results
        .summaries
        .append(&mut std::mem::take(&mut results.in_program.summaries));
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
    let includes = [files.base_prefix.as_str(), HEAD_RULE];
    let builds = builds(opts);
    let results = measure(opts, &builds, &workloads, &includes, &excludes)?;

    let summaries = &results.summaries;
    if summaries
        .iter()
        .any(|(_, s)| !s.contains_key("ring_full_drops"))
    {
        bail!("runbom's summary has no ring_full_drops field: {summaries:?}");
    }
    let total = |key: &str| -> u64 {
        summaries
            .iter()
            .map(|(_, s)| s.get(key).copied().unwrap_or(0))
            .sum()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### (a) Cost per traced syscall\n\n\
         {} rounds x {} repetitions per condition; {} iterations per repetition (open), {} (connect), {} (write), {} (exec); \
         loop pinned to CPU {}, runbom and the reference consumer to CPU {}. \
         runbom exported {} events over these runs with ring_full_drops={} and inflight_full_drops={} \
         (both must be 0: a dropped event costs the kernel less than a delivered one); \
         the reference consumer read {} records.\n",
        opts.rounds,
        opts.reps,
        opts.open_iterations,
        opts.connect_iterations,
        opts.write_iterations,
        opts.exec_iterations,
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
    out.push_str(&fast_path(&builds, summaries, opts.rounds));
    out.push_str(&report(&workloads, &builds, &results.table));
    out.push_str(&inprogram::verdicts(
        &workloads,
        &builds,
        &results.in_program,
    ));
    let _ = writeln!(
        out,
        "\nTime inside the programs ({} passes per condition, kernel run-time statistics on; \
         medians over passes):\n\n{}",
        opts.stat_passes,
        inprogram::table(&results.in_program)
    );
    Ok(out)
}

/// Which path runbom's opens took, per build: the measured one must be the fast path (the
/// record reserved in the ring), with no open classified in scratch or shed.
fn fast_path(builds: &[Build], summaries: &[(&'static str, Summary)], rounds: usize) -> String {
    let mut out = String::new();
    for b in builds {
        let of_build: Vec<&Summary> = summaries
            .iter()
            .filter(|(name, _)| *name == b.running)
            .map(|(_, s)| s)
            .collect();
        let sum = |key: &str| -> Option<u64> {
            of_build
                .iter()
                .map(|s| s.get(key).copied())
                .sum::<Option<u64>>()
        };
        let shed = sum("shed_drops").unwrap_or(0);
        match sum("opens_in_scratch") {
            Some(0) if shed == 0 => {
                let _ = writeln!(
                    out,
                    "{}: every open took the fast path (0 classified in scratch, 0 shed, {} runs).",
                    b.running,
                    of_build.len()
                );
            }
            Some(n) => {
                let runs: Vec<String> = of_build
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        let scratch = s.get("opens_in_scratch").copied().unwrap_or(0);
                        let shed = s.get("shed_drops").copied().unwrap_or(0);
                        (scratch + shed > 0)
                            .then(|| format!("run {}: {scratch} in scratch, {shed} shed", i + 1))
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "WARNING: {}: {n} opens were classified in scratch and {shed} shed: the pressure path was measured, not the fast path ({}; runs 1..{} are the rounds', then the passes').",
                    b.running,
                    runs.join("; "),
                    rounds
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}: this build does not report which path its opens took; {shed} shed.",
                    b.running
                );
            }
        }
    }
    out.push('\n');
    out
}

fn cpu_name(cpu: Option<usize>) -> String {
    cpu.map_or_else(|| "(not pinned)".into(), |c| c.to_string())
}

fn report(workloads: &[Workload], builds: &[Build], table: &Table) -> String {
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
        for b in builds {
            conditions.push(b.running);
            if w.paused {
                conditions.push(b.paused);
            }
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
        for (ours, theirs) in w.comparisons(builds) {
            let (Some(ours_cell), Some(ref_cell)) = (get(&ours), get(theirs)) else {
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

/// Which reference programs each variant attaches (for the report).
pub fn legend() -> String {
    let mut out = String::from("Reference variants (program@syscalls tracepoint):\n");
    for (what, v) in [
        ("open", OPEN_BARE),
        ("open", OPEN_READ),
        ("open", OPEN_BARE_RAW),
        ("open", OPEN_LPM),
        ("open", OPEN_RECORD),
        ("open", OPEN_RECORD_PAUSED),
        ("open", OPEN_RECORD_NOWAKE),
        ("open", OPEN_RECORD_LPM_PAUSED),
        ("open", OPEN_RECORD_QUERY_PAUSED),
        ("open", OPEN_RECORD_SLOT_PAUSED),
        ("connect", CONNECT_BARE),
        ("connect", CONNECT_RECORD),
        ("connect", CONNECT_RECORD_PAUSED),
        ("connect", CONNECT_RECORD_NOWAKE),
        ("write", WRITE_BARE_ENTER),
        ("write", WRITE_BARE),
        ("write", WRITE_READ),
        ("getppid", GETPPID_BARE),
        ("getppid", GETPPID_BARE_RAW),
        ("getppid", GETPPID_RAW_UNTRACED),
        ("exec", EXEC_BARE),
        ("exec", EXEC_BARE_RAW),
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

//! Benchmark (e): a syscall-heavy workload under runbom's embedded defaults, against the same
//! workload with runbom not running at all. A burst is `opens` opens of a watched path,
//! `connects` refused loopback connects and `execs` fork+exec of `/bin/true`, interleaved;
//! bursts run back to back. Rounds alternate which condition comes first, and runbom is
//! stopped (SIGTERM, exited) before every round without it. Measured: the burst's wall time
//! and the workload's CPU time (its thread plus its reaped children), split by part (opens,
//! connects, execs), and what runbom exported and dropped (by the kernel's counters, shed kinds
//! included). After the measured bursts of each round with runbom, one more burst runs with the
//! kernel's BPF run-time statistics on (not counted above: the statistics cost a little per
//! program run): the time spent inside each of runbom's programs per burst, which splits what
//! runbom adds to the workload into its programs and everything around them (tracepoint
//! dispatch, the syscall slow path every traced task takes, caches).

use std::{
    collections::BTreeMap,
    ffi::CString,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use runbom_testkit::{Ready, runbom::Stdout};

use crate::{
    progstats,
    runbom::{Summary, count_exported_opens},
    stats::Samples,
    workload::{self, RefusedPort, thread_cpu},
};

/// The embedded defaults, as `runbom run` without `--config` uses them.
const EMBEDDED_DEFAULT: &str = include_str!("../../runbom-pipeline/src/config/default.yaml");

pub struct Options {
    pub runbom: PathBuf,
    pub dir: PathBuf,
    pub rounds: usize,
    /// Bursts per round and condition.
    pub bursts: usize,
    pub opens: u64,
    pub connects: u64,
    pub execs: u64,
}

/// One burst's wall and CPU time, in seconds, and its CPU time by part.
struct Burst {
    wall: f64,
    cpu: f64,
    parts: [f64; PARTS.len()],
}

/// The parts of a burst, in the order of `Burst::parts`.
const PARTS: [&str; 3] = ["opens", "connects", "execs"];

fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid; getrusage writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and rusage pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn exec_true() -> Result<()> {
    let status = std::process::Command::new("/bin/true").status()?;
    if !status.success() {
        bail!("/bin/true exited with {status}");
    }
    Ok(())
}

fn burst(opts: &Options, path: &CString, port: &RefusedPort) -> Result<Burst> {
    let slices = opts.execs.max(1);
    let (cpu0, child0, start) = (thread_cpu(), children_cpu(), Instant::now());
    let mut parts = [Duration::ZERO; PARTS.len()];
    let mut mark = cpu0 + child0;
    let mut lap = |part: &mut Duration| {
        let now = thread_cpu() + children_cpu();
        *part += now.saturating_sub(mark);
        mark = now;
    };
    for i in 0..slices {
        let share = |n: u64| n * (i + 1) / slices - n * i / slices;
        workload::open_close(path, share(opts.opens));
        lap(&mut parts[0]);
        workload::connect_loop(&port.addr, share(opts.connects));
        lap(&mut parts[1]);
        if i < opts.execs {
            exec_true()?;
            lap(&mut parts[2]);
        }
    }
    Ok(Burst {
        wall: start.elapsed().as_secs_f64(),
        cpu: (thread_cpu().saturating_sub(cpu0) + children_cpu().saturating_sub(child0))
            .as_secs_f64(),
        parts: parts.map(|d| d.as_secs_f64()),
    })
}

/// The embedded defaults with the OTLP receivers and `/metrics` on free ports (the machine may
/// run other collectors: a taken 8888 would stop runbom at start).
pub(crate) fn config(work: &Path) -> Result<PathBuf> {
    let grpc = runbom_testkit::net::free_port();
    let http = runbom_testkit::net::free_port();
    let metrics = runbom_testkit::net::free_port();
    let text = EMBEDDED_DEFAULT
        .replacen(
            "      grpc: {}",
            &format!("      grpc:\n        endpoint: 127.0.0.1:{grpc}"),
            1,
        )
        .replacen(
            "      http: {}",
            &format!("      http:\n        endpoint: 127.0.0.1:{http}"),
            1,
        )
        .replacen(
            "service:\n",
            &format!("service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{metrics}\n"),
            1,
        );
    let path = work.join("runbom-defaults.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

struct WithRunbom {
    summary: Summary,
    /// `(file.open records of the workload's path, all log records)` exported.
    exported: (u64, u64),
    bursts: Vec<Burst>,
    /// runbom's programs that ran during the burst with run-time statistics on.
    in_programs: Vec<progstats::Ran>,
}

fn with_runbom(
    opts: &Options,
    path: &CString,
    prefix: &str,
    port: &RefusedPort,
) -> Result<WithRunbom> {
    let work = opts.dir.join("mixed");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let config = config(&work)?;
    let mut cmd = runbom_testkit::Runbom::command(&opts.runbom, &config, &work);
    let rb =
        runbom_testkit::Runbom::try_spawn(&mut cmd, &work, Ready::ProbesAttached, Stdout::Discard)?;
    std::thread::sleep(Duration::from_secs(1));
    let mut bursts = Vec::new();
    for _ in 0..opts.bursts {
        bursts.push(burst(opts, path, port)?);
    }
    let in_programs = {
        let ours = progstats::held_by(rb.pid());
        let _stats = progstats::enable()?;
        let before = progstats::snapshot();
        burst(opts, path, port)?;
        let mut ran = progstats::ran(&before, &progstats::snapshot());
        ran.retain(|r| ours.contains(&r.id));
        ran
    };
    let (status, _cpu, log) = rb.try_stop_with_cpu(Duration::from_mins(3))?;
    if !status.success() {
        bail!("runbom exited with {status}:\n{log}");
    }
    let summary = runbom_testkit::runbom::closing_fields(&log)
        .with_context(|| format!("no `runbom stopped` line in runbom's log:\n{log}"))?;
    let exported = count_exported_opens(&work.join("runbom-data"), prefix)?;
    Ok(WithRunbom {
        summary,
        exported,
        bursts,
        in_programs,
    })
}

pub fn run(opts: &Options) -> Result<String> {
    let files = opts.dir.join("files").join("mixed");
    std::fs::create_dir_all(&files)?;
    let file = files.join("file");
    std::fs::write(&file, b"x")?;
    let path = CString::new(file.as_os_str().as_encoded_bytes())?;
    workload::check_open(&path)?;
    let prefix = format!("{}/", files.display());
    let port = RefusedPort::new()?;
    port.check()?;
    exec_true()?;

    let (mut wall, mut cpu) = (
        [Samples::default(), Samples::default()],
        [Samples::default(), Samples::default()],
    );
    let mut ratios_wall = Samples::default();
    let mut ratios_cpu = Samples::default();
    let mut rows = String::new();
    let mut totals = Totals::default();
    let mut parts: [[Samples; PARTS.len()]; 2] = Default::default();
    for round in 0..opts.rounds {
        let mut medians = [(0.0, 0.0); 2];
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            eprintln!(
                "[bench] mixed: round {} {}",
                round + 1,
                if which == 0 {
                    "without runbom"
                } else {
                    "with runbom"
                }
            );
            let bursts = if which == 0 {
                (0..opts.bursts)
                    .map(|_| burst(opts, &path, &port))
                    .collect::<Result<Vec<_>>>()?
            } else {
                let w = with_runbom(opts, &path, &prefix, &port)?;
                totals.add(opts, &w);
                w.bursts
            };
            let (mut w, mut c) = (Samples::default(), Samples::default());
            for b in &bursts {
                w.push(b.wall);
                c.push(b.cpu);
                wall[which].push(b.wall);
                cpu[which].push(b.cpu);
                for (samples, part) in parts[which].iter_mut().zip(b.parts) {
                    samples.push(part);
                }
            }
            medians[which] = (w.median(), c.median());
        }
        ratios_wall.push(medians[1].0 / medians[0].0);
        ratios_cpu.push(medians[1].1 / medians[0].1);
        let _ = writeln!(
            rows,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3}× | {:.3}× |",
            round + 1,
            medians[0].0 * 1e3,
            medians[1].0 * 1e3,
            medians[0].1 * 1e3,
            medians[1].1 * 1e3,
            medians[1].0 / medians[0].0,
            medians[1].1 / medians[0].1,
        );
    }
    let mut out = format!(
        "### (e) Syscall-heavy workload with and without runbom (embedded defaults)\n\n\
         Burst: {} opens + {} connects + {} execs, {} bursts per round and condition, {} rounds.\n\n\
         | round | wall ms without | wall ms with | CPU ms without | CPU ms with | wall ratio | CPU ratio |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n{rows}",
        opts.opens, opts.connects, opts.execs, opts.bursts, opts.rounds
    );
    let _ = writeln!(
        out,
        "| all | {:.1} | {:.1} | {:.1} | {:.1} | **{:.3}×** ({:.3}..{:.3}) | **{:.3}×** ({:.3}..{:.3}) |",
        wall[0].median() * 1e3,
        wall[1].median() * 1e3,
        cpu[0].median() * 1e3,
        cpu[1].median() * 1e3,
        ratios_wall.median(),
        ratios_wall.min(),
        ratios_wall.max(),
        ratios_cpu.median(),
        ratios_cpu.min(),
        ratios_cpu.max(),
    );
    out.push_str(&by_part(opts, &parts, &totals.programs));
    out.push_str(&totals.summary());
    Ok(out)
}

/// What the rounds with runbom add up to.
#[derive(Default)]
struct Totals {
    /// Opens of the watched path.
    produced: u64,
    /// `file.open` records of them exported.
    exported: u64,
    /// Log records exported.
    records: u64,
    /// The kernel's loss counters.
    drops: Summary,
    /// Program name → (ns, runs) summed over the statistics bursts.
    programs: BTreeMap<String, (u64, u64)>,
}

impl Totals {
    fn summary(&self) -> String {
        let Self {
            produced,
            exported,
            records,
            drops,
            ..
        } = self;
        format!(
            "\nWorkload opens {produced}, exported file.open of them {exported} (lost {}), log \
             records exported {records}; kernel counters summed over rounds: {drops:?}\n",
            produced.saturating_sub(*exported)
        )
    }

    fn add(&mut self, opts: &Options, w: &WithRunbom) {
        // The measured bursts and the statistics burst.
        self.produced += opts.opens * (opts.bursts as u64 + 1);
        self.exported += w.exported.0;
        self.records += w.exported.1;
        for (k, v) in &w.summary {
            if k.ends_with("_drops") {
                *self.drops.entry(k.clone()).or_default() += v;
            }
        }
        for r in &w.in_programs {
            let e = self.programs.entry(r.name.clone()).or_default();
            e.0 += r.ns;
            e.1 += r.runs;
        }
    }
}

/// Where the added CPU goes: each part's CPU time without and with runbom (medians over
/// bursts), and the time inside runbom's programs per burst (the statistics bursts, averaged).
fn by_part(
    opts: &Options,
    parts: &[[Samples; PARTS.len()]; 2],
    programs: &BTreeMap<String, (u64, u64)>,
) -> String {
    let per_burst = [opts.opens, opts.connects, opts.execs];
    let mut out = String::from(
        "\nCPU by part of a burst (medians over bursts; an exec counts its child's CPU):\n\n\
         | part | ops per burst | CPU ms without | CPU ms with | added ms | added µs per op |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for (i, name) in PARTS.iter().enumerate() {
        let (without, with) = (parts[0][i].median(), parts[1][i].median());
        let _ = writeln!(
            out,
            "| {name} | {} | {:.1} | {:.1} | {:+.1} | {:+.2} |",
            per_burst[i],
            without * 1e3,
            with * 1e3,
            (with - without) * 1e3,
            (with - without) * 1e6 / per_burst[i].max(1) as f64,
        );
    }
    let rounds = opts.rounds.max(1) as f64;
    let mut rows: Vec<_> = programs.iter().collect();
    rows.sort_by_key(|(_, (ns, _))| std::cmp::Reverse(*ns));
    let total: u64 = programs.values().map(|(ns, _)| ns).sum();
    let _ = writeln!(
        out,
        "\nInside runbom's programs, per burst (one burst per round with run-time statistics \
         on): **{:.1} ms** in all.\n\n\
         | program | runs per burst | ns per run | ms per burst |\n|---|---:|---:|---:|",
        total as f64 / rounds / 1e6
    );
    for (name, (ns, runs)) in rows {
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.0} | {:.2} |",
            *runs as f64 / rounds,
            *ns as f64 / (*runs).max(1) as f64,
            *ns as f64 / rounds / 1e6,
        );
    }
    out
}

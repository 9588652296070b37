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
//! dispatch, the syscall slow path every traced task takes, caches). `--mixed-controls` adds
//! conditions that tell those apart (`crate::controls`), in the same rounds.

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
    controls::{self, Control},
    progstats,
    runbom::{Summary, count_exported_opens},
    stats::Samples,
    workload::{self, RefusedPort, children_cpu, thread_cpu},
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
    /// Control conditions measured in the same rounds (`crate::controls`).
    pub controls: Vec<Control>,
}

/// One burst's wall and CPU time, in seconds, and its CPU time by part.
struct Burst {
    wall: f64,
    cpu: f64,
    parts: [f64; PARTS.len()],
}

/// The parts of a burst, in the order of `Burst::parts`.
const PARTS: [&str; 3] = ["opens", "connects", "execs"];

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
            workload::exec_true()?;
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
    config_from(work, EMBEDDED_DEFAULT)
}

/// [`config`] from another text of the embedded defaults.
fn config_from(work: &Path, base: &str) -> Result<PathBuf> {
    let grpc = runbom_testkit::net::free_port();
    let http = runbom_testkit::net::free_port();
    let metrics = runbom_testkit::net::free_port();
    let text = base
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
    /// The share of a CPU runbom spent while the bursts ran.
    cpu_share: f64,
}

/// How runbom runs for a condition: its configuration's text, and whether it is stopped
/// (SIGSTOP) while the bursts run.
struct Mode<'a> {
    config: &'a str,
    stopped: bool,
    /// One more burst with the kernel's run-time statistics on.
    in_program_stats: bool,
}

fn with_runbom(
    opts: &Options,
    path: &CString,
    prefix: &str,
    port: &RefusedPort,
    mode: &Mode<'_>,
) -> Result<WithRunbom> {
    let work = opts.dir.join("mixed");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let config = config_from(&work, mode.config)?;
    let mut cmd = runbom_testkit::Runbom::command(&opts.runbom, &config, &work);
    let rb =
        runbom_testkit::Runbom::try_spawn(&mut cmd, &work, Ready::ProbesAttached, Stdout::Discard)?;
    std::thread::sleep(Duration::from_secs(1));
    let signal = |sig| {
        // SAFETY: a signal to our own child, which has not been reaped (we hold it).
        unsafe { libc::kill(rb.pid() as libc::pid_t, sig) };
    };
    if mode.stopped {
        signal(libc::SIGSTOP);
    }
    let (cpu0, start) = (controls::cpu_of(rb.pid()), Instant::now());
    let mut bursts = Vec::new();
    for _ in 0..opts.bursts {
        bursts.push(burst(opts, path, port)?);
    }
    let cpu_share = controls::cpu_of(rb.pid())
        .saturating_sub(cpu0)
        .as_secs_f64()
        / start.elapsed().as_secs_f64();
    if mode.stopped {
        signal(libc::SIGCONT);
    }
    let in_programs = if mode.in_program_stats {
        let ours = progstats::held_by(rb.pid());
        let _stats = progstats::enable()?;
        let before = progstats::snapshot();
        burst(opts, path, port)?;
        let mut ran = progstats::ran(&before, &progstats::snapshot());
        ran.retain(|r| ours.contains(&r.id));
        ran
    } else {
        Vec::new()
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
        cpu_share,
    })
}

/// What a round measures: the workload alone, with runbom, and each control asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    Without,
    Runbom,
    Control(Control),
}

impl Condition {
    fn label(self) -> String {
        match self {
            Self::Without => "without runbom".into(),
            Self::Runbom => "with runbom".into(),
            Self::Control(c) => c.to_string(),
        }
    }
}

/// What each condition measured over the rounds.
#[derive(Default)]
struct Measured {
    wall: Samples,
    cpu: Samples,
    parts: [Samples; PARTS.len()],
    /// Per round: this condition's medians over those of the round without runbom.
    ratio_wall: Samples,
    ratio_cpu: Samples,
    /// Per round: the round's medians (wall, CPU).
    medians: Vec<(f64, f64)>,
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
    workload::exec_true()?;
    let workload = Workload {
        path,
        prefix,
        port,
        no_tls: controls::without_tls(EMBEDDED_DEFAULT),
    };

    let mut conditions = vec![Condition::Without, Condition::Runbom];
    conditions.extend(opts.controls.iter().map(|&c| Condition::Control(c)));
    let mut measured: Vec<Measured> = conditions.iter().map(|_| Measured::default()).collect();
    let mut totals = Totals::default();
    let mut foreign = Vec::new();
    // runbom's CPU share in the last bursts with it: what the burner spends.
    let mut share = 0.5;
    for round in 0..opts.rounds {
        for k in 0..conditions.len() {
            let which = (k + round) % conditions.len();
            let condition = conditions[which];
            eprintln!("[bench] mixed: round {} {}", round + 1, condition.label());
            let bursts = measure(
                opts,
                &workload,
                condition,
                &mut Round {
                    share: &mut share,
                    totals: &mut totals,
                    foreign: &mut foreign,
                },
            )?;
            let m = &mut measured[which];
            let (mut w, mut c) = (Samples::default(), Samples::default());
            for b in &bursts {
                w.push(b.wall);
                c.push(b.cpu);
                m.wall.push(b.wall);
                m.cpu.push(b.cpu);
                for (samples, part) in m.parts.iter_mut().zip(b.parts) {
                    samples.push(part);
                }
            }
            m.medians.push((w.median(), c.median()));
        }
        let (wall0, cpu0) = measured[0].medians[round];
        for m in &mut measured[1..] {
            let (wall, cpu) = m.medians[round];
            m.ratio_wall.push(wall / wall0);
            m.ratio_cpu.push(cpu / cpu0);
        }
    }
    Ok(report(
        opts,
        &conditions,
        &measured,
        &totals,
        share,
        foreign,
    ))
}

/// The tables: with runbom against without by round, by part, the controls, the totals.
fn report(
    opts: &Options,
    conditions: &[Condition],
    measured: &[Measured],
    totals: &Totals,
    share: f64,
    mut foreign: Vec<String>,
) -> String {
    let mut rows = String::new();
    for round in 0..opts.rounds {
        let (without, with) = (measured[0].medians[round], measured[1].medians[round]);
        let _ = writeln!(
            rows,
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3}× | {:.3}× |",
            round + 1,
            without.0 * 1e3,
            with.0 * 1e3,
            without.1 * 1e3,
            with.1 * 1e3,
            with.0 / without.0,
            with.1 / without.1,
        );
    }
    let mut out = format!(
        "### (e) Syscall-heavy workload with and without runbom (embedded defaults)\n\n\
         Burst: {} opens + {} connects + {} execs, {} bursts per round and condition, {} rounds.\n\n\
         | round | wall ms without | wall ms with | CPU ms without | CPU ms with | wall ratio | CPU ratio |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n{rows}",
        opts.opens, opts.connects, opts.execs, opts.bursts, opts.rounds
    );
    let (without, with) = (&measured[0], &measured[1]);
    let _ = writeln!(
        out,
        "| all | {:.1} | {:.1} | {:.1} | {:.1} | **{:.3}×** ({:.3}..{:.3}) | **{:.3}×** ({:.3}..{:.3}) |",
        without.wall.median() * 1e3,
        with.wall.median() * 1e3,
        without.cpu.median() * 1e3,
        with.cpu.median() * 1e3,
        with.ratio_wall.median(),
        with.ratio_wall.min(),
        with.ratio_wall.max(),
        with.ratio_cpu.median(),
        with.ratio_cpu.min(),
        with.ratio_cpu.max(),
    );
    let parts: Vec<&[Samples; PARTS.len()]> = measured.iter().map(|m| &m.parts).collect();
    out.push_str(&by_part(opts, [parts[0], parts[1]], &totals.programs));
    if conditions.len() > 2 {
        out.push_str(&by_condition(opts, conditions, measured, share));
    }
    foreign.sort();
    foreign.dedup();
    let _ = writeln!(
        out,
        "\nOther tracepoint programs loaded on the machine during the rounds without runbom: {}",
        if foreign.is_empty() {
            "none".to_owned()
        } else {
            foreign.join(", ")
        }
    );
    out.push_str(&totals.summary());
    out
}

/// The workload's files and port, and the configuration of the `no-tls` control.
struct Workload {
    path: CString,
    prefix: String,
    port: RefusedPort,
    no_tls: String,
}

/// What a round's conditions hand on to each other and to the report.
struct Round<'a> {
    /// runbom's CPU share in the last bursts with it: what the burner spends.
    share: &'a mut f64,
    totals: &'a mut Totals,
    /// Tracepoint programs of others seen while runbom was not running.
    foreign: &'a mut Vec<String>,
}

/// The bursts of one condition in one round.
fn measure(
    opts: &Options,
    w: &Workload,
    condition: Condition,
    round: &mut Round<'_>,
) -> Result<Vec<Burst>> {
    let bursts_of = || -> Result<Vec<Burst>> {
        (0..opts.bursts)
            .map(|_| burst(opts, &w.path, &w.port))
            .collect()
    };
    let with = |config, stopped| {
        let mode = Mode {
            config,
            stopped,
            in_program_stats: condition == Condition::Runbom,
        };
        with_runbom(opts, &w.path, &w.prefix, &w.port, &mode)
    };
    Ok(match condition {
        Condition::Without => {
            round
                .foreign
                .extend(crate::reference::foreign_tracepoint_programs());
            bursts_of()?
        }
        Condition::Runbom => {
            let r = with(EMBEDDED_DEFAULT, false)?;
            round.totals.add(opts, &r);
            *round.share = r.cpu_share;
            r.bursts
        }
        Condition::Control(Control::Stopped) => with(EMBEDDED_DEFAULT, true)?.bursts,
        Condition::Control(Control::NoTls) => with(&w.no_tls, false)?.bursts,
        Condition::Control(Control::Burner) => {
            let _burner = controls::Burner::start(*round.share)?;
            bursts_of()?
        }
        Condition::Control(c @ (Control::Bare | Control::BareRaw | Control::Reference)) => {
            let _probes = controls::reference_probes(c)?;
            std::thread::sleep(Duration::from_millis(200));
            bursts_of()?
        }
    })
}

/// Every condition against the workload alone: CPU and wall ratios by round, and what each
/// part of a burst added per operation.
fn by_condition(
    opts: &Options,
    conditions: &[Condition],
    measured: &[Measured],
    share: f64,
) -> String {
    let per_burst = [opts.opens, opts.connects, opts.execs];
    let mut out = format!(
        "\nControls (each against the workload alone in the same rounds; the burner spent {:.0} % \
         of a CPU, runbom's share in the last bursts with it):\n\n\
         | condition | workload CPU ratio (by round) | wall ratio | added µs per open | per connect | per exec |\n\
         |---|---:|---:|---:|---:|---:|\n",
        share * 100.0
    );
    let without = &measured[0];
    for (condition, m) in conditions.iter().zip(measured).skip(1) {
        let added: Vec<String> = (0..PARTS.len())
            .map(|i| {
                let d = m.parts[i].median() - without.parts[i].median();
                format!("{:+.2}", d * 1e6 / per_burst[i].max(1) as f64)
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.3}× ({:.3}..{:.3}) | {:.3}× | {} |",
            condition.label(),
            m.ratio_cpu.median(),
            m.ratio_cpu.min(),
            m.ratio_cpu.max(),
            m.ratio_wall.median(),
            added.join(" | "),
        );
    }
    out
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
    parts: [&[Samples; PARTS.len()]; 2],
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

//! Benchmark (e): a syscall-heavy workload under runbom's embedded defaults, against the same
//! workload with runbom not running at all. A burst is `opens` opens of a watched path,
//! `connects` refused loopback connects and `execs` fork+exec of `/bin/true`, interleaved;
//! bursts run back to back. Rounds alternate which condition comes first, and runbom is
//! stopped (SIGTERM, exited) before every round without it. Measured: the burst's wall time
//! and the workload's CPU time (its thread plus its reaped children), and what runbom exported
//! and dropped (by the kernel's counters, shed kinds included).

use std::{
    ffi::CString,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use runbom_testkit::{Ready, runbom::Stdout};

use crate::{
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

/// One burst's wall and CPU time, in seconds.
struct Burst {
    wall: f64,
    cpu: f64,
}

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
    for i in 0..slices {
        let share = |n: u64| n * (i + 1) / slices - n * i / slices;
        workload::open_close(path, share(opts.opens));
        workload::connect_loop(&port.addr, share(opts.connects));
        if i < opts.execs {
            exec_true()?;
        }
    }
    Ok(Burst {
        wall: start.elapsed().as_secs_f64(),
        cpu: (thread_cpu().saturating_sub(cpu0) + children_cpu().saturating_sub(child0))
            .as_secs_f64(),
    })
}

/// The embedded defaults with the OTLP receivers on free ports and `/metrics` off (the machine
/// may run other runboms).
pub(crate) fn config(work: &Path) -> Result<PathBuf> {
    let grpc = runbom_testkit::net::free_port();
    let http = runbom_testkit::net::free_port();
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
        // `/metrics` off: its fixed port may be taken by another runbom on the machine.
        .replacen(
            "\nservice:\n",
            "\nservice:\n  telemetry:\n    metrics:\n      address: none\n",
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
    let (mut produced, mut exported, mut records) = (0u64, 0u64, 0u64);
    let mut drops = Summary::new();
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
                produced += opts.opens * opts.bursts as u64;
                exported += w.exported.0;
                records += w.exported.1;
                for (k, v) in &w.summary {
                    if k.ends_with("_drops") {
                        *drops.entry(k.clone()).or_default() += v;
                    }
                }
                w.bursts
            };
            let (mut w, mut c) = (Samples::default(), Samples::default());
            for b in &bursts {
                w.push(b.wall);
                c.push(b.cpu);
                wall[which].push(b.wall);
                cpu[which].push(b.cpu);
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
    let _ = writeln!(
        out,
        "\nWorkload opens {produced}, exported file.open of them {exported} (lost {}), log \
         records exported {records}; kernel counters summed over rounds: {drops:?}",
        produced.saturating_sub(exported)
    );
    Ok(out)
}

//! `runbom-bench`: runbom's whole-system benchmarks (see `docs/benchmarks.md`; run them all with
//! `scripts/bench.sh`). Needs root: it loads the reference eBPF probes and runs the real `runbom`.
//!
//! - `syscalls`: cost per traced syscall (open/close of a watched and of a filtered-out path,
//!   socket+connect on loopback, a non-HTTP write), without probes, with runbom, and with reference probes doing
//!   the same work, side by side in one run.
//! - `ssl`: cost per `SSL_write` of Node (uprobes on the `node` executable) with runbom and
//!   with reference uprobes, side by side in one run.
//! - `drops`: a flood against a small ring buffer and a paced load against the default ring,
//!   with the workload's events, runbom's exported events and the kernel's drop counters
//!   compared.
//! - `mixed`: a syscall-heavy workload (opens, connects, execs in bursts) with runbom's embedded
//!   defaults against the same workload without runbom, rounds interleaved.
//! - `sustained`: paced opens under the embedded defaults, or the kernel path alone into the
//!   `otlp`, `otlphttp` or `file` exporter, or into `otlp` as log records only
//!   (`--sustained-pipelines`): kernel records read per second and
//!   per CPU-second, for each of several `correlate` worker counts or against another binary,
//!   rounds interleaved (run only when named).
//!
//! The userspace throughput benchmark is a criterion bench: `cargo bench -p runbom-bench`.

// Nanosecond and event counts stay far below 2^52: converting them to f64 loses nothing.
#![allow(clippy::cast_precision_loss)]

mod conditions;
mod controls;
mod drops;
mod inprogram;
mod mixed;
mod pipelines;
mod pipes;
mod progstats;
mod reference;
mod runbom;
mod ssl;
mod stats;
mod sustained;
mod syscalls;
mod workload;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    Syscalls,
    Drops,
    Ssl,
    Pipes,
    Mixed,
    Sustained,
}

/// runbom's benchmarks: per-syscall cost against reference probes, and loss accounting.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Benchmarks to run (default: all).
    #[arg(value_enum)]
    sections: Vec<Section>,
    /// The runbom binary (default: `runbom` next to this program).
    #[arg(long)]
    runbom: Option<PathBuf>,
    /// Working directory (files opened, configs, logs, exported data).
    #[arg(long, default_value = "/tmp/runbom-bench")]
    dir: PathBuf,
    /// open+close iterations per repetition.
    #[arg(long, default_value_t = 30_000)]
    open_iterations: u64,
    /// socket+connect+close iterations per repetition.
    #[arg(long, default_value_t = 4_000)]
    connect_iterations: u64,
    /// write iterations per repetition.
    #[arg(long, default_value_t = 100_000)]
    write_iterations: u64,
    /// Spawns of `/bin/true` per repetition (`syscalls`' exec workload).
    #[arg(long, default_value_t = 400)]
    exec_iterations: u64,
    /// Repetitions per condition and round.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// TLS writes per run of the `ssl` benchmark's node client.
    #[arg(long, default_value_t = 20_000)]
    ssl_writes: u64,
    /// Rounds: each starts runbom afresh and re-measures every condition.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Writes per buffer per run of the `pipes` benchmark.
    #[arg(long, default_value_t = 50_000)]
    pipe_writes: u64,
    /// Ring buffer size for the flood, bytes.
    #[arg(long, default_value_t = 256 << 10)]
    flood_ring_bytes: u32,
    /// Threads opening the watched path during the flood.
    #[arg(long, default_value_t = 4)]
    flood_threads: usize,
    /// Opens during the flood (all threads together).
    #[arg(long, default_value_t = 400_000)]
    flood_opens: u64,
    /// Paced rates (opens per second) against the default ring, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "25000,100000")]
    rates: Vec<u64>,
    /// Paced rates with the debug exporter instead of the file exporter, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    debug_rates: Vec<u64>,
    /// Seconds each paced rate runs.
    #[arg(long, default_value_t = 3)]
    paced_seconds: u64,
    /// `mixed`: bursts per round and condition.
    #[arg(long, default_value_t = 5)]
    mixed_bursts: usize,
    /// `mixed`: opens, connects and execs per burst.
    #[arg(long, value_delimiter = ',', default_value = "20000,2000,200")]
    mixed_burst: Vec<u64>,
    /// `mixed`: control conditions measured in the same rounds, comma-separated: `stopped`
    /// (runbom stopped by SIGSTOP during the bursts), `no-tls` (no OpenSSL/Go uprobes, no library
    /// watcher), `burner` (a process spending runbom's share of a CPU instead of runbom), `bare`
    /// (empty programs on runbom's tracepoints), `bare-raw` (the same as raw tracepoints: one
    /// `sys_enter` and one `sys_exit` program returning unless runbom traces the syscall),
    /// `reference` (the reference probes' work on opens and connects, empty programs elsewhere).
    #[arg(long, value_enum, value_delimiter = ',')]
    mixed_controls: Vec<controls::Control>,
    /// `sustained`: what runbom runs, comma-separated: `defaults` (the embedded defaults:
    /// `correlate`, `aibom`, the `file` exporter), `otlp` (the kernel path alone: `ebpf`,
    /// `memory_limiter`, `batch`, the `otlp` exporter without compression to a second runbom
    /// that discards what it receives), `otlphttp` (the same with the `otlphttp` exporter),
    /// `file` (the kernel path alone into the `file` exporter), `otlp-logs` (the kernel path
    /// into `otlp` with a logs pipeline only and `uncorrelated_spans: false`: one item per
    /// event).
    #[arg(long, value_delimiter = ',', default_value = "defaults")]
    sustained_pipelines: Vec<sustained::Pipeline>,
    /// `sustained`: `processors.correlate.workers` of each condition with the defaults (1: the
    /// single-task path).
    #[arg(long, value_delimiter = ',', default_value = "2,1")]
    sustained_workers: Vec<usize>,
    /// `sustained`: another `runbom` binary (main's build) run in the same rounds against this
    /// one, each pipeline with both binaries (the defaults with the first
    /// `--sustained-workers` value).
    #[arg(long)]
    sustained_baseline: Option<std::path::PathBuf>,
    /// `sustained`: opens per second.
    #[arg(long, default_value_t = 100_000)]
    sustained_rate: u64,
    /// `sustained`: seconds of load per run (more than `correlate`'s `wait`, 6 s, so that
    /// events leave the stage while the load lasts).
    #[arg(long, default_value_t = 12)]
    sustained_seconds: u64,
    /// `syscalls`: passes with the kernel's run-time statistics on (time inside the programs;
    /// medians over passes, runbom's and the reference's passes alternating).
    #[arg(long, default_value_t = 3)]
    stat_passes: usize,
    /// `syscalls`: a second runbom binary (e.g. the previous commit's) measured in the same
    /// run, interleaved with `--runbom`, as `runbom base`.
    #[arg(long)]
    baseline_runbom: Option<PathBuf>,
}

fn sustained(cli: &Cli, runbom: &std::path::Path) -> anyhow::Result<String> {
    sustained::run(&sustained::Options {
        runbom: runbom.to_owned(),
        baseline: cli
            .sustained_baseline
            .as_deref()
            .map(std::fs::canonicalize)
            .transpose()?,
        pipelines: cli.sustained_pipelines.clone(),
        workers: cli.sustained_workers.clone(),
        dir: cli.dir.clone(),
        rounds: cli.rounds,
        rate: cli.sustained_rate,
        seconds: cli.sustained_seconds,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runbom-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the benchmarks load eBPF programs: run as root");
    }
    let runbom = match &cli.runbom {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("runbom"),
    };
    // runbom runs in the working directory: make the path absolute.
    let runbom = std::fs::canonicalize(&runbom).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}: build it (`cargo build --release`) or pass --runbom",
            runbom.display()
        )
    })?;
    std::fs::create_dir_all(&cli.dir)?;
    let cpus = workload::online_cpus();
    let (loop_cpu, service_cpu) = if cpus >= 2 {
        (Some(cpus - 1), Some(0))
    } else {
        eprintln!("[bench] one CPU only: nothing is pinned");
        (None, None)
    };
    let all = cli.sections.is_empty();
    let mut report = String::new();
    report.push_str(&machine(cpus));
    if all || cli.sections.contains(&Section::Syscalls) {
        report.push_str(&syscalls::run(&conditions::Options {
            runbom: runbom.clone(),
            dir: cli.dir.clone(),
            open_iterations: cli.open_iterations,
            connect_iterations: cli.connect_iterations,
            write_iterations: cli.write_iterations,
            exec_iterations: cli.exec_iterations,
            reps: cli.reps,
            rounds: cli.rounds,
            loop_cpu,
            service_cpu,
            stat_passes: cli.stat_passes.max(1),
            baseline: cli
                .baseline_runbom
                .as_deref()
                .map(std::fs::canonicalize)
                .transpose()?,
        })?);
        report.push('\n');
        report.push_str(&syscalls::legend());
        report.push('\n');
    }
    if all || cli.sections.contains(&Section::Ssl) {
        report.push_str(&ssl::run(&ssl::Options {
            runbom: runbom.clone(),
            dir: cli.dir.clone(),
            writes: cli.ssl_writes,
            rounds: cli.rounds,
        })?);
        report.push('\n');
    }
    if all || cli.sections.contains(&Section::Pipes) {
        report.push_str(&pipes::run(&pipes::Options {
            runbom: runbom.clone(),
            dir: cli.dir.clone(),
            writes: cli.pipe_writes,
            rounds: cli.rounds,
            loop_cpu,
            service_cpu,
        })?);
        report.push('\n');
    }
    if all || cli.sections.contains(&Section::Mixed) {
        let n = |i: usize| cli.mixed_burst.get(i).copied().unwrap_or(0);
        report.push_str(&mixed::run(&mixed::Options {
            runbom: runbom.clone(),
            dir: cli.dir.clone(),
            rounds: cli.rounds,
            bursts: cli.mixed_bursts.max(1),
            opens: n(0),
            connects: n(1),
            execs: n(2),
            controls: cli.mixed_controls.clone(),
        })?);
        report.push('\n');
    }
    // Not part of "all" (it takes minutes and compares binaries): only when named.
    if cli.sections.contains(&Section::Sustained) {
        report.push_str(&sustained(cli, &runbom)?);
        report.push('\n');
    }
    if all || cli.sections.contains(&Section::Drops) {
        report.push_str(&drops::run(&drops::Options {
            runbom,
            dir: cli.dir.clone(),
            flood_ring_bytes: cli.flood_ring_bytes,
            flood_threads: cli.flood_threads.max(1),
            flood_opens: cli.flood_opens,
            rates: cli.rates.clone(),
            debug_rates: cli.debug_rates.clone(),
            paced_for: Duration::from_secs(cli.paced_seconds),
        })?);
    }
    println!("{report}");
    Ok(())
}

fn machine(cpus: usize) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "Machine: {cpus} CPUs ({model}), kernel {}, load average at start {}\n\n",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

//! Benchmark (f): sustained opens under runbom's embedded defaults (`correlate` and `aibom` in
//! the traces pipeline, the `file` exporter), with each of several `processors.correlate.workers`
//! values (1: the single-task path). A workload opens a watched path at a fixed rate for a
//! while; afterwards runbom's closing summary says how many kernel records it read (and how
//! many the kernel shed or dropped), and its CPU time after start-up how much that cost.
//! Measured: records read per second of load (what runbom kept up with) and kernel records per
//! CPU-second (what each record cost, drain included). Rounds alternate the conditions' order.
//!
//! With a baseline binary (`--sustained-baseline`), the conditions are the two binaries instead,
//! both with the first `workers` value: this build against another (main's), in the same rounds.

use std::{ffi::CString, fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::Result;

use crate::{runbom::Runbom, stats::Samples, workload};

pub struct Options {
    pub runbom: PathBuf,
    /// Another `runbom` binary to run in the same rounds (the conditions are then the binaries).
    pub baseline: Option<PathBuf>,
    /// `processors.correlate.workers` of each condition.
    pub workers: Vec<usize>,
    pub dir: PathBuf,
    pub rounds: usize,
    /// Opens per second.
    pub rate: u64,
    pub seconds: u64,
}

/// One run's figures.
struct Run {
    records_per_s: f64,
    per_cpu_s: f64,
    shed: u64,
    ring_full: u64,
}

/// One condition: a binary and its `processors.correlate.workers`.
struct Condition {
    label: String,
    runbom: PathBuf,
    workers: usize,
}

fn conditions(opts: &Options) -> Vec<Condition> {
    let first = opts.workers.first().copied().unwrap_or(1);
    match &opts.baseline {
        Some(baseline) => vec![
            Condition {
                label: format!("this binary, workers: {first}"),
                runbom: opts.runbom.clone(),
                workers: first,
            },
            Condition {
                label: format!("baseline, workers: {first}"),
                runbom: baseline.clone(),
                workers: first,
            },
        ],
        None => opts
            .workers
            .iter()
            .map(|&w| Condition {
                label: format!("workers: {w}"),
                runbom: opts.runbom.clone(),
                workers: w,
            })
            .collect(),
    }
}

fn once(condition: &Condition, opts: &Options, path: &CString) -> Result<Run> {
    let workers = condition.workers;
    let work = opts.dir.join("sustained");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let config = crate::mixed::config(&work)?;
    let text = std::fs::read_to_string(&config)?.replacen(
        "  correlate: {}",
        &format!("  correlate:\n    workers: {workers}"),
        1,
    );
    std::fs::write(&config, text)?;
    let rb = Runbom::start_with(&condition.runbom, &work, &config, None)?;
    let (_, elapsed) = workload::paced(path, opts.rate, Duration::from_secs(opts.seconds));
    let summary = rb.stop()?;
    let _ = std::fs::remove_dir_all(&work);
    let field = |k: &str| summary.get(k).copied().unwrap_or(0);
    let records = field("kernel_records") as f64;
    Ok(Run {
        records_per_s: records / elapsed.as_secs_f64(),
        per_cpu_s: records / (field("cpu_us").max(1) as f64 / 1e6),
        shed: field("shed_drops"),
        ring_full: field("ring_full_drops"),
    })
}

pub fn run(opts: &Options) -> Result<String> {
    let files = opts.dir.join("files").join("sustained");
    std::fs::create_dir_all(&files)?;
    let file = files.join("file");
    std::fs::write(&file, b"x")?;
    let path = CString::new(file.as_os_str().as_encoded_bytes())?;
    workload::check_open(&path)?;
    let conditions = conditions(opts);
    let bins: Vec<&str> = conditions.iter().map(|c| c.label.as_str()).collect();
    let mut rows = String::new();
    let mut read: Vec<Samples> = bins.iter().map(|_| Samples::default()).collect();
    let mut per_cpu: Vec<Samples> = bins.iter().map(|_| Samples::default()).collect();
    let (mut ratio_read, mut ratio_cpu) = (Samples::default(), Samples::default());
    for round in 0..opts.rounds {
        let mut runs: Vec<Option<Run>> = bins.iter().map(|_| None).collect();
        let mut order: Vec<usize> = (0..bins.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            eprintln!(
                "[bench] sustained: round {} {} at {} opens/s for {} s",
                round + 1,
                bins[i],
                opts.rate,
                opts.seconds
            );
            let r = once(&conditions[i], opts, &path)?;
            read[i].push(r.records_per_s);
            per_cpu[i].push(r.per_cpu_s);
            let _ = writeln!(
                rows,
                "| {} | {} | {:.0} | {:.0} | {} | {} |",
                round + 1,
                bins[i],
                r.records_per_s,
                r.per_cpu_s,
                r.shed,
                r.ring_full
            );
            runs[i] = Some(r);
        }
        if let [Some(a), Some(b)] = runs.as_slice() {
            ratio_read.push(a.records_per_s / b.records_per_s);
            ratio_cpu.push(a.per_cpu_s / b.per_cpu_s);
        }
    }
    let mut out = format!(
        "### (f) Sustained opens, embedded defaults ({} opens/s for {} s, {} rounds)\n\n\
         | round | condition | kernel records read per s | kernel records per CPU-second | shed | ring full |\n\
         |---:|---|---:|---:|---:|---:|\n{rows}\n",
        opts.rate, opts.seconds, opts.rounds
    );
    for (i, bin) in bins.iter().enumerate() {
        let _ = writeln!(
            out,
            "{bin}: read {:.0}/s (median; {:.0}..{:.0}), {:.0} per CPU-second ({:.0}..{:.0})",
            read[i].median(),
            read[i].min(),
            read[i].max(),
            per_cpu[i].median(),
            per_cpu[i].min(),
            per_cpu[i].max()
        );
    }
    if bins.len() == 2 {
        let _ = writeln!(
            out,
            "\n{} / {}, paired by round: read {:.2}× ({:.2}..{:.2}), per CPU-second \
             {:.2}× ({:.2}..{:.2})",
            bins[0],
            bins[1],
            ratio_read.median(),
            ratio_read.min(),
            ratio_read.max(),
            ratio_cpu.median(),
            ratio_cpu.min(),
            ratio_cpu.max()
        );
    }
    Ok(out)
}

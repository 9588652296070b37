//! Benchmark (f): sustained opens of a watched path at a fixed rate, under one or more
//! [`Pipeline`]s: the embedded defaults (`correlate` and `aibom` in the traces pipeline, the
//! `file` exporter), and the kernel path alone (decode, enrich, convert, encode) into the `otlp`
//! or `otlphttp` exporter (to a second runbom that discards what it receives) or into the `file`
//! exporter.
//! Afterwards runbom's closing summary says how many kernel records it read (and how many the
//! kernel shed or dropped), and its CPU time after start-up how much that cost. Measured:
//! records read per second of load (what runbom kept up with) and kernel records per
//! CPU-second (what each record cost, drain included). Rounds alternate the conditions' order.
//!
//! Without a baseline binary the defaults run once per `processors.correlate.workers` value (1:
//! the single-task path). With one (`--sustained-baseline`), every pipeline runs with both
//! binaries (the defaults with the first `workers` value), paired by round.

use std::{ffi::CString, fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{Result, bail};

pub use crate::pipelines::Pipeline;
use crate::{pipelines::Sink, runbom::Runbom, stats::Samples, workload};

pub struct Options {
    pub runbom: PathBuf,
    /// Another `runbom` binary to run in the same rounds (each pipeline with both binaries).
    pub baseline: Option<PathBuf>,
    /// What runbom runs, one condition (or pair) each.
    pub pipelines: Vec<Pipeline>,
    /// `processors.correlate.workers` of each condition with the defaults.
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
    /// Events (a watched open is two kernel records, its entry and its result, joined into one
    /// event) per CPU-second.
    events_per_cpu_s: f64,
    shed: u64,
    ring_full: u64,
    exported: u64,
    failed: u64,
}

/// One condition: a binary, what it runs, and the defaults' `processors.correlate.workers`.
struct Condition {
    label: String,
    runbom: PathBuf,
    pipeline: Pipeline,
    workers: usize,
}

/// The conditions, in groups of one or two; the second of a pair is what the first is
/// compared with, round by round.
fn conditions(opts: &Options) -> Vec<Vec<Condition>> {
    let first = opts.workers.first().copied().unwrap_or(1);
    let workers_label = |p: Pipeline, w: usize| {
        if p == Pipeline::Defaults {
            format!("{p}, workers: {w}")
        } else {
            p.to_string()
        }
    };
    opts.pipelines
        .iter()
        .map(|&pipeline| match &opts.baseline {
            Some(baseline) => vec![
                Condition {
                    label: format!("this binary, {}", workers_label(pipeline, first)),
                    runbom: opts.runbom.clone(),
                    pipeline,
                    workers: first,
                },
                Condition {
                    label: format!("baseline, {}", workers_label(pipeline, first)),
                    runbom: baseline.clone(),
                    pipeline,
                    workers: first,
                },
            ],
            None if pipeline == Pipeline::Defaults => opts
                .workers
                .iter()
                .map(|&w| Condition {
                    label: workers_label(pipeline, w),
                    runbom: opts.runbom.clone(),
                    pipeline,
                    workers: w,
                })
                .collect(),
            None => vec![Condition {
                label: pipeline.to_string(),
                runbom: opts.runbom.clone(),
                pipeline,
                workers: first,
            }],
        })
        .collect()
}

fn once(condition: &Condition, opts: &Options, path: &CString, sink: &Sink) -> Result<Run> {
    let work = opts.dir.join("sustained");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let config = crate::pipelines::config(condition.pipeline, &work, condition.workers, sink)?;
    let rb = Runbom::start_with(&condition.runbom, &work, &config, None)?;
    let (_, elapsed) = workload::paced(path, opts.rate, Duration::from_secs(opts.seconds));
    let summary = rb.stop()?;
    let _ = std::fs::remove_dir_all(&work);
    let field = |k: &str| summary.get(k).copied().unwrap_or(0);
    let records = field("kernel_records") as f64;
    let cpu_s = field("cpu_us").max(1) as f64 / 1e6;
    let run = Run {
        records_per_s: records / elapsed.as_secs_f64(),
        per_cpu_s: records / cpu_s,
        events_per_cpu_s: field("events") as f64 / cpu_s,
        shed: field("shed_drops"),
        ring_full: field("ring_full_drops"),
        exported: field("exported"),
        failed: field("failed"),
    };
    if run.failed > 0 || run.exported == 0 {
        bail!(
            "{}: runbom exported {} and gave up on {} items: the measurement would not be of \
             the whole path",
            condition.label,
            run.exported,
            run.failed
        );
    }
    Ok(run)
}

/// Per condition, across rounds.
#[derive(Default)]
struct Figures {
    read: Samples,
    per_cpu: Samples,
    events_per_cpu: Samples,
}

pub fn run(opts: &Options) -> Result<String> {
    let files = opts.dir.join("files").join("sustained");
    std::fs::create_dir_all(&files)?;
    let file = files.join("file");
    std::fs::write(&file, b"x")?;
    let path = CString::new(file.as_os_str().as_encoded_bytes())?;
    workload::check_open(&path)?;
    let groups = conditions(opts);
    // The OTLP sink runs through every round (started once: its start-up is not in any run).
    let sink = if opts.pipelines.iter().any(|p| p.needs_sink()) {
        Sink::start(&opts.runbom, &opts.dir.join("sink"))?
    } else {
        Sink::default()
    };
    let all: Vec<&Condition> = groups.iter().flatten().collect();
    let mut figures: Vec<Figures> = all.iter().map(|_| Figures::default()).collect();
    let mut ratios: Vec<(Samples, Samples)> = groups.iter().map(|_| Default::default()).collect();
    let mut rows = String::new();
    for round in 0..opts.rounds {
        let mut runs: Vec<Option<Run>> = all.iter().map(|_| None).collect();
        let mut order: Vec<usize> = (0..all.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            eprintln!(
                "[bench] sustained: round {} {} at {} opens/s for {} s",
                round + 1,
                all[i].label,
                opts.rate,
                opts.seconds
            );
            let r = once(all[i], opts, &path, &sink)?;
            figures[i].read.push(r.records_per_s);
            figures[i].per_cpu.push(r.per_cpu_s);
            figures[i].events_per_cpu.push(r.events_per_cpu_s);
            let _ = writeln!(
                rows,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                round + 1,
                all[i].label,
                r.records_per_s,
                r.per_cpu_s,
                r.events_per_cpu_s,
                r.shed,
                r.ring_full,
                r.exported
            );
            runs[i] = Some(r);
        }
        let mut at = 0;
        for (g, group) in groups.iter().enumerate() {
            if let [Some(a), Some(b)] = &runs[at..at + group.len()] {
                ratios[g].0.push(a.records_per_s / b.records_per_s);
                ratios[g].1.push(a.per_cpu_s / b.per_cpu_s);
            }
            at += group.len();
        }
    }
    sink.stop();
    Ok(report(opts, &groups, &figures, &ratios, &rows))
}

/// The section: every run's row, each condition's medians, each pair's ratios.
fn report(
    opts: &Options,
    groups: &[Vec<Condition>],
    figures: &[Figures],
    ratios: &[(Samples, Samples)],
    rows: &str,
) -> String {
    let all: Vec<&Condition> = groups.iter().flatten().collect();
    let pipelines: Vec<String> = opts.pipelines.iter().map(ToString::to_string).collect();
    let mut out = format!(
        "### (f) Sustained opens ({}; {} opens/s for {} s, {} rounds)\n\n\
         | round | condition | kernel records read per s | kernel records per CPU-second | events per CPU-second | shed | ring full | items exported |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n{rows}\n",
        pipelines.join(", "),
        opts.rate,
        opts.seconds,
        opts.rounds
    );
    for (c, f) in all.iter().zip(figures) {
        let _ = writeln!(
            out,
            "{}: read {:.0}/s (median; {:.0}..{:.0}), {:.0} records per CPU-second \
             ({:.0}..{:.0}), {:.0} events per CPU-second ({:.0}..{:.0})",
            c.label,
            f.read.median(),
            f.read.min(),
            f.read.max(),
            f.per_cpu.median(),
            f.per_cpu.min(),
            f.per_cpu.max(),
            f.events_per_cpu.median(),
            f.events_per_cpu.min(),
            f.events_per_cpu.max()
        );
    }
    for (group, (read, cpu)) in groups.iter().zip(ratios) {
        if let [a, b] = group.as_slice() {
            let _ = writeln!(
                out,
                "\n{} / {}, paired by round: read {:.2}× ({:.2}..{:.2}), per CPU-second \
                 {:.2}× ({:.2}..{:.2})",
                a.label,
                b.label,
                read.median(),
                read.min(),
                read.max(),
                cpu.median(),
                cpu.min(),
                cpu.max()
            );
        }
    }
    out
}

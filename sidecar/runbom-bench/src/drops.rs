//! Benchmark (c): loss accounting. A workload opens a watched path a known number of times
//! while runbom runs with the `file` exporter; afterwards the opens the workload made (W) are
//! compared with the `file.open` records runbom exported for that path (E) and with the
//! kernel's `ring_full_drops` counter (D). Nothing may be lost silently: W − E ≤ D + I + S (I:
//! `inflight_full_drops`, S: `shed_drops`, events shed under overload), and the rest counts
//! other processes' events (exec, exit, connect anywhere on the host) dropped in the same
//! window.

use std::{ffi::CString, fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::Result;

use crate::{
    runbom::{Runbom, Settings, Summary, count_exported_opens},
    workload,
};

pub struct Options {
    pub runbom: PathBuf,
    pub dir: PathBuf,
    /// Ring size for the flood, in bytes.
    pub flood_ring_bytes: u32,
    pub flood_threads: usize,
    pub flood_opens: u64,
    /// Paced rates (opens per second) run against runbom's default ring, `file` exporter.
    pub rates: Vec<u64>,
    /// The same with the `debug` exporter (no JSON, no disk): the pipeline without the file
    /// exporter's cost.
    pub debug_rates: Vec<u64>,
    pub paced_for: Duration,
}

struct Outcome {
    scenario: String,
    ring: String,
    produced: u64,
    elapsed: Duration,
    /// `(file.open records of the workload, all log records)` in the exported files; `None`
    /// with the debug exporter.
    exported: Option<(u64, u64)>,
    summary: Summary,
}

fn measure(
    opts: &Options,
    name: &str,
    ring_bytes: Option<u32>,
    to_file: bool,
    work: impl FnOnce(&CString) -> (u64, Duration),
) -> Result<Outcome> {
    let watched_dir = opts.dir.join("files").join("flood");
    std::fs::create_dir_all(&watched_dir)?;
    let path = watched_dir.join("file");
    std::fs::write(&path, b"x")?;
    let cpath = CString::new(path.as_os_str().as_encoded_bytes())?;
    workload::check_open(&cpath)?;
    let prefix = format!("{}/", watched_dir.display());
    let out = opts.dir.join(format!("out-{}", name.replace(' ', "-")));
    let _ = std::fs::remove_dir_all(&out);
    let settings = Settings {
        ring_bytes,
        include: &[&prefix],
        exclude: &[],
        file_dir: to_file.then_some(out.as_path()),
        http_plaintext: true,
        mcp: true,
    };
    let rb = Runbom::start(&opts.runbom, &opts.dir, &settings, None)?;
    let (produced, elapsed) = work(&cpath);
    let summary = rb.stop()?;
    let exported = if to_file {
        Some(count_exported_opens(&out, &prefix)?)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&out);
    Ok(Outcome {
        scenario: name.to_owned(),
        ring: ring_bytes.map_or_else(|| "default".into(), human_bytes),
        produced,
        elapsed,
        exported,
        summary,
    })
}

fn human_bytes(b: u32) -> String {
    if b >= 1 << 20 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b >> 10)
    }
}

pub fn run(opts: &Options) -> Result<String> {
    let mut outcomes = Vec::new();
    eprintln!(
        "[bench] drops: flood of {} opens from {} threads, ring {}",
        opts.flood_opens,
        opts.flood_threads,
        human_bytes(opts.flood_ring_bytes)
    );
    let per_thread = opts.flood_opens / opts.flood_threads as u64;
    outcomes.push(measure(
        opts,
        &format!("flood {} threads", opts.flood_threads),
        Some(opts.flood_ring_bytes),
        true,
        |p| workload::flood(p, opts.flood_threads, per_thread),
    )?);
    for &rate in &opts.rates {
        eprintln!(
            "[bench] drops: {rate} opens/s for {:?}, default ring",
            opts.paced_for
        );
        outcomes.push(measure(
            opts,
            &format!("paced {rate}/s"),
            None,
            true,
            |p| workload::paced(p, rate, opts.paced_for),
        )?);
    }
    for &rate in &opts.debug_rates {
        eprintln!(
            "[bench] drops: {rate} opens/s for {:?}, default ring, debug exporter",
            opts.paced_for
        );
        let name = format!("paced {rate}/s, debug exporter");
        outcomes.push(measure(opts, &name, None, false, |p| {
            workload::paced(p, rate, opts.paced_for)
        })?);
    }
    Ok(report(&outcomes))
}

fn report(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "### (c) Drops when the ring is overwhelmed\n\n\
         | scenario | ring | workload opens W | rate (opens/s) | exported file.open E | ring_full_drops D | inflight_full_drops I | shed_drops S | W − E | D + I + S − (W − E) | kernel records read | events exported (summary) | log records in file | decode errors | runbom CPU µs per record | accounting |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for o in outcomes {
        let field = |k: &str| o.summary.get(k).copied().unwrap_or(0);
        let d = field("ring_full_drops");
        let i = field("inflight_full_drops") + field("shed_drops");
        let shed = field("shed_drops");
        let rate = o.produced as f64 / o.elapsed.as_secs_f64();
        let (e, lost, slack, in_file, verdict) = if let Some((exported, all)) = o.exported {
            let lost = o.produced.saturating_sub(exported);
            let verdict = if exported > o.produced {
                "more exported than produced?!".to_owned()
            } else if lost == 0 && d + i == 0 {
                "no loss".to_owned()
            } else if lost <= d + i {
                "adds up (every lost event counted)".to_owned()
            } else {
                format!("SILENT LOSS of {}", lost - d - i)
            };
            (
                exported.to_string(),
                lost.to_string(),
                ((d + i) as i64 - lost as i64).to_string(),
                all.to_string(),
                verdict,
            )
        } else {
            // No file to count in: every record the kernel wrote was read (D + I = 0) and
            // the pipeline exported at least as many events as the workload made.
            let verdict = if d + i == 0 && field("events") >= o.produced {
                "no loss (kernel dropped nothing)".to_owned()
            } else {
                format!("kernel dropped {} (counted)", d + i)
            };
            let na = || "n/a".to_owned();
            (na(), na(), na(), na(), verdict)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {rate:.0} | {e} | {d} | {} | {shed} | {lost} | {slack} | {} | {} | {in_file} | {} | {:.1} | {verdict} |",
            o.scenario,
            o.ring,
            o.produced,
            i - shed,
            field("kernel_records"),
            field("events"),
            field("decode_errors"),
            field("cpu_us") as f64 / field("kernel_records").max(1) as f64,
        );
    }
    out
}

//! `runbom investigate`: what happened in a trace, from exported data.
//!
//! Reads OTLP/JSON (runbom's `file` exporter directory, or any OTLP/JSON file) and, with
//! `--tempo URL` or `--jaeger URL`, fetches the trace by id from their HTTP APIs. Shows the
//! trace as a tree (time offsets, durations, kinds, declared components, correlation, drift),
//! the drift findings with their chains (`--alerts`), and writes a self-contained HTML report
//! (`--html FILE`).

mod fetch;
pub mod grafana;
pub mod html;
pub mod model;
pub mod tree;

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};

use self::{
    model::{Alert, Data},
    tree::Style,
};

#[derive(Args, Debug)]
pub struct InvestigateArgs {
    /// Exported data: a `file` exporter directory (its traces.jsonl and logs.jsonl) or OTLP/JSON
    /// files. Default: ./runbom-data.
    #[arg(long = "from", value_name = "PATH")]
    from: Vec<PathBuf>,
    /// The trace to show (hex id). Default: the trace of the latest drift finding; without
    /// findings, the list of traces.
    #[arg(long, value_name = "TRACE_ID")]
    trace: Option<String>,
    /// Show the drift findings and their chains (of --trace only, when given).
    #[arg(long)]
    alerts: bool,
    /// Write a self-contained HTML report of the trace to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// The declared AI-BOM (`CycloneDX` JSON), for the declared-vs-observed table.
    #[arg(long, value_name = "FILE")]
    bom: Option<PathBuf>,
    /// Fetch --trace from Grafana Tempo's HTTP API at this base URL (e.g. `http://tempo:3200`).
    #[arg(long, value_name = "URL", conflicts_with = "jaeger")]
    tempo: Option<String>,
    /// Fetch --trace from Jaeger's HTTP API (api/v3, OTLP/JSON) at this base URL
    /// (e.g. `http://jaeger:16686`).
    #[arg(long, value_name = "URL")]
    jaeger: Option<String>,
    /// Grafana's base URL: the HTML report links each drift finding to its trace (Tempo) and
    /// the trace's logs (Loki) in Grafana Explore.
    #[arg(long, value_name = "URL", requires = "html")]
    grafana: Option<String>,
    /// The uid of the Tempo datasource in that Grafana.
    #[arg(long, value_name = "UID", default_value = grafana::DEFAULT_TEMPO_UID)]
    grafana_tempo: String,
    /// The uid of the Loki datasource in that Grafana.
    #[arg(long, value_name = "UID", default_value = grafana::DEFAULT_LOKI_UID)]
    grafana_loki: String,
    /// List the traces read.
    #[arg(long, conflicts_with_all = ["trace", "alerts"])]
    list: bool,
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Runs the command; errors are for the user (exit 1 for "not found", 2 for bad input).
pub fn run(args: &InvestigateArgs) -> ExitCode {
    match investigate(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("runbom investigate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn investigate(args: &InvestigateArgs) -> Result<ExitCode> {
    let style = Style {
        color: match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        },
    };
    let explore = args
        .grafana
        .as_deref()
        .map(|base| grafana::Explore::new(base, &args.grafana_tempo, &args.grafana_loki))
        .transpose()?;
    let fetching = args.tempo.is_some() || args.jaeger.is_some();
    if fetching && args.trace.is_none() {
        bail!("--tempo and --jaeger fetch one trace: give it with --trace ID");
    }
    let from = if args.from.is_empty() && !fetching {
        vec![PathBuf::from("runbom-data")]
    } else {
        args.from.clone()
    };
    let mut data = Data::load(&from)?;
    if let Some(id) = &args.trace {
        check_id(id)?;
        if let Some(base) = &args.tempo {
            fetch::tempo(base, id, &mut data)?;
        } else if let Some(base) = &args.jaeger {
            fetch::jaeger(base, id, &mut data)?;
        }
    }
    warn_unmarked(&data);
    if args.list {
        print!("{}", tree::render_list(&data.traces(), style));
        return Ok(ExitCode::SUCCESS);
    }
    let trace_id = match &args.trace {
        Some(id) => Some(id.to_ascii_lowercase()),
        None => latest_alert(&data.alerts).map(|a| a.trace_id.clone()),
    };
    let Some(trace_id) = trace_id else {
        if args.alerts {
            println!("No drift finding in the data read.");
        } else {
            let (apps, kernel_only): (Vec<_>, Vec<_>) = data
                .traces()
                .into_iter()
                .partition(|t| t.root_name.is_some());
            println!(
                "No drift finding in the data read; {} application trace(s) and {} trace(s) of \
                 uncorrelated kernel events (`--list` shows all). Pick one with --trace ID:\n",
                apps.len(),
                kernel_only.len()
            );
            print!("{}", tree::render_list(&apps, style));
        }
        if let Some(path) = &args.html {
            bail!(
                "no trace to write to {}: give one with --trace ID",
                path.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let spans = data.trace(&trace_id);
    let alerts: Vec<&Alert> = data
        .alerts
        .iter()
        .filter(|a| a.trace_id == trace_id)
        .collect();
    if spans.is_empty() && alerts.is_empty() {
        eprintln!(
            "runbom investigate: trace {trace_id} is not in the data read ({} trace(s) in {}); \
             `runbom investigate --list` shows them",
            data.traces().len(),
            describe(&from, args)
        );
        return Ok(ExitCode::from(1));
    }
    if args.alerts {
        if alerts.is_empty() {
            println!("No drift finding in trace {trace_id}.");
        } else {
            print!("{}", tree::render_alerts(&alerts, style));
        }
    } else {
        print!("{}", tree::render_trace(&spans, &alerts, style));
    }
    if let Some(path) = &args.html {
        write_html(args, path, &spans, &alerts, explore.as_ref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the HTML report of one trace.
fn write_html(
    args: &InvestigateArgs,
    path: &std::path::Path,
    spans: &[&model::Span],
    alerts: &[&Alert],
    explore: Option<&grafana::Explore>,
) -> Result<()> {
    let declared = match &args.bom {
        Some(bom) => {
            let text = std::fs::read_to_string(bom)
                .with_context(|| format!("{}: cannot read", bom.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", bom.display()))?;
            Some(html::declared_components(&doc))
        }
        None => None,
    };
    let page = html::report(spans, alerts, declared.as_deref(), explore);
    std::fs::write(path, page).with_context(|| format!("{}: cannot write", path.display()))?;
    eprintln!("HTML report written to {}", path.display());
    Ok(())
}

/// Says how many `aibom.drift` records were skipped as not runbom's (contract §6).
fn warn_unmarked(data: &Data) {
    if data.unmarked_alerts > 0 {
        eprintln!(
            "runbom investigate: {} `aibom.drift` record(s) without runbom.instance.id skipped: \
             not findings runbom emitted (docs/telemetry-contract.md §6)",
            data.unmarked_alerts
        );
    }
}

fn latest_alert(alerts: &[Alert]) -> Option<&Alert> {
    alerts
        .iter()
        .filter(|a| !a.trace_id.is_empty())
        .max_by_key(|a| a.time_ns)
}

fn check_id(id: &str) -> Result<()> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--trace {id:?}: a trace id is 32 hex digits");
    }
    Ok(())
}

fn describe(from: &[PathBuf], args: &InvestigateArgs) -> String {
    let mut parts: Vec<String> = from.iter().map(|p| p.display().to_string()).collect();
    if let Some(t) = &args.tempo {
        parts.push(format!("Tempo at {t}"));
    }
    if let Some(j) = &args.jaeger {
        parts.push(format!("Jaeger at {j}"));
    }
    parts.join(", ")
}

//! The `runbom` command.

mod allocator;
mod bom;
mod investigate;
mod resident;
mod run;
mod selftel;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use runbom_pipeline::{Config, ConfigError};

/// runbom: an AI agent's runtime behaviour as OpenTelemetry evidence.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the eBPF probes and export what they see (until Ctrl-C or SIGTERM).
    Run {
        /// Configuration file (YAML). Without it: embedded defaults, writing OTLP/JSON to
        /// ./runbom-data/.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file without starting anything.
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show what happened in a trace: the span tree, drift findings, an HTML report.
    Investigate(investigate::InvestigateArgs),
    /// AI-BOMs: the runtime BOM of what was seen, and its diff against the declared one.
    Bom {
        #[command(subcommand)]
        command: BomCommand,
    },
}

#[derive(Subcommand)]
enum BomCommand {
    /// Write the CycloneDX 1.6 BOM of what a file exporter's OTLP/JSON shows (agents, models,
    /// providers, tools, endpoints, data sources, programs, identities, with evidence).
    Observed {
        /// The file exporter's directory (traces.jsonl, logs.jsonl).
        #[arg(long)]
        from: PathBuf,
        /// Where to write the BOM (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Destinations left out of the inventory (runbom's own receivers), e.g. 127.0.0.1:4318.
        #[arg(long)]
        ignore: Vec<String>,
    },
    /// List what ran undeclared and what is declared but never used (exit status 1 when
    /// anything is undeclared).
    Diff {
        declared: PathBuf,
        observed: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn bom_command(command: &BomCommand) -> ExitCode {
    let outcome = match command {
        BomCommand::Observed { from, out, ignore } => {
            bom::observed(from, out.as_deref(), ignore).map(|()| ExitCode::SUCCESS)
        }
        BomCommand::Diff {
            declared,
            observed,
            json,
        } => bom::diff_cmd(declared, observed, *json),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("runbom: {e:#}");
        ExitCode::from(2)
    })
}

fn load(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::from_file(p),
        None => Config::embedded(),
    }
}

/// Logs to stderr and, when `service.telemetry` names OTLP exporters, as OTLP log records and
/// spans too (`selftel`).
fn init_logging(config: &Config, selftel: &selftel::SelfTelemetry) {
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let level = &config.service.telemetry.logs.level;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUNBOM_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(selftel.layers())
        .init();
}

/// The commands that read exported files (`investigate`, `bom`) log their warnings (a torn
/// last line skipped) to stderr, without time or level noise.
fn init_reader_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match &cli.command {
        Command::Run { config } | Command::Validate { config } => config,
        Command::Bom { command } => {
            init_reader_logging();
            return bom_command(command);
        }
        Command::Investigate(args) => {
            init_reader_logging();
            return investigate::run(args);
        }
    };
    let config = match load(config.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runbom: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Validate { .. } => {
            init_logging(&config, &selftel::SelfTelemetry::default());
            match config.validate() {
                Ok(()) => {
                    let names = |keys: Vec<&String>| {
                        keys.into_iter().cloned().collect::<Vec<_>>().join(", ")
                    };
                    println!(
                        "{}: configuration is valid (pipelines: {}; receivers: {}; exporters: {})",
                        config.source,
                        names(config.service.pipelines.keys().collect()),
                        names(config.receivers.keys().collect()),
                        names(config.exporters.keys().collect()),
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let e = anyhow::Error::from(e);
                    eprintln!("runbom: invalid configuration: {}: {e:#}", config.source);
                    ExitCode::from(2)
                }
            }
        }
        Command::Bom { .. } | Command::Investigate(_) => ExitCode::SUCCESS,
        Command::Run { .. } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(worker_threads())
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("runbom: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // runbom's own telemetry runs on this runtime (the SDK's batch tasks).
            let selftel = {
                let _runtime = runtime.enter();
                match selftel::SelfTelemetry::start(&config.service.telemetry) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("runbom: invalid configuration: {e:#}");
                        return ExitCode::from(2);
                    }
                }
            };
            init_logging(&config, &selftel);
            runbom_pipeline::processor::memory_limiter::set_release(
                allocator::release_freed_memory,
            );
            match runtime.block_on(run::run(config, selftel)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("runbom: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Two runtime workers, or one when runbom may run on one CPU only (a cgroup cpuset, `taskset`):
/// two workers sharing one core hand each request to each other (wake-ups, context switches)
/// for no parallelism.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(2))
}

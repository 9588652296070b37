//! The `correlate` processor's section (`docs/correlation.md`): its checks, its checks against
//! the pipelines, and the settings the pipeline stage takes.

use std::time::Duration;

use serde::Deserialize;

use super::CorrelateSpec;
use crate::component::{ProcessorConfig, SpecContext};
use crate::config::{ConfigError, Section, duration, model::Config};
use crate::{ProcessorSpec, SignalKind, processor::ProcessorError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelateConfig {
    /// How long events wait for an exact match (and app spans for stitching) at most.
    #[serde(with = "duration")]
    pub wait: Duration,
    /// How long spans stay indexed and senders' events wait for their span.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Most kernel events held.
    pub max_buffered_events: usize,
    /// Most memory held kernel events account for, in MiB.
    pub memory_limit_mib: u64,
    /// Adopt orphan root spans into the trace they ran in.
    pub stitch: bool,
    /// Emit events no application span claimed as spans too (they are always logs).
    pub uncorrelated_spans: bool,
    /// Tasks converting the correlated events into OTLP, events shared among them by process
    /// (1 to 256; default: `min(2, CPUs)`, the runtime's threads).
    pub workers: usize,
}

/// Most conversion tasks (`workers`).
const MAX_WORKERS: usize = 256;

impl Default for CorrelateConfig {
    fn default() -> Self {
        let s = runbom_correlate::Settings::default();
        Self {
            wait: s.wait,
            window: s.window,
            max_buffered_events: s.max_buffered_events,
            memory_limit_mib: (s.max_buffered_bytes >> 20) as u64,
            stitch: s.stitch,
            uncorrelated_spans: s.uncorrelated_spans,
            workers: super::default_workers(),
        }
    }
}

impl ProcessorConfig for CorrelateConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if self.wait.is_zero() {
            return Err(at.at("wait").error("must be more than 0"));
        }
        at.not_below_wait("window", self.window, self.wait)?;
        at.at_least_one("max_buffered_events", self.max_buffered_events)?;
        at.at_least_one("memory_limit_mib", self.memory_limit_mib)?;
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(at
                .at("workers")
                .error(format!("{} must be 1 to {MAX_WORKERS}", self.workers)));
        }
        Ok(())
    }

    /// What the pipeline stage takes; its source is the ebpf receiver of its pipeline.
    fn spec(&self, ctx: &SpecContext) -> Result<ProcessorSpec, ProcessorError> {
        Ok(ProcessorSpec::Correlate(Box::new(CorrelateSpec {
            settings: runbom_correlate::Settings {
                wait: self.wait,
                window: self.window,
                max_buffered_events: self.max_buffered_events,
                max_buffered_bytes: usize::try_from(self.memory_limit_mib << 20)
                    .unwrap_or(usize::MAX),
                stitch: self.stitch,
                uncorrelated_spans: self.uncorrelated_spans,
                host_name: ctx.host_name.to_owned(),
                ..runbom_correlate::Settings::default()
            },
            workers: self.workers,
            // Checked when the configuration was read: the pipeline lists one.
            source: ctx.kernel_source.unwrap_or("ebpf").to_owned(),
        })))
    }
}

/// A correlate processor goes in one traces pipeline, which lists exactly one ebpf receiver:
/// the one that feeds it. That receiver's spans then leave through this pipeline only, so no
/// other traces pipeline may list it (it would get nothing).
pub(crate) fn check_pipelines(config: &Config) -> Result<(), ConfigError> {
    let mut seen: Option<(String, String)> = None;
    for (name, signal, p) in config.pipelines() {
        for (i, proc_name) in p.processors.iter().enumerate() {
            if config.processor::<CorrelateConfig>(proc_name).is_none() {
                continue;
            }
            let path = format!("service.pipelines.{name}.processors[{i}]");
            if signal != SignalKind::Traces {
                return Err(
                    config.error(&path, "the correlate processor goes in a traces pipeline")
                );
            }
            if let Some((first, _)) = &seen {
                return Err(config.error(
                    &path,
                    &format!("only one pipeline may correlate (`{first}` already does)"),
                ));
            }
            let ebpf: Vec<&str> = p
                .receivers
                .iter()
                .filter(|r| config.receivers.get(*r).is_some_and(|r| r.kernel_events()))
                .map(String::as_str)
                .collect();
            let [source] = ebpf.as_slice() else {
                return Err(config.error(
                    &format!("service.pipelines.{name}.receivers"),
                    "a pipeline with the correlate processor lists exactly one ebpf receiver: the one whose events it correlates",
                ));
            };
            seen = Some((name.to_owned(), (*source).to_owned()));
        }
    }
    let Some((correlating, source)) = seen else {
        return Ok(());
    };
    for (name, signal, p) in config.pipelines() {
        if signal == SignalKind::Traces
            && name != correlating
            && let Some(i) = p.receivers.iter().position(|r| *r == source)
        {
            return Err(config.error(
                &format!("service.pipelines.{name}.receivers[{i}]"),
                &format!(
                    "`{source}` feeds the correlate processor of `{correlating}`: its spans leave through that pipeline only"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CorrelateConfig;
    use crate::config::{assert_refused, model::Config, refusal};

    /// A configuration whose text the tests edit (the shape the embedded defaults had).
    const BASE: &str = "\
receivers:
  ebpf: {}
  otlp:
    protocols:
      grpc: {}
      http: {}
processors:
  batch: {}
exporters:
  file:
    path: ./runbom-data
service:
  pipelines:
    traces:
      receivers: [otlp, ebpf]
      processors: [batch]
      exporters: [file]
    logs:
      receivers: [otlp, ebpf]
      processors: [batch]
      exporters: [file]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
";

    fn with_correlate(section: &str, traces_processors: &str) -> String {
        BASE.replace(
            "processors:\n  batch: {}",
            &format!("processors:\n  batch: {{}}\n  correlate:{section}"),
        )
        .replacen(
            "processors: [batch]",
            &format!("processors: {traces_processors}"),
            2,
        )
    }

    #[test]
    fn the_section_parses_with_defaults_and_names_bad_paths() {
        // Pipelines are in name order: logs first, then metrics, then traces.
        let text = BASE
            .replace(
                "processors:\n  batch: {}",
                "processors:\n  batch: {}\n  correlate:\n    wait: 2s\n    stitch: false",
            )
            .replace(
                "    traces:\n      receivers: [otlp, ebpf]\n      processors: [batch]",
                "    traces:\n      receivers: [otlp, ebpf]\n      processors: [correlate, batch]",
            );
        let c = Config::parse(&text, "c.yaml").expect("valid");
        let p = c
            .processor::<CorrelateConfig>("correlate")
            .expect("correlate processor missing");
        assert_eq!(
            (p.wait.as_secs(), p.window.as_secs(), p.stitch),
            (2, 30, false)
        );
        assert!(!p.uncorrelated_spans);

        let bad = text.replace("    stitch: false", "    stich: false");
        let e = refusal(&bad);
        assert!(
            e.contains("`processors.correlate.stich`") || e.contains("`processors.correlate`"),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");

        let bad = text.replace("    wait: 2s", "    wait: 2s\n    window: 1s");
        assert_refused(
            &bad,
            "`processors.correlate.window`: must be at least `wait`",
        );
    }

    #[test]
    fn workers_default_to_the_runtime_threads_and_are_checked() {
        let in_traces = |section: &str| {
            BASE.replace(
                "processors:\n  batch: {}",
                &format!("processors:\n  batch: {{}}\n  correlate:{section}"),
            )
            .replacen("processors: [batch]", "processors: [correlate, batch]", 1)
        };
        let text = in_traces("\n    workers: 3");
        let c = Config::parse(&text, "c.yaml").expect("valid");
        let p = c
            .processor::<CorrelateConfig>("correlate")
            .expect("correlate");
        assert_eq!(p.workers, 3);
        let d = CorrelateConfig::default().workers;
        assert!((1..=2).contains(&d), "min(2, CPUs), got {d}");
        let text = in_traces("\n    workers: 0");
        assert_refused(&text, "`processors.correlate.workers`: 0 must be 1 to 256");
    }

    #[test]
    fn correlate_goes_in_one_traces_pipeline_with_the_ebpf_receiver() {
        // In the logs pipeline (the first `processors: [batch]` is the logs pipeline's).
        let text = with_correlate(" {}", "[correlate]");
        assert_refused(
            &text,
            "`service.pipelines.logs.processors[0]`: the correlate processor goes in a traces pipeline",
        );
        let text = BASE
            .replace(
                "processors:\n  batch: {}",
                "processors:\n  batch: {}\n  correlate: {}",
            )
            .replace(
                "    traces:\n      receivers: [otlp, ebpf]\n      processors: [batch]",
                "    traces:\n      receivers: [otlp]\n      processors: [correlate]",
            );
        assert_refused(
            &text,
            "`service.pipelines.traces.receivers`: a pipeline with the correlate processor lists exactly one ebpf receiver",
        );
        // The source's spans leave through the correlating pipeline only.
        let text = with_correlate(" {}", "[batch]").replace(
            "    traces:\n      receivers: [otlp, ebpf]\n      processors: [batch]\n      exporters: [file]\n",
            "    traces:\n      receivers: [otlp, ebpf]\n      processors: [correlate]\n      exporters: [file]\n    traces/raw:\n      receivers: [ebpf]\n      exporters: [file]\n",
        );
        assert_refused(
            &text,
            "`service.pipelines.traces/raw.receivers[0]`: `ebpf` feeds the correlate processor of `traces`",
        );
    }
}

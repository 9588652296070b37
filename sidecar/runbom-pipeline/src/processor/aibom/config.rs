//! The `aibom` processor's section: the declared BOM, how long traces are held, the learned
//! baseline; its checks, and the settings the pipeline stage takes (the BOM loaded).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use runbom_aibom::{
    BomWatch,
    arguments::{ArgumentPolicy, Mask},
    baseline,
    endpoint::Endpoint,
    shadow::{Severity, ShadowSettings},
    unclaimed::UnclaimedSettings,
};
use serde::Deserialize;
use tracing::info;

use super::AibomSpec;
use crate::component::{ProcessorConfig, SpecContext};
use crate::config::{ConfigError, Section, duration};
use crate::{ProcessorSpec, SignalKind, processor::ProcessorError};

/// The `aibom` processor: judges traces against the declared AI-BOM. Its name, listed among a
/// logs pipeline's receivers, routes its drift alerts there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AibomConfig {
    /// The declared AI-BOM (CycloneDX 1.6/1.7 JSON). runbom refuses to start when it does not
    /// load; later changes are picked up, and a broken change leaves the last good BOM in force.
    pub bom: PathBuf,
    /// How long a trace is held after its latest span, for the rest of it to arrive ...
    #[serde(default = "default_aibom_wait", with = "duration")]
    pub wait: Duration,
    /// ... and never longer than this after its first span.
    #[serde(default = "default_aibom_max_hold", with = "duration")]
    pub max_hold: Duration,
    /// Most spans held at once; past it the oldest traces are judged early.
    #[serde(default = "default_aibom_max_spans")]
    pub max_spans: usize,
    /// How often the BOM file is checked for changes.
    #[serde(default = "default_aibom_reload", with = "duration")]
    pub reload_interval: Duration,
    /// Destinations never judged, besides runbom's own OTLP receivers (`host:port`, URL, CIDR).
    #[serde(default)]
    pub ignore_endpoints: Vec<String>,
    /// The learned behavioural baseline (`baseline_*` drift flags); off unless set.
    #[serde(default)]
    pub baseline: Option<AibomBaselineConfig>,
    /// How alert chains quote tool arguments.
    #[serde(default)]
    pub alert_arguments: AlertArgumentsConfig,
    /// Shadow AI: `shadow_ai` alerts for undeclared workloads seen in the kernel events no
    /// trace claimed (with `correlate` before the processor).
    #[serde(default)]
    pub shadow_ai: AibomShadowConfig,
    /// Drift alerts for declared agents' kernel events no trace claimed (with `correlate`
    /// before the processor).
    #[serde(default)]
    pub unclaimed_drift: AibomUnclaimedConfig,
}

/// `processors.aibom.alert_arguments`: each string value of a tool call's arguments (and the
/// prompt) quoted in an alert chain is masked, then cut to `max_chars` characters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertArgumentsConfig {
    /// Characters kept of each value (0: values are not quoted at all); default 64.
    #[serde(default = "default_alert_max_chars")]
    pub max_chars: usize,
    /// What is masked: `card_numbers` (Luhn-valid 13–19 digits), `emails`; default both.
    /// Secrets are redacted whatever this says.
    #[serde(default = "default_alert_mask")]
    pub mask: Vec<Mask>,
}

impl Default for AlertArgumentsConfig {
    fn default() -> Self {
        Self {
            max_chars: default_alert_max_chars(),
            mask: default_alert_mask(),
        }
    }
}

/// `processors.aibom.shadow_ai`: how shadow-AI findings are alerted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AibomShadowConfig {
    /// `INFO`, `WARN` (default) or `ERROR`.
    #[serde(default = "default_shadow_severity")]
    pub severity: String,
    /// One alert per undeclared workload per window; its uses in between are counted.
    #[serde(default = "default_shadow_window", with = "duration")]
    pub window: Duration,
}

impl Default for AibomShadowConfig {
    fn default() -> Self {
        Self {
            severity: default_shadow_severity(),
            window: default_shadow_window(),
        }
    }
}

/// `processors.aibom.unclaimed_drift`: how drift in declared agents' kernel events no trace
/// claimed is alerted (the severity is a trace's drift alert's for the same kinds).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AibomUnclaimedConfig {
    /// One alert per agent, drift kinds and subject per window; repeats are counted.
    #[serde(default = "default_unclaimed_window", with = "duration")]
    pub window: Duration,
}

impl Default for AibomUnclaimedConfig {
    fn default() -> Self {
        Self {
            window: default_unclaimed_window(),
        }
    }
}

fn default_unclaimed_window() -> Duration {
    UnclaimedSettings::default().window
}

fn default_alert_max_chars() -> usize {
    ArgumentPolicy::DEFAULT_MAX_CHARS
}

fn default_alert_mask() -> Vec<Mask> {
    ArgumentPolicy::default().mask
}

fn default_shadow_severity() -> String {
    "WARN".into()
}

fn default_shadow_window() -> Duration {
    runbom_aibom::shadow::ShadowSettings::default().window
}

/// `processors.aibom.baseline`: what each declared agent does is learned for `learn_for`,
/// kept in `path`; after that what it had not done then is flagged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AibomBaselineConfig {
    /// Where the baseline is kept (JSON). Missing: learning starts at the first span judged.
    pub path: PathBuf,
    #[serde(default = "default_baseline_learn_for", with = "duration")]
    pub learn_for: Duration,
    /// A request body larger than this many times the largest learned for its tool (or
    /// destination) is `baseline_payload_size` ...
    #[serde(default = "default_baseline_payload_factor")]
    pub payload_factor: f64,
    /// ... and larger than this many bytes.
    #[serde(default = "default_baseline_payload_floor")]
    pub payload_floor: u64,
}

fn default_baseline_learn_for() -> Duration {
    baseline::Settings::DEFAULT_LEARN_FOR
}

fn default_baseline_payload_factor() -> f64 {
    baseline::Settings::DEFAULT_PAYLOAD_FACTOR
}

fn default_baseline_payload_floor() -> u64 {
    baseline::Settings::DEFAULT_PAYLOAD_FLOOR
}

impl ProcessorConfig for AibomConfig {
    /// Values the YAML types allow but the processor does not.
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if self.wait.is_zero() {
            return Err(at
                .at("wait")
                .error("must be more than 0 (spans wait for the rest of their trace)"));
        }
        at.not_below_wait("max_hold", self.max_hold, self.wait)?;
        at.at_least_one("max_spans", self.max_spans)?;
        if let Some(b) = &self.baseline
            && (!b.payload_factor.is_finite() || b.payload_factor < 1.0)
        {
            return Err(at
                .at("baseline.payload_factor")
                .error("must be a number of at least 1"));
        }
        if Severity::parse(&self.shadow_ai.severity).is_none() {
            return Err(at
                .at("shadow_ai.severity")
                .error("must be INFO, WARN or ERROR"));
        }
        if self.shadow_ai.window.is_zero() {
            return Err(at.at("shadow_ai.window").error("must be more than 0"));
        }
        if self.unclaimed_drift.window.is_zero() {
            return Err(at.at("unclaimed_drift.window").error("must be more than 0"));
        }
        for (i, e) in self.ignore_endpoints.iter().enumerate() {
            if let Err(why) = Endpoint::parse(e) {
                return Err(at.at(&format!("ignore_endpoints[{i}]")).error(why));
            }
        }
        Ok(())
    }

    fn refuses(&self, name: &str, signal: SignalKind) -> Option<String> {
        (signal != SignalKind::Traces)
            .then(|| format!("`{name}` judges traces: it belongs in a traces pipeline"))
    }

    fn gives_alerts(&self) -> bool {
        true
    }

    /// Loads the declared BOM (and the baseline): one that does not load stops runbom here,
    /// with the file, the JSON path and the reason.
    fn spec(&self, ctx: &SpecContext) -> Result<ProcessorSpec, ProcessorError> {
        let name = ctx.name;
        let watch = BomWatch::load(&self.bom).map_err(|source| ProcessorError::Bom {
            name: name.to_owned(),
            source,
        })?;
        info!(
            processor = %name,
            bom = %self.bom.display(),
            serial = %watch.current().serial_number,
            agents = watch.current().agents.len(),
            "declared AI-BOM loaded"
        );
        let mut ignore = Vec::new();
        for e in self.ignore_endpoints.iter().chain(ctx.own_endpoints) {
            ignore.push(
                Endpoint::parse(e).map_err(|reason| ProcessorError::IgnoreEndpoint {
                    name: name.to_owned(),
                    reason,
                })?,
            );
        }
        let baseline = match &self.baseline {
            Some(b) => {
                let settings = baseline::Settings {
                    path: b.path.clone(),
                    learn_for: b.learn_for,
                    payload_factor: b.payload_factor,
                    payload_floor: b.payload_floor,
                };
                let baseline =
                    baseline::Baseline::open(settings, SystemTime::now()).map_err(|source| {
                        ProcessorError::Baseline {
                            name: name.to_owned(),
                            source,
                        }
                    })?;
                Some(Arc::new(Mutex::new(baseline)))
            }
            None => None,
        };
        Ok(ProcessorSpec::Aibom(AibomSpec {
            name: name.to_owned(),
            settings: runbom_aibom::Settings {
                wait: self.wait,
                max_hold: self.max_hold,
                max_spans: self.max_spans,
                judge: runbom_aibom::judge::JudgeSettings { ignore },
                baseline,
                alert_arguments: ArgumentPolicy {
                    max_chars: self.alert_arguments.max_chars,
                    mask: self.alert_arguments.mask.clone(),
                },
                shadow: ShadowSettings {
                    severity: Severity::parse(&self.shadow_ai.severity).unwrap_or_default(),
                    window: self.shadow_ai.window,
                    ..ShadowSettings::default()
                },
                unclaimed: UnclaimedSettings {
                    window: self.unclaimed_drift.window,
                    ..UnclaimedSettings::default()
                },
            },
            bom: Arc::new(Mutex::new(watch)),
            reload_interval: self.reload_interval,
            stats: Arc::default(),
        }))
    }
}

fn default_aibom_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_aibom_max_hold() -> Duration {
    Duration::from_mins(1)
}

fn default_aibom_max_spans() -> usize {
    100_000
}

fn default_aibom_reload() -> Duration {
    Duration::from_secs(2)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::AibomConfig;
    use crate::config::{model::Config, refusal};

    #[test]
    fn aibom_processor_and_its_alert_route() {
        let base = "receivers: { otlp: { protocols: { grpc: {} } } }\n\
                    processors: { aibom: { bom: b.json, wait: 2s, ignore_endpoints: [\"10.0.0.0/8\"] }, batch: {} }\n\
                    exporters: { nop: {} }\n";
        let ok = format!(
            "{base}service: {{ pipelines: {{ traces: {{ receivers: [otlp], processors: [aibom, batch], exporters: [nop] }},\n\
             logs: {{ receivers: [otlp, aibom], exporters: [nop] }} }} }}"
        );
        let c = Config::parse(&ok, "c.yaml").unwrap();
        let a = c
            .processor::<AibomConfig>("aibom")
            .expect("an aibom processor");
        assert_eq!((a.wait, a.max_spans), (Duration::from_secs(2), 100_000));
        let cases = [
            (
                "service: { pipelines: { traces: { receivers: [otlp, aibom], processors: [aibom], exporters: [nop] } } }",
                "c.yaml at `service.pipelines.traces.receivers[1]`: `aibom` is an aibom processor",
            ),
            (
                "service: { pipelines: { logs: { receivers: [aibom], exporters: [nop] } } }",
                "c.yaml at `service.pipelines.logs.receivers[0]`: processor `aibom` is in no traces pipeline",
            ),
            (
                "service: { pipelines: { logs: { receivers: [otlp], processors: [aibom], exporters: [nop] } } }",
                "c.yaml at `service.pipelines.logs.processors[0]`: `aibom` judges traces",
            ),
        ];
        for (service, want) in cases {
            let e = refusal(&format!("{base}{service}"));
            assert!(e.starts_with(want), "want {want}\n got {e}");
        }
        let rest = "exporters: { nop: {} }\nreceivers: { otlp: { protocols: { grpc: {} } } }\n\
                    service: { pipelines: { traces: { receivers: [otlp], processors: [aibom], exporters: [nop] } } }";
        let baseline = "processors: { aibom: { bom: b.json, baseline: { path: b/base.json, learn_for: 1h, payload_factor: 0.5 } } }";
        let sections = [
            (
                "processors: { aibom: { bom: b.json, wiat: 2s } }",
                "c.yaml at `processors.aibom.wiat`: unknown field `wiat`",
            ),
            (
                "processors: { aibom: { bom: b.json, ignore_endpoints: [\"ht tp://x\"] } }",
                "c.yaml at `processors.aibom.ignore_endpoints[0]`: not a URL",
            ),
            (
                baseline,
                "c.yaml at `processors.aibom.baseline.payload_factor`: must be a number of at least 1",
            ),
        ];
        for (processors, want) in sections {
            let e = refusal(&format!("{processors}\n{rest}"));
            assert!(e.starts_with(want), "{e}");
        }
        let baseline = format!("{baseline}\n{rest}");
        let shadow = baseline.replace(
            "baseline: { path: b/base.json, learn_for: 1h, payload_factor: 0.5 }",
            "shadow_ai: { severity: loud }",
        );
        let e = Config::parse(&shadow, "c.yaml").unwrap_err().0;
        assert!(
            e.starts_with(
                "c.yaml at `processors.aibom.shadow_ai.severity`: must be INFO, WARN or ERROR"
            ),
            "{e}"
        );
        let c = Config::parse(&shadow.replace("loud", "error, window: 10m"), "c.yaml").unwrap();
        let a = c
            .processor::<AibomConfig>("aibom")
            .expect("an aibom processor");
        assert_eq!(
            (a.shadow_ai.severity.as_str(), a.shadow_ai.window),
            ("error", Duration::from_mins(10))
        );
        let unclaimed = baseline.replace(
            "baseline: { path: b/base.json, learn_for: 1h, payload_factor: 0.5 }",
            "unclaimed_drift: { window: 0s }",
        );
        let e = Config::parse(&unclaimed, "c.yaml").unwrap_err().0;
        assert!(
            e.starts_with(
                "c.yaml at `processors.aibom.unclaimed_drift.window`: must be more than 0"
            ),
            "{e}"
        );
        let c = Config::parse(&unclaimed.replace("0s", "15m"), "c.yaml").unwrap();
        let a = c
            .processor::<AibomConfig>("aibom")
            .expect("an aibom processor");
        assert_eq!(a.unclaimed_drift.window, Duration::from_mins(15));
        let c = Config::parse(&baseline.replace("0.5", "8"), "c.yaml").unwrap();
        let a = c
            .processor::<AibomConfig>("aibom")
            .expect("an aibom processor");
        let b = a.baseline.as_ref().expect("a baseline");
        assert_eq!(
            (b.learn_for, b.payload_floor),
            (Duration::from_hours(1), 4096)
        );
        assert_eq!(a.alert_arguments.max_chars, 64, "the default cut");
    }

    #[test]
    fn alert_arguments_policy() {
        let yaml = |section: &str| {
            format!(
                "processors: {{ aibom: {{ bom: b.json, alert_arguments: {section} }} }}\n\
                 exporters: {{ nop: {{}} }}\nreceivers: {{ otlp: {{ protocols: {{ grpc: {{}} }} }} }}\n\
                 service: {{ pipelines: {{ traces: {{ receivers: [otlp], processors: [aibom], exporters: [nop] }} }} }}"
            )
        };
        let c = Config::parse(&yaml("{ max_chars: 16, mask: [emails] }"), "c.yaml").unwrap();
        let a = c
            .processor::<AibomConfig>("aibom")
            .expect("an aibom processor");
        assert_eq!(a.alert_arguments.max_chars, 16);
        assert_eq!(
            a.alert_arguments.mask,
            [runbom_aibom::arguments::Mask::Emails]
        );
        let e = Config::parse(&yaml("{ mask: [phones] }"), "c.yaml")
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("c.yaml at `processors.aibom.alert_arguments.mask"),
            "{e}"
        );
    }
}

//! runbom's configuration: Collector-shaped YAML (`receivers`, `processors`, `exporters`,
//! `service.pipelines`), with `${env:VAR}` substitution. Every struct refuses unknown keys and
//! every error names the file and the YAML path of what is wrong.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, de::DeserializeOwned};

/// A configuration error, already worded for the person who wrote the file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    receivers: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    processors: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    exporters: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    service: Service,
}

/// The parsed, checked configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from (`<embedded defaults>` when no file was given).
    pub source: String,
    pub ebpf: EbpfReceiver,
    pub batch: BatchProcessor,
    /// Exporters by their configured name (`otlp`, `otlp/backup`, ...).
    pub exporters: BTreeMap<String, ExporterConfig>,
    pub service: Service,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfReceiver {
    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
    pub exec: ExecSettings,
    pub file: FileSettings,
    pub dns: DnsSettings,
    /// Export events that no application trace claimed as spans too (they are always logs).
    pub uncorrelated_spans: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecSettings {
    /// Bytes of argv captured per exec (at most 4095).
    pub argv_max_bytes: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSettings {
    /// Path prefixes whose opens are reported (byte prefixes: end a directory with `/`).
    pub include: Vec<String>,
    /// Prefixes under an include that are not reported; the longest matching prefix decides.
    pub exclude: Vec<String>,
    /// Report opens only of these processes (and their descendants) ...
    pub watch_pids: Vec<u32>,
    /// ... or of processes in these cgroup v2 directories. Both empty: every process.
    pub watch_cgroups: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
    /// UDP destination ports whose datagrams are parsed as DNS queries.
    pub ports: Vec<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchProcessor {
    /// Send a batch once it holds this many events ...
    pub send_batch_size: usize,
    /// ... or once the oldest event in it has waited this long.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

#[derive(Debug)]
pub enum ExporterConfig {
    Otlp(NetworkExporter),
    OtlpHttp(NetworkExporter),
    File(FileExporterConfig),
    Debug(DebugExporterConfig),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkExporter {
    pub endpoint: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    #[serde(with = "duration")]
    pub max_interval: Duration,
    #[serde(with = "duration")]
    pub max_elapsed_time: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExporterConfig {
    /// Directory that receives `traces.jsonl` and `logs.jsonl`.
    pub path: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    #[serde(default)]
    pub verbosity: DebugVerbosity,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DebugVerbosity {
    #[default]
    Basic,
    Detailed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    pub pipelines: Pipelines,
    pub telemetry: Telemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipelines {
    pub traces: Option<Pipeline>,
    pub logs: Option<Pipeline>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telemetry {
    pub logs: TelemetryLogs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryLogs {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a `tracing` filter directive).
    pub level: String,
}

impl Default for TelemetryLogs {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Default for EbpfReceiver {
    fn default() -> Self {
        let probes = runbom_agent::ProbeSettings::default();
        Self {
            ring_buffer_bytes: probes.ring_bytes,
            exec: ExecSettings {
                argv_max_bytes: probes.argv_max,
            },
            file: FileSettings {
                include: probes.file_include,
                exclude: probes.file_exclude,
                watch_pids: probes.watch_pids,
                watch_cgroups: probes.watch_cgroups,
            },
            dns: DnsSettings {
                ports: probes.dns_ports,
            },
            uncorrelated_spans: true,
        }
    }
}

impl Default for ExecSettings {
    fn default() -> Self {
        EbpfReceiver::default().exec
    }
}

impl Default for FileSettings {
    fn default() -> Self {
        EbpfReceiver::default().file
    }
}

impl Default for DnsSettings {
    fn default() -> Self {
        EbpfReceiver::default().dns
    }
}

impl Default for BatchProcessor {
    fn default() -> Self {
        Self {
            send_batch_size: 512,
            timeout: Duration::from_secs(1),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = runbom_otlp::export::RetryPolicy::default();
        Self {
            enabled: p.enabled,
            initial_interval: p.initial_interval,
            max_interval: p.max_interval,
            max_elapsed_time: p.max_elapsed_time,
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl EbpfReceiver {
    #[must_use]
    pub fn probe_settings(&self) -> runbom_agent::ProbeSettings {
        runbom_agent::ProbeSettings {
            ring_bytes: self.ring_buffer_bytes,
            argv_max: self.exec.argv_max_bytes,
            file_include: self.file.include.clone(),
            file_exclude: self.file.exclude.clone(),
            watch_pids: self.file.watch_pids.clone(),
            watch_cgroups: self.file.watch_cgroups.clone(),
            dns_ports: self.dns.ports.clone(),
        }
    }
}

/// The configuration used when no file is given: everything the probes see goes to
/// `./runbom-data/` as OTLP/JSON.
pub const EMBEDDED_DEFAULT: &str = "\
receivers:
  ebpf: {}
processors:
  batch: {}
exporters:
  file:
    path: ./runbom-data
service:
  pipelines:
    traces:
      receivers: [ebpf]
      processors: [batch]
      exporters: [file]
    logs:
      receivers: [ebpf]
      processors: [batch]
      exporters: [file]
";

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The embedded default configuration.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(EMBEDDED_DEFAULT, "<embedded defaults>")
    }

    /// Parses and checks configuration text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        let err = |path: &str, msg: &dyn fmt::Display| {
            let at = if path.is_empty() || path == "." {
                String::new()
            } else {
                format!(" at `{path}`")
            };
            ConfigError(format!("{source}{at}: {msg}"))
        };
        let text = substitute_env(text).map_err(|m| err("", &m))?;
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| err(&e.path().to_string(), e.inner()))?
        };

        let mut ebpf = None;
        for (name, value) in &raw.receivers {
            let path = format!("receivers.{name}");
            match component_type(name) {
                "ebpf" => ebpf = Some(typed::<EbpfReceiver>(value, &path, source)?),
                other => {
                    return Err(err(
                        &path,
                        &format!("unknown receiver type `{other}` (this build has: ebpf)"),
                    ));
                }
            }
        }
        let mut batch = None;
        for (name, value) in &raw.processors {
            let path = format!("processors.{name}");
            match component_type(name) {
                "batch" => batch = Some(typed::<BatchProcessor>(value, &path, source)?),
                other => {
                    return Err(err(
                        &path,
                        &format!("unknown processor type `{other}` (this build has: batch)"),
                    ));
                }
            }
        }
        let mut exporters = BTreeMap::new();
        for (name, value) in &raw.exporters {
            let path = format!("exporters.{name}");
            let exporter = match component_type(name) {
                "otlp" => ExporterConfig::Otlp(typed(value, &path, source)?),
                "otlphttp" => ExporterConfig::OtlpHttp(typed(value, &path, source)?),
                "file" => ExporterConfig::File(typed(value, &path, source)?),
                "debug" => ExporterConfig::Debug(typed(value, &path, source)?),
                other => {
                    return Err(err(
                        &path,
                        &format!(
                            "unknown exporter type `{other}` (this build has: otlp, otlphttp, file, debug)"
                        ),
                    ));
                }
            };
            exporters.insert(name.clone(), exporter);
        }

        let config = Self {
            source: source.to_owned(),
            ebpf: ebpf.unwrap_or_default(),
            batch: batch.unwrap_or_default(),
            exporters,
            service: raw.service,
        };
        config.check(&raw.receivers, &raw.processors)?;
        Ok(config)
    }

    fn check(
        &self,
        receivers: &BTreeMap<String, serde_yaml::Value>,
        processors: &BTreeMap<String, serde_yaml::Value>,
    ) -> Result<(), ConfigError> {
        let err =
            |path: &str, msg: String| ConfigError(format!("{} at `{path}`: {msg}", self.source));
        let pipelines = [
            ("traces", self.service.pipelines.traces.as_ref()),
            ("logs", self.service.pipelines.logs.as_ref()),
        ];
        if pipelines.iter().all(|(_, p)| p.is_none()) {
            return Err(err(
                "service.pipelines",
                "no pipeline is defined; define `traces` and/or `logs`".into(),
            ));
        }
        for (signal, pipeline) in pipelines {
            let Some(p) = pipeline else { continue };
            let base = format!("service.pipelines.{signal}");
            for (i, name) in p.receivers.iter().enumerate() {
                if !receivers.contains_key(name) {
                    return Err(err(
                        &format!("{base}.receivers[{i}]"),
                        format!("receiver `{name}` is not defined under `receivers`"),
                    ));
                }
            }
            for (i, name) in p.processors.iter().enumerate() {
                if !processors.contains_key(name) {
                    return Err(err(
                        &format!("{base}.processors[{i}]"),
                        format!("processor `{name}` is not defined under `processors`"),
                    ));
                }
            }
            if p.exporters.is_empty() {
                return Err(err(
                    &format!("{base}.exporters"),
                    "a pipeline needs at least one exporter".into(),
                ));
            }
            for (i, name) in p.exporters.iter().enumerate() {
                if !self.exporters.contains_key(name) {
                    return Err(err(
                        &format!("{base}.exporters[{i}]"),
                        format!("exporter `{name}` is not defined under `exporters`"),
                    ));
                }
            }
        }
        let ring = self.ebpf.ring_buffer_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            return Err(err(
                "receivers.ebpf.ring_buffer_bytes",
                format!("{ring} must be a power of two of at least 4096"),
            ));
        }
        // The kernel side keeps one byte of its argv buffer for the terminating NUL.
        let argv_max = runbom_common::ARGV_MAX as u32;
        if self.ebpf.exec.argv_max_bytes >= argv_max {
            return Err(err(
                "receivers.ebpf.exec.argv_max_bytes",
                format!(
                    "{} is larger than the kernel side allows (at most {})",
                    self.ebpf.exec.argv_max_bytes,
                    argv_max - 1
                ),
            ));
        }
        for (field, list) in [
            ("include", &self.ebpf.file.include),
            ("exclude", &self.ebpf.file.exclude),
        ] {
            for (i, prefix) in list.iter().enumerate() {
                if prefix.is_empty() || prefix.len() >= 256 {
                    return Err(err(
                        &format!("receivers.ebpf.file.{field}[{i}]"),
                        format!("prefix {prefix:?} must be 1 to 255 bytes long"),
                    ));
                }
            }
        }
        if self.batch.send_batch_size == 0 {
            return Err(err(
                "processors.batch.send_batch_size",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether the exporter named `name` receives traces and logs.
    #[must_use]
    pub fn signals_of(&self, name: &str) -> (bool, bool) {
        let has = |p: Option<&Pipeline>| p.is_some_and(|p| p.exporters.iter().any(|e| e == name));
        (
            has(self.service.pipelines.traces.as_ref()),
            has(self.service.pipelines.logs.as_ref()),
        )
    }
}

/// `otlp/backup` is an exporter of type `otlp`.
fn component_type(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// Deserializes one section, naming `path` (and the path inside it) in errors. An empty
/// section (`ebpf:` with nothing under it) means "all defaults".
fn typed<T: DeserializeOwned>(
    value: &serde_yaml::Value,
    path: &str,
    source: &str,
) -> Result<T, ConfigError> {
    let value = if value.is_null() {
        serde_yaml::Value::Mapping(serde_yaml::Mapping::new())
    } else {
        value.clone()
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = if inner == "." {
            path.to_owned()
        } else {
            format!("{path}.{inner}")
        };
        ConfigError(format!("{source} at `{full}`: {}", e.inner()))
    })
}

/// Replaces `${env:NAME}` (and `${NAME}`) with the variable's value; an unset variable is an
/// error rather than a silent empty string.
fn substitute_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in {:?}", &rest[start..]))?;
        let name = after[..end].strip_prefix("env:").unwrap_or(&after[..end]);
        let value = std::env::var(name).map_err(|_| {
            format!(
                "environment variable `{name}` (used as `${{{}}}`) is not set",
                &after[..end]
            )
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Durations as the Collector writes them: `500ms`, `10s`, `5m`, `1h` (or plain seconds).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error as _};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => parse(&t).ok_or_else(|| {
                D::Error::custom(format!(
                    "invalid duration {t:?} (expected e.g. 500ms, 10s, 5m, 1h)"
                ))
            }),
        }
    }

    pub fn parse(t: &str) -> Option<Duration> {
        let t = t.trim();
        let split = t.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().ok()?;
        let secs = match unit {
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        Some(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded().unwrap();
        assert!(matches!(c.exporters["file"], ExporterConfig::File(_)));
        assert_eq!(c.signals_of("file"), (true, true));
        assert!(c.ebpf.uncorrelated_spans);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let text = EMBEDDED_DEFAULT.replace("    path: ./runbom-data", "    path: x\n    pth: y");
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(
            e.starts_with("c.yaml at `exporters.file.pth`: unknown field `pth`"),
            "{e}"
        );
        let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    file:\n      inclde: [/]");
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(
            e.contains("`receivers.ebpf.file.inclde`: unknown field `inclde`"),
            "{e}"
        );
    }

    #[test]
    fn type_errors_name_their_path() {
        let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    dns:\n      ports: [dns]");
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(e.contains("`receivers.ebpf.dns.ports[0]`"), "{e}");
        let text = EMBEDDED_DEFAULT.replace("  batch: {}", "  batch:\n    timeout: soon");
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(
            e.contains("`processors.batch.timeout`: invalid duration"),
            "{e}"
        );
    }

    #[test]
    fn pipelines_must_reference_defined_components() {
        let text = EMBEDDED_DEFAULT.replacen("exporters: [file]", "exporters: [otlp]", 1);
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(
            e.contains("`service.pipelines.traces.exporters[0]`: exporter `otlp` is not defined"),
            "{e}"
        );
    }

    #[test]
    fn env_substitution() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("RUNBOM_TEST_ENDPOINT", "127.0.0.1:9999") };
        let text = EMBEDDED_DEFAULT.replace(
            "exporters:\n  file:",
            "exporters:\n  otlp:\n    endpoint: ${env:RUNBOM_TEST_ENDPOINT}\n  file:",
        );
        let c = Config::parse(&text, "c.yaml").unwrap();
        let ExporterConfig::Otlp(o) = &c.exporters["otlp"] else {
            panic!()
        };
        assert_eq!(o.endpoint, "127.0.0.1:9999");
        assert_eq!(o.compression, Compression::Gzip);
        let e = Config::parse("x: ${env:RUNBOM_TEST_UNSET_VAR}", "c.yaml")
            .unwrap_err()
            .0;
        assert!(e.contains("`RUNBOM_TEST_UNSET_VAR`"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration::parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration::parse("5m"), Some(Duration::from_mins(5)));
        assert_eq!(duration::parse("5"), None);
        assert_eq!(duration::parse("fast"), None);
    }
}

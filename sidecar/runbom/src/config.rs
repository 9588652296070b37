//! runbom's configuration: Collector-shaped YAML (`receivers`, `processors`, `exporters`,
//! `service.pipelines`), with `${env:VAR}` substitution. Every struct refuses unknown keys and
//! every error names the file and the YAML path of what is wrong.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use runbom_otlp::tls::{ClientTlsSettings, TlsVersion};
use runbom_pipeline::SignalKind;
use serde::{Deserialize, de::DeserializeOwned};

pub use crate::correlation::CorrelateProcessor;

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
    /// Receivers by their configured name (`ebpf`, `otlp`, `otlp/2`, ...).
    pub receivers: BTreeMap<String, ReceiverConfig>,
    /// Processors by their configured name (`batch`, `memory_limiter/strict`, ...).
    pub processors: BTreeMap<String, ProcessorConfig>,
    /// Exporters by their configured name (`otlp`, `otlp/backup`, ...).
    pub exporters: BTreeMap<String, ExporterConfig>,
    pub service: Service,
}

#[derive(Debug)]
pub enum ReceiverConfig {
    Ebpf(Box<EbpfReceiver>),
    Otlp(Box<OtlpReceiver>),
}

#[derive(Debug)]
pub enum ProcessorConfig {
    Batch(BatchProcessor),
    MemoryLimiter(MemoryLimiterProcessor),
    Correlate(Box<CorrelateProcessor>),
    Aibom(AibomProcessor),
}

/// The `aibom` processor: judges traces against the declared AI-BOM. Its name, listed among a
/// logs pipeline's receivers, routes its drift alerts there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AibomProcessor {
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
    pub baseline: Option<AibomBaseline>,
}

/// `processors.aibom.baseline`: what each declared agent does is learned for `learn_for`,
/// kept in `path`; after that what it had not done then is flagged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AibomBaseline {
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
    runbom_aibom::baseline::Settings::DEFAULT_LEARN_FOR
}

fn default_baseline_payload_factor() -> f64 {
    runbom_aibom::baseline::Settings::DEFAULT_PAYLOAD_FACTOR
}

fn default_baseline_payload_floor() -> u64 {
    runbom_aibom::baseline::Settings::DEFAULT_PAYLOAD_FLOOR
}

impl AibomProcessor {
    /// Values the YAML types allow but the processor does not.
    pub fn check(
        &self,
        base: &str,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.wait.is_zero() {
            return Err(err(
                &format!("{base}.wait"),
                "must be more than 0 (spans wait for the rest of their trace)".into(),
            ));
        }
        if self.max_hold < self.wait {
            return Err(err(
                &format!("{base}.max_hold"),
                format!("must be at least `wait` ({:?})", self.wait),
            ));
        }
        if self.max_spans == 0 {
            return Err(err(
                &format!("{base}.max_spans"),
                "must be at least 1".into(),
            ));
        }
        if let Some(b) = &self.baseline
            && (!b.payload_factor.is_finite() || b.payload_factor < 1.0)
        {
            return Err(err(
                &format!("{base}.baseline.payload_factor"),
                "must be a number of at least 1".into(),
            ));
        }
        for (i, e) in self.ignore_endpoints.iter().enumerate() {
            if let Err(why) = runbom_aibom::endpoint::Endpoint::parse(e) {
                return Err(err(&format!("{base}.ignore_endpoints[{i}]"), why));
            }
        }
        Ok(())
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

/// The Collector's `otlp` receiver section, accepted as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiver {
    #[serde(default)]
    pub protocols: OtlpProtocols,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpProtocols {
    pub grpc: Option<OtlpServer>,
    pub http: Option<OtlpServer>,
}

/// One OTLP server (gRPC or HTTP). Unset fields take the Collector's defaults, except that
/// runbom binds to loopback unless told otherwise.
// Some fields are accepted so that a Collector's section loads as it is, and not used.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpServer {
    /// `host:port`; default `127.0.0.1:4317` (gRPC) or `127.0.0.1:4318` (HTTP).
    pub endpoint: Option<String>,
    /// Largest request accepted, in MiB (default 4).
    pub max_recv_msg_size_mib: Option<u64>,
    pub tls: Option<ServerTlsConfig>,
    /// Accepted for compatibility; runbom does not use these.
    pub max_concurrent_streams: Option<u32>,
    pub read_buffer_size: Option<u64>,
    pub write_buffer_size: Option<u64>,
    pub include_metadata: Option<bool>,
    pub transport: Option<String>,
    pub keepalive: Option<serde_yaml::Value>,
    pub cors: Option<serde_yaml::Value>,
    pub traces_url_path: Option<String>,
    pub logs_url_path: Option<String>,
    pub metrics_url_path: Option<String>,
}

/// A receiver's `tls` section, as the Collector's `configtls.ServerConfig` has it: the
/// server's certificate and key (both required), and `client_ca_file` to require client
/// certificates signed by those CAs (mTLS).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    /// Accepted as the Collector accepts it, and as there, it does not verify clients
    /// (`client_ca_file` does); runbom warns when it is set.
    pub ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "tls_version")]
    pub min_version: Option<TlsVersion>,
    #[serde(default, deserialize_with = "tls_version")]
    pub max_version: Option<TlsVersion>,
    /// Re-read `cert_file` and `key_file` once this long has passed.
    #[serde(default, deserialize_with = "duration::optional")]
    pub reload_interval: Option<Duration>,
}

/// An exporter's `tls` section, as the Collector's `configtls.ClientConfig` has it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// `otlp` only: plain text (unless the endpoint is `https://` or `ca_file` is set).
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name_override: Option<String>,
    #[serde(default, deserialize_with = "tls_version")]
    pub min_version: Option<TlsVersion>,
    #[serde(default, deserialize_with = "tls_version")]
    pub max_version: Option<TlsVersion>,
    /// Re-read `cert_file` and `key_file` once this long has passed.
    #[serde(default, deserialize_with = "duration::optional")]
    pub reload_interval: Option<Duration>,
}

impl ClientTlsConfig {
    /// The settings the exporters take.
    #[must_use]
    pub fn settings(&self) -> ClientTlsSettings {
        ClientTlsSettings {
            insecure: self.insecure,
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.clone(),
            include_system_ca_certs_pool: self.include_system_ca_certs_pool,
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name_override: self.server_name_override.clone(),
            min_version: self.min_version,
            max_version: self.max_version,
            reload_interval: self.reload_interval,
        }
    }
}

/// `min_version` / `max_version`: `"1.0"` to `"1.3"`.
fn tls_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TlsVersion>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// `min_version` no greater than `max_version`, and a TLS version runbom speaks between them.
fn check_tls_versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
    path: &str,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    runbom_otlp::tls::protocol_versions(min, max)
        .map(drop)
        .map_err(|e| err(path, e.to_string()))
}

// The spike limits are accepted for compatibility; the limit applies as a hard limit.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterProcessor {
    #[serde(default = "default_check_interval", with = "duration")]
    pub check_interval: Duration,
    /// Refuse data above this resident size, in MiB.
    pub limit_mib: Option<u64>,
    /// Accepted for compatibility; the limit applies as a hard limit.
    pub spike_limit_mib: Option<u64>,
    /// Refuse data above this share of the machine's memory.
    pub limit_percentage: Option<u64>,
    pub spike_limit_percentage: Option<u64>,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfReceiver {
    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
    pub exec: ExecSettings,
    pub file: FileSettings,
    pub dns: DnsSettings,
    pub http: HttpSettings,
    /// Export events that no application trace claimed as spans too (they are always logs).
    pub uncorrelated_spans: bool,
}

/// `http.request` capture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Capture HTTP/1.x requests (where: `plaintext`, `openssl`).
    pub enabled: bool,
    /// At socket writes (`write`, `writev`, `sendto`, `sendmsg`); each such call then costs a
    /// tracepoint hit, whatever it writes.
    pub plaintext: bool,
    /// Bytes copied of a write that starts a request, and of the body write after a TLS
    /// request head: enough to reach `Host` and `traceparent` past long headers, and `model`.
    pub max_header_bytes: u32,
    /// Hook every OpenSSL library processes load (`SSL_write[_ex]`, `SSL_read[_ex]`).
    pub openssl: bool,
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
    /// Send a batch once it holds this many items (spans, log records, data points) ...
    pub send_batch_size: usize,
    /// ... and never merge past this many (0: no limit).
    pub send_batch_max_size: usize,
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
    Nop,
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
    #[serde(default)]
    pub sending_queue: SendingQueue,
    pub tls: Option<ClientTlsConfig>,
    /// `otlphttp` only: `proto` (the default; `json` is not supported yet).
    pub encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueue {
    pub enabled: bool,
    /// Accepted for compatibility: each exporter sends from one task.
    pub num_consumers: usize,
    /// What the queue holds before the pipeline is held back, counted by `sizer`.
    pub queue_size: usize,
    /// How `queue_size` counts: `requests` (the Collector's default) or `items` (spans, log
    /// records, data points). Either way the queue also holds at most
    /// `runbom_pipeline::DEFAULT_QUEUE_ITEMS` items, so memory stays bounded with large batches.
    pub sizer: QueueSizer,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueSizer {
    #[default]
    Requests,
    Items,
}

impl Default for SendingQueue {
    fn default() -> Self {
        Self {
            enabled: true,
            num_consumers: 1,
            queue_size: 64,
            sizer: QueueSizer::Requests,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NopConfig {}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    pub pipelines: Pipelines,
    pub telemetry: Telemetry,
    /// How long runbom may take to drain its pipelines after SIGTERM (Kubernetes kills a pod
    /// 30 s after SIGTERM by default).
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            pipelines: Pipelines::default(),
            telemetry: Telemetry::default(),
            shutdown_timeout: Duration::from_secs(25),
        }
    }
}

/// Pipelines by name: `traces`, `logs`, `metrics`, or `<signal>/<name>`.
pub type Pipelines = BTreeMap<String, Pipeline>;

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
    pub metrics: TelemetryMetrics,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryMetrics {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`none` to turn it off).
    pub address: String,
    /// Accepted for compatibility (`basic`, `normal`, `detailed`, `none`).
    pub level: Option<String>,
    /// The Collector's metric readers: `periodic` with an `otlp` exporter sends runbom's
    /// counters as OTLP metrics; `pull` with a `prometheus` exporter sets the address above.
    pub readers: Vec<MetricReader>,
}

impl Default for TelemetryMetrics {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8888".into(),
            level: None,
            readers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    pub periodic: Option<PeriodicReader>,
    pub pull: Option<PullReader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicReader {
    /// Milliseconds between exports (the Collector's unit); default 60000.
    #[serde(default = "default_periodic_ms")]
    pub interval: u64,
    pub exporter: SelfExporter,
}

fn default_periodic_ms() -> u64 {
    60_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    pub exporter: PullExporter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: PrometheusEndpoint,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusEndpoint {
    pub host: String,
    pub port: u16,
}

/// Where runbom sends its own telemetry: `otlp: {protocol, endpoint}` as in the Collector.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfExporter {
    pub otlp: SelfOtlp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfOtlp {
    /// `grpc` or `http/protobuf`.
    pub protocol: String,
    pub endpoint: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `grpc` to an endpoint without `http://` / `https://`: plain text rather than TLS.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryLogs {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a `tracing` filter directive).
    pub level: String,
    /// The Collector's log processors: `batch` (or `simple`) with an `otlp` exporter sends
    /// runbom's own log records as OTLP logs (`service.name=runbom`).
    pub processors: Vec<LogProcessor>,
}

impl Default for TelemetryLogs {
    fn default() -> Self {
        Self {
            level: "info".into(),
            processors: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogProcessor {
    pub batch: Option<LogExport>,
    pub simple: Option<LogExport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogExport {
    pub exporter: SelfExporter,
}

impl Telemetry {
    /// The OTLP destination for runbom's counters and the export interval, if configured.
    #[must_use]
    pub fn metrics_otlp(&self) -> Option<(&SelfOtlp, Duration)> {
        self.metrics.readers.iter().find_map(|r| {
            r.periodic
                .as_ref()
                .map(|p| (&p.exporter.otlp, Duration::from_millis(p.interval.max(100))))
        })
    }

    /// The OTLP destination for runbom's own log records, if configured.
    #[must_use]
    pub fn logs_otlp(&self) -> Option<&SelfOtlp> {
        self.logs
            .processors
            .iter()
            .find_map(|p| p.batch.as_ref().or(p.simple.as_ref()))
            .map(|e| &e.exporter.otlp)
    }

    /// Where `/metrics` is served: a `pull` reader's prometheus endpoint, else `address`.
    #[must_use]
    pub fn admin_address(&self) -> String {
        self.metrics
            .readers
            .iter()
            .find_map(|r| r.pull.as_ref())
            .map_or_else(
                || self.metrics.address.clone(),
                |p| {
                    format!(
                        "{}:{}",
                        p.exporter.prometheus.host, p.exporter.prometheus.port
                    )
                },
            )
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
            http: HttpSettings {
                enabled: probes.http.enabled,
                plaintext: probes.http.plaintext,
                max_header_bytes: probes.http.max_bytes,
                openssl: probes.http.openssl,
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

impl Default for HttpSettings {
    fn default() -> Self {
        EbpfReceiver::default().http
    }
}

impl Default for BatchProcessor {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = runbom_pipeline::exporter::RetryPolicy::default();
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
            http: runbom_agent::HttpCapture {
                enabled: self.http.enabled,
                plaintext: self.http.plaintext,
                max_bytes: self.http.max_header_bytes,
                openssl: self.http.openssl,
            },
        }
    }
}

/// The configuration used when no file is given: OTLP in on loopback (4317 gRPC, 4318 HTTP)
/// plus everything the probes see; kernel events correlated into the applications' traces,
/// judged against the reference agent's declared AI-BOM (built in), drift alerts among the
/// logs; out to `./runbom-data/` as OTLP/JSON.
pub const EMBEDDED_DEFAULT: &str = "\
receivers:
  ebpf: {}
  otlp:
    protocols:
      grpc: {}
      http: {}
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 1024
  correlate: {}
  aibom:
    bom: builtin:reference-agent
  batch: {}
exporters:
  file:
    path: ./runbom-data
service:
  pipelines:
    traces:
      receivers: [otlp, ebpf]
      processors: [memory_limiter, correlate, aibom, batch]
      exporters: [file]
    logs:
      receivers: [otlp, ebpf, aibom]
      processors: [memory_limiter, batch]
      exporters: [file]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
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
        let receivers = components(
            "receivers",
            &raw.receivers,
            source,
            "ebpf, otlp",
            |kind, v, path| {
                Some(match kind {
                    "ebpf" => typed(v, path, source).map(|r| ReceiverConfig::Ebpf(Box::new(r))),
                    "otlp" => typed(v, path, source).map(|r| ReceiverConfig::Otlp(Box::new(r))),
                    _ => return None,
                })
            },
        )?;
        let processors = components(
            "processors",
            &raw.processors,
            source,
            "aibom, batch, correlate, memory_limiter",
            |kind, v, path| {
                Some(match kind {
                    "aibom" => typed(v, path, source).map(ProcessorConfig::Aibom),
                    "batch" => typed(v, path, source).map(ProcessorConfig::Batch),
                    "memory_limiter" => typed(v, path, source).map(ProcessorConfig::MemoryLimiter),
                    "correlate" => {
                        typed(v, path, source).map(|c| ProcessorConfig::Correlate(Box::new(c)))
                    }
                    _ => return None,
                })
            },
        )?;
        let exporters = components(
            "exporters",
            &raw.exporters,
            source,
            "otlp, otlphttp, file, debug, nop",
            |kind, v, path| {
                Some(match kind {
                    "otlp" => typed(v, path, source).map(ExporterConfig::Otlp),
                    "otlphttp" => typed(v, path, source).map(ExporterConfig::OtlpHttp),
                    "file" => typed(v, path, source).map(ExporterConfig::File),
                    "debug" => typed(v, path, source).map(ExporterConfig::Debug),
                    "nop" => typed::<NopConfig>(v, path, source).map(|_| ExporterConfig::Nop),
                    _ => return None,
                })
            },
        )?;

        let config = Self {
            source: source.to_owned(),
            receivers,
            processors,
            exporters,
            service: raw.service,
        };
        config.check_pipelines()?;
        crate::correlation::check_pipelines(&config)?;
        config.check_components()?;
        Ok(config)
    }

    pub(crate) fn error(&self, path: &str, msg: &str) -> ConfigError {
        ConfigError(format!("{} at `{path}`: {msg}", self.source))
    }

    /// Every pipeline names its signal and only components that exist and fit it.
    fn check_pipelines(&self) -> Result<(), ConfigError> {
        let err = |path: &str, msg: String| self.error(path, &msg);
        if self.service.pipelines.is_empty() {
            return Err(err(
                "service.pipelines",
                "no pipeline is defined; define `traces`, `logs` and/or `metrics`".into(),
            ));
        }
        for (name, p) in &self.service.pipelines {
            let base = format!("service.pipelines.{name}");
            let Some(signal) = pipeline_signal(name) else {
                return Err(err(
                    &base,
                    "a pipeline is named after its signal: `traces`, `logs` or `metrics`, \
                     optionally followed by `/name`"
                        .into(),
                ));
            };
            if p.receivers.is_empty() {
                return Err(err(
                    &format!("{base}.receivers"),
                    "a pipeline needs at least one receiver".into(),
                ));
            }
            for (i, r) in p.receivers.iter().enumerate() {
                if let Some(ProcessorConfig::Aibom(_)) = self.processors.get(r)
                    && !self.receivers.contains_key(r)
                {
                    self.check_alert_route(r, signal, &format!("{base}.receivers[{i}]"))?;
                    continue;
                }
                match self.receivers.get(r) {
                    None => {
                        return Err(err(
                            &format!("{base}.receivers[{i}]"),
                            format!("receiver `{r}` is not defined under `receivers`"),
                        ));
                    }
                    Some(ReceiverConfig::Ebpf(_)) if signal == SignalKind::Metrics => {
                        return Err(err(
                            &format!("{base}.receivers[{i}]"),
                            "the ebpf receiver produces traces and logs, not metrics".into(),
                        ));
                    }
                    Some(_) => {}
                }
            }
            for (i, name) in p.processors.iter().enumerate() {
                match self.processors.get(name) {
                    None => {
                        return Err(err(
                            &format!("{base}.processors[{i}]"),
                            format!("processor `{name}` is not defined under `processors`"),
                        ));
                    }
                    Some(ProcessorConfig::Aibom(_)) if signal != SignalKind::Traces => {
                        return Err(err(
                            &format!("{base}.processors[{i}]"),
                            format!("`{name}` judges traces: it belongs in a traces pipeline"),
                        ));
                    }
                    Some(_) => {}
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
        Ok(())
    }

    /// An `aibom` processor named as a receiver gives its drift alerts: only to logs pipelines,
    /// and only when it runs in a traces pipeline.
    fn check_alert_route(
        &self,
        name: &str,
        signal: SignalKind,
        path: &str,
    ) -> Result<(), ConfigError> {
        if signal != SignalKind::Logs {
            return Err(self.error(
                path,
                &format!(
                    "`{name}` is an aibom processor: as a receiver it gives drift alerts, which are \
                     logs; list it in a logs pipeline"
                ),
            ));
        }
        let in_traces = self
            .pipelines()
            .any(|(_, s, p)| s == SignalKind::Traces && p.processors.iter().any(|x| x == name));
        if !in_traces {
            return Err(self.error(
                path,
                &format!(
                    "processor `{name}` is in no traces pipeline, so it has no alerts to give"
                ),
            ));
        }
        Ok(())
    }

    /// Settings that are valid YAML but not valid values.
    fn check_components(&self) -> Result<(), ConfigError> {
        let err = |path: &str, msg: String| self.error(path, &msg);
        for (name, r) in &self.receivers {
            match r {
                ReceiverConfig::Ebpf(e) => e.check(&format!("receivers.{name}"), &err)?,
                ReceiverConfig::Otlp(o) => {
                    if o.protocols.grpc.is_none() && o.protocols.http.is_none() {
                        return Err(err(
                            &format!("receivers.{name}.protocols"),
                            "enable `grpc` and/or `http`".into(),
                        ));
                    }
                    for (proto, server) in
                        [("grpc", &o.protocols.grpc), ("http", &o.protocols.http)]
                    {
                        if let Some(tls) = server.as_ref().and_then(|s| s.tls.as_ref()) {
                            let path = format!("receivers.{name}.protocols.{proto}.tls");
                            if tls.cert_file.is_none() || tls.key_file.is_none() {
                                return Err(err(
                                    &path,
                                    "a receiver's TLS needs both `cert_file` and `key_file`".into(),
                                ));
                            }
                            check_tls_versions(tls.min_version, tls.max_version, &path, &err)?;
                        }
                    }
                }
            }
        }
        for (name, p) in &self.processors {
            match p {
                ProcessorConfig::Batch(b) if b.send_batch_size == 0 => {
                    return Err(err(
                        &format!("processors.{name}.send_batch_size"),
                        "must be at least 1".into(),
                    ));
                }
                ProcessorConfig::Aibom(a) => a.check(&format!("processors.{name}"), &err)?,
                ProcessorConfig::MemoryLimiter(m)
                    if m.limit_mib.is_none() && m.limit_percentage.is_none() =>
                {
                    return Err(err(
                        &format!("processors.{name}"),
                        "set `limit_mib` or `limit_percentage`".into(),
                    ));
                }
                ProcessorConfig::Correlate(c) => c.check(&format!("processors.{name}"), &err)?,
                _ => {}
            }
        }
        for (name, e) in &self.exporters {
            if let ExporterConfig::Otlp(n) | ExporterConfig::OtlpHttp(n) = e {
                if let Some(tls) = &n.tls {
                    let path = format!("exporters.{name}.tls");
                    if tls.cert_file.is_some() != tls.key_file.is_some() {
                        return Err(err(
                            &path,
                            "set both `cert_file` and `key_file` (a client certificate), or neither"
                                .into(),
                        ));
                    }
                    check_tls_versions(tls.min_version, tls.max_version, &path, &err)?;
                }
                if n.encoding.as_deref().is_some_and(|e| e != "proto") {
                    return Err(err(
                        &format!("exporters.{name}.encoding"),
                        "only `proto` is supported".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The configured pipelines, in order, with their signal.
    pub fn pipelines(&self) -> impl Iterator<Item = (&str, SignalKind, &Pipeline)> {
        self.service
            .pipelines
            .iter()
            .filter_map(|(name, p)| Some((name.as_str(), pipeline_signal(name)?, p)))
    }
}

impl EbpfReceiver {
    fn check(
        &self,
        base: &str,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let ring = self.ring_buffer_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            return Err(err(
                &format!("{base}.ring_buffer_bytes"),
                format!("{ring} must be a power of two of at least 4096"),
            ));
        }
        // The kernel side keeps one byte of its argv buffer for the terminating NUL.
        let argv_max = runbom_common::ARGV_MAX as u32;
        if self.exec.argv_max_bytes >= argv_max {
            return Err(err(
                &format!("{base}.exec.argv_max_bytes"),
                format!(
                    "{} is larger than the kernel side allows (at most {})",
                    self.exec.argv_max_bytes,
                    argv_max - 1
                ),
            ));
        }
        let http_max = runbom_common::HTTP_DATA_MAX as u32;
        if !(64..=http_max).contains(&self.http.max_header_bytes) {
            return Err(err(
                &format!("{base}.http.max_header_bytes"),
                format!(
                    "{} is outside what the kernel side allows (64 to {http_max})",
                    self.http.max_header_bytes
                ),
            ));
        }
        for (field, list) in [
            ("include", &self.file.include),
            ("exclude", &self.file.exclude),
        ] {
            for (i, prefix) in list.iter().enumerate() {
                if prefix.is_empty() || prefix.len() >= runbom_common::PATH_MAX {
                    return Err(err(
                        &format!("{base}.file.{field}[{i}]"),
                        format!(
                            "prefix {prefix:?} must be 1 to {} bytes long",
                            runbom_common::PATH_MAX - 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `traces/agents` carries traces.
fn pipeline_signal(name: &str) -> Option<SignalKind> {
    match component_type(name) {
        "traces" => Some(SignalKind::Traces),
        "logs" => Some(SignalKind::Logs),
        "metrics" => Some(SignalKind::Metrics),
        _ => None,
    }
}

/// Parses every component of a section (`receivers`, ...): `make(type, value, path)` builds one,
/// or returns `None` for a type this build does not have.
fn components<T>(
    section: &str,
    raw: &BTreeMap<String, serde_yaml::Value>,
    source: &str,
    known: &str,
    make: impl Fn(&str, &serde_yaml::Value, &str) -> Option<Result<T, ConfigError>>,
) -> Result<BTreeMap<String, T>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        let path = format!("{section}.{name}");
        let kind = component_type(name);
        let component = make(kind, value, &path).unwrap_or_else(|| {
            Err(ConfigError(format!(
                "{source} at `{path}`: unknown {} type `{kind}` (this build has: {known})",
                section.trim_end_matches('s')
            )))
        })?;
        out.insert(name.clone(), component);
    }
    Ok(out)
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
pub(crate) mod duration {
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

    /// For `Option<Duration>` fields (with `#[serde(default)]`).
    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        deserialize(d).map(Some)
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
        let signals: Vec<_> = c.pipelines().map(|(_, s, _)| s).collect();
        assert_eq!(
            signals,
            [SignalKind::Logs, SignalKind::Metrics, SignalKind::Traces]
        );
        let ReceiverConfig::Ebpf(e) = &c.receivers["ebpf"] else {
            panic!("ebpf receiver missing")
        };
        assert!(e.uncorrelated_spans);
    }

    #[test]
    fn http_section() {
        let text = EMBEDDED_DEFAULT.replace(
            "  ebpf: {}",
            "  ebpf:\n    http:\n      max_header_bytes: 16384\n      openssl: false\n      plaintext: false",
        );
        let c = Config::parse(&text, "c.yaml").unwrap();
        let ReceiverConfig::Ebpf(e) = &c.receivers["ebpf"] else {
            panic!("ebpf receiver missing")
        };
        let http = e.probe_settings().http;
        assert_eq!(
            (http.enabled, http.plaintext, http.max_bytes, http.openssl),
            (true, false, 16384, false)
        );
        assert!(EbpfReceiver::default().http.max_header_bytes >= 4096);

        let text = EMBEDDED_DEFAULT.replace(
            "  ebpf: {}",
            "  ebpf:\n    http:\n      max_header_bytes: 100000",
        );
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(e.contains("`receivers.ebpf.http.max_header_bytes`"), "{e}");
        let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    http:\n      tls: true");
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(
            e.contains("`receivers.ebpf.http.tls`: unknown field"),
            "{e}"
        );
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
        let text = EMBEDDED_DEFAULT.replace("receivers: [otlp]\n", "receivers: [ebpf]\n");
        let e = Config::parse(&text, "c.yaml").unwrap_err().0;
        assert!(
            e.contains("the ebpf receiver produces traces and logs"),
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
    fn collector_sections_are_accepted_as_they_are() {
        let text = "
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:14317
        max_recv_msg_size_mib: 8
        include_metadata: true
      http:
        endpoint: 127.0.0.1:14318
        cors:
          allowed_origins: ['*']
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 512
    spike_limit_mib: 128
  batch:
    send_batch_size: 1000
    timeout: 5s
exporters:
  otlp/tempo:
    endpoint: tempo:4317
    tls:
      insecure: true
    headers:
      x-scope-orgid: team-a
    compression: gzip
    timeout: 30s
    retry_on_failure:
      enabled: true
      initial_interval: 1s
      max_interval: 10s
      max_elapsed_time: 60s
    sending_queue:
      enabled: true
      num_consumers: 4
      queue_size: 100
  nop: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp/tempo]
    metrics/all:
      receivers: [otlp]
      exporters: [nop]
";
        let c = Config::parse(text, "collector.yaml").unwrap();
        let ExporterConfig::Otlp(o) = &c.exporters["otlp/tempo"] else {
            panic!("otlp/tempo")
        };
        assert_eq!(o.sending_queue.queue_size, 100);
        assert_eq!(o.headers["x-scope-orgid"], "team-a");
        assert!(o.tls.as_ref().is_some_and(|t| t.insecure));
    }

    /// The Collector's `configtls` sections: server keys under a receiver, client keys under
    /// an exporter, each checked where it is.
    #[test]
    fn tls_sections() {
        let text = "
receivers:
  otlp:
    protocols:
      grpc:
        tls:
          cert_file: /etc/runbom/server.pem
          key_file: /etc/runbom/server-key.pem
          client_ca_file: /etc/runbom/clients.pem
          min_version: '1.3'
          reload_interval: 1h
      http:
        tls: { cert_file: /s.pem, key_file: /k.pem }
exporters:
  otlp:
    endpoint: tempo:4317
    tls:
      ca_file: /etc/ssl/tempo-ca.pem
      cert_file: /etc/runbom/client.pem
      key_file: /etc/runbom/client-key.pem
      server_name_override: tempo.internal
      insecure_skip_verify: false
      include_system_ca_certs_pool: true
      min_version: '1.2'
      max_version: '1.3'
  otlphttp:
    endpoint: https://collector:4318
service:
  pipelines:
    traces: { receivers: [otlp], exporters: [otlp, otlphttp] }
";
        let c = Config::parse(text, "c.yaml").unwrap();
        let ReceiverConfig::Otlp(o) = &c.receivers["otlp"] else {
            panic!("otlp receiver")
        };
        let grpc = o.protocols.grpc.as_ref().and_then(|s| s.tls.as_ref());
        assert_eq!(grpc.and_then(|t| t.min_version), Some(TlsVersion::V1_3));
        assert_eq!(
            grpc.and_then(|t| t.reload_interval),
            Some(Duration::from_hours(1))
        );
        let ExporterConfig::Otlp(n) = &c.exporters["otlp"] else {
            panic!("otlp exporter")
        };
        let tls = n
            .tls
            .as_ref()
            .map(ClientTlsConfig::settings)
            .unwrap_or_default();
        assert_eq!(tls.server_name_override.as_deref(), Some("tempo.internal"));
        assert!(tls.include_system_ca_certs_pool && !tls.insecure);

        for (from, to, error) in [
            (
                "          client_ca_file: /etc/runbom/clients.pem\n",
                "          insecure: true\n",
                "`receivers.otlp.protocols.grpc.tls.insecure`: unknown field `insecure`",
            ),
            (
                "        tls: { cert_file: /s.pem, key_file: /k.pem }",
                "        tls: { cert_file: /s.pem }",
                "`receivers.otlp.protocols.http.tls`: a receiver's TLS needs both `cert_file` and `key_file`",
            ),
            (
                "min_version: '1.3'",
                "min_version: '1.4'",
                "`receivers.otlp.protocols.grpc.tls.min_version`: \"1.4\" is not a TLS version",
            ),
            (
                "      key_file: /etc/runbom/client-key.pem\n",
                "",
                "`exporters.otlp.tls`: set both `cert_file` and `key_file`",
            ),
            (
                "      min_version: '1.2'\n      max_version: '1.3'",
                "      min_version: '1.0'\n      max_version: '1.1'",
                "`exporters.otlp.tls`: max_version 1.1 is older than TLS 1.2",
            ),
            (
                "      min_version: '1.2'\n      max_version: '1.3'",
                "      min_version: '1.3'\n      max_version: '1.2'",
                "`exporters.otlp.tls`: min_version 1.3 is greater than max_version 1.2",
            ),
            (
                "      server_name_override: tempo.internal",
                "      client_ca_file: /x.pem",
                "`exporters.otlp.tls.client_ca_file`: unknown field `client_ca_file`",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            let e = Config::parse(&text.replacen(from, to, 1), "c.yaml")
                .unwrap_err()
                .0;
            assert!(e.contains(error), "{to:?}: {e}");
        }
    }

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
        let ProcessorConfig::Aibom(a) = &c.processors["aibom"] else {
            panic!("an aibom processor")
        };
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
            let e = Config::parse(&format!("{base}{service}"), "c.yaml")
                .unwrap_err()
                .0;
            assert!(e.starts_with(want), "want {want}\n got {e}");
        }
        let typo = "processors: { aibom: { bom: b.json, wiat: 2s } }\nexporters: { nop: {} }\n\
                    receivers: { otlp: { protocols: { grpc: {} } } }\n\
                    service: { pipelines: { traces: { receivers: [otlp], processors: [aibom], exporters: [nop] } } }";
        let e = Config::parse(typo, "c.yaml").unwrap_err().0;
        assert!(
            e.starts_with("c.yaml at `processors.aibom.wiat`: unknown field `wiat`"),
            "{e}"
        );
        let bad = "processors: { aibom: { bom: b.json, ignore_endpoints: [\"ht tp://x\"] } }\nexporters: { nop: {} }\n\
                   receivers: { otlp: { protocols: { grpc: {} } } }\n\
                   service: { pipelines: { traces: { receivers: [otlp], processors: [aibom], exporters: [nop] } } }";
        let e = Config::parse(bad, "c.yaml").unwrap_err().0;
        assert!(
            e.starts_with("c.yaml at `processors.aibom.ignore_endpoints[0]`: not a URL"),
            "{e}"
        );
        let baseline = "processors: { aibom: { bom: b.json, baseline: { path: b/base.json, learn_for: 1h, payload_factor: 0.5 } } }\n\
                        exporters: { nop: {} }\nreceivers: { otlp: { protocols: { grpc: {} } } }\n\
                        service: { pipelines: { traces: { receivers: [otlp], processors: [aibom], exporters: [nop] } } }";
        let e = Config::parse(baseline, "c.yaml").unwrap_err().0;
        assert!(
            e.starts_with("c.yaml at `processors.aibom.baseline.payload_factor`: must be a number of at least 1"),
            "{e}"
        );
        let c = Config::parse(&baseline.replace("0.5", "8"), "c.yaml").unwrap();
        let ProcessorConfig::Aibom(a) = &c.processors["aibom"] else {
            panic!("an aibom processor")
        };
        let b = a.baseline.as_ref().expect("a baseline");
        assert_eq!(
            (b.learn_for, b.payload_floor),
            (Duration::from_hours(1), 4096)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration::parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration::parse("5m"), Some(Duration::from_mins(5)));
        assert_eq!(duration::parse("5"), None);
        assert_eq!(duration::parse("fast"), None);
    }
}

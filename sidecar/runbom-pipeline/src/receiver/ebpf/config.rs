//! The `ebpf` receiver's section: what the probes capture, and its checks against what the
//! kernel side allows.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{
    SignalKind,
    component::{ReceiverConfig, ReceiverContext, StartFuture},
    config::section::{ConfigError, Section},
};

/// Most conversion tasks (`workers`).
const MAX_WORKERS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfConfig {
    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub ring_buffer_bytes: u32,
    pub exec: ExecSettings,
    pub file: FileSettings,
    pub dns: DnsSettings,
    pub http: HttpSettings,
    pub mcp: McpSettings,
    /// When the ring reader is woken and what is shed first when the ring fills.
    pub overload: super::overload::OverloadSettings,
    /// Export events that no application trace claimed as spans too (they are always logs).
    pub uncorrelated_spans: bool,
    /// Tasks converting events into OTLP when no correlate processor takes them, events shared
    /// among them by process (1 to 256; default: the CPU count).
    pub workers: usize,
    /// Serve the kernel events of pods with a runbom sidecar on a Unix socket (node agent).
    pub sidecars: Option<crate::node_agent::config::SidecarsConfig>,
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
    /// Bytes captured of a TLS response from its status line on (LLM responses are read for
    /// `gen_ai.*`); 0: the status line only.
    pub max_response_bytes: u32,
    /// Reading LLM API exchanges into `gen_ai.*` attributes.
    pub genai: GenAiSettings,
}

/// `http.genai`: reading LLM API exchanges.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenAiSettings {
    /// Read requests to LLM APIs and their responses (usage, finish reasons, tool calls).
    pub enabled: bool,
    /// Also keep the arguments of the tool calls the model asked for (redacted). Message
    /// contents are never exported.
    pub capture_content: bool,
}

impl Default for GenAiSettings {
    fn default() -> Self {
        EbpfConfig::default().http.genai
    }
}

/// `mcp.client` / `mcp.server` capture (JSON-RPC at the writes `http.plaintext` watches).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSettings {
    /// Look for MCP's JSON-RPC messages in socket and pipe writes.
    pub enabled: bool,
    /// Export each `tools/call`'s arguments as `gen_ai.tool.call.arguments` (redacted, at
    /// most 1 KiB). Off: arguments may carry personal data.
    pub capture_arguments: bool,
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
    /// Reported prefixes whose opens are shed first under overload (`file.open.low_value`).
    pub low_value: Vec<String>,
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

impl Default for EbpfConfig {
    fn default() -> Self {
        let probes = runbom_kernel::ProbeSettings::default();
        Self {
            ring_buffer_bytes: probes.ring_bytes,
            exec: ExecSettings {
                argv_max_bytes: probes.argv_max,
            },
            file: FileSettings {
                include: probes.file_include,
                exclude: probes.file_exclude,
                low_value: probes.file_low_value,
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
                max_response_bytes: probes.http.max_response_bytes,
                genai: GenAiSettings {
                    enabled: probes.http.genai.is_some(),
                    capture_content: probes.http.genai.is_some_and(|g| g.capture_content),
                },
            },
            mcp: McpSettings {
                enabled: probes.mcp.enabled,
                capture_arguments: probes.mcp.capture_arguments,
            },
            overload: super::overload::OverloadSettings::default(),
            uncorrelated_spans: true,
            workers: super::default_workers(),
            sidecars: None,
        }
    }
}

impl Default for ExecSettings {
    fn default() -> Self {
        EbpfConfig::default().exec
    }
}

impl Default for FileSettings {
    fn default() -> Self {
        EbpfConfig::default().file
    }
}

impl Default for DnsSettings {
    fn default() -> Self {
        EbpfConfig::default().dns
    }
}

impl Default for McpSettings {
    fn default() -> Self {
        EbpfConfig::default().mcp
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        EbpfConfig::default().http
    }
}

impl EbpfConfig {
    #[must_use]
    pub fn probe_settings(&self) -> runbom_kernel::ProbeSettings {
        runbom_kernel::ProbeSettings {
            ring_bytes: self.ring_buffer_bytes,
            argv_max: self.exec.argv_max_bytes,
            file_include: self.file.include.clone(),
            file_exclude: self.file.exclude.clone(),
            file_low_value: self.file.low_value.clone(),
            watch_pids: self.file.watch_pids.clone(),
            watch_cgroups: self.file.watch_cgroups.clone(),
            dns_ports: self.dns.ports.clone(),
            http: runbom_kernel::HttpCapture {
                enabled: self.http.enabled,
                plaintext: self.http.plaintext,
                max_bytes: self.http.max_header_bytes,
                openssl: self.http.openssl,
                max_response_bytes: self.http.max_response_bytes,
                genai: self.http.genai.enabled.then_some(runbom_genai::Options {
                    capture_content: self.http.genai.capture_content,
                }),
            },
            mcp: runbom_kernel::McpCapture {
                enabled: self.mcp.enabled,
                capture_arguments: self.mcp.capture_arguments,
            },
            overload: self.overload.overload(),
        }
    }
}

impl ReceiverConfig for EbpfConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        let ring = self.ring_buffer_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            return Err(at
                .at("ring_buffer_bytes")
                .error(format!("{ring} must be a power of two of at least 4096")));
        }
        // The kernel side keeps one byte of its argv buffer for the terminating NUL.
        let argv_max = runbom_common::ARGV_MAX as u32;
        if self.exec.argv_max_bytes >= argv_max {
            return Err(at.at("exec.argv_max_bytes").error(format!(
                "{} is larger than the kernel side allows (at most {})",
                self.exec.argv_max_bytes,
                argv_max - 1
            )));
        }
        let http_max = runbom_common::HTTP_DATA_MAX as u32;
        if !(64..=http_max).contains(&self.http.max_header_bytes) {
            return Err(at.at("http.max_header_bytes").error(format!(
                "{} is outside what the kernel side allows (64 to {http_max})",
                self.http.max_header_bytes
            )));
        }
        let response_max = runbom_common::HTTP_RESPONSE_MAX;
        if self.http.max_response_bytes > response_max {
            return Err(at.at("http.max_response_bytes").error(format!(
                "{} is larger than the kernel side allows (at most {response_max})",
                self.http.max_response_bytes
            )));
        }
        for (field, list) in [
            ("include", &self.file.include),
            ("exclude", &self.file.exclude),
            ("low_value", &self.file.low_value),
        ] {
            for (i, prefix) in list.iter().enumerate() {
                if prefix.is_empty() || prefix.len() >= runbom_common::PATH_MAX {
                    return Err(at.at(&format!("file.{field}[{i}]")).error(format!(
                        "prefix {prefix:?} must be 1 to {} bytes long",
                        runbom_common::PATH_MAX - 1
                    )));
                }
            }
        }
        self.overload.check(&at.at("overload"), ring)?;
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(at
                .at("workers")
                .error(format!("{} must be 1 to {MAX_WORKERS}", self.workers)));
        }
        if let Some(s) = &self.sidecars {
            s.check(&at.at("sidecars"))?;
        }
        Ok(())
    }

    fn refuses(&self, signal: SignalKind) -> Option<String> {
        (signal == SignalKind::Metrics)
            .then(|| "the ebpf receiver produces traces and logs, not metrics".into())
    }

    fn kernel_events(&self) -> bool {
        true
    }

    fn start<'a>(&'a self, _name: &'a str, ctx: ReceiverContext<'a>) -> StartFuture<'a> {
        Box::pin(std::future::ready(super::start(
            &self.probe_settings(),
            self.uncorrelated_spans,
            self.workers,
            self.sidecars.as_ref(),
            ctx,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::EbpfConfig;
    use crate::config::{EMBEDDED_DEFAULT, assert_refused, model::Config};

    #[test]
    fn http_section() {
        let text = EMBEDDED_DEFAULT.replace(
            "  ebpf: {}",
            "  ebpf:\n    http:\n      max_header_bytes: 16384\n      openssl: false\n      plaintext: false",
        );
        let c = Config::parse(&text, "c.yaml").unwrap();
        let e = c
            .receiver::<EbpfConfig>("ebpf")
            .expect("ebpf receiver missing");
        let http = e.probe_settings().http;
        assert_eq!(
            (http.enabled, http.plaintext, http.max_bytes, http.openssl),
            (true, false, 16384, false)
        );
        assert!(EbpfConfig::default().http.max_header_bytes >= 4096);

        let text = EMBEDDED_DEFAULT.replace(
            "  ebpf: {}",
            "  ebpf:\n    http:\n      max_header_bytes: 100000",
        );
        assert_refused(&text, "`receivers.ebpf.http.max_header_bytes`");
        let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    http:\n      tls: true");
        assert_refused(&text, "`receivers.ebpf.http.tls`: unknown field");
    }

    #[test]
    fn workers() {
        assert!(EbpfConfig::default().workers >= 1, "default: the CPU count");
        let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    workers: 3");
        let c = Config::parse(&text, "c.yaml").unwrap();
        let e = c
            .receiver::<EbpfConfig>("ebpf")
            .expect("ebpf receiver missing");
        assert_eq!(e.workers, 3);
        let text = EMBEDDED_DEFAULT.replace("  ebpf: {}", "  ebpf:\n    workers: 0");
        assert_refused(&text, "`receivers.ebpf.workers`: 0 must be 1 to 256");
    }

    #[test]
    fn mcp_section() {
        let mcp = EbpfConfig::default().probe_settings().mcp;
        assert!(mcp.enabled && !mcp.capture_arguments);
        let text = EMBEDDED_DEFAULT.replace(
            "  ebpf: {}",
            "  ebpf:\n    mcp:\n      enabled: false\n      capture_arguments: true",
        );
        let c = Config::parse(&text, "c.yaml").unwrap();
        let e = c
            .receiver::<EbpfConfig>("ebpf")
            .expect("ebpf receiver missing");
        let mcp = e.probe_settings().mcp;
        assert!(!mcp.enabled && mcp.capture_arguments);
        let text = EMBEDDED_DEFAULT.replace(
            "  ebpf: {}",
            "  ebpf:\n    mcp:\n      capture_results: true",
        );
        assert_refused(&text, "`receivers.ebpf.mcp.capture_results`: unknown field");
    }
}

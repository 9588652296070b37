//! runbom configurations as the tests write them, and the set-up most of them repeat: runbom
//! as a sidecar with one `otlp` receiver on free ports, started and waited for.

use std::path::{Path, PathBuf};

use crate::{Ready, Runbom, TempDir, free_port};

/// The `service:` section: `/metrics` on `metrics_address` (`none` for no admin endpoint) and
/// `pipelines`, the body of `service.pipelines` (see [`pipeline`]).
#[must_use]
pub fn service(metrics_address: &str, pipelines: &str) -> String {
    format!(
        "service:
  telemetry:
    metrics:
      address: {metrics_address}
  pipelines:
{pipelines}"
    )
}

/// One pipeline of `service.pipelines`; its `processors` line only when there are any.
#[must_use]
pub fn pipeline(
    signal: &str,
    receivers: &[&str],
    processors: &[&str],
    exporters: &[&str],
) -> String {
    let processors = if processors.is_empty() {
        String::new()
    } else {
        format!("      processors: [{}]\n", processors.join(", "))
    };
    format!(
        "    {signal}:\n      receivers: [{}]\n{processors}      exporters: [{}]\n",
        receivers.join(", "),
        exporters.join(", ")
    )
}

/// A `traces` and a `logs` pipeline, both from `receivers` through `processors` to
/// `exporters`.
#[must_use]
pub fn traces_and_logs(receivers: &[&str], processors: &[&str], exporters: &[&str]) -> String {
    ["traces", "logs"]
        .map(|signal| pipeline(signal, receivers, processors, exporters))
        .concat()
}

/// `processors:` with a `batch` of `timeout`, and `exporters:` with a `file` exporter writing
/// into `out`.
#[must_use]
pub fn batch_to_file(timeout: &str, out: &Path) -> String {
    format!(
        "processors:
  batch:
    timeout: {timeout}
exporters:
  file:
    path: {}",
        out.display()
    )
}

/// runbom with its kernel probes only: the `ebpf` receiver (its section's body `ebpf`, indented
/// by four spaces: at least `file:` with what is watched), a `batch` of 200 ms and a `file`
/// exporter into `dir/out` (returned), for traces and logs, no admin endpoint; started in `dir`
/// and waited for until its probes are attached.
#[must_use]
pub fn start_kernel_to_file(bin: &Path, dir: &TempDir, ebpf: &str) -> (Runbom, PathBuf) {
    let out = dir.join("out");
    let config = format!(
        "receivers:\n  ebpf:\n{ebpf}\n{}\n{}",
        batch_to_file("200ms", &out),
        service("none", &traces_and_logs(&["ebpf"], &["batch"], &["file"])),
    );
    let config = dir.write("runbom.yaml", &config);
    (
        Runbom::start(bin, &config, dir.path(), Ready::ProbesAttached),
        out,
    )
}

/// runbom as a Collector-style sidecar: one `otlp` receiver (gRPC and HTTP) and the admin
/// endpoint, each on a free loopback port.
#[derive(Clone, Copy, Debug)]
pub struct SidecarConfig {
    pub grpc: u16,
    pub http: u16,
    pub admin: u16,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SidecarConfig {
    /// Picks three free ports.
    #[must_use]
    pub fn new() -> Self {
        Self {
            grpc: free_port(),
            http: free_port(),
            admin: free_port(),
        }
    }

    /// The configuration: the `otlp` receiver, then `rest` (the `processors:` and `exporters:`
    /// sections), then [`service`] with `pipelines`.
    #[must_use]
    pub fn yaml(&self, rest: &str, pipelines: &str) -> String {
        format!(
            "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
{rest}
{service}",
            grpc = self.grpc,
            http = self.http,
            service = service(&format!("127.0.0.1:{}", self.admin), pipelines),
        )
    }

    /// [`SidecarConfig::yaml`] with one `traces` pipeline from `otlp` to a `nop` exporter;
    /// `grpc_extra` and `http_extra` (lines indented by eight spaces) are added to the gRPC and
    /// HTTP servers' sections.
    #[must_use]
    pub fn discarding_yaml(&self, grpc_extra: &str, http_extra: &str) -> String {
        let server = |port: u16, extra: &str| {
            (
                format!("        endpoint: 127.0.0.1:{port}\n"),
                format!("        endpoint: 127.0.0.1:{port}\n{extra}"),
            )
        };
        let (grpc, grpc_with) = server(self.grpc, grpc_extra);
        let (http, http_with) = server(self.http, http_extra);
        self.yaml(
            "exporters:\n  nop: {}\n",
            "    traces: { receivers: [otlp], exporters: [nop] }\n",
        )
        .replacen(&grpc, &grpc_with, 1)
        .replacen(&http, &http_with, 1)
    }

    /// Writes [`SidecarConfig::yaml`] to `dir/runbom.yaml`, starts `bin` on it in `dir` and
    /// waits until `/readyz` answers 200 (every receiver listens).
    #[must_use]
    pub fn start(&self, bin: &Path, dir: &TempDir, rest: &str, pipelines: &str) -> Runbom {
        let config = dir.write("runbom.yaml", &self.yaml(rest, pipelines));
        Runbom::start(bin, &config, dir.path(), Ready::Admin(self.admin))
    }

    /// [`SidecarConfig::start`] with [`batch_to_file`]: a `batch` processor of `timeout` and a
    /// `file` exporter writing into `dir/out`, which is returned.
    #[must_use]
    pub fn start_to_file(
        &self,
        bin: &Path,
        dir: &TempDir,
        timeout: &str,
        pipelines: &str,
    ) -> (Runbom, PathBuf) {
        let out = dir.join("out");
        let runbom = self.start(bin, dir, &batch_to_file(timeout, &out), pipelines);
        (runbom, out)
    }

    /// `127.0.0.1:<grpc port>`.
    #[must_use]
    pub fn grpc_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    /// `127.0.0.1:<http port>`.
    #[must_use]
    pub fn http_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_leave_out_empty_processors() {
        assert_eq!(
            pipeline("traces", &["otlp"], &["batch"], &["file", "nop"]),
            "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [file, nop]\n"
        );
        assert_eq!(
            pipeline("logs", &["ebpf"], &[], &["debug"]),
            "    logs:\n      receivers: [ebpf]\n      exporters: [debug]\n"
        );
    }

    #[test]
    fn the_sidecar_configuration_reads_as_the_tests_wrote_it() {
        let ports = SidecarConfig {
            grpc: 1,
            http: 2,
            admin: 3,
        };
        let yaml = ports.yaml(
            "exporters:\n  nop: {}",
            &pipeline("traces", &["otlp"], &[], &["nop"]),
        );
        assert_eq!(
            yaml,
            "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:1
      http:
        endpoint: 127.0.0.1:2
exporters:
  nop: {}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:3
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
"
        );
    }
}

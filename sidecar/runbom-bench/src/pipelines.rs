//! What runbom runs in the `sustained` benchmark: the embedded defaults, or the kernel path
//! alone (the `ebpf` receiver, `memory_limiter` and `batch` as in the defaults, no `correlate`,
//! no `aibom`) into the `otlp` exporter or the `file` exporter, or into `otlp` with a logs
//! pipeline only and one log record per event; and the OTLP/gRPC sink the `otlp` exporter sends
//! to.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use anyhow::Result;
use runbom_testkit::{Ready, config::SidecarConfig, runbom::Stdout};

/// A configuration of the benchmarked runbom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pipeline {
    /// The embedded defaults (`correlate`, `aibom`, the `file` exporter), OTLP ports moved.
    Defaults,
    /// Kernel records decoded, enriched, converted and encoded: `ebpf` → `memory_limiter` →
    /// `batch` → the `otlp` exporter (protobuf over gRPC, no compression) to a local sink.
    Otlp,
    /// The same into the `otlphttp` exporter (protobuf over HTTP/1.1, no compression).
    Otlphttp,
    /// The same into the `file` exporter (OTLP/JSON lines), as the defaults write them.
    File,
    /// The kernel path into the `otlp` exporter with a logs pipeline only and no spans for the
    /// events (`uncorrelated_spans: false`): one item per event, where the other kernel-path
    /// conditions export each event twice (a span and a log record).
    OtlpLogs,
}

impl Pipeline {
    /// Whether it sends to the [`Sink`].
    pub fn needs_sink(self) -> bool {
        matches!(self, Self::Otlp | Self::Otlphttp | Self::OtlpLogs)
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Defaults => "defaults",
            Self::Otlp => "otlp",
            Self::Otlphttp => "otlphttp",
            Self::File => "file",
            Self::OtlpLogs => "otlp-logs",
        })
    }
}

/// Writes the configuration of `pipeline` into `work` and returns its path. `workers` is the
/// defaults' `processors.correlate.workers`; `sink` where the `otlp` and `otlphttp` exporters send.
pub fn config(pipeline: Pipeline, work: &Path, workers: usize, sink: &Sink) -> Result<PathBuf> {
    if pipeline == Pipeline::Defaults {
        let config = crate::mixed::config(work)?;
        let text = std::fs::read_to_string(&config)?.replacen(
            "  correlate: {}",
            &format!("  correlate:\n    workers: {workers}"),
            1,
        );
        std::fs::write(&config, text)?;
        return Ok(config);
    }
    let path = work.join("runbom-kernel-path.yaml");
    std::fs::write(&path, kernel_path_yaml(pipeline, sink))?;
    Ok(path)
}

/// The kernel path alone into one exporter; `/metrics` off.
fn kernel_path_yaml(pipeline: Pipeline, sink: &Sink) -> String {
    let exporter = match pipeline {
        Pipeline::Otlp | Pipeline::OtlpLogs => format!(
            "  otlp:\n    endpoint: http://{}\n    compression: none\n",
            sink.grpc
        ),
        Pipeline::Otlphttp => format!(
            "  otlphttp:\n    endpoint: http://{}\n    compression: none\n",
            sink.http
        ),
        Pipeline::File | Pipeline::Defaults => "  file:\n    path: ./runbom-data\n".to_owned(),
    };
    let name = match pipeline {
        Pipeline::Otlp | Pipeline::OtlpLogs => "otlp",
        Pipeline::Otlphttp => "otlphttp",
        Pipeline::File | Pipeline::Defaults => "file",
    };
    let processors = ["memory_limiter", "batch"];
    let (ebpf, pipelines) = if pipeline == Pipeline::OtlpLogs {
        let logs = runbom_testkit::config::pipeline("logs", &["ebpf"], &processors, &[name]);
        ("\n    uncorrelated_spans: false", logs)
    } else {
        let both = runbom_testkit::config::traces_and_logs(&["ebpf"], &processors, &[name]);
        (" {}", both)
    };
    format!(
        "receivers:\n  ebpf:{ebpf}\n\
         processors:\n  memory_limiter:\n    check_interval: 1s\n    limit_mib: 1024\n  batch: {{}}\n\
         exporters:\n{exporter}{}",
        runbom_testkit::config::service("none", &pipelines)
    )
}

/// A second runbom that receives OTLP (gRPC and HTTP) and discards it (`nop` exporter): a real
/// OTLP receiver for the `otlp` and `otlphttp` exporters to send to. Its CPU is not counted.
#[derive(Default)]
pub struct Sink {
    runbom: Option<runbom_testkit::Runbom>,
    /// `127.0.0.1:<port>` of its OTLP/gRPC and OTLP/HTTP receivers.
    grpc: String,
    http: String,
}

impl Sink {
    /// Starts `bin` as the sink in `dir` and waits until its receivers listen.
    pub fn start(bin: &Path, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ports = SidecarConfig::new();
        let yaml = ports.yaml(
            "exporters:\n  nop: {}\n",
            &runbom_testkit::config::traces_and_logs(&["otlp"], &[], &["nop"]),
        );
        // A batch of 8 192 kernel records encodes to 4–5 MB: above the usual 4 MiB.
        let mut yaml = yaml;
        for endpoint in [ports.grpc_endpoint(), ports.http_endpoint()] {
            let line = format!("        endpoint: {endpoint}\n");
            yaml = yaml.replacen(
                &line,
                &format!("{line}        max_recv_msg_size_mib: 64\n"),
                1,
            );
        }
        let config = dir.join("sink.yaml");
        std::fs::write(&config, yaml)?;
        let mut cmd = runbom_testkit::Runbom::command(bin, &config, dir);
        let runbom = runbom_testkit::Runbom::try_spawn(
            &mut cmd,
            dir,
            Ready::Admin(ports.admin),
            Stdout::Discard,
        )?;
        Ok(Self {
            runbom: Some(runbom),
            grpc: ports.grpc_endpoint(),
            http: ports.http_endpoint(),
        })
    }

    /// Stops the sink (SIGTERM); a sink that was never started has nothing to stop.
    pub fn stop(self) {
        drop(self.runbom);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_path_has_neither_correlate_nor_aibom() {
        let sink = Sink {
            runbom: None,
            grpc: "127.0.0.1:1".into(),
            http: "127.0.0.1:2".into(),
        };
        let yaml = kernel_path_yaml(Pipeline::Otlp, &sink);
        assert!(
            !yaml.contains("correlate") && !yaml.contains("aibom"),
            "{yaml}"
        );
        assert!(yaml.contains("exporters: [otlp]") && yaml.contains("http://127.0.0.1:1"));
        let yaml = kernel_path_yaml(Pipeline::Otlphttp, &sink);
        assert!(yaml.contains("exporters: [otlphttp]") && yaml.contains("http://127.0.0.1:2"));
        assert!(kernel_path_yaml(Pipeline::File, &sink).contains("exporters: [file]"));
        let yaml = kernel_path_yaml(Pipeline::OtlpLogs, &sink);
        assert!(yaml.contains("uncorrelated_spans: false") && yaml.contains("exporters: [otlp]"));
        assert!(!yaml.contains("traces:"), "{yaml}");
    }
}

//! The real OTLP receiver, `tests/otlp_sink.py` (the protocol's own Python bindings on grpcio
//! and `http.server`), on free loopback ports.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{Proc, net::START_TIMEOUT, python_bin, test_script};

/// `tests/otlp_sink.py`, recording every request it gets into `sink.jsonl`.
pub struct Sink {
    proc: Proc,
    pub grpc_port: u16,
    pub http_port: u16,
    pub out: PathBuf,
}

impl Sink {
    /// Starts the sink in `dir` and waits until it prints `READY grpc=N http=N`.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, 0)
    }

    /// Like [`Sink::start`], its gRPC server on `grpc_port` (0: any free port), for a
    /// downstream that comes up where runbom was already sending.
    #[must_use]
    pub fn start_on(dir: &Path, grpc_port: u16) -> Self {
        let out = dir.join("sink.jsonl");
        let mut cmd = Command::new(python_bin());
        cmd.arg(test_script("otlp_sink.py"))
            .arg("--out")
            .arg(&out)
            .args(["--grpc-port", &grpc_port.to_string(), "--http-port", "0"])
            .args(["--max-lifetime", "600"]);
        let mut proc = Proc::spawn_logged("otlp_sink", dir, &mut cmd);
        let deadline = Instant::now() + START_TIMEOUT;
        let line = loop {
            let stdout = proc.stdout_text();
            if let Some(line) = stdout.lines().find(|l| l.starts_with("READY")) {
                break line.to_owned();
            }
            assert!(
                proc.running() && Instant::now() < deadline,
                "otlp_sink.py did not print READY within {START_TIMEOUT:?}\n{}",
                proc.output()
            );
            thread::sleep(Duration::from_millis(50));
        };
        let port = |key: &str| -> u16 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("otlp_sink.py printed {line:?}, not READY grpc=N http=N"))
        };
        Self {
            grpc_port: port("grpc="),
            http_port: port("http="),
            proc,
            out,
        }
    }

    /// `sink:FILE[:transport]`, a source for [`crate::python::canon`].
    #[must_use]
    pub fn source(&self, transport: &str) -> String {
        format!("sink:{}:{transport}", self.out.display())
    }

    /// Stops it (SIGTERM, bounded wait) and asserts it exited cleanly: everything it recorded
    /// is on disk.
    pub fn finish(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let status = self.proc.stop(Duration::from_secs(15));
        assert!(
            status.success(),
            "otlp_sink.py did not exit cleanly after SIGTERM ({status})\n{}",
            self.proc.output()
        );
    }

    /// Stops it (as [`Sink::finish`] does) and returns every request it recorded, one JSON value per
    /// line, plus the file's raw text.
    #[must_use]
    pub fn stop(mut self) -> (Vec<serde_json::Value>, String) {
        self.terminate();
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let records = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!(
                        "{} line {}: not JSON ({e}): {line}",
                        self.out.display(),
                        i + 1
                    )
                })
            })
            .collect();
        (records, text)
    }
}

//! Real peers and observers besides the sink: rotel's agent, a DNS server, an RSS sampler.

use std::{
    fs,
    net::UdpSocket,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use crate::{Proc, free_port, fs::rotel_bin, strip_ansi, wait_listening};

/// rotel's agent on free ports, with extra arguments (exporter, debug log).
pub struct Rotel {
    pub proc: Proc,
    pub grpc_port: u16,
}

impl Rotel {
    #[must_use]
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        let (grpc_port, http_port) = (free_port(), free_port());
        let mut cmd = Command::new(rotel_bin());
        cmd.arg("start")
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{grpc_port}"))
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{http_port}"))
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.join("rotel.log"))
            .args(extra)
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn_logged("rotel", dir, &mut cmd);
        wait_listening(grpc_port, &mut proc);
        wait_listening(http_port, &mut proc);
        Self { proc, grpc_port }
    }

    /// Stops it (it flushes its batches on SIGTERM) and returns its stdout, ANSI colours removed.
    #[must_use]
    pub fn stop(mut self) -> String {
        let status = self.proc.stop(Duration::from_secs(20));
        assert!(
            status.success() || status.code().is_none(),
            "rotel exited with {status}\n{}",
            self.proc.output()
        );
        strip_ansi(&self.proc.stdout_text())
    }
}

/// A DNS server on 127.0.0.1 (a free UDP port) answering every query with NXDOMAIN; records
/// the questions' raw datagrams it received.
pub struct DnsServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Vec<u8>>>>,
}

impl DnsServer {
    #[must_use]
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on 127.0.0.1");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set_read_timeout");
        let port = socket.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let query = &buf[..n];
                    seen.push(query.to_vec());
                    if n < 12 {
                        continue;
                    }
                    // Same id and question; QR=1, RD copied, RA=1, RCODE=3 (NXDOMAIN).
                    let mut answer = query.to_vec();
                    answer[2] = 0x80 | (query[2] & 0x01);
                    answer[3] = 0x83;
                    answer[6..12].fill(0);
                    let _ = socket.send_to(&answer, from);
                }
                seen
            })
        };
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the server; returns the datagrams it received.
    #[must_use]
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("DNS server thread"))
            .unwrap_or_default()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status), if it still runs.
#[must_use]
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status.
#[must_use]
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every 50 ms on a thread until stopped; keeps the largest value.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<usize>>,
}

impl RssSampler {
    #[must_use]
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            thread::spawn(move || {
                let mut samples = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                        samples += 1;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
                samples
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The largest RSS seen so far, KiB.
    #[must_use]
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stops sampling; returns the peak (KiB) and the number of samples taken.
    #[must_use]
    pub fn finish(mut self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .thread
            .take()
            .map(|t| t.join().expect("sampler thread"))
            .unwrap_or_default();
        (self.peak_kib(), samples)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

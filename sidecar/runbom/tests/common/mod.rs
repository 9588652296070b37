//! Helpers shared by runbom's integration tests: scratch directories, child processes that are
//! always killed (every wait is bounded), the real OTLP receiver (`tests/otlp_sink.py`), runbom
//! itself, and a small DNS server.
//!
//! Nothing here mocks runbom's peers: the receiver is the OpenTelemetry protocol's own Python
//! bindings on grpcio and `http.server`, the workload is a real process doing real syscalls.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

pub mod items;

use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// What runbom logs on stderr once its probes are attached.
pub const READY_LINE: &str = "probes attached; watching";

/// How long runbom may take to load and attach its probes.
pub const READY_TIMEOUT: Duration = Duration::from_mins(1);
/// How long runbom may take to drain and export after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_mins(1);

/// The runbom binary under test.
#[must_use]
pub fn runbom_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runbom"))
}

/// The workspace root (`/work/main`), two levels above this package.
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the package lives two levels below the workspace root")
        .to_path_buf()
}

/// The project's Python (the venv that `scripts/setup.sh` creates), with a clear hint if missing.
#[must_use]
pub fn python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` (as root) to create the test venv",
        python.display()
    );
    python
}

/// A file of the workspace's `tests/` directory.
#[must_use]
pub fn test_script(name: &str) -> PathBuf {
    let path = workspace_root().join("tests").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A directory under /tmp, unique to one test, removed when dropped — and kept (its path
/// printed) when the test failed, for a look at the configuration, logs and sink output.
pub struct TempDir(PathBuf);

impl TempDir {
    #[must_use]
    pub fn new(label: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "runbom-it-{label}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os("RUNBOM_KEEP_TEST_DIRS").is_some() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, unless it already exited:
/// a failing test never leaves runbom, the sink or the workload behind.
pub struct Guard {
    pub child: Child,
    pub what: String,
}

impl Guard {
    #[must_use]
    pub fn spawn(what: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
        Self {
            child,
            what: what.to_owned(),
        }
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        let r = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            r,
            0,
            "kill(SIGTERM) of {} failed: {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a pipe to its end on a thread; the result arrives on the returned channel.
fn read_to_end_async<R: std::io::Read + Send + 'static>(mut pipe: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `cmd` to completion with stdout and stderr captured, killing it (and failing the test)
/// if it runs longer than `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Guard::spawn(&format!("{cmd:?}"), cmd);
    let stdout = read_to_end_async(guard.child.stdout.take().expect("piped stdout"));
    let stderr = read_to_end_async(guard.child.stderr.take().expect("piped stderr"));
    let status = guard.wait_timeout(timeout);
    // The pipes close when the process exits (it starts no children of its own).
    let collect =
        |rx: &mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let (stdout, stderr) = (collect(&stdout), collect(&stderr));
    let Some(status) = status else {
        drop(guard); // kills it
        panic!(
            "{cmd:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A `runbom` command with the environment variables that change its behaviour removed.
#[must_use]
pub fn runbom_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for var in [
        "RUNBOM_LOG",
        "RUNBOM_KERNEL_BTF",
        "RUNBOM_SELFTEST_VERIFIER_REJECT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The real OTLP receiver, `tests/otlp_sink.py`, on free loopback ports.
pub struct Sink {
    guard: Guard,
    pub grpc_port: u16,
    pub http_port: u16,
    pub out: PathBuf,
    stderr: PathBuf,
}

impl Sink {
    /// Starts the sink, writing what it receives to `dir/sink.jsonl`, and waits for READY.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let out = dir.join("sink.jsonl");
        let stderr = dir.join("sink.stderr");
        let mut cmd = Command::new(python());
        cmd.arg(test_script("otlp_sink.py"))
            .arg("--out")
            .arg(&out)
            .args(["--grpc-port", "0", "--http-port", "0"])
            .args(["--max-lifetime", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&stderr).expect("create sink.stderr"));
        let mut guard = Guard::spawn("otlp_sink.py", &mut cmd);
        let stdout = guard.child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(30));
        let Ok(line) = ready else {
            let status = guard.wait_timeout(Duration::from_millis(100));
            panic!(
                "otlp_sink.py did not print READY within 30 s (exit: {status:?}); stderr:\n{}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
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
            guard,
            out,
            stderr,
        }
    }

    /// Stops the sink (SIGTERM, bounded wait) and returns every request it recorded, one JSON
    /// value per line, plus the file's raw text.
    #[must_use]
    pub fn stop(mut self) -> (Vec<serde_json::Value>, String) {
        self.guard.terminate();
        let status = self.guard.wait_timeout(Duration::from_secs(15));
        let stderr = fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "otlp_sink.py did not exit cleanly after SIGTERM ({status:?}); stderr:\n{stderr}"
        );
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

/// A running `runbom run`, its stderr collected as it comes.
pub struct Runbom {
    guard: Guard,
    log: Arc<Mutex<String>>,
    lines: mpsc::Receiver<String>,
}

impl Runbom {
    /// Starts `runbom run --config CONFIG` in `cwd` and waits until its probes are attached.
    #[must_use]
    pub fn start(config: &Path, cwd: &Path) -> Self {
        let mut cmd = runbom_command(&runbom_bin());
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut guard = Guard::spawn("runbom run", &mut cmd);
        let stderr = guard.child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut log = log
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        log.push_str(&line);
                        log.push('\n');
                    }
                    let _ = tx.send(line);
                }
            });
        }
        let runbom = Self { guard, log, lines };
        runbom.wait_ready();
        runbom
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(READY_LINE) => return,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "runbom did not log {READY_LINE:?} within {READY_TIMEOUT:?}; stderr so far:\n{}",
                    self.log()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "runbom exited before logging {READY_LINE:?}; stderr:\n{}",
                    self.log()
                ),
            }
        }
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// What runbom wrote on stderr so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// SIGTERM, then a bounded wait for the exit; returns the status and the whole stderr.
    #[must_use]
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.guard.terminate();
        let Some(status) = self.guard.wait_timeout(STOP_TIMEOUT) else {
            panic!(
                "runbom did not stop within {STOP_TIMEOUT:?} of SIGTERM; stderr so far:\n{}",
                self.log()
            );
        };
        // The reader thread ends at EOF, which follows the exit.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {}
        (status, self.log())
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

/// Lines of `text` indented, for failure messages.
#[must_use]
pub fn indent(text: &str) -> String {
    text.lines().fold(String::new(), |mut out, l| {
        let _ = writeln!(out, "    {l}");
        out
    })
}

/// A loopback port nothing listens on now.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

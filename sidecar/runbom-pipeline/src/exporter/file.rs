//! File exporter: OTLP/JSON, one export request per line, in `traces.jsonl`, `logs.jsonl` and
//! `metrics.jsonl` of a directory (the format of the Collector's `file` exporter, readable by any OTLP/JSON
//! tool).
//!
//! The data is evidence: the directory is made `0700` and the files `0600`, whoever runbom's
//! umask allows. Each file is rotated as the Collector's `rotation` settings say (by default,
//! at 100 MiB, keeping 100 backups): `traces.jsonl` becomes
//! `traces-2026-12-05T19-05-12.345.jsonl` (UTC), and the oldest backups beyond `max_backups`
//! or `max_days` are removed, so the directory is bounded.
//!
//! What is written is dropped from the page cache once it is on disk (`page_cache: drop`, the
//! default): every [`DROP_EVERY`] bytes the exporter asks the kernel to write the file back and
//! to drop the pages already written back. A node agent's evidence is written at up to
//! 100 MB/s and read rarely; kept, it would push other programs' files out of the cache. The
//! freed pages are also what the next writes get: on a VM whose host takes back the guest's
//! free memory (virtio-balloon free page reporting), writing into pages the host has to
//! fault in again costs several times the copy itself.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use runbom_otlp::{
    json::signal_files,
    signal::{Signal, SignalKind},
};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{
    buffer::KeptBuffer,
    error::ExportError,
    export::{BoxExporter, ExportFuture, Exporter},
};
use crate::{
    component::ExporterConfig,
    config::{ConfigError, Section},
};

/// The `file` exporter's section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExporterConfig {
    /// Directory that receives `traces.jsonl` and `logs.jsonl`.
    pub path: PathBuf,
    /// When files are rotated; without the section, the Collector's defaults.
    #[serde(default)]
    pub rotation: Rotation,
    /// What becomes of the written pages in the page cache.
    #[serde(default)]
    pub page_cache: PageCache,
}

/// `page_cache`: drop what was written once it is on disk, or leave it to the kernel.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PageCache {
    #[default]
    Drop,
    Keep,
}

/// With `page_cache: drop`, the written pages are dropped every this many bytes written.
pub const DROP_EVERY: u64 = 32 << 20;

/// The Collector's `rotation` keys.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// A file is rotated once it holds this many MiB.
    #[serde(default = "default_max_megabytes")]
    pub max_megabytes: u64,
    /// Backups older than this many days are removed (0: no age limit).
    #[serde(default)]
    pub max_days: u64,
    /// At most this many backups per file are kept (0: no count limit).
    #[serde(default = "default_max_backups")]
    pub max_backups: usize,
    /// Backup names in local time: refused (runbom names them in UTC).
    #[serde(default)]
    pub localtime: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_megabytes: default_max_megabytes(),
            max_days: 0,
            max_backups: default_max_backups(),
            localtime: false,
        }
    }
}

fn default_max_megabytes() -> u64 {
    100
}

fn default_max_backups() -> usize {
    100
}

impl ExporterConfig for FileExporterConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        let r = &self.rotation;
        if r.max_megabytes == 0 {
            return Err(at
                .at("rotation")
                .at("max_megabytes")
                .error("must be at least 1"));
        }
        if r.localtime {
            return Err(at
                .at("rotation")
                .at("localtime")
                .error("backups are named in UTC; local time is not supported"));
        }
        if r.max_days == 0 && r.max_backups == 0 {
            return Err(at.at("rotation").error(
                "`max_days` and `max_backups` both 0 would keep every backup: set one of them",
            ));
        }
        Ok(())
    }

    fn build(&self, _retries: Arc<AtomicU64>) -> Result<BoxExporter, ExportError> {
        let mut exporter = FileExporter::with_rotation(&self.path, self.rotation.clone())?;
        exporter.page_cache(self.page_cache, DROP_EVERY);
        Ok(Box::new(exporter))
    }
}

/// One signal's file: where it is, its writer and how many bytes it holds.
struct Output {
    dir: PathBuf,
    stem: &'static str,
    out: BufWriter<File>,
    bytes: u64,
    /// How large the file was when its pages were last dropped (or when it was opened).
    dropped_at: u64,
}

pub struct FileExporter {
    traces: Output,
    logs: Output,
    metrics: Output,
    rotation: Rotation,
    /// Drop the written pages every this many bytes; `None`: keep them.
    drop_every: Option<u64>,
    /// Each request's line is written here, then to its file.
    line: KeptBuffer,
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::File {
        path: path.display().to_string(),
        source,
    }
}

impl Output {
    fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.jsonl", self.stem))
    }

    /// Opens `stem.jsonl` for appending, `0600` (tightened if it existed).
    fn open(dir: &Path, stem: &'static str) -> Result<Self, ExportError> {
        let path = dir.join(format!("{stem}.jsonl"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(file_err(&path))?;
        let meta = file.metadata().map_err(file_err(&path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(file_err(&path))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            stem,
            out: BufWriter::new(file),
            bytes: meta.len(),
            dropped_at: meta.len(),
        })
    }

    /// Appends `line` (one request's OTLP/JSON and its newline), rotating first when it would
    /// take the file past the rotation size, and drops the written pages when `drop_every`
    /// more bytes were written since they were last dropped.
    fn write(
        &mut self,
        line: &[u8],
        rotation: &Rotation,
        drop_every: Option<u64>,
    ) -> Result<(), ExportError> {
        let limit = rotation.max_megabytes.saturating_mul(1024 * 1024);
        if self.bytes > 0 && self.bytes + line.len() as u64 > limit {
            self.rotate(rotation)?;
        }
        self.out.write_all(line).map_err(file_err(&self.path()))?;
        self.bytes += line.len() as u64;
        if drop_every.is_some_and(|every| self.bytes - self.dropped_at >= every) {
            self.drop_written();
        }
        Ok(())
    }

    /// Asks the kernel to write the file back and to drop its pages that are on disk: those
    /// of the previous call, whose write-back it started, and any the kernel wrote back since.
    /// Advice: a failure loses nothing (the pages stay cached), so it is not an export error.
    fn drop_written(&mut self) {
        let fd = self.out.get_ref().as_raw_fd();
        // SAFETY: `posix_fadvise` reads no memory of ours; `fd` is this file's, open.
        let err = unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED) };
        if err != 0 {
            debug!(file = %self.path().display(), "file exporter: pages not dropped (errno {err})");
        }
        self.dropped_at = self.bytes;
    }

    /// Renames the full file to a dated backup, opens a new one and removes the backups the
    /// rotation settings no longer keep.
    fn rotate(&mut self, rotation: &Rotation) -> Result<(), ExportError> {
        let path = self.path();
        self.out.flush().map_err(file_err(&path))?;
        let mut backup = self
            .dir
            .join(format!("{}-{}.jsonl", self.stem, stamp(SystemTime::now())));
        // Two rotations within a millisecond: never overwrite a backup.
        let mut n = 1;
        while backup.exists() {
            backup = self.dir.join(format!(
                "{}-{}-{n}.jsonl",
                self.stem,
                stamp(SystemTime::now())
            ));
            n += 1;
        }
        fs::rename(&path, &backup).map_err(file_err(&path))?;
        *self = Self::open(&self.dir, self.stem)?;
        info!(file = %path.display(), backup = %backup.display(), "file exporter: rotated");
        self.prune(rotation);
        Ok(())
    }

    /// Removes the oldest backups beyond `max_backups` and those older than `max_days`.
    fn prune(&self, rotation: &Rotation) {
        let Ok(files) = signal_files(&self.dir, self.stem) else {
            return;
        };
        // Oldest first, the live file last.
        let backups = &files[..files.len().saturating_sub(1)];
        let over = if rotation.max_backups == 0 {
            0
        } else {
            backups.len().saturating_sub(rotation.max_backups)
        };
        let max_age = Duration::from_secs(rotation.max_days.saturating_mul(86_400));
        for (i, backup) in backups.iter().enumerate() {
            let too_old = rotation.max_days > 0
                && fs::metadata(backup)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > max_age);
            if (i < over || too_old)
                && let Err(e) = fs::remove_file(backup)
            {
                warn!(backup = %backup.display(), "file exporter: old backup not removed: {e}");
            }
        }
    }
}

/// Runs `write` (encoding a request and writing it, tens of milliseconds for a batch of
/// 8 192 kernel events, longer while the kernel throttles or faults in the written pages) with
/// the runtime worker's other tasks handed to another thread first, on a multi-thread runtime:
/// the `traces` and `logs` exporters write at the same moments, and on two workers, both
/// writing, nothing would poll the ring reader meanwhile, whose ring then fills and sheds.
fn off_the_runtime<R>(write: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(write)
        }
        _ => write(),
    }
}

/// `2026-12-05T19-05-12.345` (UTC), the Collector's (lumberjack's) backup time format.
fn stamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl FileExporter {
    /// Creates the directory if needed (`0700`) and appends to the files in it, rotated as the
    /// Collector's defaults say.
    pub fn new(dir: &Path) -> Result<Self, ExportError> {
        Self::with_rotation(dir, Rotation::default())
    }

    /// Like [`FileExporter::new`], rotated as `rotation` says.
    pub fn with_rotation(dir: &Path, rotation: Rotation) -> Result<Self, ExportError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(file_err(dir))?;
        let mode = fs::metadata(dir)
            .map_err(file_err(dir))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            warn!(
                dir = %dir.display(),
                "file exporter: the directory was readable by others ({:o}); now 0700",
                mode & 0o777
            );
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(file_err(dir))?;
        }
        Ok(Self {
            traces: Output::open(dir, "traces")?,
            logs: Output::open(dir, "logs")?,
            metrics: Output::open(dir, "metrics")?,
            rotation,
            drop_every: None,
            line: KeptBuffer::default(),
        })
    }

    /// With [`PageCache::Drop`], drops the written pages from the page cache every `every`
    /// bytes written to a file ([`DROP_EVERY`] as configured); [`PageCache::Keep`] (the
    /// default of [`FileExporter::new`]) leaves them to the kernel.
    pub fn page_cache(&mut self, page_cache: PageCache, every: u64) {
        self.drop_every = (page_cache == PageCache::Drop).then_some(every.max(1));
    }

    pub fn export(&mut self, signal: &Signal) -> Result<(), ExportError> {
        let output = match signal.kind() {
            SignalKind::Traces => &mut self.traces,
            SignalKind::Logs => &mut self.logs,
            SignalKind::Metrics => &mut self.metrics,
        };
        let mut line = self.line.take();
        let written = match signal.write_json(&mut line) {
            Ok(()) => {
                line.push(b'\n');
                output.write(&line, &self.rotation, self.drop_every)
            }
            Err(e) => Err(file_err(&output.path())(e.into())),
        };
        self.line.give_back(line);
        written?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), ExportError> {
        for o in [&mut self.traces, &mut self.logs, &mut self.metrics] {
            o.out.flush().map_err(file_err(&o.path()))?;
        }
        Ok(())
    }
}

impl Exporter for FileExporter {
    fn send<'a>(&'a mut self, signal: &'a Signal) -> ExportFuture<'a> {
        Box::pin(std::future::ready(off_the_runtime(|| {
            Self::export(self, signal)
        })))
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        FileExporter::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest, logs::v1::ResourceLogs,
    };

    use runbom_otlp::json;
    use runbom_testkit::requests::{sample_logs, sample_traces};

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("runbom-file-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn backup_names_are_utc_in_the_collectors_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_497_512_345);
        assert_eq!(stamp(t), "2026-12-05T19-05-12.345");
        assert_eq!(stamp(UNIX_EPOCH), "1970-01-01T00-00-00.000");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn the_directory_is_0700_and_the_files_0600_even_when_they_existed() {
        let d = dir("modes");
        fs::create_dir_all(&d).expect("dir");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(d.join("logs.jsonl"), "").expect("write");
        fs::set_permissions(d.join("logs.jsonl"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let _exporter = FileExporter::new(&d).expect("opens");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        for f in ["traces.jsonl", "logs.jsonl", "metrics.jsonl"] {
            assert_eq!(mode(&d.join(f)), 0o600, "{f}");
        }
        fs::remove_dir_all(&d).expect("clean up");
    }

    #[test]
    fn files_rotate_at_the_size_and_the_backups_are_capped() {
        let d = dir("rotate");
        let rotation = Rotation {
            max_megabytes: 1,
            max_backups: 2,
            ..Rotation::default()
        };
        let mut exporter = FileExporter::with_rotation(&d, rotation).expect("opens");
        // About 60 KiB per request: 1 MiB holds 17; 100 requests make 5 files.
        let mut req = ExportLogsServiceRequest::default();
        req.resource_logs.push(ResourceLogs::default());
        let big = "x".repeat(60 * 1024);
        req.resource_logs[0].schema_url = big;
        for _ in 0..100 {
            exporter
                .export(&Signal::Logs(req.clone()))
                .expect("written");
        }
        let files = signal_files(&d, "logs").expect("listed");
        assert_eq!(files.len(), 3, "the live file and 2 backups: {files:?}");
        assert_eq!(files[2], d.join("logs.jsonl"));
        for f in &files {
            let meta = fs::metadata(f).expect("stat");
            assert!(
                meta.len() <= 1024 * 1024,
                "{} holds {}",
                f.display(),
                meta.len()
            );
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        fs::remove_dir_all(&d).expect("clean up");
    }

    /// Sent from a task of either runtime flavour (the request is written off the runtime
    /// only where there are other workers to take its tasks), the line is the same.
    #[test]
    fn send_writes_the_request_on_either_runtime() {
        let mut multi = tokio::runtime::Builder::new_multi_thread();
        let mut current = tokio::runtime::Builder::new_current_thread();
        for (name, builder) in [("multi", &mut multi), ("current", &mut current)] {
            let d = dir(&format!("send-{name}"));
            let runtime = builder.build().expect("runtime");
            let signal = Signal::Logs(sample_logs());
            let sent = signal.clone();
            let task = runtime.spawn({
                let d = d.clone();
                async move {
                    let mut exporter = FileExporter::new(&d).expect("opens");
                    exporter.export(&sent).expect("written");
                    Exporter::send(&mut exporter, &sent).await
                }
            });
            runtime
                .block_on(task)
                .expect("the task ran")
                .expect("written");
            let bytes = fs::read(d.join("logs.jsonl")).expect("read");
            let lines: Vec<&[u8]> = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(lines.len(), 2, "{name}");
            assert_eq!(
                lines[0], lines[1],
                "{name}: export and send write the same line"
            );
            assert_eq!(
                json::decode(SignalKind::Logs, lines[1]).expect("decodes"),
                signal
            );
            fs::remove_dir_all(&d).expect("clean up");
        }
    }

    #[test]
    fn page_cache_is_dropped_by_default_and_kept_on_request() {
        let config = |text: &str| serde_yaml::from_str::<FileExporterConfig>(text);
        let default = config("path: ./d").expect("parses");
        assert_eq!(default.page_cache, PageCache::Drop);
        let keep = config("path: ./d\npage_cache: keep").expect("parses");
        assert_eq!(keep.page_cache, PageCache::Keep);
        let e = config("path: ./d\npage_cache: none").expect_err("refused");
        assert!(e.to_string().contains("unknown variant `none`"), "{e}");
    }

    /// Pages dropped after every line (and files rotated meanwhile): the files hold the bytes
    /// of an exporter that keeps them, and every line decodes to the request sent.
    #[test]
    fn dropping_the_written_pages_keeps_every_line() {
        let rotation = Rotation {
            max_megabytes: 1,
            max_backups: 0,
            max_days: 1,
            ..Rotation::default()
        };
        let (kept_dir, dropped_dir) = (dir("kept"), dir("dropped"));
        let mut kept = FileExporter::with_rotation(&kept_dir, rotation.clone()).expect("opens");
        let mut dropped = FileExporter::with_rotation(&dropped_dir, rotation).expect("opens");
        dropped.page_cache(PageCache::Drop, 1);
        // A large request now and then: about 3 MiB of logs in all, so they rotate.
        let mut large = sample_logs();
        large.resource_logs[0].schema_url = "x".repeat(100 * 1024);
        let sent: Vec<Signal> = (0..30)
            .flat_map(|i| {
                let logs = if i % 3 == 0 {
                    large.clone()
                } else {
                    sample_logs()
                };
                [Signal::Logs(logs), Signal::Traces(sample_traces())]
            })
            .collect();
        for signal in &sent {
            kept.export(signal).expect("written");
            dropped.export(signal).expect("written");
        }
        for kind in [SignalKind::Logs, SignalKind::Traces] {
            let read = |d: &Path| -> Vec<u8> {
                let files = signal_files(d, kind.as_str()).expect("listed");
                files
                    .iter()
                    .flat_map(|f| fs::read(f).expect("read"))
                    .collect()
            };
            let bytes = read(&dropped_dir);
            assert!(bytes == read(&kept_dir), "{kind:?}: the same bytes");
            let decoded: Vec<Signal> = bytes
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| json::decode(kind, line).expect("decodes"))
                .collect();
            let expected: Vec<Signal> = sent.iter().filter(|s| s.kind() == kind).cloned().collect();
            assert_eq!(decoded, expected, "{kind:?}");
        }
        assert!(
            signal_files(&dropped_dir, "logs").expect("listed").len() > 1,
            "rotated"
        );
        for d in [kept_dir, dropped_dir] {
            fs::remove_dir_all(&d).expect("clean up");
        }
    }
}

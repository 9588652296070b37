//! File exporter: OTLP/JSON, one export request per line, in `traces.jsonl`, `logs.jsonl` and
//! `metrics.jsonl` of a directory (the format of the Collector's `file` exporter, readable by any OTLP/JSON
//! tool).
//!
//! The data is evidence: the directory is made `0700` and the files `0600`, whoever runbom's
//! umask allows. Each file is rotated as the Collector's `rotation` settings say (by default,
//! at 100 MiB, keeping 100 backups): `traces.jsonl` becomes
//! `traces-2026-12-05T19-05-12.345.jsonl` (UTC), and the oldest backups beyond `max_backups`
//! or `max_days` are removed, so the directory is bounded.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use runbom_otlp::{
    json::signal_files,
    signal::{Signal, SignalKind},
};
use serde::Deserialize;
use tracing::{info, warn};

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
}

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
        Ok(Box::new(FileExporter::with_rotation(
            &self.path,
            self.rotation.clone(),
        )?))
    }
}

/// One signal's file: where it is, its writer and how many bytes it holds.
struct Output {
    dir: PathBuf,
    stem: &'static str,
    out: BufWriter<File>,
    bytes: u64,
}

pub struct FileExporter {
    traces: Output,
    logs: Output,
    metrics: Output,
    rotation: Rotation,
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
        })
    }

    /// Appends `line` (one request's OTLP/JSON and its newline), rotating first when it would
    /// take the file past the rotation size.
    fn write(&mut self, line: &[u8], rotation: &Rotation) -> Result<(), ExportError> {
        let limit = rotation.max_megabytes.saturating_mul(1024 * 1024);
        if self.bytes > 0 && self.bytes + line.len() as u64 > limit {
            self.rotate(rotation)?;
        }
        self.out.write_all(line).map_err(file_err(&self.path()))?;
        self.bytes += line.len() as u64;
        Ok(())
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
            line: KeptBuffer::default(),
        })
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
                output.write(&line, &self.rotation)
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
        Box::pin(std::future::ready(Self::export(self, signal)))
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
}

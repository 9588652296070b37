//! File exporter: OTLP/JSON, one export request per line, in `traces.jsonl`, `logs.jsonl` and
//! `metrics.jsonl` of a directory (the format of the Collector's `file` exporter, readable by any OTLP/JSON
//! tool).

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
};

use runbom_otlp::signal::Signal;
use serde::Deserialize;

use super::{
    error::ExportError,
    export::{BoxExporter, ExportFuture, Exporter},
};
use crate::component::ExporterConfig;

/// The `file` exporter's section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExporterConfig {
    /// Directory that receives `traces.jsonl` and `logs.jsonl`.
    pub path: PathBuf,
}

impl ExporterConfig for FileExporterConfig {
    fn build(&self, _retries: Arc<AtomicU64>) -> Result<BoxExporter, ExportError> {
        Ok(Box::new(FileExporter::new(&self.path)?))
    }
}

pub struct FileExporter {
    traces: (PathBuf, BufWriter<File>),
    logs: (PathBuf, BufWriter<File>),
    metrics: (PathBuf, BufWriter<File>),
}

fn open(path: &Path) -> Result<(PathBuf, BufWriter<File>), ExportError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ExportError::File {
            path: path.display().to_string(),
            source,
        })?;
    Ok((path.to_owned(), BufWriter::new(file)))
}

fn write_line<T: serde::Serialize>(
    (path, out): &mut (PathBuf, BufWriter<File>),
    msg: &T,
) -> Result<(), ExportError> {
    let err = |source| ExportError::File {
        path: path.display().to_string(),
        source,
    };
    serde_json::to_writer(&mut *out, msg).map_err(|e| err(e.into()))?;
    out.write_all(b"\n").map_err(err)
}

impl FileExporter {
    /// Creates the directory if needed and appends to the files in it.
    pub fn new(dir: &Path) -> Result<Self, ExportError> {
        fs::create_dir_all(dir).map_err(|source| ExportError::File {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self {
            traces: open(&dir.join("traces.jsonl"))?,
            logs: open(&dir.join("logs.jsonl"))?,
            metrics: open(&dir.join("metrics.jsonl"))?,
        })
    }

    pub fn export(&mut self, signal: &Signal) -> Result<(), ExportError> {
        match signal {
            Signal::Traces(r) => write_line(&mut self.traces, r)?,
            Signal::Logs(r) => write_line(&mut self.logs, r)?,
            Signal::Metrics(r) => write_line(&mut self.metrics, r)?,
        }
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), ExportError> {
        for (path, out) in [&mut self.traces, &mut self.logs, &mut self.metrics] {
            out.flush().map_err(|source| ExportError::File {
                path: path.display().to_string(),
                source,
            })?;
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

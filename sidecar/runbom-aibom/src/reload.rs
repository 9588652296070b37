//! The declared BOM in force, re-read when its file changes (its modification time or size,
//! polled). A file that no longer loads leaves the last good BOM in force, and says so loudly:
//! an error log and a counter.
//!
//! The BOM may also be a directory of BOM files (`bom::merge`): each file is re-read when it
//! changes, a file that no longer loads keeps its last good version in force beside the
//! others, and a file removed takes its agents with it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use tracing::{error, info};

use crate::bom::{BomError, DeclaredBom, merge};

/// What a read of the BOM found: per file (label, what it read).
pub type BomRead = Vec<(String, Result<DeclaredBom, BomError>)>;

#[derive(Debug)]
pub struct BomWatch {
    path: PathBuf,
    current: Arc<DeclaredBom>,
    stamp: Vec<(String, Option<(SystemTime, u64)>)>,
    /// A directory's files: the last good BOM of each (label → BOM).
    parts: Option<BTreeMap<String, Arc<DeclaredBom>>>,
    /// Reloads that failed (the last good BOM stayed in force).
    pub reload_failures: Arc<AtomicU64>,
    pub reloads: Arc<AtomicU64>,
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The modification time and size of the file, or of each BOM file of the directory.
fn stamp(path: &Path) -> Vec<(String, Option<(SystemTime, u64)>)> {
    if path.is_dir() {
        merge::files(path)
            .into_iter()
            .map(|(label, p)| (label, file_stamp(&p)))
            .collect()
    } else {
        vec![(String::new(), file_stamp(path))]
    }
}

/// The name that loads the reference agent's declared BOM (`examples/agent/bom-mcp.cdx.json`:
/// `bom.cdx.json` and the MCP servers of its MCP variant; built into the binary), as the
/// embedded default configuration does. Never reloaded.
pub const BUILTIN_REFERENCE_AGENT: &str = "builtin:reference-agent";

const REFERENCE_AGENT_BOM: &str = include_str!("../../../examples/agent/bom-mcp.cdx.json");

impl BomWatch {
    /// Loads the BOM; an invalid one is an error (runbom refuses to start with it).
    /// [`BUILTIN_REFERENCE_AGENT`] names the reference agent's BOM built into runbom.
    #[tracing::instrument(name = "aibom.bom.load", skip_all, fields(bom = %path.display()), err(Display))]
    pub fn load(path: &Path) -> Result<Self, BomError> {
        let before = stamp(path);
        let mut parts = None;
        let bom = if path == Path::new(BUILTIN_REFERENCE_AGENT) {
            DeclaredBom::parse(REFERENCE_AGENT_BOM, BUILTIN_REFERENCE_AGENT)?
        } else if path.is_dir() {
            let mut good = BTreeMap::new();
            for (label, read) in Self::read(path) {
                good.insert(label, Arc::new(read?));
            }
            let bom = merge::merge(&path.display().to_string(), &good);
            parts = Some(good);
            bom
        } else {
            DeclaredBom::from_file(path)?
        };
        Ok(Self {
            path: path.to_owned(),
            current: Arc::new(bom),
            stamp: before,
            parts,
            reload_failures: Arc::default(),
            reloads: Arc::default(),
        })
    }

    /// Reads the BOM file, or every BOM file of the directory `path` (blocking).
    #[must_use]
    #[tracing::instrument(name = "aibom.bom.read", skip_all, fields(bom = %path.display()))]
    pub fn read(path: &Path) -> BomRead {
        if path.is_dir() {
            merge::files(path)
                .into_iter()
                .map(|(label, file)| (label, DeclaredBom::from_file(&file)))
                .collect()
        } else {
            vec![(String::new(), DeclaredBom::from_file(path))]
        }
    }

    /// The BOM in force.
    #[must_use]
    pub fn current(&self) -> &Arc<DeclaredBom> {
        &self.current
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if it changed. Returns the error when the new file is invalid (the
    /// last good BOM stays in force); `Ok(true)` when a new BOM took over. Reads on the calling
    /// thread: an async caller uses [`BomWatch::changed`], reads off its runtime and
    /// [`BomWatch::apply`]s the result.
    pub fn poll(&mut self) -> Result<bool, BomError> {
        if !self.changed() {
            return Ok(false);
        }
        let read = Self::read(&self.path);
        self.apply(read)
    }

    /// Whether the file changed since the last look (remembering this look): then it is due
    /// for a read. The built-in BOM never changes.
    pub fn changed(&mut self) -> bool {
        if self.path == Path::new(BUILTIN_REFERENCE_AGENT) {
            return false;
        }
        let now = stamp(&self.path);
        if now == self.stamp {
            return false;
        }
        self.stamp = now;
        true
    }

    /// Takes over a BOM read after [`BomWatch::changed`], or keeps the last good one (logged
    /// and counted) when the read failed. For a directory, each file's: the first error is
    /// returned, the files that loaded are in force either way.
    pub fn apply(&mut self, read: BomRead) -> Result<bool, BomError> {
        let Some(parts) = &mut self.parts else {
            let Some((_, read)) = read.into_iter().next() else {
                return Ok(false);
            };
            return self.apply_one(read);
        };
        let mut first_error = None;
        let mut fresh = BTreeMap::new();
        for (label, r) in read {
            match r {
                Ok(bom) => {
                    fresh.insert(label, Arc::new(bom));
                }
                Err(e) => {
                    self.reload_failures.fetch_add(1, Ordering::Relaxed);
                    error!(
                        bom = %label,
                        "declared AI-BOM file NOT reloaded, keeping its last good version: {e}"
                    );
                    if let Some(old) = parts.get(&label) {
                        fresh.insert(label, old.clone());
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        *parts = fresh;
        self.current = Arc::new(merge::merge(&self.path.display().to_string(), parts));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        info!(bom = %self.path.display(), files = parts.len(), "declared AI-BOM directory reloaded");
        first_error.map_or(Ok(true), Err)
    }

    /// A read that did not finish (a thread that could not start, a timeout): logged and
    /// counted, the BOM in force stays.
    pub fn failed(&mut self, e: BomError) {
        let _ = self.apply_one(Err(e));
    }

    fn apply_one(&mut self, read: Result<DeclaredBom, BomError>) -> Result<bool, BomError> {
        match read {
            Ok(bom) => {
                info!(
                    bom = %self.path.display(),
                    serial = %bom.serial_number,
                    "declared AI-BOM reloaded"
                );
                self.current = Arc::new(bom);
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                error!(
                    "declared AI-BOM NOT reloaded, keeping the last good one (serial {}): {e}",
                    self.current.serial_number
                );
                Err(e)
            }
        }
    }
}

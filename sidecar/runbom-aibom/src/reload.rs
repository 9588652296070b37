//! The declared BOM in force, re-read when its file changes (its modification time or size,
//! polled). A file that no longer loads leaves the last good BOM in force, and says so loudly:
//! an error log and a counter.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use tracing::{error, info};

use crate::bom::{BomError, DeclaredBom};

#[derive(Debug)]
pub struct BomWatch {
    path: PathBuf,
    current: Arc<DeclaredBom>,
    stamp: Option<(SystemTime, u64)>,
    /// Reloads that failed (the last good BOM stayed in force).
    pub reload_failures: Arc<AtomicU64>,
    pub reloads: Arc<AtomicU64>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The name that loads the reference agent's declared BOM (`examples/agent/bom.cdx.json`,
/// built into the binary), as the embedded default configuration does. Never reloaded.
pub const BUILTIN_REFERENCE_AGENT: &str = "builtin:reference-agent";

const REFERENCE_AGENT_BOM: &str = include_str!("../../../examples/agent/bom.cdx.json");

impl BomWatch {
    /// Loads the BOM; an invalid one is an error (runbom refuses to start with it).
    /// [`BUILTIN_REFERENCE_AGENT`] names the reference agent's BOM built into runbom.
    pub fn load(path: &Path) -> Result<Self, BomError> {
        let before = stamp(path);
        let bom = if path == Path::new(BUILTIN_REFERENCE_AGENT) {
            DeclaredBom::parse(REFERENCE_AGENT_BOM, BUILTIN_REFERENCE_AGENT)?
        } else {
            DeclaredBom::from_file(path)?
        };
        Ok(Self {
            path: path.to_owned(),
            current: Arc::new(bom),
            stamp: before,
            reload_failures: Arc::default(),
            reloads: Arc::default(),
        })
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
        let read = DeclaredBom::from_file(&self.path);
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
    /// and counted) when the read failed.
    pub fn apply(&mut self, read: Result<DeclaredBom, BomError>) -> Result<bool, BomError> {
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

//! The `file_storage` extension (the Collector's, for `sending_queue.storage`): where an
//! exporter's persistent queue keeps its write-ahead log ([`crate::exporter::wal`]).

use std::{collections::BTreeMap, os::unix::fs::DirBuilderExt as _, path::PathBuf};

use serde::Deserialize;

use crate::config::section::{ConfigError, Section};

/// Persistent queues by exporter name (`sending_queue.storage`).
pub type PersistentQueues = BTreeMap<String, StorageSettings>;

/// The Collector's `file_storage` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStorageConfig {
    /// The directory holding one sub-directory per exporter queue.
    pub directory: PathBuf,
    /// `fdatasync` every request appended, and the acknowledged position, before going on:
    /// queued data then survives a power loss or kernel crash too, not only the process's death
    /// (default false, as in the Collector).
    #[serde(default)]
    pub fsync: bool,
    /// Create `directory` (mode `directory_permissions`) when it does not exist (default false).
    #[serde(default)]
    pub create_directory: bool,
    /// Octal permissions of a created directory (default `0750`).
    #[serde(default = "default_permissions")]
    pub directory_permissions: String,
    /// runbom's own key: the most one queue keeps on disk, in MiB (default 1024). A full
    /// queue holds the pipeline back, as the in-memory queue does.
    #[serde(default = "default_max_size_mib")]
    pub max_size_mib: u64,
}

fn default_permissions() -> String {
    "0750".into()
}

fn default_max_size_mib() -> u64 {
    1024
}

/// What a queue built on this storage takes.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub directory: PathBuf,
    pub fsync: bool,
    pub max_bytes: u64,
    /// Requests out at once: the exporter's `sending_queue.num_consumers`.
    pub consumers: usize,
}

impl FileStorageConfig {
    /// Values the YAML types allow but the extension does not.
    pub fn check(&self, at: &Section) -> Result<(), ConfigError> {
        if self.directory.as_os_str().is_empty() {
            return Err(at.at("directory").error("must name a directory"));
        }
        self.permissions(at)?;
        if self.max_size_mib == 0 {
            return Err(at.at("max_size_mib").error("must be at least 1"));
        }
        Ok(())
    }

    fn permissions(&self, at: &Section) -> Result<u32, ConfigError> {
        u32::from_str_radix(&self.directory_permissions, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                at.at("directory_permissions").error(format!(
                    "`{}` is not an octal mode such as 0750",
                    self.directory_permissions
                ))
            })
    }

    /// Whether the directory exists or may be created (`runbom validate`: nothing created).
    pub fn check_directory(&self, name: &str) -> Result<(), String> {
        if self.directory.is_dir() || self.create_directory {
            return Ok(());
        }
        Err(format!(
            "extensions.{name}: directory {} does not exist (set create_directory: true to \
             create it)",
            self.directory.display()
        ))
    }

    /// The directory made ready (created when asked), and the queue settings.
    pub fn settings(&self, name: &str) -> Result<StorageSettings, String> {
        self.check_directory(name)?;
        if !self.directory.is_dir() {
            let mode = self.permissions(&Section::new("", name)).map_err(|e| e.0)?;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&self.directory)
                .map_err(|e| {
                    format!(
                        "extensions.{name}: cannot create {}: {e}",
                        self.directory.display()
                    )
                })?;
        }
        Ok(StorageSettings {
            directory: self.directory.clone(),
            fsync: self.fsync,
            max_bytes: self.max_size_mib.saturating_mul(1 << 20),
            consumers: 1,
        })
    }
}

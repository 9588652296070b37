//! Extensions: the Collector's top-level `extensions:` section, enabled by listing them in
//! `service.extensions`. This build has `bearertokenauth` ([`bearertokenauth`]), which a
//! receiver's `auth: {authenticator: <name>}` uses, and `file_storage` ([`file_storage`]),
//! which an exporter's `sending_queue.storage` uses.

pub mod bearertokenauth;
pub mod file_storage;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use bearertokenauth::{BearerTokenAuth, BearerTokenAuthConfig};
use file_storage::FileStorageConfig;

use crate::config::{
    section::{ConfigError, Section},
    service::component_type,
};

/// The extension types this build has, as the "this build has" message lists them.
pub const TYPES: &[&str] = &["bearertokenauth", "file_storage"];

/// One configured extension.
#[derive(Debug)]
pub enum ExtensionConfig {
    BearerTokenAuth(BearerTokenAuthConfig),
    FileStorage(FileStorageConfig),
}

/// The running authenticators by extension name, as receivers take them.
pub type Authenticators = BTreeMap<String, Arc<BearerTokenAuth>>;

/// An extension that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    #[error("extensions.{extension}: token file {}: {reason}", path.display())]
    TokenFile {
        extension: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Storage(String),
}

impl ExtensionConfig {
    /// Reads the section of the extension named `name` (its type is what precedes any `/`).
    pub fn parse(at: &Section, name: &str, value: &serde_yaml::Value) -> Result<Self, ConfigError> {
        let config = match component_type(name) {
            "bearertokenauth" => Self::BearerTokenAuth(at.parse(value)?),
            "file_storage" => Self::FileStorage(at.parse(value)?),
            other => {
                return Err(at.error(format!(
                    "unknown extension type `{other}` (this build has: {})",
                    TYPES.join(", ")
                )));
            }
        };
        match &config {
            Self::BearerTokenAuth(c) => c.check(at)?,
            Self::FileStorage(c) => c.check(at)?,
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;

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
    model::Config,
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

impl Config {
    /// Every name in `service.extensions` is configured, and every receiver's
    /// `auth.authenticator` names an enabled `bearertokenauth`.
    pub(crate) fn check_extensions(&self) -> Result<(), ConfigError> {
        for (i, name) in self.service.extensions.iter().enumerate() {
            if !self.extensions.contains_key(name) {
                return Err(self.error(
                    &format!("service.extensions[{i}]"),
                    &format!("`{name}` is not configured under `extensions`"),
                ));
            }
        }
        for (receiver, r) in &self.receivers {
            for (path, name) in r.authenticators() {
                let at = self.section(&format!("receivers.{receiver}.{path}"));
                match self.extensions.get(&name) {
                    None => {
                        return Err(at.error(format!(
                            "no extension `{name}` is configured under `extensions`"
                        )));
                    }
                    Some(ExtensionConfig::FileStorage(_)) => {
                        return Err(at.error(format!(
                            "`{name}` is a file_storage extension, not an authenticator"
                        )));
                    }
                    Some(ExtensionConfig::BearerTokenAuth(_))
                        if !self.service.extensions.contains(&name) =>
                    {
                        return Err(at.error(format!(
                            "extension `{name}` is not enabled: list it in `service.extensions`"
                        )));
                    }
                    Some(ExtensionConfig::BearerTokenAuth(_)) => {}
                }
            }
        }
        for (exporter, e) in &self.exporters {
            let Some(name) = e.sending_queue().and_then(|q| q.storage.as_ref()) else {
                continue;
            };
            let at = self.section(&format!("exporters.{exporter}.sending_queue.storage"));
            match self.extensions.get(name) {
                Some(ExtensionConfig::FileStorage(_)) if self.service.extensions.contains(name) => {
                }
                Some(ExtensionConfig::FileStorage(_)) => {
                    return Err(at.error(format!(
                        "extension `{name}` is not enabled: list it in `service.extensions`"
                    )));
                }
                Some(_) => {
                    return Err(at.error(format!("`{name}` is not a file_storage extension")));
                }
                None => {
                    return Err(at.error(format!(
                        "no extension `{name}` is configured under `extensions`"
                    )));
                }
            }
            if e.sending_queue().is_some_and(|q| !q.enabled) {
                return Err(at.error("the sending queue is disabled (`enabled: false`)"));
            }
        }
        Ok(())
    }

    /// Every persistent queue's directory exists or may be created (creating nothing).
    pub fn check_persistent_queues(&self) -> Result<(), ExtensionError> {
        for e in self.exporters.values() {
            let Some(name) = e.sending_queue().and_then(|q| q.storage.as_ref()) else {
                continue;
            };
            if let Some(ExtensionConfig::FileStorage(c)) = self.extensions.get(name) {
                c.check_directory(name).map_err(ExtensionError::Storage)?;
            }
        }
        Ok(())
    }

    /// The exporters' persistent queues: where each keeps its write-ahead log (directories
    /// created when the extension says so).
    pub fn persistent_queues(&self) -> Result<crate::graph::PersistentQueues, ExtensionError> {
        let mut out = crate::graph::PersistentQueues::new();
        for (exporter, e) in &self.exporters {
            let Some(name) = e.sending_queue().and_then(|q| q.storage.as_ref()) else {
                continue;
            };
            if let Some(ExtensionConfig::FileStorage(c)) = self.extensions.get(name) {
                let settings = c.settings(name).map_err(ExtensionError::Storage)?;
                out.insert(exporter.clone(), settings);
            }
        }
        Ok(out)
    }

    /// The enabled authenticators, their token files read.
    pub fn authenticators(&self) -> Result<Authenticators, ExtensionError> {
        let mut out = Authenticators::new();
        for name in &self.service.extensions {
            if let Some(ExtensionConfig::BearerTokenAuth(c)) = self.extensions.get(name) {
                out.insert(name.clone(), Arc::new(c.build(name)?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

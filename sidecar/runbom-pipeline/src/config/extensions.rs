//! What the configuration says about its extensions as a whole: every enabled name is
//! configured, every receiver's `auth` and exporter's `sending_queue.storage` names one of the
//! right type, and the running authenticators and persistent queues they give
//! ([`crate::extension`] has each extension's own section).

use std::sync::Arc;

use super::{model::Config, section::ConfigError};
use crate::extension::{
    Authenticators, ExtensionConfig, ExtensionError, file_storage::PersistentQueues,
};

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
    pub fn persistent_queues(&self) -> Result<PersistentQueues, ExtensionError> {
        let mut out = PersistentQueues::new();
        for (exporter, e) in &self.exporters {
            let Some(queue) = e.sending_queue() else {
                continue;
            };
            let Some(name) = queue.storage.as_ref() else {
                continue;
            };
            if let Some(ExtensionConfig::FileStorage(c)) = self.extensions.get(name) {
                let mut settings = c.settings(name).map_err(ExtensionError::Storage)?;
                settings.consumers = queue.num_consumers.max(1);
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

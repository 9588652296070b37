//! Configuration errors, worded for the person who wrote the file, and the place in the file
//! they point at.

use std::{fmt, time::Duration};

use serde::de::DeserializeOwned;

/// A configuration error, already worded for the person who wrote the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A place in a configuration: the file (or `<embedded defaults>`) and a YAML path such as
/// `receivers.otlp`. Errors about it name both.
#[derive(Clone, Debug)]
pub struct Section<'a> {
    pub source: &'a str,
    pub path: String,
}

impl<'a> Section<'a> {
    #[must_use]
    pub fn new(source: &'a str, path: impl Into<String>) -> Self {
        Self {
            source,
            path: path.into(),
        }
    }

    /// The place `field` under this one (`wait`, `tls`, `ignore_endpoints[0]`).
    #[must_use]
    pub fn at(&self, field: &str) -> Self {
        Self::new(self.source, format!("{}.{field}", self.path))
    }

    /// An error about this place.
    #[must_use]
    pub fn error(&self, msg: impl fmt::Display) -> ConfigError {
        ConfigError(format!("{} at `{}`: {msg}", self.source, self.path))
    }

    /// Refuses a count of 0 in `field` (sizes and limits that must hold something).
    pub fn at_least_one<N: Copy + Default + PartialEq>(
        &self,
        field: &str,
        n: N,
    ) -> Result<(), ConfigError> {
        if n == N::default() {
            return Err(self.at(field).error("must be at least 1"));
        }
        Ok(())
    }

    /// Refuses a time in `field` shorter than the section's `wait`.
    pub fn not_below_wait(
        &self,
        field: &str,
        value: Duration,
        wait: Duration,
    ) -> Result<(), ConfigError> {
        if value < wait {
            return Err(self
                .at(field)
                .error(format!("must be at least `wait` ({wait:?})")));
        }
        Ok(())
    }

    /// Deserializes the section found here, naming the path inside it in errors. An empty
    /// section (`ebpf:` with nothing under it) means "all defaults".
    pub fn parse<T: DeserializeOwned>(&self, value: &serde_yaml::Value) -> Result<T, ConfigError> {
        let value = if value.is_null() {
            serde_yaml::Value::Mapping(serde_yaml::Mapping::new())
        } else {
            value.clone()
        };
        serde_path_to_error::deserialize(value).map_err(|e| {
            let inner = e.path().to_string();
            if inner == "." {
                self.error(e.inner())
            } else {
                self.at(&inner).error(e.inner())
            }
        })
    }
}

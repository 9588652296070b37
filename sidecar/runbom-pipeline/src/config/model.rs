//! The parsed, checked configuration.

use std::{any::Any, collections::BTreeMap};

use super::{
    section::{ConfigError, Section},
    service::{Pipeline, Service, pipeline_signal},
};
use crate::{
    SignalKind,
    component::{ExporterConfig, ProcessorConfig, ReceiverConfig},
};

/// The parsed, checked configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from (`<embedded defaults>` when no file was given).
    pub source: String,
    /// Receivers by their configured name (`ebpf`, `otlp`, `otlp/2`, ...).
    pub receivers: BTreeMap<String, Box<dyn ReceiverConfig>>,
    /// Processors by their configured name (`batch`, `memory_limiter/strict`, ...).
    pub processors: BTreeMap<String, Box<dyn ProcessorConfig>>,
    /// Exporters by their configured name (`otlp`, `otlp/backup`, ...).
    pub exporters: BTreeMap<String, Box<dyn ExporterConfig>>,
    /// Extensions by their configured name (`bearertokenauth`, ...).
    pub extensions: BTreeMap<String, crate::extension::ExtensionConfig>,
    pub service: Service,
}

impl Config {
    /// An error about the YAML path `path` of this configuration.
    #[must_use]
    pub fn error(&self, path: &str, msg: &str) -> ConfigError {
        self.section(path).error(msg)
    }

    /// The place `path` in this configuration.
    #[must_use]
    pub fn section(&self, path: &str) -> Section<'_> {
        Section::new(&self.source, path)
    }

    /// The configured pipelines, in order, with their signal.
    pub fn pipelines(&self) -> impl Iterator<Item = (&str, SignalKind, &Pipeline)> {
        self.service
            .pipelines
            .iter()
            .filter_map(|(name, p)| Some((name.as_str(), pipeline_signal(name)?, p)))
    }

    /// The receiver configured as `name`, if it is a `T`.
    #[must_use]
    pub fn receiver<T: ReceiverConfig>(&self, name: &str) -> Option<&T> {
        (&**self.receivers.get(name)? as &dyn Any).downcast_ref()
    }

    /// The processor configured as `name`, if it is a `T`.
    #[must_use]
    pub fn processor<T: ProcessorConfig>(&self, name: &str) -> Option<&T> {
        (&**self.processors.get(name)? as &dyn Any).downcast_ref()
    }

    /// The exporter configured as `name`, if it is a `T`.
    #[must_use]
    pub fn exporter<T: ExporterConfig>(&self, name: &str) -> Option<&T> {
        (&**self.exporters.get(name)? as &dyn Any).downcast_ref()
    }
}

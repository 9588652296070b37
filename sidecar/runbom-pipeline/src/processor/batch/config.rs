//! The `batch` processor's section.

use std::time::Duration;

use serde::Deserialize;

use super::BatchSettings;
use crate::component::{ProcessorConfig, SpecContext};
use crate::config::{ConfigError, Section, duration};
use crate::{ProcessorSpec, processor::ProcessorError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Send a batch once it holds this many items (spans, log records, data points) ...
    pub send_batch_size: usize,
    /// ... and never merge past this many (0: no limit).
    pub send_batch_max_size: usize,
    /// ... or once the oldest event in it has waited this long.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

impl ProcessorConfig for BatchConfig {
    fn check(&self, at: &Section) -> Result<(), ConfigError> {
        at.at_least_one("send_batch_size", self.send_batch_size)
    }

    fn spec(&self, _ctx: &SpecContext) -> Result<ProcessorSpec, ProcessorError> {
        Ok(ProcessorSpec::Batch(BatchSettings {
            send_batch_size: self.send_batch_size,
            send_batch_max_size: self.send_batch_max_size,
            timeout: self.timeout,
        }))
    }
}
